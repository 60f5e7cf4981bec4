#!/usr/bin/env bash
# CPU inference, effnet (burn flex) beside PyTorch eager, same machine, same run, same threads
# budget (2). Prints a table with the ratio effnet / PyTorch (higher is better for effnet).
# Usage: scripts/bench_infer_cpu.sh [ITERS]     (needs: pip install torch torchvision timm)
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
cargo build --release -q -p effnet-cli
BIN=$CARGO_TARGET_DIR/release/effnet
printf '%-20s %5s %5s %12s %12s %8s\n' model batch size effnet_img/s torch_img/s ratio
for model in efficientnetv2_s efficientnet_lite0; do
  for batch in 1 8; do
    ours=$(RAYON_NUM_THREADS=2 "$BIN" bench --model "$model" --batch-size "$batch" --img-size 224 --iters "$ITERS" --json)
    theirs=$(THREADS=2 python3 scripts/bench_infer_torch.py "$model" "$batch" 224 "$ITERS")
    python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ours = a['infer_samples_per_sec']  # timm benchmark.py key names
print(f"{a['model']:<20} {a['infer_batch_size']:>5} {a['infer_img_size']:>5} {ours:>12.1f} {b['img_per_s']:>12.1f} {ours/b['img_per_s']:>7.2f}x")
PY
  done
done
