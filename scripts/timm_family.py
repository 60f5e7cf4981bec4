#!/usr/bin/env python3
"""timm's EfficientNet family as effnet data, and the fixtures that check effnet against timm.

Every architecture of `timm.list_models('*efficientnet*') + timm.list_models('tinynet*')`
(timm 1.0.31: 81) is described here in effnet's preset vocabulary (crates/effnet-model/configs/),
and timm itself is asked for everything effnet must reproduce:

  presets    writes crates/effnet-model/configs/<name>.toml for every architecture (base = ... plus
             overrides, as hand-written presets do) and configs/pruned widths from the channel
             lists that ship inside the timm package
  manifest   tests/data/timm/manifest.json: per architecture timm's parameter count, state_dict
             tensor count and a digest of its "name:shape" lines (FNV-1a 64), plus its default
             input size (effnet's manifest test compares all of them)
  tags       crates/effnet-model/data/pretrained.json: every pretrained tag's preprocessing
             (input/test size, crop_pct, interpolation, mean/std, classes, hub id, licence)
  fixtures   weight-free parity fixtures: parameters from a SplitMix64 stream (below, also
             implemented in effnet_model::fixtures), BN statistics measured on real pixels (12
             crops of the four photos in tests/data/photos) and stored as f16, and timm's logits
             on two of those 72x72 crops.  `fixtures` writes the CI subset into tests/data/timm/; `fixtures --all
             --out DIR` writes all 81 into DIR for the full run (see docs/models.md).

The generator (identical in crates/effnet-model/src/fixtures.rs):
  splitmix64: state += 0x9E3779B97F4A7C15; z = state;
              z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31
  per tensor: seed = FNV1a64(timm key) ^ SEED, u_i = 2 * (z_i >> 11) * 2^-53 - 1 in [-1, 1)
  values:     rank >= 2: u * sqrt(3 / fan_in), fan_in = prod(shape[1:]);
              rank 1 '*.bias': 0.1 * u;  other rank 1 (norm weight, EvoNorm v): 1 + 0.25 * u
              (computed in f64, rounded once to f32); BN running stats are measured, not drawn.

Needs: pip install timm==1.0.31 torch safetensors pillow numpy.  Run from the repository root.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "crates", "effnet-model", "configs")
DATA = os.path.join(ROOT, "crates", "effnet-model", "data")
FIXTURES = os.path.join(ROOT, "tests", "data", "timm")
PHOTOS = os.path.join(ROOT, "tests", "data", "photos")

TIMM_VERSION = "1.0.31"
SEED = 0x0E1F_F1E7_2026_0019
FIXTURE_SIZE = 72
MASK = (1 << 64) - 1

# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def splitmix(seed, n):
    """n outputs of SplitMix64 started at `seed` (vectorised; numpy uint64 wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        k = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(seed) + k * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed, n):
    z = splitmix(seed, n)
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53) * 2.0 - 1.0


def fill_value(name, shape):
    """The f32 values effnet's tests draw for the timm tensor `name` of `shape`."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(fnv1a64(name) ^ SEED, n)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = u * math.sqrt(3.0 / fan_in)
    elif name.endswith(".bias"):
        v = u * 0.1
    else:
        v = u * 0.25 + 1.0
    return v.astype(np.float32).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Architectures in effnet's vocabulary
# ---------------------------------------------------------------------------------------------


def stage(block, r, k, s, e, cin, cout, se=0.0, **extra):
    d = dict(block=block, repeats=r, kernel=k, stride=s, expand=e, in_channels=cin,
             out_channels=cout, se_ratio=se)
    d.update(extra)
    return d


B0_STAGES = [
    stage("ds", 1, 3, 1, 1, 32, 16, 0.25),
    stage("ir", 2, 3, 2, 6, 16, 24, 0.25),
    stage("ir", 2, 5, 2, 6, 24, 40, 0.25),
    stage("ir", 3, 3, 2, 6, 40, 80, 0.25),
    stage("ir", 3, 5, 1, 6, 80, 112, 0.25),
    stage("ir", 4, 5, 2, 6, 112, 192, 0.25),
    stage("ir", 1, 3, 1, 6, 192, 320, 0.25),
]


def no_se(stages):
    return [dict(s, se_ratio=0.0) for s in stages]


EDGE_STAGES = [
    stage("er", 1, 3, 1, 4, 32, 24, skip=False, force_in_channels=24),
    stage("er", 2, 3, 2, 8, 24, 32),
    stage("er", 4, 3, 2, 8, 32, 48),
    stage("ir", 5, 5, 2, 8, 48, 96),
    stage("ir", 4, 5, 1, 8, 96, 144),
    stage("ir", 2, 5, 2, 8, 144, 192),
]

CC_STAGES = [dict(s, experts=4) if i >= 4 else s for i, s in enumerate(B0_STAGES)]


def v2_stages(defs):
    return [stage(*d[:7], se=d[7] if len(d) > 7 else 0.0, **(d[8] if len(d) > 8 else {})) for d in defs]


V2S_STAGES = v2_stages([
    ("cn", 2, 3, 1, 1, 24, 24, 0.0, dict(skip=True)),
    ("er", 4, 3, 2, 4, 24, 48),
    ("er", 4, 3, 2, 4, 48, 64),
    ("ir", 6, 3, 2, 4, 64, 128, 0.25),
    ("ir", 9, 3, 1, 6, 128, 160, 0.25),
    ("ir", 15, 3, 2, 6, 160, 256, 0.25),
])
V2S_RW_STAGES = [stage("er", 2, 3, 1, 1, 24, 24)] + V2S_STAGES[1:5] + [
    stage("ir", 15, 3, 2, 6, 160, 272, 0.25)]
V2M_STAGES = v2_stages([
    ("cn", 3, 3, 1, 1, 24, 24, 0.0, dict(skip=True)),
    ("er", 5, 3, 2, 4, 24, 48),
    ("er", 5, 3, 2, 4, 48, 80),
    ("ir", 7, 3, 2, 4, 80, 160, 0.25),
    ("ir", 14, 3, 1, 6, 160, 176, 0.25),
    ("ir", 18, 3, 2, 6, 176, 304, 0.25),
    ("ir", 5, 3, 1, 6, 304, 512, 0.25),
])
V2L_STAGES = v2_stages([
    ("cn", 4, 3, 1, 1, 32, 32, 0.0, dict(skip=True)),
    ("er", 7, 3, 2, 4, 32, 64),
    ("er", 7, 3, 2, 4, 64, 96),
    ("ir", 10, 3, 2, 4, 96, 192, 0.25),
    ("ir", 19, 3, 1, 6, 192, 224, 0.25),
    ("ir", 25, 3, 2, 6, 224, 384, 0.25),
    ("ir", 7, 3, 1, 6, 384, 640, 0.25),
])
V2XL_STAGES = v2_stages([
    ("cn", 4, 3, 1, 1, 32, 32, 0.0, dict(skip=True)),
    ("er", 8, 3, 2, 4, 32, 64),
    ("er", 8, 3, 2, 4, 64, 96),
    ("ir", 16, 3, 2, 4, 96, 192, 0.25),
    ("ir", 24, 3, 1, 6, 192, 256, 0.25),
    ("ir", 32, 3, 2, 6, 256, 512, 0.25),
    ("ir", 8, 3, 1, 6, 512, 640, 0.25),
])
V2BASE_STAGES = v2_stages([
    ("cn", 1, 3, 1, 1, 32, 16, 0.0, dict(skip=True)),
    ("er", 2, 3, 2, 4, 16, 32),
    ("er", 2, 3, 2, 4, 32, 48),
    ("ir", 3, 3, 2, 4, 48, 96, 0.25),
    ("ir", 5, 3, 1, 6, 96, 112, 0.25),
    ("ir", 8, 3, 2, 6, 112, 192, 0.25),
])


def x_stages(version):
    e = 6 if version == 1 else 4
    return [
        stage("ds", 1, 3, 1, 1, 32, 16, 0.25, space_to_depth=True),
        stage("er", 2, 3, 2, e, 16, 24, 0.25, activation="relu"),
        stage("er", 2, 5, 2, e, 24, 40, 0.25, activation="relu"),
        stage("ir", 3, 3, 2, e, 40, 80, 0.25),
        stage("ir", 3, 5, 1, 6, 80, 112, 0.25),
        stage("ir", 4, 5, 2, 6, 112, 192, 0.25),
        stage("ir", 1, 3, 1, 6, 192, 320, 0.25),
    ]


TEST_STAGES = v2_stages([
    ("cn", 1, 3, 1, 1, 24, 16, 0.0, dict(skip=True)),
    ("er", 1, 3, 2, 4, 16, 24),
    ("er", 1, 3, 2, 4, 24, 32),
    ("ir", 1, 3, 2, 4, 32, 48, 0.25),
    ("ir", 1, 3, 2, 4, 48, 64, 0.25),
])

TF = dict(padding="same", bn_eps=1e-3)


def full(name, note, stem, head, stages, **kw):
    """A stand-alone preset (no base)."""
    d = dict(name=name, stem_channels=stem, head_channels=head, activation="silu", bn_eps=1e-5,
             bn_momentum=0.1, padding="symmetric", width_mult=1.0, depth_mult=1.0,
             rounding="v1", dropout=0.2, drop_path=0.2, num_classes=1000)
    d.update(kw)
    d["stages"] = stages
    return name, note, d


def derived(name, base, note, **kw):
    d = dict(base=base, name=name)
    d.update(kw)
    return name, note, d


def archs():
    """(name, one-line description, preset table) for every architecture, bases first."""
    out = []
    add = out.append
    add(full("efficientnet_b0", "EfficientNet-B0 (timm efficientnet_b0, torchvision efficientnet_b0)",
             32, 1280, B0_STAGES))
    scale = {  # name: (width, depth, dropout)
        "b1": (1.0, 1.1, 0.2), "b2": (1.1, 1.2, 0.3), "b3": (1.2, 1.4, 0.3), "b4": (1.4, 1.8, 0.4),
        "b5": (1.6, 2.2, 0.4), "b6": (1.8, 2.6, 0.5), "b7": (2.0, 3.1, 0.5), "b8": (2.2, 3.6, 0.5),
        "l2": (4.3, 5.3, 0.5),
    }
    for k, (w, d, drop) in scale.items():
        add(derived(f"efficientnet_{k}", "efficientnet_b0", f"EfficientNet-{k.upper()}: the B0 table scaled",
                    width_mult=w, depth_mult=d, dropout=drop))
    add(derived("tf_efficientnet_b0", "efficientnet_b0", "EfficientNet-B0, TF port (SAME padding, BN eps 1e-3)", **TF))
    for k in scale:
        add(derived(f"tf_efficientnet_{k}", f"efficientnet_{k}", f"EfficientNet-{k.upper()}, TF port", **TF))
    # Group conv / GroupNorm / EvoNorm experiments, BlurPool, CondConv.
    add(derived("efficientnet_b0_gn", "efficientnet_b0", "EfficientNet-B0 with GroupNorm (8 channels per group)",
                norm="group", norm_group_size=8))
    add(derived("efficientnet_b0_g8_gn", "efficientnet_b0", "EfficientNet-B0, grouped depthwise convs (8) + GroupNorm",
                norm="group", norm_group_size=8, group_size=8))
    add(derived("efficientnet_b0_g16_evos", "efficientnet_b0",
                "EfficientNet-B0, grouped depthwise convs (16), channels divisible by 16 (timm builds it with BatchNorm)",
                group_size=16, channel_divisor=16))
    add(derived("efficientnet_b3_gn", "efficientnet_b3", "EfficientNet-B3 with GroupNorm (16), channels divisible by 16",
                norm="group", norm_group_size=16, channel_divisor=16))
    add(derived("efficientnet_b3_g8_gn", "efficientnet_b3",
                "EfficientNet-B3, grouped depthwise convs (8) + GroupNorm (16), channels divisible by 16",
                norm="group", norm_group_size=16, channel_divisor=16, group_size=8))
    add(derived("efficientnet_blur_b0", "efficientnet_b0", "EfficientNet-B0 with BlurPool (anti-aliased strided depthwise convs)",
                blur_pool=True))
    add(full("efficientnet_cc_b0_4e", "EfficientNet-CondConv-B0, 4 experts in the last three stages",
             32, 1280, CC_STAGES))
    add(full("efficientnet_cc_b0_8e", "EfficientNet-CondConv-B0, 8 experts",
             32, 1280, [dict(s, experts=8) if s.get("experts") else s for s in CC_STAGES]))
    add(derived("efficientnet_cc_b1_8e", "efficientnet_cc_b0_8e", "EfficientNet-CondConv-B1, 8 experts", depth_mult=1.1))
    for k in ("b0_4e", "b0_8e", "b1_8e"):
        add(derived(f"tf_efficientnet_cc_{k}", f"efficientnet_cc_{k}", "EfficientNet-CondConv, TF port", **TF))
    # Lite.
    add(full("efficientnet_lite0", "EfficientNet-Lite0 (timm: symmetric padding, BN eps 1e-5)", 32, 1280,
             no_se(B0_STAGES), activation="relu6", fix_stem_head=True))
    for k, (w, d, drop) in {"lite1": (1.0, 1.1, 0.2), "lite2": (1.1, 1.2, 0.3), "lite3": (1.2, 1.4, 0.3),
                            "lite4": (1.4, 1.8, 0.3)}.items():
        add(derived(f"efficientnet_{k}", "efficientnet_lite0", f"EfficientNet-{k.capitalize()}",
                    width_mult=w, depth_mult=d, dropout=drop))
    for k in range(5):
        add(derived(f"tf_efficientnet_lite{k}", f"efficientnet_lite{k}", f"EfficientNet-Lite{k}, TF port", **TF))
    # EdgeTPU.
    add(full("efficientnet_es", "EfficientNet-EdgeTPU-S (Fused-MBConv early stages, ReLU, no SE)", 32, 1280,
             EDGE_STAGES, activation="relu"))
    add(derived("efficientnet_em", "efficientnet_es", "EfficientNet-EdgeTPU-M", depth_mult=1.1))
    add(derived("efficientnet_el", "efficientnet_es", "EfficientNet-EdgeTPU-L", width_mult=1.2, depth_mult=1.4, dropout=0.3))
    add(derived("efficientnet_es_pruned", "efficientnet_es", "EfficientNet-EdgeTPU-S, pruned weights (same shapes)"))
    add(derived("efficientnet_el_pruned", "efficientnet_el", "EfficientNet-EdgeTPU-L, pruned weights (same shapes)"))
    for k in ("es", "em", "el"):
        add(derived(f"tf_efficientnet_{k}", f"efficientnet_{k}", f"EfficientNet-EdgeTPU-{k[1].upper()}, TF port", **TF))
    # Knapsack-pruned B1-B3 (TF padding): channel widths from timm's _pruned/*.txt.
    for k in ("b1", "b2", "b3"):
        add(derived(f"efficientnet_{k}_pruned", f"efficientnet_{k}",
                    f"EfficientNet-{k.upper()} knapsack-pruned (TF padding; per-block widths from timm)",
                    block_widths=pruned_widths(f"efficientnet_{k}_pruned"), **TF))
    # EfficientNetV2, timm's (BN eps 1e-5) and the TF ports.
    add(full("efficientnetv2_s", "EfficientNetV2-S (timm: BN eps 1e-5, symmetric padding)", 24, 1280, V2S_STAGES))
    add(full("efficientnetv2_m", "EfficientNetV2-M (timm)", 24, 1280, V2M_STAGES, dropout=0.3))
    add(full("efficientnetv2_l", "EfficientNetV2-L (timm)", 32, 1280, V2L_STAGES, dropout=0.4))
    add(full("efficientnetv2_xl", "EfficientNetV2-XL (timm)", 32, 1280, V2XL_STAGES, dropout=0.4))
    for k in ("s", "m", "l", "xl"):
        add(derived(f"tf_efficientnetv2_{k}", f"efficientnetv2_{k}", f"EfficientNetV2-{k.upper()}, TF port", **TF))
    add(full("tf_efficientnetv2_b0", "EfficientNetV2-B0, TF port", 32, 1280, V2BASE_STAGES, rounding="v2", **TF))
    for k, (w, d, drop) in {"b1": (1.0, 1.1, 0.2), "b2": (1.1, 1.2, 0.3), "b3": (1.2, 1.4, 0.3)}.items():
        add(derived(f"tf_efficientnetv2_{k}", "tf_efficientnetv2_b0", f"EfficientNetV2-{k.upper()}, TF port",
                    width_mult=w, depth_mult=d, dropout=drop))
    add(derived("efficientnetv2_rw_t", "efficientnetv2_s", "EfficientNetV2-T (timm's own, width 0.8, depth 0.9)",
                width_mult=0.8, depth_mult=0.9))
    add(derived("gc_efficientnetv2_rw_t", "efficientnetv2_rw_t",
                "EfficientNetV2-T with global-context attention in place of squeeze-excitation", attention="gc"))
    add(full("efficientnetv2_rw_s", "EfficientNetV2-S, timm's pre-release variant (Fused-MBConv e1 first, 272 ch, 1792 head)",
             24, 1792, V2S_RW_STAGES))
    rw_m = [dict(s, depth_mult=1.2 if i < 4 else 1.6) for i, s in enumerate(V2S_RW_STAGES)]
    add(full("efficientnetv2_rw_m", "EfficientNetV2-M, timm's pre-release variant (width 1.2, depth 1.2/1.6)",
             24, 1792, rw_m, width_mult=1.2, dropout=0.3))
    # EfficientNet-X / -H (space-to-depth first block, ReLU Fused-MBConv with SE).
    add(full("efficientnet_x_b3", "EfficientNet-X-B3 (space-to-depth, Fused-MBConv with SE)", 32, 1280,
             x_stages(1), width_mult=1.2, depth_mult=1.4, dropout=0.3))
    add(derived("efficientnet_x_b5", "efficientnet_x_b3", "EfficientNet-X-B5", width_mult=1.6, depth_mult=2.2, dropout=0.4))
    add(full("efficientnet_h_b5", "EfficientNet-H-B5 (EfficientNet-X v2 table)", 32, 1280, x_stages(2),
             width_mult=1.92, depth_mult=2.2, dropout=0.4))
    # TinyNet.
    add(full("tinynet_a", "TinyNet-A (B0 table, fixed stem/head, depth rounded)", 32, 1280, B0_STAGES,
             fix_stem=True, fix_head=True, depth_trunc="round", depth_mult=1.2))
    for k, (w, d) in {"b": (0.75, 1.1), "c": (0.54, 0.85), "d": (0.54, 0.695), "e": (0.51, 0.6)}.items():
        add(derived(f"tinynet_{k}", "tinynet_a", f"TinyNet-{k.upper()}", width_mult=w, depth_mult=d))
    # timm's test nets.
    add(full("test_efficientnet", "timm's minimal test EfficientNet", 24, 256, TEST_STAGES, rounding="v2"))
    add(derived("test_efficientnet_gn", "test_efficientnet", "test net with GroupNorm (8)", norm="group", norm_group_size=8))
    add(derived("test_efficientnet_ln", "test_efficientnet", "test net with LayerNorm2d", norm="layer"))
    add(derived("test_efficientnet_evos", "test_efficientnet", "test net with EvoNorm-S0 (8)", norm="evonorm_s0",
                norm_group_size=8))
    return out


def pruned_widths(name):
    """[mid, se, out] of every block of a pruned net, from timm's shape list."""
    import timm
    path = os.path.join(os.path.dirname(timm.__file__), "models", "_pruned", f"{name}.txt")
    shapes = {}
    for item in open(path).read().split("***"):
        key, shape = item.split(":")
        shapes[key] = [int(v) for v in shape.strip("[]").split(",") if v.strip()]
    widths = []
    s = 0
    while f"blocks.{s}.0.conv_pw.weight" in shapes or f"blocks.{s}.0.conv_dw.weight" in shapes:
        j = 0
        while f"blocks.{s}.{j}.conv_dw.weight" in shapes:
            p = f"blocks.{s}.{j}."
            mid = shapes[p + "conv_dw.weight"][0]
            se = shapes.get(p + "se.conv_reduce.weight", [0])[0]
            out = shapes.get(p + "conv_pwl.weight", shapes.get(p + "conv_pw.weight"))[0]
            widths.append([mid, se, out])
            j += 1
        s += 1
    return widths


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def write_preset(name, note, table, sizes, params):
    lines = [f"# {note}: {params:,} params (timm {name}).",
             "# Generated by scripts/timm_family.py presets from timm " + TIMM_VERSION + "; edit there."]
    for k, v in table.items():
        if k in ("stages", "block_widths"):
            continue
        lines.append(f"{k} = {toml_value(v)}")
    lines.append(f"train_size = {sizes[0]}")
    lines.append(f"eval_size = {sizes[1]}")
    if "block_widths" in table:
        lines.append("# [mid, se, out] channels of every block, from timm/models/_pruned/" + name + ".txt")
        lines.append("block_widths = [")
        for w in table["block_widths"]:
            lines.append(f"    {toml_value(w)},")
        lines.append("]")
    for s in table.get("stages", []):
        lines.append("")
        lines.append("[[stages]]")
        for k, v in s.items():
            lines.append(f"{k} = {toml_value(v)}")
    with open(os.path.join(CONFIGS, f"{name}.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def default_sizes(name):
    import timm
    cfg = timm.models.get_pretrained_cfg(name) or {}
    size = (cfg.get("input_size") if isinstance(cfg, dict) else cfg.input_size)[-1]
    return size, size


def cmd_presets(_args):
    import timm
    check_timm()
    names = []
    for name, note, table in archs():
        m = timm.create_model(name)
        params = sum(p.numel() for p in m.parameters())
        size = m.pretrained_cfg["input_size"][-1]
        write_preset(name, note, table, (size, size), params)
        names.append(name)
        del m
    want = set(all_names())
    assert set(names) == want, (sorted(want - set(names)), sorted(set(names) - want))
    with open(os.path.join(CONFIGS, "TIMM_PRESETS"), "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"wrote {len(names)} presets into {CONFIGS}")


# ---------------------------------------------------------------------------------------------
# Manifest and tags
# ---------------------------------------------------------------------------------------------


def all_names():
    import timm
    return timm.list_models("*efficientnet*") + timm.list_models("tinynet*")


def check_timm():
    import timm
    if timm.__version__ != TIMM_VERSION:
        sys.exit(f"timm {timm.__version__} installed; this script describes timm {TIMM_VERSION} "
                 f"(pip install timm=={TIMM_VERSION})")


def digest_lines(sd):
    lines = [f"{k}:{list(v.shape)}" for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    return lines, f"{fnv1a64(chr(10).join(sorted(lines))):016x}"


def cmd_manifest(_args):
    import timm
    check_timm()
    out = {"timm": TIMM_VERSION, "digest": "FNV-1a 64 of the sorted 'key:[shape]' lines joined by \\n",
           "architectures": {}}
    for name in all_names():
        m = timm.create_model(name)
        sd = m.state_dict()
        lines, digest = digest_lines(sd)
        out["architectures"][name] = {
            "params": sum(p.numel() for p in m.parameters()),
            "tensors": len(lines),
            "digest": digest,
            "input_size": m.pretrained_cfg["input_size"][-1],
        }
        if name.startswith("test_"):
            out["architectures"][name]["keys"] = sorted(lines)
        del m
    os.makedirs(FIXTURES, exist_ok=True)
    with open(os.path.join(FIXTURES, "manifest.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote the manifest of {len(out['architectures'])} architectures")


def cmd_tags(_args):
    import timm
    check_timm()
    tags = {}
    defaults = {}
    for name in all_names():
        default = timm.models.get_pretrained_cfg(name)
        if default is not None and default.tag:
            defaults[name] = default.tag
        for full_name in timm.list_pretrained(name) or []:
            if full_name.split(".")[0] != name:
                continue
            cfg = timm.models.get_pretrained_cfg(full_name).to_dict()
            tag = full_name.split(".", 1)[1]
            entry = {
                "architecture": name,
                "tag": tag,
                "input_size": cfg["input_size"][-1],
                "crop_pct": cfg.get("crop_pct", 0.875),
                "interpolation": cfg.get("interpolation", "bicubic"),
                "mean": [float(v) for v in cfg["mean"]],
                "std": [float(v) for v in cfg["std"]],
                "num_classes": cfg.get("num_classes", 1000),
                "hf_hub_id": cfg.get("hf_hub_id") or "",
                "license": cfg.get("license") or "",
            }
            if cfg.get("test_input_size"):
                entry["test_input_size"] = cfg["test_input_size"][-1]
            if cfg.get("test_crop_pct"):
                entry["test_crop_pct"] = cfg["test_crop_pct"]
            tags[full_name] = entry
    # timm's deprecated names (tf_efficientnet_b0_ns -> tf_efficientnet_b0.ns_jft_in1k).
    from timm.models import _registry
    names = set(all_names())
    deprecated = {k: v for k, v in _registry._deprecated_models.items() if v and v.split(".")[0] in names}
    os.makedirs(DATA, exist_ok=True)
    with open(os.path.join(DATA, "pretrained.json"), "w") as f:
        json.dump({"timm": TIMM_VERSION, "tags": tags, "default_tags": defaults, "deprecated": deprecated}, f,
                  indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(tags)} pretrained tags and {len(deprecated)} deprecated names")


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

# Architectures whose fixtures are committed and run in CI (one of every structure and layer).
CI = [
    "test_efficientnet", "test_efficientnet_gn", "test_efficientnet_ln", "test_efficientnet_evos",
    "efficientnet_b0", "tf_efficientnet_b0", "efficientnet_lite0", "tf_efficientnet_lite0",
    "efficientnet_es", "tf_efficientnet_es", "tinynet_e", "efficientnet_b1_pruned",
    "tf_efficientnetv2_b0", "efficientnetv2_rw_t", "gc_efficientnetv2_rw_t", "efficientnetv2_rw_s",
    "efficientnet_blur_b0", "efficientnet_cc_b0_4e", "tf_efficientnet_cc_b0_4e", "efficientnet_b0_g8_gn",
    "efficientnet_b0_g16_evos", "efficientnet_x_b3",
]


def crops(size):
    """Real pixels: 2 evaluation crops and the 12 calibration crops (3 per photo) they are part
    of, float32 NCHW normalised with ImageNet statistics."""
    from PIL import Image
    import torch
    photos = sorted(p for p in os.listdir(PHOTOS) if p.endswith((".png", ".jpg")))
    out = []
    for p in photos:
        img = Image.open(os.path.join(PHOTOS, p)).convert("RGB")
        w, h = img.size
        scale = 1.4 * size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        for (fx, fy) in ((0.5, 0.5), (0.1, 0.2), (0.9, 0.8)):
            x0 = int((w - size) * fx)
            y0 = int((h - size) * fy)
            out.append(np.asarray(img.crop((x0, y0, x0 + size, y0 + size)), dtype=np.uint8))
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    # The statistics include the evaluated crops: every channel's evaluated values then lie
    # within the measured spread, which keeps the comparison well conditioned.
    evaluate = x[[0, 4]].contiguous()
    return evaluate, x.contiguous()


def fill_model(model):
    import torch
    sd = model.state_dict()
    new = {}
    for k, v in sd.items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            new[k] = v
        else:
            new[k] = torch.from_numpy(fill_value(k, list(v.shape)))
    model.load_state_dict(new)


def measure_bn(model, calibrate):
    """Running statistics = the statistics of the calibration batch (cumulative average over one
    batch), rounded to f16 so that the stored values are exactly what both sides use."""
    import torch
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(calibrate)
    model.eval()
    stats = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for s in ("running_mean", "running_var"):
                v = getattr(m, s).half()
                assert torch.isfinite(v).all(), f"{name}.{s} overflows f16"
                getattr(m, s).copy_(v.float())
                stats[f"{name}.{s}"] = v.contiguous()
    return stats


def make_fixture(name, size, out_dir):
    import timm
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = timm.create_model(name)
    fill_model(model)
    evaluate, calibrate = crops(size)
    stats = measure_bn(model, calibrate)
    with torch.no_grad():
        logits = model(evaluate)
    assert torch.isfinite(logits).all(), name
    tensors = dict(stats)
    tensors["logits"] = logits.contiguous()
    meta = {"architecture": name, "timm": TIMM_VERSION, "size": str(size), "seed": f"{SEED:#x}",
            "params": str(sum(p.numel() for p in model.parameters()))}
    save_file(tensors, os.path.join(out_dir, f"{name}.safetensors"), metadata=meta)
    save_file({"input": evaluate}, os.path.join(out_dir, f"input_{size}.safetensors"))
    print(f"{name}: logits |max| {logits.abs().max():.3f}, {len(stats)} BN statistics")


def cmd_fixtures(args):
    import torch
    check_timm()
    torch.set_num_threads(max(1, os.cpu_count() // 2))
    names = all_names() if args.all else CI
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    out = args.out or FIXTURES
    os.makedirs(out, exist_ok=True)
    for name in names:
        make_fixture(name, FIXTURE_SIZE, out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("presets")
    sub.add_parser("manifest")
    sub.add_parser("tags")
    f = sub.add_parser("fixtures")
    f.add_argument("--all", action="store_true", help="all 81 architectures (not only the CI set)")
    f.add_argument("--out", help="output folder (default tests/data/timm)")
    f.add_argument("--only", help="comma-separated architectures")
    args = p.parse_args()
    {"presets": cmd_presets, "manifest": cmd_manifest, "tags": cmd_tags, "fixtures": cmd_fixtures}[args.cmd](args)


if __name__ == "__main__":
    main()
