#!/usr/bin/env python3
"""Writes small real-image datasets in ImageNet folder layout for `effnet train` smoke runs.

  digits   : the 1797 UCI handwritten digits (CC BY 4.0, bundled by scikit-learn), 8x8 upscaled to
             --size (default 32), every 5th image to val/: <out>/{train,val}/<digit>/<i>.png
  textures : brick / grass / gravel (scikit-image data, public domain): random --size crops, train
             from the top half of each photo and val from the bottom half, so splits never overlap.

Sources are the copies in crates/effnet-train/tests/data (see the README there for licences).
The Rust tests build the same layouts in crates/effnet-train/tests/common/mod.rs.
Needs only the Python standard library (PNG is read and written here with zlib + struct).

Usage:
  python scripts/make_train_data.py digits data/digits [--size 32]
  python scripts/make_train_data.py textures data/textures [--size 96 --train 64 --val 32]
"""

import argparse
import csv
import gzip
import os
import random
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "crates", "effnet-train", "tests", "data")


def write_png(path, width, height, rows):
    """8-bit grayscale or RGB PNG from rows of bytes (3 bytes per pixel for RGB)."""
    channels = len(rows[0]) // width
    color_type = {1: 0, 3: 2}[channels]

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def read_gray_png(path):
    """Decodes an 8-bit, non-interlaced grayscale PNG (the texture sources) to rows of bytes."""
    with open(path, "rb") as f:
        data = f.read()
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, ctype, interlace) != (8, 0, 0):
                raise SystemExit(f"{path}: only 8-bit non-interlaced grayscale PNG is supported")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows, prev = [], bytearray(width)
    for y in range(height):
        ftype, line = raw[y * (width + 1)], bytearray(raw[y * (width + 1) + 1 : (y + 1) * (width + 1)])
        for x in range(width):
            a = line[x - 1] if x else 0
            b, c = prev[x], (prev[x - 1] if x else 0)
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def upscale_bilinear(px, n, size):
    """n x n grayscale (flat list) to size x size, bilinear with pixel-centre alignment."""
    out = []
    for y in range(size):
        sy = min(max((y + 0.5) * n / size - 0.5, 0), n - 1)
        y0, fy = int(sy), sy - int(sy)
        y1 = min(y0 + 1, n - 1)
        row = bytearray()
        for x in range(size):
            sx = min(max((x + 0.5) * n / size - 0.5, 0), n - 1)
            x0, fx = int(sx), sx - int(sx)
            x1 = min(x0 + 1, n - 1)
            top = px[y0 * n + x0] * (1 - fx) + px[y0 * n + x1] * fx
            bot = px[y1 * n + x0] * (1 - fx) + px[y1 * n + x1] * fx
            v = int(round(top * (1 - fy) + bot * fy))
            row += bytes((v, v, v))
        out.append(row)
    return out


def digits(out, size):
    with gzip.open(os.path.join(SRC, "digits.csv.gz"), "rt") as f:
        rows = [r for r in csv.reader(f) if r]
    for i, row in enumerate(rows):
        px = [int(v) * 255 // 16 for v in row[:64]]
        label = int(row[64])
        d = os.path.join(out, "val" if i % 5 == 0 else "train", str(label))
        os.makedirs(d, exist_ok=True)
        write_png(os.path.join(d, f"{i:04d}.png"), size, size, upscale_bilinear(px, 8, size))
    print(f"wrote {len(rows)} digits to {out}")


def textures(out, size, n_train, n_val, seed):
    rng = random.Random(seed)
    for cls in ("brick", "grass", "gravel"):
        w, h, rows = read_gray_png(os.path.join(SRC, f"{cls}.png"))
        half = h // 2
        for split, n, y0 in (("train", n_train, 0), ("val", n_val, half)):
            d = os.path.join(out, split, cls)
            os.makedirs(d, exist_ok=True)
            for k in range(n):
                x = rng.randrange(w - size)
                y = y0 + rng.randrange(half - size)
                crop = [bytes(v for p in r[x : x + size] for v in (p, p, p)) for r in rows[y : y + size]]
                write_png(os.path.join(d, f"{k:03d}.png"), size, size, crop)
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
