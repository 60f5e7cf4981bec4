#!/usr/bin/env python3
"""ONNX Runtime CPU inference timing, the counterpart of `effnet bench` (same model, batch, size).

Usage: bench_infer_ort.py MODEL BATCH SIZE ITERS   (MODEL: efficientnetv2_s | efficientnet_lite0)
Exports the PyTorch model with torch.onnx.export (opset 17, random weights, cached under
$ONNX_CACHE, default ~/.cache/effnet-onnx) and times an InferenceSession with all graph
optimisations, $THREADS intra-op threads (default 2), one inter-op thread.
V2-S is torchvision's efficientnet_v2_s; Lite0 is timm's efficientnet_lite0 (same shapes as
tf_efficientnet_lite0, with the padding inside the convs, which is ONNX Runtime's best case).
Prints one JSON line with median ms/iter and img/s. Needs: pip install torch torchvision timm onnx onnxruntime
"""
import json
import warnings
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

warnings.filterwarnings("ignore")

model_name, batch, size, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
threads = int(os.environ.get("THREADS", "2"))
cache = Path(os.environ.get("ONNX_CACHE", Path.home() / ".cache" / "effnet-onnx"))
cache.mkdir(parents=True, exist_ok=True)
path = cache / f"{model_name}_b{batch}_{size}.onnx"
if not path.exists():
    torch.manual_seed(0)
    if model_name == "efficientnetv2_s":
        import torchvision
        model = torchvision.models.efficientnet_v2_s()
    elif model_name == "efficientnet_lite0":
        import timm
        model = timm.create_model("efficientnet_lite0")
    else:
        raise SystemExit(f"unknown model {model_name}")
    model.eval()
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, torch.randn(batch, 3, size, size), str(tmp), opset_version=17,
                      input_names=["input"], output_names=["logits"], dynamo=False)
    tmp.rename(path)
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
for _ in range(2):
    sess.run(None, {"input": x})
times = []
for _ in range(iters):
    t = time.perf_counter()
    sess.run(None, {"input": x})
    times.append(time.perf_counter() - t)
med = statistics.median(times)
print(json.dumps({"model": model_name, "batch": batch, "size": size, "median_ms": med * 1e3,
                  "img_per_s": batch / med, "threads": threads, "ort": ort.__version__}))
