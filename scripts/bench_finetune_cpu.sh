#!/usr/bin/env bash
# End to end on the CPU: fine-tuning the bundled Lite0 on the digits tree (1437 train / 360 val
# images, 10 classes) for EPOCHS epochs with configs/train/finetune_lite0.toml (224 px, batch 32,
# AdamW, cosine with warmup, RandAugment, EMA, evaluation of raw and EMA weights every epoch),
# `effnet train` beside timm (scripts/timm_finetune.py: the same model, pipeline, optimiser,
# schedule, EMA and evaluation from timm's own pieces), one after the other; prints both wall
# times and the ratio. timm starts from random weights (it cannot download the pretrained ones
# here); the work per step is the same.
# Usage: scripts/bench_finetune_cpu.sh [EPOCHS=3] [THREADS=2]
# On a shared machine: `flock /work/coord/bench.lock scripts/bench_finetune_cpu.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}; THREADS=${2:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
# $EFFNET: an effnet binary to use as is (else it is built here).
effnet=${EFFNET:-$CARGO_TARGET_DIR/release/effnet}
if [ -z "${EFFNET:-}" ]; then
  cargo build --release -q -p effnet-cli
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/make_train_data.py digits "$work/digits" >/dev/null
export RAYON_NUM_THREADS=$THREADS
start=$(date +%s.%N)
"$effnet" train --config configs/train/finetune_lite0.toml --data "$work/digits" \
  --epochs "$EPOCHS" --output "$work/runs" 2>&1 | tail -n 6
ours=$(echo "$(date +%s.%N) - $start" | bc)
echo "effnet finetune: $ours s wall"
# (Not `tee /dev/stderr`: with stderr redirected to a file, tee reopens and truncates it.)
timm_out=$(python3 scripts/timm_finetune.py "$work/digits" --epochs "$EPOCHS" --threads "$THREADS")
echo "$timm_out"
theirs=$(echo "$timm_out" | sed -n 's/^timm finetune: \([0-9.]*\) s wall$/\1/p')
python3 -c "import sys; o, t = map(float, sys.argv[1:]); print(f'effnet {o:.0f} s, timm {t:.0f} s: effnet/timm speed {t / o:.2f}x')" "$ours" "$theirs"
