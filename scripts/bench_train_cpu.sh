#!/usr/bin/env bash
# CPU training-step throughput, effnet (`effnet bench --train`) beside PyTorch/timm, same machine,
# same run, interleaved rounds, medians, the ratio and its per-round range; then the 1 -> 2 thread
# scaling of effnet's step. Defaults: V2-B0 b16 r128, Lite0 b16 r224, V2-S b8 r224, AdamW,
# 2 threads, 5 rounds of 5 steps. Arguments go to scripts/bench_train_cpu.py (see its --help),
# e.g. `scripts/bench_train_cpu.sh --rounds 3 --out benches/results/train-cpu-$(date +%F).md`.
# Other developers' builds disturb the figures: on a shared machine run it under a lock
# (`flock /work/coord/bench.lock scripts/bench_train_cpu.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
# $EFFNET: an effnet binary to use as is (else it is built here).
if [ -z "${EFFNET:-}" ]; then
  cargo build --release -q -p effnet-cli
fi
exec python3 scripts/bench_train_cpu.py --effnet "${EFFNET:-$CARGO_TARGET_DIR/release/effnet}" "$@"
