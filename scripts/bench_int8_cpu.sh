#!/usr/bin/env bash
# effnet's int8 executor beside its f32 executor, one run, same machine, 2 threads each: Lite0
# and V2-S at 224, batch 1 and 8, ROUNDS interleaved rounds (f32, int8, f32, int8, ...) of ITERS
# timed forwards each. Prints img/s (median over the rounds) and the ratio int8 / f32 with its
# range over the rounds, and the load average before and after.
#
# Lite0 is the bundled model quantised with `effnet export --precision int8 --calib` on the
# bundled photos; V2-S has random weights (`effnet bench --int8`: ranges from the benchmark's own
# input; speed does not depend on the values). The peers' int8 (ONNX Runtime QDQ, LiteRT) are in
# scripts/bench_deploy_cpu.sh.
# Usage: flock /work/coord/bench.lock scripts/bench_int8_cpu.sh [ITERS]     (ROUNDS=5 by default)
#   EFFNET_BIN=path/to/effnet skips the cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-20}
ROUNDS=${ROUNDS:-5}
OUT_DIR=${OUT_DIR:-$HOME/.cache/effnet-int8-bench}
if [[ -z "${EFFNET_BIN:-}" ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
  cargo build --release -q -p effnet-cli
  EFFNET_BIN=$CARGO_TARGET_DIR/release/effnet
fi
mkdir -p "$OUT_DIR"
LITE0_INT8=$OUT_DIR/lite0_int8.bpk
if [[ ! -f $LITE0_INT8 ]]; then
  "$EFFNET_BIN" export --format bpk --precision int8 --calib tests/data/photos -o "$LITE0_INT8" >&2
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores); iters $ITERS, rounds $ROUNDS, 2 threads each"
echo
echo "| model | batch | effnet f32 img/s | effnet int8 img/s | int8 / f32 | (round range) |"
echo "|---|---|---|---|---|---|"
for model in efficientnet_lite0 efficientnetv2_s; do
  if [[ $model == efficientnet_lite0 ]]; then
    f32_args=(--weights bundled)
    int8_args=(--weights "$LITE0_INT8")
  else
    f32_args=(--model "$model")
    int8_args=(--model "$model" --int8)
  fi
  for batch in 1 8; do
    common=(bench --batch-size "$batch" --img-size 224 --iters "$ITERS" --warmup 3 --json --engine native)
    runs=()
    for _ in $(seq "$ROUNDS"); do
      runs+=("$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" "${common[@]}" "${f32_args[@]}")")
      runs+=("$(RAYON_NUM_THREADS=2 "$EFFNET_BIN" "${common[@]}" "${int8_args[@]}")")
    done
    python3 - "$model" "$batch" "${runs[@]}" <<'PY'
import json, statistics, sys
model, batch, runs = sys.argv[1], sys.argv[2], [json.loads(a) for a in sys.argv[3:]]
f32 = [r["infer_samples_per_sec"] for r in runs[0::2]]
int8 = [r["infer_samples_per_sec"] for r in runs[1::2]]
assert all(r["engine"] == "native-int8" for r in runs[1::2]), "int8 runs not on the int8 executor"
ratios = [b / a for a, b in zip(f32, int8)]
a, b = statistics.median(f32), statistics.median(int8)
print(f"| {model} | {batch} | {a:.1f} | {b:.1f} | {b / a:.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x |")
PY
  done
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
