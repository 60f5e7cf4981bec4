#!/usr/bin/env python3
"""Writes small real-image datasets in ImageNet folder layout for `effnet train` smoke runs.

  digits   : the 1797 UCI handwritten digits (CC BY 4.0, bundled by scikit-learn), 8x8 upscaled to
             --size (default 32), every 5th image to val/: <out>/{train,val}/<digit>/<i>.png
  textures : brick / grass / gravel (scikit-image data, public domain): random --size crops, train
             from the top half of each photo and val from the bottom half, so splits never overlap.

Sources are the copies in crates/effnet-train/tests/data (see the README there for licences).
The Rust tests build the same layouts in crates/effnet-train/tests/common/mod.rs.

Usage:
  python scripts/make_train_data.py digits data/digits [--size 32]
  python scripts/make_train_data.py textures data/textures [--size 96 --train 64 --val 32]
"""

import argparse
import csv
import gzip
import os
import random

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "crates", "effnet-train", "tests", "data")


def digits(out, size):
    with gzip.open(os.path.join(SRC, "digits.csv.gz"), "rt") as f:
        rows = [r for r in csv.reader(f) if r]
    for i, row in enumerate(rows):
        px = [int(v) * 255 // 16 for v in row[:64]]
        label = int(row[64])
        img = Image.new("L", (8, 8))
        img.putdata(px)
        img = img.resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
        d = os.path.join(out, "val" if i % 5 == 0 else "train", str(label))
        os.makedirs(d, exist_ok=True)
        img.save(os.path.join(d, f"{i:04d}.png"))
    print(f"wrote {len(rows)} digits to {out}")


def textures(out, size, n_train, n_val, seed):
    rng = random.Random(seed)
    for cls in ("brick", "grass", "gravel"):
        img = Image.open(os.path.join(SRC, f"{cls}.png")).convert("RGB")
        w, h = img.size
        half = h // 2
        for split, n, y0 in (("train", n_train, 0), ("val", n_val, half)):
            d = os.path.join(out, split, cls)
            os.makedirs(d, exist_ok=True)
            for k in range(n):
                x = rng.randrange(w - size)
                y = y0 + rng.randrange(half - size)
                img.crop((x, y, x + size, y + size)).save(os.path.join(d, f"{k:03d}.png"))
    print(f"wrote textures to {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["digits", "textures"])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--train", type=int, default=64, help="textures: crops per class for train")
    ap.add_argument("--val", type=int, default=32, help="textures: crops per class for val")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.kind == "digits":
        digits(a.out, a.size or 32)
    else:
        textures(a.out, a.size or 96, a.train, a.val, a.seed)


if __name__ == "__main__":
    main()
