#!/usr/bin/env bash
# CPU inference in one run on the same machine with the same thread budget (2): effnet's native
# executor, effnet on burn, PyTorch eager and ONNX Runtime, for V2-S and Lite0 at batch 1 and 8,
# 224x224. Prints img/s and the ratios effnet-native / ORT, / PyTorch, / burn (higher is better
# for effnet), and the load average before and after.
#
# A shared VM's speed drifts by tens of percent within seconds, so the two contenders that matter
# (native and ORT) run ROUNDS times each, interleaved (native, ORT, native, ORT, ...): the table
# gives the median img/s over the rounds, the spread of the per-round ratio native/ORT, and the
# ratio of the best rounds (a disturbance only ever slows a run down: on this 2-vCPU VM both
# engines flip between ~1.0x and ~1.7x of their 1-thread speed within seconds).
# Usage: scripts/bench_infer_cpu.sh [ITERS]     (ROUNDS=3 by default)
#   needs: pip install torch torchvision timm onnx onnxruntime
#   EFFNET_BIN=path/to/effnet skips the cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-10}
ROUNDS=${ROUNDS:-3}
if [[ -z "${EFFNET_BIN:-}" ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
  cargo build --release -q -p effnet-cli
  EFFNET_BIN=$CARGO_TARGET_DIR/release/effnet
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores); iters $ITERS, rounds $ROUNDS, 2 threads each"
printf '%-18s %5s %5s %9s %9s %9s %9s %8s %13s %9s %8s %8s\n' \
  model batch size native burn torch ort nat/ort "(round range)" "best/best" nat/torch nat/burn
for model in efficientnetv2_s efficientnet_lite0; do
  for batch in 1 8; do
    args=(bench --model "$model" --batch-size "$batch" --img-size 224 --iters "$ITERS" --json)
    natives=() orts=()
    for _ in $(seq "$ROUNDS"); do
      natives+=("$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" "${args[@]}" --engine native)")
      orts+=("$(THREADS=2 python3 scripts/bench_infer_ort.py "$model" "$batch" 224 "$ITERS")")
    done
    burn=$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" "${args[@]}" --engine burn)
    torch=$(THREADS=2 python3 scripts/bench_infer_torch.py "$model" "$batch" 224 "$ITERS")
    python3 - "$burn" "$torch" "${natives[@]}" "${orts[@]}" <<'PY'
import json, statistics, sys
burn, torch, rest = json.loads(sys.argv[1]), json.loads(sys.argv[2]), [json.loads(a) for a in sys.argv[3:]]
natives, orts = rest[: len(rest) // 2], rest[len(rest) // 2 :]
n_runs = [m["infer_samples_per_sec"] for m in natives]  # timm benchmark.py keys
o_runs = [o["img_per_s"] for o in orts]
ratios = [n / o for n, o in zip(n_runs, o_runs)]
n, o = statistics.median(n_runs), statistics.median(o_runs)
b, t = burn["infer_samples_per_sec"], torch["img_per_s"]
m = natives[0]
spread = f"{min(ratios):.2f}-{max(ratios):.2f}x"
best = max(n_runs) / max(o_runs)
print(f"{m['model']:<18} {m['infer_batch_size']:>5} {m['infer_img_size']:>5} {n:>9.1f} {b:>9.1f} {t:>9.1f} {o:>9.1f}"
      f" {n/o:>7.2f}x {spread:>13} {best:>8.2f}x {n/t:>7.2f}x {n/b:>7.2f}x")
PY
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
