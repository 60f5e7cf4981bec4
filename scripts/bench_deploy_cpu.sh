#!/usr/bin/env bash
# Deployment formats on the CPU, one run, same machine, 2 threads each: effnet's native executor
# (f32 and int8) beside LiteRT (XNNPACK) f32 and int8 and ONNX Runtime f32 and int8 (QDQ), running the
# .tflite/.onnx files effnet exports, for Lite0 and V2-S at 224, batch 1 and 8. Prints img/s
# (median over ROUNDS interleaved rounds of ITERS runs each), the ratio effnet-native / each peer
# (higher is better for effnet), and the size of every artifact.
#
# Lite0 is the bundled model, calibrated on the bundled photos (effnet's int8 .bpk too); V2-S has
# seeded random weights (speed does not depend on them), calibrated on the same photos, and
# effnet's int8 V2-S is `effnet bench --int8` (ranges from its own input). Files are cached in
# $OUT_DIR.
# Usage: scripts/bench_deploy_cpu.sh [ITERS]      (ROUNDS=3 by default)
#   needs: pip install ai-edge-litert onnxruntime numpy
#   EFFNET_BIN=path/to/effnet and EXAMPLE_BIN=path/to/deploy_eval skip the cargo builds.
# Take the shared benchmark lock: flock /work/coord/bench.lock scripts/bench_deploy_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-10}
ROUNDS=${ROUNDS:-3}
OUT_DIR=${OUT_DIR:-$HOME/.cache/effnet-deploy-bench}
if [[ -z "${EFFNET_BIN:-}" || -z "${EXAMPLE_BIN:-}" ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
  # The feature set of scripts/test.sh, so that its build is reused.
  cargo build --release -q --workspace --features effnet-cli/wgpu --bin effnet --example deploy_eval
  EFFNET_BIN=$CARGO_TARGET_DIR/release/effnet
  EXAMPLE_BIN=$CARGO_TARGET_DIR/release/examples/deploy_eval
fi
declare -A SOURCE=([tf_efficientnet_lite0]="" [efficientnetv2_s]="--random efficientnetv2_s")
for model in tf_efficientnet_lite0 efficientnetv2_s; do
  if ! ls "$OUT_DIR/$model"/*_int8.tflite >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    "$EXAMPLE_BIN" ${SOURCE[$model]} --size 224 --out "$OUT_DIR/$model" --no-eval >&2
  fi
done
LITE0_INT8=$OUT_DIR/tf_efficientnet_lite0/effnet_int8.bpk
if [[ ! -f $LITE0_INT8 ]]; then
  "$EFFNET_BIN" export --format bpk --precision int8 --calib tests/data/photos -o "$LITE0_INT8" >&2
fi
declare -A INT8=([tf_efficientnet_lite0]="--weights $LITE0_INT8" [efficientnetv2_s]="--model efficientnetv2_s --int8")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores); iters $ITERS, rounds $ROUNDS, 2 threads each"
echo
echo "| model | batch | effnet f32 | effnet int8 | LiteRT f32 | LiteRT int8 | ORT f32 | ORT int8 (QDQ) | effnet int8 / f32 | effnet f32 / LiteRT f32 | effnet int8 / LiteRT int8 | effnet f32 / ORT f32 | effnet int8 / ORT int8 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for model in tf_efficientnet_lite0 efficientnetv2_s; do
  dir="$OUT_DIR/$model"
  files=("$dir"/*_f32.tflite "$dir"/*_int8.tflite "$dir"/*_f32.onnx "$dir"/*_int8.onnx)
  for batch in 1 8; do
    runs=()
    for _ in $(seq "$ROUNDS"); do
      runs+=("$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" bench --model "$model" --batch-size "$batch" \
        --img-size 224 --iters "$ITERS" --json --engine native)")
      # shellcheck disable=SC2086
      runs+=("$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" bench ${INT8[$model]} --batch-size "$batch" \
        --img-size 224 --iters "$ITERS" --json)")
      for f in "${files[@]}"; do
        runs+=("$(THREADS=2 python3 scripts/bench_deploy_peer.py "$f" "$batch" "$ITERS")")
      done
    done
    python3 - "$model" "$batch" "${runs[@]}" <<'PY'
import json, statistics, sys
model, batch, runs = sys.argv[1], sys.argv[2], [json.loads(a) for a in sys.argv[3:]]
per = 6  # effnet f32, effnet int8, then LiteRT f32/int8 and ORT f32/int8 per round
f32 = statistics.median(r["infer_samples_per_sec"] for r in runs[0::per])
int8 = statistics.median(r["infer_samples_per_sec"] for r in runs[1::per])
lf, li, of, oi = [statistics.median(r["img_per_s"] for r in runs[k::per]) for k in range(2, per)]
cells = " | ".join(f"{v:.1f}" for v in (f32, int8, lf, li, of, oi))
ratios = " | ".join(f"{a / b:.2f}x" for a, b in ((int8, f32), (f32, lf), (int8, li), (f32, of), (int8, oi)))
print(f"| {model} | {batch} | {cells} | {ratios} |")
PY
  done
done
echo
echo "| artifact | MB |"
echo "|---|---|"
for f in "$OUT_DIR"/*/*.tflite "$OUT_DIR"/*/*.onnx "$OUT_DIR"/*/*.bpk weights/*.bpk; do
  awk -v n="$(basename "$f")" -v b="$(stat -c %s "$f")" 'BEGIN { printf "| %s | %.2f |\n", n, b / 1e6 }' 
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
