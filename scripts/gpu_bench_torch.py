#!/usr/bin/env python3
"""PyTorch reference timings for scripts/gpu-check.sh: torchvision efficientnet_v2_s,
inference and training steps, the counterpart of `effnet bench` (random input, median of
timed iterations, img/s).

Usage:
  gpu_bench_torch.py [--device cuda|cpu] [--cases CASES] [--warmup N] [--iters N]
                     [--infer-batch B] [--infer-size R] [--train-batch B] [--train-size R]
                     [--budget SECONDS]

CASES is a comma list of TASK-PRECISION[@BATCHxSIZE] (the shape defaults to --infer-* or
--train-*) with TASK in {infer, train} and PRECISION in
  fp32  float32, TF32 off for both cuDNN convolutions and matmuls (strict f32, like burn's f32)
  tf32  float32 tensors, TF32 allowed in cuDNN and matmuls (PyTorch's usual fast f32 setting)
  bf16  torch.autocast(bfloat16) + channels_last (TF32 on for what stays f32)
Default: infer-fp32,infer-tf32,infer-bf16,train-fp32,train-tf32,train-bf16.

Training step = forward + cross-entropy + backward + AdamW (lr 1e-3), targets arange(B) % 1000,
model in train mode (BN batch statistics, dropout, stochastic depth), as in effnet's benchmarks.
cuDNN autotuning (cudnn.benchmark) is on; its cost shows in first_iter_s, not in the median.

Prints one JSON object per line and case:
  {"engine": "torch", "task", "precision", "batch", "size", "median_ms", "img_per_s",
   "first_iter_s", "iters", "device", "torch", "gpu"}
or, for a case that failed or did not fit the budget, {"engine": "torch", "task", "precision",
"error": "..."}. Exit code 0 unless the arguments are wrong.

Dry run without a GPU: --device cpu --infer-size 64 --train-size 64 --infer-batch 2
--train-batch 2 --warmup 1 --iters 2
"""
import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torchvision
except ImportError as e:  # a machine without PyTorch: one JSON line saying so, exit 0
    print(json.dumps({"engine": "torch", "error": f"PyTorch not installed ({e})"}))
    sys.exit(0)

ALL_CASES = "infer-fp32,infer-tf32,infer-bf16,train-fp32,train-tf32,train-bf16"


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(task, precision, batch, size, device, warmup, iters):
    set_tf32(precision != "fp32")
    channels_last = precision == "bf16"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_v2_s().to(device).to(memory_format=fmt)
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=precision == "bf16")
    if task == "infer":
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                y = model(x)
            # Read back one value, as `effnet bench` does.
            return y[0, 0].float().item()
    else:
        model.train()
        target = torch.arange(batch, device=device) % 1000
        optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optim.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(model(x), target)
            loss.backward()
            optim.step()
            return loss.item()

    t = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t
    for _ in range(max(warmup - 1, 0)):
        step()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    del model, x
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"median_ms": med * 1e3, "img_per_s": batch / med, "first_iter_s": first,
            "iters": iters}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--cases", default=ALL_CASES)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--infer-batch", type=int, default=128)
    p.add_argument("--infer-size", type=int, default=384)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--train-size", type=int, default=224)
    p.add_argument("--budget", type=float, default=0.0,
                   help="seconds; cases not started before it runs out are reported as skipped")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print(json.dumps({"engine": "torch", "error": "torch.cuda.is_available() is False"}))
            return 0
        torch.backends.cudnn.benchmark = True
        gpu = torch.cuda.get_device_name(device)
    else:
        gpu = None
    start = time.perf_counter()
    for case in [c.strip() for c in a.cases.split(",") if c.strip()]:
        name, _, shape = case.partition("@")
        task, _, precision = name.partition("-")
        if task not in ("infer", "train") or precision not in ("fp32", "tf32", "bf16"):
            print(f"unknown case {case!r}", file=sys.stderr)
            return 2
        batch = a.infer_batch if task == "infer" else a.train_batch
        size = a.infer_size if task == "infer" else a.train_size
        if shape:
            try:
                batch, size = (int(v) for v in shape.split("x"))
            except ValueError:
                print(f"bad shape in case {case!r} (want BATCHxSIZE)", file=sys.stderr)
                return 2
        rec = {"engine": "torch", "task": task, "precision": precision, "batch": batch,
               "size": size, "device": a.device, "torch": torch.__version__, "gpu": gpu}
        if a.budget and time.perf_counter() - start > a.budget:
            rec["error"] = "skipped: time budget used up"
        else:
            try:
                rec.update(run_case(task, precision, batch, size, device, a.warmup, a.iters))
            except Exception as e:  # one failing case (e.g. out of memory) must not end the rest
                rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
