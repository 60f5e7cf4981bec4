#!/usr/bin/env python3
"""Writes crates/effnet/data/imagenet_synsets.txt: the 1000 ImageNet-1k WordNet ids in class
index order, each with its WordNet lemmas (`n02123159<TAB>tiger cat`).

Source: the lists timm ships inside its package (timm/data/_info/imagenet_synsets.txt and
imagenet_synset_to_lemma.txt; timm is Apache-2.0), so the file is reproducible from a pip
install of timm:  pip install timm==1.0.31 && python3 scripts/make_imagenet_synsets.py
Checks that the ids are sorted (ImageNet-1k's index order is the sorted synset order, which
torchvision's class-name list follows) and that there are 1000 of them.
"""
import os
import sys

import timm

INFO = os.path.join(os.path.dirname(timm.__file__), "data", "_info")
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "effnet", "data", "imagenet_synsets.txt")


def main():
    with open(os.path.join(INFO, "imagenet_synsets.txt")) as f:
        synsets = [line.strip() for line in f if line.strip()]
    lemmas = {}
    with open(os.path.join(INFO, "imagenet_synset_to_lemma.txt")) as f:
        for line in f:
            key, _, lemma = line.rstrip("\n").partition("\t")
            lemmas[key] = lemma.strip()
    if len(synsets) != 1000 or synsets != sorted(synsets):
        sys.exit(f"expected 1000 sorted synsets, got {len(synsets)}")
    missing = [s for s in synsets if s not in lemmas]
    if missing:
        sys.exit(f"no lemma for {missing[:5]}")
    with open(OUT, "w", newline="\n") as f:
        for s in synsets:
            f.write(f"{s}\t{lemmas[s]}\n")
    print(f"wrote {os.path.normpath(OUT)} from timm {timm.__version__}")


if __name__ == "__main__":
    main()
