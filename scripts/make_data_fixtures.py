#!/usr/bin/env python3
"""Writes the RandAugment / RandomResizedCrop fixtures for crates/effnet-data/tests/augment_ops.rs.

Input: a 64x48 RGB image cut from scikit-image's `chelsea.png` (BSD-3-Clause, Stefan van der Walt), taken from
../shared/data/photos/. Expected outputs come from Pillow (ImageOps, ImageEnhance, Image.transform, Image.rotate,
crop + resize) and from timm's `auto_augment` op functions, called with fixed arguments so the test is
deterministic. The manifest lists one case per line: `name op args... tolerance`, where tolerance is the largest
per-channel difference allowed (all 0 today: every op is bit exact).

Usage: python scripts/make_data_fixtures.py [--shared ../shared] [--out tests/data/augment]
"""

import argparse
import os

from PIL import Image, ImageEnhance, ImageOps

try:  # timm's op functions, to check we follow the same calls.
    from timm.data import auto_augment as taa
except ImportError:  # pragma: no cover
    taa = None

BILINEAR = Image.Resampling.BILINEAR
BICUBIC = Image.Resampling.BICUBIC
NEAREST = Image.Resampling.NEAREST
FILL = (124, 116, 104)  # timm's img_mean for ImageNet mean


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(root), "shared"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "augment"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    src = Image.open(os.path.join(args.shared, "data", "photos", "chelsea.png")).convert("RGB")
    # A 64x48 crop-and-shrink of the cat's face: varied colours, edges and flat parts.
    img = src.resize((64, 48), BICUBIC, box=(100, 20, 340, 200))
    img.save(os.path.join(args.out, "input.png"))
    # A low-contrast variant so autocontrast/equalize do real work.
    low = img.point(lambda v: 60 + v // 3)
    low.save(os.path.join(args.out, "input_low.png"))

    cases = []  # (name, op, args, tol, image)

    def add(name, op, fargs, tol, out, inp="input"):
        out.save(os.path.join(args.out, f"{name}.png"))
        cases.append((name, inp, op, fargs, tol))

    # Point ops: exact.
    for inp_name, im in (("input", img), ("input_low", low)):
        add(f"autocontrast_{inp_name}", "autocontrast", [], 0, taa.auto_contrast(im), inp_name)
        add(f"equalize_{inp_name}", "equalize", [], 0, taa.equalize(im), inp_name)
    add("invert", "invert", [], 0, taa.invert(img))
    for bits in (1, 2, 4, 6):
        add(f"posterize_{bits}", "posterize", [bits], 0, taa.posterize(img, bits))
    for thr in (0, 100, 128, 230, 256):
        add(f"solarize_{thr}", "solarize", [thr], 0, taa.solarize(img, thr))
    for add_v in (30, 110):
        add(f"solarize_add_{add_v}", "solarize_add", [add_v], 0, taa.solarize_add(img, add_v))
    # Blend ops: Pillow's float32 blend (exact: same truncation).
    for f in (0.1, 0.55, 1.9):
        add(f"color_{f}", "color", [f], 0, ImageEnhance.Color(img).enhance(f))
        add(f"contrast_{f}", "contrast", [f], 0, ImageEnhance.Contrast(img).enhance(f))
        add(f"brightness_{f}", "brightness", [f], 0, ImageEnhance.Brightness(img).enhance(f))
        add(f"sharpness_{f}", "sharpness", [f], 0, ImageEnhance.Sharpness(img).enhance(f))
    # Geometric ops through timm's functions (fill = timm mean, bilinear / bicubic resample).
    for interp, iname in ((BILINEAR, "bilinear"), (BICUBIC, "bicubic")):
        kw = dict(fillcolor=FILL, resample=interp)
        for deg in (27.0, -13.5):
            add(f"rotate_{deg}_{iname}", "rotate", [deg, iname], 0, taa.rotate(img, deg, **dict(kw)))
        for s in (0.27, -0.15):
            add(f"shear_x_{s}_{iname}", "shear_x", [s, iname], 0, taa.shear_x(img, s, **dict(kw)))
            add(f"shear_y_{s}_{iname}", "shear_y", [s, iname], 0, taa.shear_y(img, s, **dict(kw)))
        for p in (0.405, -0.2):
            add(f"translate_x_{p}_{iname}", "translate_x_rel", [p, iname], 0,
                taa.translate_x_rel(img, p, **dict(kw)))
            add(f"translate_y_{p}_{iname}", "translate_y_rel", [p, iname], 0,
                taa.translate_y_rel(img, p, **dict(kw)))
    # Nearest (automl's geometric ops use nearest sampling; PIL is the closest reference we can run).
    add("rotate_30_nearest", "rotate", [30.0, "nearest"], 0,
        img.rotate(30.0, resample=NEAREST, fillcolor=(128, 128, 128)))
    # RandomResizedCrop as torchvision does it on PIL: crop, then resize.
    for (top, left, h, w, size, interp, iname) in (
        (5, 9, 30, 41, 32, BILINEAR, "bilinear"),
        (0, 0, 48, 64, 24, BICUBIC, "bicubic"),
        (11, 20, 17, 13, 40, BILINEAR, "bilinear"),
    ):
        out = img.crop((left, top, left + w, top + h)).resize((size, size), interp)
        add(f"rrc_{top}_{left}_{h}_{w}_{size}_{iname}", "resized_crop", [top, left, h, w, size, iname], 0, out)

    # RandomResizedCrop box statistics from torchvision's own get_params on a 500x375 image.
    import math

    import torch
    import torchvision.transforms as T

    torch.manual_seed(0)
    probe = Image.new("RGB", (500, 375))
    areas, logr, fallback, n = [], [], 0, 40000
    for _ in range(n):
        i, j, h, w = T.RandomResizedCrop.get_params(probe, (0.08, 1.0), (3 / 4, 4 / 3))
        if (h, w) == (375, 500):
            fallback += 1
            continue
        areas.append(w * h / (500 * 375))
        logr.append(math.log(w / h))
    with open(os.path.join(args.out, "rrc_stats.txt"), "w") as f:
        f.write("# torchvision RandomResizedCrop.get_params on 500x375, scale (0.08,1), ratio (3/4,4/3), "
                f"{n} draws: mean_area mean_log_ratio fallback_fraction\n")
        f.write(f"{sum(areas) / len(areas):.5f} {sum(logr) / len(logr):.5f} {fallback / n:.5f}\n")

    with open(os.path.join(args.out, "manifest.txt"), "w") as f:
        f.write("# name input op tolerance args... (made by scripts/make_data_fixtures.py)\n")
        for name, inp, op, fargs, tol in cases:
            f.write(" ".join([name, inp, op, str(tol)] + [str(a) for a in fargs]) + "\n")
    with open(os.path.join(args.out, "LICENSE.txt"), "w") as f:
        f.write(
            "input.png and input_low.png are a 64x48 crop of chelsea.png from scikit-image's bundled data\n"
            "(BSD-3-Clause, photo by Stefan van der Walt). The other PNGs are Pillow / timm outputs computed\n"
            "from it by scripts/make_data_fixtures.py.\n"
        )
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
