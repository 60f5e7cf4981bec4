#!/usr/bin/env python3
"""PyTorch CPU inference timing, the counterpart of `effnet bench` (same model, batch, size).

Usage: bench_infer_torch.py MODEL BATCH SIZE ITERS   (MODEL: efficientnetv2_s | efficientnet_lite0)
Prints one JSON line with median ms/iter and img/s. Threads: $THREADS (default 2).
"""
import json
import os
import statistics
import sys
import time

import torch

model_name, batch, size, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
torch.set_grad_enabled(False)
if model_name == "efficientnetv2_s":
    import torchvision
    model = torchvision.models.efficientnet_v2_s()
elif model_name == "efficientnet_lite0":
    import timm
    model = timm.create_model("tf_efficientnet_lite0")
elif model_name == "efficientnetv2_b0":
    import timm
    model = timm.create_model("tf_efficientnetv2_b0")
else:
    raise SystemExit(f"unknown model {model_name}")
model.eval()
x = torch.randn(batch, 3, size, size)
for _ in range(2):
    model(x)
times = []
for _ in range(iters):
    t = time.perf_counter()
    model(x)
    times.append(time.perf_counter() - t)
med = statistics.median(times)
print(json.dumps({"model": model_name, "batch": batch, "size": size, "median_ms": med * 1e3,
                  "img_per_s": batch / med, "threads": torch.get_num_threads()}))
