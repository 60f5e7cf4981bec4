#!/usr/bin/env python3
"""PyTorch/timm CPU training-step timing, the peer of `effnet bench --train` (same model, batch,
size, optimiser): forward, cross entropy, backward, optimiser step (timm's create_optimizer_v2:
no weight decay on BatchNorm and biases), median of ITERS timed steps after 2 warm-up steps.

Usage: bench_train_torch.py MODEL BATCH SIZE ITERS [OPT=adamw]
MODEL is effnet's name (efficientnetv2_b0 | efficientnetv2_s | efficientnet_lite0), mapped to the
timm model with the same architecture and symmetric padding. OPT: adamw | rmsproptf | sgd.
Threads: $THREADS (default 2). Prints one JSON line (median_ms, img_per_s).
"""
import json
import os
import statistics
import sys
import time

import timm
import torch
from timm.optim import create_optimizer_v2

TIMM = {
    "efficientnetv2_b0": ("tf_efficientnetv2_b0", {"pad_type": ""}),
    "efficientnetv2_s": ("efficientnetv2_s", {}),
    "efficientnet_lite0": ("efficientnet_lite0", {}),
}
# effnet's defaults for the same optimisers (crates/effnet-train/src/config.rs, bench.rs).
OPTS = {
    "adamw": dict(opt="adamw", lr=1e-3, weight_decay=0.05, eps=1e-8),
    "rmsproptf": dict(opt="rmsproptf", lr=0.016, weight_decay=1e-5, eps=1e-3, alpha=0.9, momentum=0.9),
    "sgd": dict(opt="sgd", lr=0.1, weight_decay=1e-4, momentum=0.9, nesterov=True),
}

name, batch, size, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
opt = sys.argv[5] if len(sys.argv) > 5 else "adamw"
threads = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(threads)
torch.manual_seed(0)
arch, kwargs = TIMM[name]
model = timm.create_model(arch, **kwargs)
model.train()
optimizer = create_optimizer_v2(model, **OPTS[opt])
x = torch.randn(batch, 3, size, size)
y = torch.arange(batch) % 1000


def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


for _ in range(2):
    step()
times = []
for _ in range(iters):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
med = statistics.median(times)
print(json.dumps({"engine": "pytorch", "model": arch, "batch": batch, "size": size, "opt": opt,
                  "median_ms": med * 1e3, "img_per_s": batch / med, "threads": threads,
                  "versions": f"torch {torch.__version__} timm {timm.__version__}"}))
