#!/usr/bin/env python3
"""Times one exported model in its runtime, the deployment counterpart of `effnet bench`.

Usage: bench_deploy_peer.py MODEL.tflite|MODEL.onnx BATCH ITERS
.tflite runs in LiteRT's interpreter (ai-edge-litert; XNNPACK, LiteRT's default CPU delegate, f32
and int8), .onnx in ONNX Runtime (CPU, all graph optimisations, so QDQ graphs run as integer
kernels), both with $THREADS intra-op threads (default 2) on random input resized to BATCH.
Prints one JSON line: median ms per batch and img/s over ITERS timed runs after 2 warm-ups.
Needs: pip install ai-edge-litert onnxruntime numpy
"""
import json
import os
import statistics
import sys
import time

import numpy as np

path, batch, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
threads = int(os.environ.get("THREADS", "2"))
rng = np.random.default_rng(0)

if path.endswith(".tflite"):
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(model_path=path, num_threads=threads)
    (d,) = it.get_input_details()
    shape = [batch] + list(d["shape"][1:])
    it.resize_tensor_input(d["index"], shape)
    it.allocate_tensors()
    (d,) = it.get_input_details()
    x = rng.standard_normal(shape, dtype=np.float32)
    if d["dtype"] == np.int8:
        x = rng.integers(-128, 128, shape, dtype=np.int8)

    def run():
        it.set_tensor(d["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])

    engine = "litert"
else:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    shape = [batch] + [int(d) for d in i.shape[1:]]
    x = rng.standard_normal(shape, dtype=np.float32)
    if "int8" in i.type:
        x = rng.integers(-128, 128, shape, dtype=np.int8)

    def run():
        return sess.run(None, {i.name: x})[0]

    engine = "ort"

for _ in range(2):
    run()
times = []
for _ in range(iters):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
med = statistics.median(times)
print(json.dumps({"file": os.path.basename(path), "engine": engine, "batch": batch,
                  "median_ms": med * 1e3, "img_per_s": batch / med, "threads": threads,
                  "bytes": os.path.getsize(path)}))
