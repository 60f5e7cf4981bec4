#!/usr/bin/env python3
"""CPU training-step throughput: effnet (`effnet bench --train`) beside PyTorch/timm
(scripts/bench_train_torch.py) on the same model, batch, size, optimiser and thread count, in
interleaved rounds (effnet, PyTorch, effnet, ...); per config the median img/s of each, the ratio
of the medians and the range of the per-round ratios. Then the 1 -> 2 thread scaling of effnet's
training step. Prints a Markdown table (and writes it to --out).

Usage: scripts/bench_train_cpu.py [--rounds 5] [--iters 5] [--threads 2] [--opt adamw]
         [--configs efficientnetv2_b0:16:128,efficientnet_lite0:16:224,efficientnetv2_s:8:224]
         [--scaling efficientnetv2_b0:16:128] [--plain-optim] [--before] [--effnet PATH] [--out FILE]
Run it through scripts/bench_train_cpu.sh, which builds effnet first.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def effnet_run(a, model, batch, size, threads, plain=False):
    cmd = [a.effnet, "bench", "--train", "-m", model, "-b", str(batch), "--img-size", str(size),
           "-j", str(threads), "--iters", str(a.iters), "--warmup", "2", "--json", "--optimizer", a.opt]
    env = dict(os.environ)
    if a.plain_optim or plain:
        env["EFFNET_PLAIN_OPTIM"] = "1"
    if plain:
        env["EFFNET_PLAIN_OPS"] = "1"
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return rec["train_samples_per_sec"]


def torch_run(a, model, batch, size, threads):
    env = dict(os.environ, THREADS=str(threads))
    cmd = [sys.executable, os.path.join(HERE, "bench_train_torch.py"), model, str(batch), str(size),
           str(a.iters), a.opt]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return rec["img_per_s"], rec["versions"]


def configs(text):
    out = []
    for item in filter(None, text.split(",")):
        m, b, s = item.split(":")
        out.append((m, int(b), int(s)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--opt", default="adamw", choices=["adamw", "rmsproptf", "sgd"])
    p.add_argument("--plain-optim", action="store_true",
                   help="effnet's optimiser step as burn's per-tensor operations (EFFNET_PLAIN_OPTIM=1)")
    p.add_argument("--before", action="store_true",
                   help="also time effnet on burn's plain composition and per-tensor optimiser "
                        "(EFFNET_PLAIN_OPS=1 EFFNET_PLAIN_OPTIM=1: the path before effnet's training ops)")
    p.add_argument("--configs", default="efficientnetv2_b0:16:128,efficientnet_lite0:16:224,efficientnetv2_s:8:224")
    p.add_argument("--scaling", default="efficientnetv2_b0:16:128",
                   help="configs of the 1 -> 2 thread scaling of effnet's step ('' to skip)")
    p.add_argument("--effnet", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/effnet-target")), "release", "effnet"))
    p.add_argument("--out", default=None, help="also write the table to this file")
    a = p.parse_args()

    plain = " (EFFNET_PLAIN_OPTIM=1)" if a.plain_optim else ""
    lines = [f"effnet `bench --train`{plain} vs PyTorch/timm, {a.opt}, {a.threads} threads, "
             f"{a.rounds} interleaved rounds of {a.iters} timed steps (median of each), "
             f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             ""]
    if a.before:
        lines += ["| model | batch | size | effnet before (plain burn) img/s | effnet img/s | PyTorch img/s "
                  "| before / PyTorch | ratio (medians) | per-round ratios |", "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| model | batch | size | effnet img/s | PyTorch img/s | ratio (medians) | per-round ratios |",
                  "|---|---|---|---|---|---|---|"]
    versions = ""
    for model, batch, size in configs(a.configs):
        ours, theirs, ratios, before = [], [], [], []
        for r in range(a.rounds):
            if a.before:
                before.append(effnet_run(a, model, batch, size, a.threads, plain=True))
                print(f"  {model} b{batch} r{size} round {r + 1}: effnet before {before[-1]:.2f} img/s",
                      file=sys.stderr, flush=True)
            o = effnet_run(a, model, batch, size, a.threads)
            t, versions = torch_run(a, model, batch, size, a.threads)
            ours.append(o)
            theirs.append(t)
            ratios.append(o / t)
            print(f"  {model} b{batch} r{size} round {r + 1}: effnet {o:.2f} img/s, pytorch {t:.2f} img/s, "
                  f"ratio {o / t:.2f}", file=sys.stderr, flush=True)
        mo, mt = statistics.median(ours), statistics.median(theirs)
        cells = f"{mo:.2f} | {mt:.2f} |"
        if a.before:
            mb = statistics.median(before)
            cells = f"{mb:.2f} | {mo:.2f} | {mt:.2f} | {mb / mt:.2f}x |"
        lines.append(f"| {model} | {batch} | {size} | {cells} **{mo / mt:.2f}x** | "
                     f"{min(ratios):.2f}-{max(ratios):.2f} |")
    lines += ["", f"PyTorch peer: {versions}, scripts/bench_train_torch.py", ""]
    scaling = configs(a.scaling)
    if scaling:
        lines += ["effnet training step, 1 -> 2 threads (interleaved rounds, medians):", "",
                  "| model | batch | size | 1 thread img/s | 2 threads img/s | speed-up |", "|---|---|---|---|---|---|"]
        for model, batch, size in scaling:
            one, two = [], []
            for r in range(a.rounds):
                one.append(effnet_run(a, model, batch, size, 1))
                two.append(effnet_run(a, model, batch, size, 2))
                print(f"  scaling {model} round {r + 1}: 1 thread {one[-1]:.2f}, 2 threads {two[-1]:.2f} img/s",
                      file=sys.stderr, flush=True)
            m1, m2 = statistics.median(one), statistics.median(two)
            lines.append(f"| {model} | {batch} | {size} | {m1:.2f} | {m2:.2f} | {m2 / m1:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
