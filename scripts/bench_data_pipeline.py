#!/usr/bin/env python3
"""Training data pipeline benchmark: effnet (Rust) vs timm's PIL pipeline, same JPEGs, same run.

Makes ~500x375 JPEGs (quality 90) from the photos in ../shared/data/photos into a temp dir (random crops,
scales and flips, so files differ), then times
  * timm: create_transform(224, is_training=True, auto_augment='rand-m9-mstd0.5', interpolation='bilinear')
    applied to Image.open(path).convert('RGB') (decode + RRC + flip + RandAugment + ToTensor + Normalize),
    on 1 process and on N processes;
  * effnet: crates/effnet-data/examples/pipeline_bench.rs (same steps) on 1 thread and N threads;
and prints images/s and the ratio effnet / timm for both.

Usage: python scripts/bench_data_pipeline.py [--seconds 3] [--threads N] [--count 64]
"""

import argparse
import multiprocessing as mp
import os
import random
import re
import subprocess
import sys
import tempfile
import time


def make_jpegs(shared, out, count):
    from PIL import Image

    os.makedirs(out, exist_ok=True)
    photos = sorted(os.listdir(os.path.join(shared, "data", "photos")))
    rng = random.Random(0)
    srcs = [Image.open(os.path.join(shared, "data", "photos", p)).convert("RGB") for p in photos]
    for i in range(count):
        im = srcs[i % len(srcs)]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        size = (500, 375) if rng.random() < 0.75 else (375, 500)
        crop = im.resize(size, Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(os.path.join(out, f"img_{i:04d}.jpg"), quality=90)
    return sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".jpg"))


_TF = None


def _init():
    global _TF
    import torch
    from timm.data import create_transform

    torch.set_num_threads(1)
    _TF = create_transform(224, is_training=True, auto_augment="rand-m9-mstd0.5", interpolation="bilinear")


def _run(args):
    from PIL import Image

    files, seconds, seed = args
    random.seed(seed)
    import numpy as np
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)
    for f in files[:4]:  # warm-up
        _TF(Image.open(f).convert("RGB"))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _TF(Image.open(files[n % len(files)]).convert("RGB"))
        n += 1
    return n, time.perf_counter() - t0


def timm_rate(files, seconds, procs):
    if procs == 1:
        _init()
        n, dt = _run((files, seconds, 0))
        return n / dt
    with mp.get_context("fork").Pool(procs, initializer=_init) as pool:
        res = pool.map(_run, [(files, seconds, s) for s in range(procs)])
    return sum(n / dt for n, dt in res)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(root), "shared"))
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "effnet-bench-jpegs"))
    args = ap.parse_args()

    files = make_jpegs(args.shared, args.dir, args.count)
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/effnet-target"))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "effnet-data", "--example", "pipeline_bench"],
                   cwd=root, env=env, check=True)
    exe = os.path.join(env["CARGO_TARGET_DIR"], "release", "examples", "pipeline_bench")

    t1 = timm_rate(files, args.seconds, 1)
    out = subprocess.run([exe, args.dir, str(args.seconds), str(args.threads)], capture_output=True, text=True,
                         check=True).stdout
    tn = timm_rate(files, args.seconds, args.threads)
    print(out.strip())
    rates = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"threads=(\d+) ([\d.]+) img/s", out)}
    e1, en = rates[1], rates[args.threads]
    print(f"timm_pil_pipeline procs=1 {t1:.1f} img/s")
    print(f"timm_pil_pipeline procs={args.threads} {tn:.1f} img/s")
    print(f"ratio effnet/timm 1 core: {e1 / t1:.2f}x   {args.threads} cores: {en / tn:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
