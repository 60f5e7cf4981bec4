#!/usr/bin/env bash
# CPU inference in one run on the same machine with the same thread budget (2): effnet's native
# executor, effnet on burn, PyTorch eager and ONNX Runtime, for V2-S and Lite0 at batch 1 and 8,
# 224x224. Prints img/s and the ratios effnet-native / ORT, / PyTorch, / burn (higher is better
# for effnet), and the load average before and after (other work on the machine slows all
# columns; the ratios from one run are what counts).
# Usage: scripts/bench_infer_cpu.sh [ITERS]
#   needs: pip install torch torchvision timm onnx onnxruntime
#   EFFNET_BIN=path/to/effnet skips the cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-10}
if [[ -z "${EFFNET_BIN:-}" ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
  cargo build --release -q -p effnet-cli
  EFFNET_BIN=$CARGO_TARGET_DIR/release/effnet
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores); iters $ITERS, 2 threads each"
printf '%-18s %5s %5s %9s %9s %9s %9s %8s %8s %8s\n' model batch size native burn torch ort nat/ort nat/torch nat/burn
for model in efficientnetv2_s efficientnet_lite0; do
  for batch in 1 8; do
    args=(bench --model "$model" --batch-size "$batch" --img-size 224 --iters "$ITERS" --json)
    native=$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" "${args[@]}" --engine native)
    burn=$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" "${args[@]}" --engine burn)
    torch=$(THREADS=2 python3 scripts/bench_infer_torch.py "$model" "$batch" 224 "$ITERS")
    ort=$(THREADS=2 python3 scripts/bench_infer_ort.py "$model" "$batch" 224 "$ITERS")
    python3 - "$native" "$burn" "$torch" "$ort" <<'PY'
import json, sys
m, mb = json.loads(sys.argv[1]), json.loads(sys.argv[2])
n, b = m["infer_samples_per_sec"], mb["infer_samples_per_sec"]  # timm benchmark.py keys
t, o = (json.loads(a)["img_per_s"] for a in sys.argv[3:])
print(f"{m['model']:<18} {m['infer_batch_size']:>5} {m['infer_img_size']:>5} {n:>9.1f} {b:>9.1f} {t:>9.1f} {o:>9.1f}"
      f" {n/o:>7.2f}x {n/t:>7.2f}x {n/b:>7.2f}x")
PY
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
