#!/usr/bin/env python3
"""The PyTorch/timm peer of `effnet train --config configs/train/finetune_lite0.toml`: the same
fine-tuning run built from timm's own pieces, as timm's train.py assembles them (train.py lives in
timm's GitHub repository, not in the pip wheel): create_model, create_dataset + create_loader
(RandomResizedCrop, flip, RandAugment, bicubic, the recipe's mean/std), create_optimizer_v2
(AdamW, no decay on BatchNorm and biases), create_scheduler_v2 (cosine with linear warmup, per
step), label-smoothing cross entropy, ModelEmaV3 with warmup, evaluation of the raw and the EMA
weights after every epoch.

Prints one line per epoch and, last, `timm finetune: <seconds> s wall` (what
scripts/bench_finetune_cpu.sh compares).

Usage: scripts/timm_finetune.py DATA [--epochs 3] [--batch 32] [--size 224] [--threads 2]
         [--workers 2] [--lr-base 0.004] [--weights FILE.safetensors|pth]
DATA is an ImageNet-style tree (DATA/train/<class>/*.png, DATA/val/<class>/*.png).
"""

import argparse
import math
import time

import torch
import timm
from timm.data import create_dataset, create_loader
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, accuracy


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--model", default="tf_efficientnet_lite0", help="finetune_lite0.toml's arch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--lr-base", type=float, default=0.004, help="at batch 256 (finetune_lite0.toml)")
    p.add_argument("--weights", default=None, help="start weights (default: timm's random init; "
                   "the run's cost does not depend on the values)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    start = time.perf_counter()

    # finetune_lite0.toml: [data], [train], [progressive] dropout 0.2, [model] drop_path 0.1.
    mean, std = (0.498,) * 3, (0.502,) * 3
    train_ds = create_dataset("", root=a.data, split="train", is_training=True)
    val_ds = create_dataset("", root=a.data, split="val")
    classes = len(train_ds.reader.class_to_idx)
    model = timm.create_model(a.model, num_classes=classes, drop_rate=0.2, drop_path_rate=0.1)
    if a.weights:
        sd = (__import__("safetensors.torch").torch.load_file(a.weights)
              if a.weights.endswith(".safetensors") else torch.load(a.weights, map_location="cpu"))
        sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
        model.load_state_dict(sd, strict=False)
    common = dict(input_size=(3, a.size, a.size), batch_size=a.batch, interpolation="bicubic",
                  mean=mean, std=std, num_workers=a.workers, device=torch.device("cpu"),
                  use_prefetcher=False, persistent_workers=True)
    train_loader = create_loader(train_ds, is_training=True, scale=(0.35, 1.0), hflip=0.5,
                                 color_jitter=0.0, auto_augment="rand-m9-mstd0.5-n2", re_prob=0.0,
                                 **common)
    val_loader = create_loader(val_ds, is_training=False, crop_pct=0.875, **common)

    lr = a.lr_base * a.batch / 256
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=0.05, eps=1e-8)
    steps = len(train_loader)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=a.epochs,
                                       warmup_epochs=1, warmup_lr=1e-5, min_lr=1e-6,
                                       step_on_epochs=False, updates_per_epoch=steps)
    ema = ModelEmaV3(model, decay=0.998, use_warmup=True, warmup_power=0.75)
    loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    print(f"timm {timm.__version__} torch {torch.__version__}: {a.model}, {len(train_ds)} train / "
          f"{len(val_ds)} val images, {classes} classes, b{a.batch} r{a.size}, {a.threads} threads",
          flush=True)

    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        model.train()
        total = 0.0
        for i, (x, y) in enumerate(train_loader):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(model, step=epoch * steps + i)
            scheduler.step_update(num_updates=epoch * steps + i + 1)
            total += loss.item()
        raw, ema_top1 = evaluate(model, val_loader), evaluate(ema.module, val_loader)
        print(f"epoch {epoch + 1}: loss {total / steps:.4f} top-1 {raw:.2f} ema {ema_top1:.2f} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"timm finetune: {time.perf_counter() - start:.1f} s wall")


@torch.no_grad()
def evaluate(model, loader):
    model.eval()
    hits, n = 0.0, 0
    for x, y in loader:
        hits += accuracy(model(x), y, topk=(1,))[0].item() * x.shape[0] / 100
        n += x.shape[0]
    return 100 * hits / max(n, 1)


if __name__ == "__main__":
    main()
