#!/usr/bin/env python3
"""Figures of the house: the longest source files, the longest functions, import cycles.

Usage: python3 scripts/house_figures.py [--top N]

Counts the Rust sources under crates/*/src (tests, examples, benches and build scripts
excluded). A function's length is from its `fn` line to its closing brace. A cycle is a
loop of `use crate::...`/`super::...` imports between the files of one crate.
Standard library only, so anyone can rerun it on any checkout.
"""
import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def sources():
    for path in sorted(ROOT.glob("crates/*/src/**/*.rs")):
        yield path


def strip(line):
    """The line without string literals and `//` comments (good enough for brace counting)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"C\"\s+)?fn\s+(\w+)")


def functions(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth = 0
        opened = False
        j = i
        while j < len(lines):
            s = strip(lines[j])
            if not opened and ";" in s and "{" not in s:
                break  # a declaration without a body (trait item)
            depth += s.count("{") - s.count("}")
            opened = opened or "{" in s
            if opened and depth <= 0:
                break
            j += 1
        if opened:
            out.append((j - i + 1, m.group(7), i + 1))
        i += 1
    return out


def module_of(crate_src, path):
    rel = path.relative_to(crate_src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def imports(crate_src, path, modules):
    me = module_of(crate_src, path)
    # Code only: doc links and comments (`[`crate::budget`]`) are no imports.
    text = "\n".join(strip(l) for l in path.read_text(encoding="utf-8").splitlines())
    found = set()
    for m in re.finditer(r"\b(crate|super)::([\w:]+)", text):
        head, tail = m.group(1), [p for p in m.group(2).split("::") if p]
        base = [] if head == "crate" else list(me[:-1] if path.stem not in ("mod", "lib") else me[:-1])
        target = tuple(base + tail)
        # the longest prefix that is a module of this crate
        while target and target not in modules:
            target = target[:-1]
        if target and target != me:
            found.add(target)
    return found


def cycles():
    result = []
    for crate_src in sorted(ROOT.glob("crates/*/src")):
        files = {module_of(crate_src, p): p for p in crate_src.glob("**/*.rs")}
        graph = {m: imports(crate_src, p, files) for m, p in files.items()}
        # strongly connected components (Tarjan)
        index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                # a module and its own parent (mod.rs/lib.rs naming a child) is not a cycle
                if len(comp) > 1:
                    rels = sorted(str(files[c].relative_to(ROOT)) for c in comp)
                    result.append(rels)

        sys.setrecursionlimit(10000)
        for v in graph:
            if v not in index:
                visit(v)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    files = [(len(p.read_text(encoding="utf-8").splitlines()), p) for p in sources()]
    fns = [(n, name, p, line) for p in sources() for n, name, line in functions(p)]
    total = sum(n for n, _ in files)
    print(f"{len(files)} source files, {total} lines; {len(fns)} functions, "
          f"{sum(1 for f in fns if f[0] > 60)} over 60 lines")
    print(f"\nlongest files (lines):")
    for n, p in sorted(files, key=lambda t: -t[0])[: args.top]:
        print(f"  {n:5}  {p.relative_to(ROOT)}")
    print(f"\nlongest functions (lines):")
    for n, name, p, line in sorted(fns, key=lambda t: -t[0])[: args.top]:
        print(f"  {n:5}  {name}  {p.relative_to(ROOT)}:{line}")
    cyc = cycles()
    print(f"\nimport cycles between files of one crate: {len(cyc)}")
    for c in cyc:
        print("  " + " <-> ".join(c))


if __name__ == "__main__":
    main()
