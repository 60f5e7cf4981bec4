#!/usr/bin/env bash
# CPU training throughput, effnet (burn flex) vs PyTorch, same machine, same run:
# EfficientNetV2-B0, batch $BATCH at ${SIZE}px, AdamW, forward + CE + backward + step, 2 threads.
# Usage: scripts/bench_train_cpu.sh [batch=16] [size=128] [steps=5]
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-16}; SIZE=${2:-128}; STEPS=${3:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
cargo build --release -q -p effnet-train --example bench_train
OURS=$("$CARGO_TARGET_DIR/release/examples/bench_train" efficientnetv2_b0 "$BATCH" "$SIZE" "$STEPS" cpu | tail -1)
echo "$OURS"
TORCH=$(python3 - "$BATCH" "$SIZE" "$STEPS" <<'PY'
import sys, time, torch, timm
b, s, n = map(int, sys.argv[1:4])
torch.set_num_threads(2)
torch.manual_seed(0)
try:  # symmetric padding like effnet's efficientnetv2_b0 preset
    m = timm.create_model("tf_efficientnetv2_b0", pad_type="")
except TypeError:
    m = timm.create_model("tf_efficientnetv2_b0")
m.train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
def step():
    x = torch.randn(b, 3, s, s); y = torch.randint(0, 1000, (b,))
    loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for _ in range(2): step()
t = time.perf_counter()
for _ in range(n): step()
dt = time.perf_counter() - t
print(f"pytorch {torch.__version__} timm tf_efficientnetv2_b0 train b{b} r{s}: {n*b/dt:.2f} img/s")
PY
)
echo "$TORCH"
python3 -c "import re,sys; o=float(re.findall(r'([0-9.]+) img/s', sys.argv[1])[0]); t=float(re.findall(r'([0-9.]+) img/s', sys.argv[2])[0]); print(f'ratio effnet/pytorch: {o/t:.2f}x')" "$OURS" "$TORCH"
