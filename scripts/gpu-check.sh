#!/usr/bin/env bash
# One prepared GPU check for effnet's CUDA build: a single device call of under 10 minutes on an
# H100/H200 with CUDA 13 and PyTorch (no Rust and no network there). Steps in order of
# importance, so a call cut short still answers the first questions:
#
#   1. unpacks the release binary built by scripts/build-cuda-release.sh (target-gpu/effnet.xz),
#      finds libcuda.so.1, libnvrtc.so.13 and the CUDA headers NVRTC needs (system toolkit or
#      PyTorch's nvidia/* wheels) and sets LD_LIBRARY_PATH / CUDA_PATH for effnet alone;
#   2. cold and warm start: the first training step of V2-S b128 r224 bf16 (`effnet bench
#      --train`) from an empty kernel/autotune cache, then again in a new process reusing it
#      (goals: under 60 s cold, under 10 s warm); with a carried cache only the warm start runs
#      (COLD_START);
#   3. CUDA against CPU on tests/data/photos (`effnet infer`, bundled Lite0, all 1000 classes;
#      the centred logits are recovered from the probabilities; f32 within 1e-3, bf16 within 0.5);
#   4. steady-state `effnet bench` (V2-S): training b64 r224 bf16 and f32; the training step
#      split per layer kind on the card (`bench --train --profile`: stem, Fused-MBConv, 1x1
#      convs, depthwise, SE, BN + activation, head, optimiser step, EMA), when the binary has it;
#      training b128 r128 and b128 r224 bf16; inference b128 r384 f32 and bf16; training f32
#      with burn's plain autodiff (EFFNET_PLAIN_OPS=1) beside effnet's ops; `--device wgpu`
#      inference (the card's Vulkan driver) when the binary has wgpu;
#   5. the same cases in PyTorch (scripts/gpu_bench_torch.py: fp32, tf32, bf16 autocast +
#      channels_last, cuDNN benchmark on); TORCH_RESERVE seconds are kept for it;
#   6. one table (img/s of both, effnet / PyTorch, every step's seconds and exit code) written to
#      benches/results/gpu-<card>-<date>.md and $OUT.
#
# Every step runs under `timeout`, sized from what is left of GPU_CHECK_BUDGET (default 540 s,
# under a 600 s call), so one stall cannot eat the call; a failed step never stops the script.
# The kernel cache (the EFFNET_CACHE_DIR of every effnet step) is packed into $OUT after every
# effnet step, so a call cut off at its limit still brings back what it compiled. $OUT keeps to
# what a device call returns (at most 8 files of 16 MiB): gpu-check.log, results.jsonl, the
# table, logs.tar.xz and cubecl-cache.tar.xz (split into 15 MiB parts .00, .01, ... if larger).
#
# Device call (from the repo root; target-gpu is git-ignored, so it is carried):
#   scripts/build-cuda-release.sh                      # here, beforehand (20+ min on 2 cores)
#   run(command="scripts/gpu-check.sh", carry=["target-gpu"], timeout_s=600)
#   then: scripts/gpu-check.sh --collect <files_at>   # the table into benches/results/, the kernel
#         cache into target-gpu/ (a next call starts warm); commit the table
#
# Dry runs without a GPU, with the binary of the test build ($CARGO_TARGET_DIR/release/effnet,
# or EFFNET_BIN), PyTorch on the CPU, output in target/gpu-check-dryrun-<device>:
#   scripts/gpu-check.sh --dry-run cpu    # V2-S at 64 px on the CPU (all steps, tiny sizes)
#   scripts/gpu-check.sh --dry-run wgpu   # CubeCL on lavapipe (CUBECL_WGPU_DEFAULT_DEVICE=Cpu):
#                                         # the tiny V2 at 32 px, f16 as the half type
#
# Environment knobs (defaults in brackets):
#   GPU_CHECK_BUDGET [540]  seconds for the whole script     TORCH_RESERVE [150]
#   ITERS [20] WARMUP [3]   timed / untimed iterations       EFFNET_XZ [target-gpu/effnet.xz]
#   EFFNET_BIN              use this unpacked binary instead of EFFNET_XZ
#   MODEL [efficientnet_v2_s] the `effnet bench` model: torchvision's V2-S, the network PyTorch
#                           runs (timm's `efficientnetv2_s`: the same 21.46 M parameters, BN eps 1e-5)
#   HALF [bf16]             the half type of effnet's rows (f16 on wgpu, which has no bf16)
#   INFER_BATCH [128] INFER_SIZE [384] TRAIN_BATCH [64] TRAIN_SIZE [224]
#   BIG_BATCH [128] SMALL_SIZE [128]  the b128 training rows
#   DEVICE [cuda]           effnet device under test; TORCH_DEVICE [cuda]
#   CUBECL_CACHE_IN [target-gpu/cubecl-cache.tar.xz]  kernel cache to start from (tar.xz or dir)
#   CUBECL_AUTOTUNE_LEVEL   passed through to cubecl (minimal|balanced|extensive|full); effnet also
#                           reads EFFNET_AUTOTUNE_LEVEL (same values)
#   COLD_BATCH [128] COLD_SIZE [224]  the cold/warm-start training step (HALF)
#   COLD_START [auto]       1: measure the cold start even with a carried cache; 0: never
#   PROFILE [1]             the per-layer training profile (0: skip)
#   TORCH_CASES             gpu_bench_torch.py's --cases [the rows above, at the same shapes]
#   WGPU [1]                also run `--device wgpu` inference rows (0: skip)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
T0=$(date +%s)
DRY_RUN=""
COLLECT=""
USAGE="usage: gpu-check.sh [--dry-run cpu|wgpu] | --collect FILES_AT"
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY_RUN=${2:-}; shift; [ $# -gt 0 ] && shift ;;
    --dry-run=*) DRY_RUN=${1#*=}; shift ;;
    --collect) COLLECT=${2:-}; shift; [ $# -gt 0 ] && shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: gpu-check.sh: unknown argument '$1' ($USAGE)" >&2
       exit 2 ;;
  esac
done
# --collect FILES_AT: after the device call, here: the table into benches/results/ and the kernel
# cache (joined from its parts) into target-gpu/, where the next call picks it up.
if [ -n "$COLLECT" ]; then
  [ -d "$COLLECT" ] || { echo "error: gpu-check.sh --collect: no folder $COLLECT" >&2; exit 2; }
  found=0
  for t in "$COLLECT"/gpu-*.md; do
    [ -f "$t" ] || continue
    case $(basename "$t") in *-dryrun-*) continue ;; esac
    mkdir -p benches/results && cp "$t" benches/results/ && echo "table: benches/results/$(basename "$t")"
    found=1
  done
  [ "$found" = 1 ] || echo "warning: no table (gpu-<card>-<date>.md) in $COLLECT" >&2
  mkdir -p target-gpu
  if [ -f "$COLLECT/cubecl-cache.tar.xz" ]; then
    cp "$COLLECT/cubecl-cache.tar.xz" target-gpu/cubecl-cache.tar.xz
  elif [ -f "$COLLECT/cubecl-cache.tar.xz.00" ]; then
    cat "$COLLECT"/cubecl-cache.tar.xz.[0-9][0-9] > target-gpu/cubecl-cache.tar.xz
  else
    echo "warning: no kernel cache (cubecl-cache.tar.xz) in $COLLECT" >&2
    exit 0
  fi
  if xz -t target-gpu/cubecl-cache.tar.xz; then
    echo "kernel cache: target-gpu/cubecl-cache.tar.xz ($(du -h target-gpu/cubecl-cache.tar.xz | cut -f1)); the next call starts warm"
  else
    echo "error: target-gpu/cubecl-cache.tar.xz is damaged (a part missing?)" >&2
    rm -f target-gpu/cubecl-cache.tar.xz
    exit 1
  fi
  exit 0
fi
case $DRY_RUN in
  "") ;;
  cpu|wgpu)
    EFFNET_BIN=${EFFNET_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}/release/effnet}
    if [ ! -x "$EFFNET_BIN" ]; then
      echo "error: gpu-check.sh --dry-run: no effnet binary at $EFFNET_BIN (build it, or set EFFNET_BIN)" >&2
      exit 2
    fi
    DEVICE=${DEVICE:-$DRY_RUN}; TORCH_DEVICE=${TORCH_DEVICE:-cpu}; WGPU=${WGPU:-0}
    ITERS=${ITERS:-2}; WARMUP=${WARMUP:-1}; TORCH_RESERVE=${TORCH_RESERVE:-60}
    OUT=${OUT:-$REPO/target/gpu-check-dryrun-$DRY_RUN}   # not under target-gpu, which travels
    if [ "$DRY_RUN" = cpu ]; then
      INFER_BATCH=${INFER_BATCH:-2}; INFER_SIZE=${INFER_SIZE:-64}; TRAIN_BATCH=${TRAIN_BATCH:-2}
      TRAIN_SIZE=${TRAIN_SIZE:-64}; BIG_BATCH=${BIG_BATCH:-2}; SMALL_SIZE=${SMALL_SIZE:-32}
      COLD_BATCH=${COLD_BATCH:-2}; COLD_SIZE=${COLD_SIZE:-64}
    else
      # lavapipe compiles every shader on the CPU: the tiny V2 keeps the shapes few.
      MODEL=${MODEL:-crates/effnet-train/tests/data/effnetv2_tiny.toml}; HALF=${HALF:-f16}
      INFER_BATCH=${INFER_BATCH:-2}; INFER_SIZE=${INFER_SIZE:-32}; TRAIN_BATCH=${TRAIN_BATCH:-2}
      TRAIN_SIZE=${TRAIN_SIZE:-32}; BIG_BATCH=${BIG_BATCH:-4}; SMALL_SIZE=${SMALL_SIZE:-32}
      COLD_BATCH=${COLD_BATCH:-2}; COLD_SIZE=${COLD_SIZE:-32}
      export CUBECL_WGPU_DEFAULT_DEVICE=${CUBECL_WGPU_DEFAULT_DEVICE:-Cpu}
      export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
    fi
    ;;
  *) echo "error: gpu-check.sh: --dry-run takes cpu or wgpu, not '$DRY_RUN'" >&2; exit 2 ;;
esac
BUDGET=${GPU_CHECK_BUDGET:-540}
TORCH_RESERVE=${TORCH_RESERVE:-150}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-3}
MODEL=${MODEL:-efficientnet_v2_s}
# effnet runs in a work folder: a model file named relative to the repository is made absolute.
case $MODEL in /*) ;; *) [ -f "$REPO/$MODEL" ] && MODEL=$REPO/$MODEL ;; esac
HALF=${HALF:-bf16}
INFER_BATCH=${INFER_BATCH:-128}
INFER_SIZE=${INFER_SIZE:-384}
TRAIN_BATCH=${TRAIN_BATCH:-64}
TRAIN_SIZE=${TRAIN_SIZE:-224}
BIG_BATCH=${BIG_BATCH:-128}        # the b128 training rows
SMALL_SIZE=${SMALL_SIZE:-128}      # the r128 training row
COLD_BATCH=${COLD_BATCH:-128}
COLD_SIZE=${COLD_SIZE:-224}
COLD_START=${COLD_START:-auto}
PROFILE=${PROFILE:-1}
WGPU=${WGPU:-1}
DEVICE=${DEVICE:-cuda}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
EFFNET_XZ=${EFFNET_XZ:-target-gpu/effnet.xz}
CUBECL_CACHE_IN=${CUBECL_CACHE_IN:-target-gpu/cubecl-cache.tar.xz}
OUTDIR=${OUT:-$REPO/target/gpu-check-out}
PY=${PYTHON:-python3}

mkdir -p "$OUTDIR"
# What this script writes into $OUTDIR (a rerun into the same folder starts from nothing).
rm -f "$OUTDIR"/gpu-check.log "$OUTDIR"/results.jsonl "$OUTDIR"/notes.txt "$OUTDIR"/logs.tar.xz \
  "$OUTDIR"/cubecl-cache.tar.xz* "$OUTDIR"/gpu-*.md
main() {
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
RUN=$WORK/run          # effnet's working directory (cubecl.toml)
CACHE=$RUN/cache       # EFFNET_CACHE_DIR of every effnet step: compiled kernels, autotune results
LOGS=$WORK/logs        # every step's stdout/stderr, packed into $OUTDIR/logs.tar.xz
mkdir -p "$RUN" "$LOGS"
RESULTS=$OUTDIR/results.jsonl
NOTES=$OUTDIR/notes.txt
: > "$RESULTS"
: > "$NOTES"

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(elapsed) )); }
say() { echo "[$(printf '%4d' "$(elapsed)") s] $*"; }
note() { say "NOTE: $*"; echo "$*" >> "$NOTES"; }
# Appends one JSON object (given as key=value pairs; values that parse as JSON stay JSON).
record() {
  "$PY" - "$@" >> "$RESULTS" <<'PY'
import json, sys
rec = {}
for kv in sys.argv[1:]:
    k, _, v = kv.partition("=")
    try:
        rec[k] = json.loads(v)
    except ValueError:
        rec[k] = v
print(json.dumps(rec))
PY
}

# run_step NAME CAP RESERVE CMD... : runs CMD with stdout in $WORK/NAME.out and stderr in
# $WORK/NAME.err (both also packed into $OUTDIR/logs.tar.xz), under timeout
# min(CAP, left - RESERVE); records a `step` row (name, rc, seconds) and, after an effnet step,
# packs the kernel cache into $OUTDIR. Sets STEP_RC (124 = timed out, 125 = skipped for lack of
# time) and STEP_SECS.
run_step() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local avail=$(( $(left) - reserve ))
  [ "$cap" -gt "$avail" ] && cap=$avail
  STEP_SECS=0
  if [ "$cap" -lt 10 ]; then
    STEP_RC=125
    note "$name: skipped, time budget used up"
    record kind=step step="$name" rc=125 secs=0
    return
  fi
  say "$name: start (limit ${cap} s)"
  local t=$(date +%s)
  (cd "$RUN" && timeout -k 5 "$cap" "$@") > "$WORK/$name.out" 2> "$WORK/$name.err"
  STEP_RC=$?
  STEP_SECS=$(( $(date +%s) - t ))
  cp "$WORK/$name.out" "$WORK/$name.err" "$LOGS"/ 2>/dev/null
  case $STEP_RC in
    0) say "$name: ok in ${STEP_SECS} s" ;;
    124|137) say "$name: TIMED OUT after ${STEP_SECS} s"; STEP_RC=124 ;;
    *) say "$name: FAILED (rc $STEP_RC) after ${STEP_SECS} s"
       tail -n 15 "$WORK/$name.err" | sed 's/^/    /' ;;
  esac
  record kind=step step="$name" rc="$STEP_RC" secs="$STEP_SECS"
  pack_logs
  [ "$name" = torch ] || save_cache
}

# The step logs as one file in $OUTDIR (a device call returns at most 8 files).
pack_logs() {
  (cd "$WORK" && tar -cJf "$OUTDIR/logs.tar.xz.tmp" logs) && mv "$OUTDIR/logs.tar.xz.tmp" "$OUTDIR/logs.tar.xz"
}

# ---------------------------------------------------------------- machine and libraries
CARD="unknown-gpu"; DRIVER="n/a"; DRIVER_CUDA="n/a"
if command -v nvidia-smi >/dev/null 2>&1; then
  q=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
  if [ -n "$q" ]; then
    CARD=$(echo "$q" | cut -d, -f1 | sed 's/^ *//; s/ *$//')
    DRIVER=$(echo "$q" | cut -d, -f2 | tr -d ' ')
    say "GPU: $q"
  fi
  DRIVER_CUDA=$(timeout 20 nvidia-smi 2>/dev/null | grep -o 'CUDA Version: *[0-9.]*' | grep -o '[0-9.]*$' | head -n 1)
  DRIVER_CUDA=${DRIVER_CUDA:-n/a}
else
  note "nvidia-smi not found"
fi
SLUG=$(echo "$CARD" | sed 's/^NVIDIA //' | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
[ "$DEVICE" = cuda ] || SLUG="$SLUG-dryrun-$DEVICE"
STAMP=$(date -u +%Y%m%d-%H%M)
say "card '$CARD' (slug $SLUG), driver $DRIVER, driver CUDA $DRIVER_CUDA, budget ${BUDGET} s"

# Candidate library folders: system toolkits first, then PyTorch's CUDA wheels.
CANDS=()
[ -n "${CUDA_PATH:-}" ] && CANDS+=("$CUDA_PATH/lib64" "$CUDA_PATH/lib")
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64 \
         /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/wsl/lib; do
  [ -d "$d" ] && CANDS+=("$d")
done
PIP_NVIDIA=$(timeout 30 "$PY" -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null)
for p in $PIP_NVIDIA; do
  while IFS= read -r d; do CANDS+=("$d"); done < <(find "$p" -maxdepth 3 -type d -name lib 2>/dev/null | sort)
done
TORCH_LIB=$(timeout 30 "$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
[ -n "$TORCH_LIB" ] && [ -d "$TORCH_LIB" ] && CANDS+=("$TORCH_LIB")

LDP=""
add_ld() { case ":$LDP:" in *":$1:"*) ;; *) LDP=${LDP:+$LDP:}$1 ;; esac; }

# libcuda.so.1 comes with the driver: the loader cache first, then the candidates.
CUDA_LIB=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 .*x86-64/ {print $NF; exit}')
if [ -z "$CUDA_LIB" ]; then
  for d in "${CANDS[@]}"; do [ -e "$d/libcuda.so.1" ] && { CUDA_LIB=$d/libcuda.so.1; break; }; done
fi
if [ -n "$CUDA_LIB" ]; then add_ld "$(dirname "$CUDA_LIB")"; else note "libcuda.so.1 not found"; fi

# libnvrtc.so.13: all candidates, then the newest whose version the driver supports (PTX from
# an NVRTC newer than the driver is refused when the module loads).
NVRTCS=()
for d in "${CANDS[@]}"; do [ -e "$d/libnvrtc.so.13" ] && NVRTCS+=("$d/libnvrtc.so.13"); done
NVRTC=""; NVRTC_VER="n/a"
if [ ${#NVRTCS[@]} -gt 0 ]; then
  pick=$(timeout 30 "$PY" - "$DRIVER_CUDA" "${NVRTCS[@]}" <<'PY'
import ctypes, sys
driver, paths = sys.argv[1], sys.argv[2:]
def ver(p):
    try:
        lib = ctypes.CDLL(p)
        a, b = ctypes.c_int(), ctypes.c_int()
        lib.nvrtcVersion(ctypes.byref(a), ctypes.byref(b))
        return (a.value, b.value)
    except OSError:
        return None
found = [(ver(p), p) for p in paths]
found = [(v, p) for v, p in found if v]
try:
    dv = tuple(int(x) for x in driver.split(".")[:2])
except ValueError:
    dv = None
ok = [(v, p) for v, p in found if dv is None or v <= dv]
best = max(ok or found, default=None)
if best:
    print(f"{best[1]} {best[0][0]}.{best[0][1]} {'' if ok or dv is None else 'newer-than-driver'}")
PY
)
  NVRTC=$(echo "$pick" | awk '{print $1}')
  NVRTC_VER=$(echo "$pick" | awk '{print $2}')
  [ -z "$NVRTC" ] && NVRTC=${NVRTCS[0]}
  echo "$pick" | grep -q newer-than-driver && \
    note "NVRTC $NVRTC_VER is newer than the driver's CUDA $DRIVER_CUDA: its PTX may be refused (CUDA_ERROR_UNSUPPORTED_PTX_VERSION)"
  add_ld "$(dirname "$NVRTC")"
else
  note "libnvrtc.so.13 not found (looked in: ${CANDS[*]})"
fi
say "libcuda: ${CUDA_LIB:-none}; libnvrtc: ${NVRTC:-none} (version $NVRTC_VER; candidates: ${NVRTCS[*]:-none})"

# CUDA headers for NVRTC (cubecl-cuda passes $CUDA_PATH/include, default /usr/local/cuda):
# prefer the toolkit the chosen NVRTC belongs to.
HDR=""
HCANDS=()
[ -n "$NVRTC" ] && HCANDS+=("$(dirname "$(dirname "$NVRTC")")")
[ -n "${CUDA_PATH:-}" ] && HCANDS+=("$CUDA_PATH")
HCANDS+=(/usr/local/cuda /usr/local/cuda-13* /opt/cuda)
for p in $PIP_NVIDIA; do HCANDS+=("$p"/*); done
for h in "${HCANDS[@]}"; do
  [ -f "$h/include/cuda_fp16.h" ] && { HDR=$h; break; }
done
if [ -n "$HDR" ]; then
  [ -d "$HDR/include/cccl" ] || note "no $HDR/include/cccl (CCCL headers); kernels needing them may fail"
else
  note "no CUDA headers (include/cuda_fp16.h) found; NVRTC compilation will fail"
fi
# Only effnet gets these (through the wrapper below): PyTorch keeps its own CUDA libraries,
# which LD_LIBRARY_PATH would otherwise override.
EFF_LDP=$LDP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
EFF_CUDA_PATH=${HDR:-${CUDA_PATH:-}}
say "effnet runs with CUDA_PATH=${EFF_CUDA_PATH:-unset}; LD_LIBRARY_PATH=$EFF_LDP"

# ---------------------------------------------------------------- binary
REAL_BIN=$WORK/effnet.bin
BIN=$WORK/effnet
cat > "$BIN" <<EOF
#!/bin/sh
export LD_LIBRARY_PATH="$EFF_LDP"
# effnet's kernel/autotune cache (binaries before the cache settings ignore it: cubecl.toml).
export EFFNET_CACHE_DIR="\${EFFNET_CACHE_DIR:-$RUN/cache}"
export EFFNET_GPU_LOG="\${EFFNET_GPU_LOG:-$WORK/cubecl.log}"
${EFF_CUDA_PATH:+export CUDA_PATH="$EFF_CUDA_PATH"}
exec "$REAL_BIN" "\$@"
EOF
chmod +x "$BIN"
if [ -n "${EFFNET_BIN:-}" ]; then
  cp "$EFFNET_BIN" "$REAL_BIN"
elif [ -f "$EFFNET_XZ" ]; then
  if command -v xz >/dev/null 2>&1; then
    timeout 60 xz -dc "$EFFNET_XZ" > "$REAL_BIN"
  else
    timeout 60 "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$EFFNET_XZ" "$REAL_BIN"
  fi
else
  note "no binary: $EFFNET_XZ is missing (build it with scripts/build-cuda-release.sh and carry target-gpu)"
fi
chmod +x "$REAL_BIN" 2>/dev/null
BIN_SHA=$(sha256sum "$REAL_BIN" 2>/dev/null | cut -c1-16)
EFFNET_VERSION=$("$BIN" --version 2>/dev/null || echo "not runnable")
say "binary: $EFFNET_VERSION (sha256 $BIN_SHA...)"

# ---------------------------------------------------------------- kernel cache
# cubecl-runtime 0.11.3 reads cubecl.toml from the working directory (or a parent):
#   [compilation] cache = true    persist compiled kernels (needs cubecl's `persistence` feature,
#                                 on in effnet's `cuda` feature)
#   [environment] name = "<card>" the environment database, <path>/<name>.db (autotune results,
#                 path = "local"  compiled kernels, throughput); "local" = the working directory
CACHE_STATE="empty"
# A cache that came back in parts: cubecl-cache.tar.xz.00, .01, ...
if [ ! -e "$CUBECL_CACHE_IN" ] && [ -f "$CUBECL_CACHE_IN.00" ]; then
  cat "$CUBECL_CACHE_IN".[0-9][0-9] > "$WORK/cache-in.tar.xz" && CUBECL_CACHE_IN=$WORK/cache-in.tar.xz
fi
if [ -f "$CUBECL_CACHE_IN" ]; then
  if timeout 60 tar -xJf "$CUBECL_CACHE_IN" -C "$RUN"; then
    CACHE_STATE="carried ($(basename "$CUBECL_CACHE_IN"), $(du -sh "$RUN" | cut -f1))"
  else
    note "could not unpack $CUBECL_CACHE_IN"
  fi
elif [ -d "$CUBECL_CACHE_IN" ]; then
  cp -r "$CUBECL_CACHE_IN"/. "$RUN"/ && CACHE_STATE="carried ($CUBECL_CACHE_IN)"
fi
# Written after unpacking, so a carried cubecl.toml never overrides it.
cat > "$RUN/cubecl.toml" <<EOF
[compilation]
cache = true

[environment]
name = "$SLUG"
path = "local"
EOF
say "kernel cache: $CACHE_STATE; CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-default}"

# Packs the kernel cache into $OUTDIR/cubecl-cache.tar.xz, in 15 MiB parts (.00, .01, ...) when
# larger (a device call returns files of at most 16 MiB); nothing to do when it did not change.
CACHE_STAMP=""
save_cache() {
  local files stamp size
  files=$(cd "$RUN" && { ls -1 "$SLUG".db* 2>/dev/null; [ -d cache ] && echo cache; })
  [ -n "$files" ] || return 0
  # shellcheck disable=SC2086  # $files: names without spaces, one per word
  stamp=$(cd "$RUN" && find $files -type f -printf '%s %T@ %p\n' | sort | md5sum)
  [ "$stamp" = "$CACHE_STAMP" ] && return 0
  # shellcheck disable=SC2086
  if ! (cd "$RUN" && tar -cf - cubecl.toml $files | xz -T0 -3 > "$WORK/cache.tar.xz"); then
    note "could not pack the kernel cache"
    return 0
  fi
  CACHE_STAMP=$stamp
  rm -f "$OUTDIR"/cubecl-cache.tar.xz*
  size=$(stat -c %s "$WORK/cache.tar.xz")
  if [ "$size" -gt $(( 15 * 1048576 )) ]; then
    split -b 15M -d "$WORK/cache.tar.xz" "$OUTDIR/cubecl-cache.tar.xz."
  else
    cp "$WORK/cache.tar.xz" "$OUTDIR/cubecl-cache.tar.xz"
  fi
  # shellcheck disable=SC2086
  say "kernel cache packed: $(du -h "$WORK/cache.tar.xz" | cut -f1) ($(cd "$RUN" && du -ch $files | tail -n 1 | cut -f1) unpacked)"
}

# ---------------------------------------------------------------- what the binary can do
BENCH_HELP=$("$BIN" bench --help 2>/dev/null)
HAS_PREC=0; echo "$BENCH_HELP" | grep -q -- '--precision' && HAS_PREC=1
HAS_TRAIN=0; echo "$BENCH_HELP" | grep -q -- '--train' && HAS_TRAIN=1
[ "$HAS_PREC" = 1 ] || note "this binary has no --precision: f32 rows only"
bench_row() { # NAME TASK PRECISION : turns $WORK/NAME.out (bench JSON) into a result row
  local name=$1 task=$2 prec=$3 json
  json=$(grep -E '^\{' "$WORK/$name.out" 2>/dev/null | tail -n 1)
  if [ "$STEP_RC" = 0 ] && [ -n "$json" ]; then
    say "$name: $json"
    record kind=speed engine=effnet step="$name" task="$task" precision="$prec" bench="$json"
  else
    local why="rc $STEP_RC"
    [ "$STEP_RC" = 124 ] && why="timed out after ${STEP_SECS} s"
    [ "$STEP_RC" = 125 ] && why="skipped (time budget)"
    local err
    err=$(grep -v '^\s*$' "$WORK/$name.err" 2>/dev/null | tail -n 1 | cut -c1-200)
    record kind=speed engine=effnet step="$name" task="$task" precision="$prec" \
      batch="${4:-null}" size="${5:-null}" error="$why${err:+: $err}"
  fi
}
# bench_case NAME CAP TASK PRECISION BATCH SIZE [ENV...]: one `effnet bench` row.
bench_case() {
  local name=$1 cap=$2 task=$3 prec=$4 batch=$5 size=$6
  shift 6
  local args=(bench --model "$MODEL" --batch "$batch" --size "$size" --device "$DEVICE"
              --warmup "$WARMUP" --iters "$ITERS" --json)
  case $task in train*) args+=(--train) ;; esac
  if [ "$prec" != f32 ]; then
    [ "$HAS_PREC" = 1 ] || { STEP_RC=125; note "$name: skipped, no --precision"; return; }
    args+=(--precision "$prec")
  fi
  run_step "$name" "$cap" "$TORCH_RESERVE" env "$@" "$BIN" "${args[@]}"
  bench_row "$name" "$task" "$prec" "$batch" "$size"
}

# ---------------------------------------------------------------- 1. cold and warm start
# The first training step of a fresh process (`first_iter_s`). Without a carried cache the cold
# start fills $CACHE, which the warm start and every later step reuse (nothing is compiled
# twice); with a carried cache only the warm start runs (the call that wrote the cache measured
# the cold one), unless COLD_START=1, which measures both in a separate empty folder.
start_case() { # PHASE CACHE_DIR
  local phase=$1 dir=$2 log=$WORK/cubecl-$1.log w=$WARMUP i=$ITERS
  WARMUP=1 ITERS=2
  bench_case "start-$phase" 200 "train-$phase-start" "$COLD_PREC" "$COLD_BATCH" "$COLD_SIZE" \
    EFFNET_CACHE_DIR="$dir" EFFNET_GPU_LOG="$log"
  WARMUP=$w ITERS=$i
  if [ -f "$log" ]; then
    cp "$log" "$LOGS"/
    record kind=cubecl-log phase="$phase" lines="$(wc -l < "$log")" \
      compiles="$(grep -ci 'compil' "$log")" autotunes="$(grep -ci 'autotun\|tune' "$log")"
    say "cubecl log ($phase): $(wc -l < "$log") lines, $(grep -ci 'compil' "$log") mention compilation"
  fi
}
if [ "$HAS_TRAIN" = 1 ]; then
  COLD_PREC=$HALF; [ "$HAS_PREC" = 1 ] || COLD_PREC=f32
  case $COLD_START in
    0) ;;
    1) start_case cold "$WORK/cold-cache"; start_case warm "$WORK/cold-cache" ;;
    *) if [ "$CACHE_STATE" = empty ]; then
         start_case cold "$CACHE"; start_case warm "$CACHE"
       else
         start_case warm-carried "$CACHE"
       fi ;;
  esac
else
  note "no cold/warm start: this binary has no \`bench --train\`"
fi

# ---------------------------------------------------------------- 2. correctness: infer CPU vs device
PHOTOS=$REPO/tests/data/photos
run_step infer-cpu 90 "$TORCH_RESERVE" "$BIN" infer --device cpu --topk 1000 --format json \
  --output "$WORK/infer-cpu.json" "$PHOTOS"
CPU_RC=$STEP_RC
run_step infer-dev 180 "$TORCH_RESERVE" "$BIN" infer --device "$DEVICE" --topk 1000 --format json \
  --output "$WORK/infer-dev.json" "$PHOTOS"
DEV_RC=$STEP_RC
record kind=infer-run device="$DEVICE" rc="$DEV_RC" secs="$STEP_SECS"
HALF_RC=125
if [ "$HALF" != f32 ] && "$BIN" infer --help 2>/dev/null | grep -q -- '--precision'; then
  run_step infer-dev-"$HALF" 120 "$TORCH_RESERVE" "$BIN" infer --device "$DEVICE" --precision "$HALF" \
    --topk 1000 --format json --output "$WORK/infer-dev-$HALF.json" "$PHOTOS"
  HALF_RC=$STEP_RC
fi
# parity CPU_JSON DEV_JSON PRECISION TOL: one `parity` record (same top-1, centred logits).
parity() {
  "$PY" - "$@" >> "$RESULTS" <<'PY'
import json, math, os, sys
def load(p):
    data = json.load(open(p))
    if isinstance(data, dict):  # {"file": {"index": [...], "label": [...], "prob": [...]}}
        items = [(f, r["index"], r["prob"]) for f, r in data.items()]
    else:                       # older binaries: [{"filename", "index_0", "prob_0", ...}]
        items = []
        for rec in data:
            n = sum(1 for k in rec if k.startswith("index_"))
            items.append((rec["filename"], [rec[f"index_{i}"] for i in range(n)],
                          [rec[f"prob_{i}"] for i in range(n)]))
    return {os.path.basename(f): (idx[0], dict(zip(idx, pr))) for f, idx, pr in items}
cpu, dev = load(sys.argv[1]), load(sys.argv[2])
precision, tol = sys.argv[3], float(sys.argv[4])
rows = []
for name in sorted(cpu):
    if name not in dev:
        rows.append({"photo": name, "error": "missing on device"})
        continue
    (t1c, pc), (t1d, pd) = cpu[name], dev[name]
    keys = [k for k in pc if k in pd and pc[k] > 0 and pd[k] > 0]
    # log p = logit - logsumexp: centring over the classes recovers the centred logits.
    lc = {k: math.log(pc[k]) for k in keys}
    ld = {k: math.log(pd[k]) for k in keys}
    mc = sum(lc.values()) / len(keys)
    md = sum(ld.values()) / len(keys)
    dlogit = max(abs((lc[k] - mc) - (ld[k] - md)) for k in keys)
    dprob = max(abs(pc.get(k, 0.0) - pd.get(k, 0.0)) for k in set(pc) | set(pd))
    rows.append({"photo": name, "top1_cpu": t1c, "top1_dev": t1d, "classes": len(keys),
                 "max_dlogit": dlogit, "max_dprob": dprob})
ok = all("error" not in r and r["top1_cpu"] == r["top1_dev"] and r["max_dlogit"] <= tol
         for r in rows) and len(rows) > 0
print(json.dumps({"kind": "parity", "precision": precision, "pass": ok, "tol": tol, "rows": rows}))
PY
  tail -n 1 "$RESULTS" | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); print("parity", r["precision"] + ":", "PASS" if r["pass"] else "FAIL", [(x["photo"], x.get("max_dlogit")) for x in r["rows"]])'
}
if [ "$CPU_RC" = 0 ] && [ "$DEV_RC" = 0 ]; then
  parity "$WORK/infer-cpu.json" "$WORK/infer-dev.json" f32 1e-3
else
  note "parity not checked: infer cpu rc $CPU_RC, infer $DEVICE rc $DEV_RC"
fi
# Half precision against the f32 CPU reference, on centred logits: bf16 within 0.5, f16 within
# 0.1 (on the CPU the bundled Lite0 differs by at most 0.14 in bf16 and 0.03 in f16:
# crates/effnet/tests/precision.rs).
if [ "$CPU_RC" = 0 ] && [ "$HALF_RC" = 0 ]; then
  HALF_TOL=0.5; [ "$HALF" = f16 ] && HALF_TOL=0.1
  parity "$WORK/infer-cpu.json" "$WORK/infer-dev-$HALF.json" "$HALF" "$HALF_TOL"
fi

# ---------------------------------------------------------------- 3. steady state
if [ "$HAS_TRAIN" = 1 ]; then
  bench_case train-"$HALF" 150 train "$HALF" "$TRAIN_BATCH" "$TRAIN_SIZE"
  bench_case train-f32 150 train f32 "$TRAIN_BATCH" "$TRAIN_SIZE"
  # Where the training step spends its time on the card: every layer on its own at its real
  # shape, forward and backward, plus the optimiser step and the EMA update (markdown rows).
  if [ "$PROFILE" = 1 ]; then
    prof=profile-train-"$HALF"
    prof_args=(bench --train --profile --model "$MODEL" --batch "$TRAIN_BATCH" --size "$TRAIN_SIZE"
               --device "$DEVICE" --warmup 1 --iters 3)
    [ "$HAS_PREC" = 1 ] && [ "$HALF" != f32 ] && prof_args+=(--precision "$HALF")
    run_step "$prof" 150 "$TORCH_RESERVE" "$BIN" "${prof_args[@]}"
    if [ "$STEP_RC" = 0 ] && grep -q '^|' "$WORK/$prof.out"; then
      record kind=profile step="$prof" batch="$TRAIN_BATCH" size="$TRAIN_SIZE" precision="$HALF" \
        text="$(sed -n '/whole step/,$p' "$WORK/$prof.out" | grep -v '^$')"
    else
      note "$prof: no per-layer split (rc $STEP_RC; binaries without \`bench --train --profile\` print none)"
    fi
  fi
  bench_case train-"$HALF"-b"$BIG_BATCH"-r"$SMALL_SIZE" 150 train "$HALF" "$BIG_BATCH" "$SMALL_SIZE"
  if [ "$SMALL_SIZE" != "$TRAIN_SIZE" ]; then
    bench_case train-"$HALF"-b"$BIG_BATCH"-r"$TRAIN_SIZE" 150 train "$HALF" "$BIG_BATCH" "$TRAIN_SIZE"
  fi
else
  note "training rows skipped: this binary has no \`bench --train\`"
fi
bench_case infer-f32 200 infer f32 "$INFER_BATCH" "$INFER_SIZE"
bench_case infer-"$HALF" 150 infer "$HALF" "$INFER_BATCH" "$INFER_SIZE"
# In f32 the blocks run effnet's training ops (effnet_model::ops: on CubeCL one autodiff node per
# op, handwritten backward over burn's composition); EFFNET_PLAIN_OPS=1 gives burn's own autodiff
# (what half precision always runs). Beside train-f32: does the ops' Cube path help on the card?
if [ "$HAS_TRAIN" = 1 ]; then
  bench_case train-f32-plain-ops 120 train-plain-ops f32 "$TRAIN_BATCH" "$TRAIN_SIZE" EFFNET_PLAIN_OPS=1
fi

# wgpu on the same card (Vulkan), when compiled in.
if [ "$WGPU" = 1 ] && [ "$DEVICE" != wgpu ]; then
  if echo "$("$BIN" infer --help 2>/dev/null)" | grep -q wgpu && \
     (cd "$RUN" && timeout -k 5 60 "$BIN" bench --device wgpu --size 32 --iters 1 --warmup 1 \
        --model efficientnet_lite0) >/dev/null 2>&1; then
    SAVE_DEVICE=$DEVICE; DEVICE=wgpu
    bench_case infer-wgpu-f32 150 infer-wgpu f32 "$INFER_BATCH" "$INFER_SIZE"
    bench_case infer-wgpu-f16 120 infer-wgpu f16 "$INFER_BATCH" "$INFER_SIZE"
    DEVICE=$SAVE_DEVICE
  else
    record kind=speed engine=effnet step=infer-wgpu task=infer-wgpu precision=f32 \
      batch="$INFER_BATCH" size="$INFER_SIZE" error="wgpu not available (not compiled in, or no Vulkan adapter)"
    note "wgpu rows skipped: not compiled in or no Vulkan adapter"
  fi
fi

# ---------------------------------------------------------------- 4. PyTorch
if [ -z "${TORCH_CASES:-}" ] && [ -n "$DRY_RUN" ]; then
  # PyTorch on the CPU: one inference and one training case check the plumbing.
  TORCH_CASES="infer-fp32@${INFER_BATCH}x$INFER_SIZE,train-fp32@${TRAIN_BATCH}x$TRAIN_SIZE"
elif [ -z "${TORCH_CASES:-}" ]; then
  TORCH_CASES="infer-fp32@${INFER_BATCH}x$INFER_SIZE,infer-tf32@${INFER_BATCH}x$INFER_SIZE"
  TORCH_CASES="$TORCH_CASES,infer-bf16@${INFER_BATCH}x$INFER_SIZE,train-fp32@${TRAIN_BATCH}x$TRAIN_SIZE"
  TORCH_CASES="$TORCH_CASES,train-tf32@${TRAIN_BATCH}x$TRAIN_SIZE,train-bf16@${TRAIN_BATCH}x$TRAIN_SIZE"
  TORCH_CASES="$TORCH_CASES,train-bf16@${BIG_BATCH}x$SMALL_SIZE,train-bf16@${BIG_BATCH}x$TRAIN_SIZE"
fi
run_step torch 240 15 "$PY" "$REPO/scripts/gpu_bench_torch.py" --device "$TORCH_DEVICE" \
  --warmup "$WARMUP" --iters "$ITERS" --cases "$TORCH_CASES" \
  --budget "$(( $(left) > 70 ? $(left) - 60 : 10 ))"
grep -E '^\{' "$WORK/torch.out" 2>/dev/null | while IFS= read -r line; do
  record kind=speed engine=torch bench="$line"
done
[ "$STEP_RC" = 0 ] || note "PyTorch step rc $STEP_RC (see logs/torch.err in logs.tar.xz)"
grep -q '"error": "PyTorch not installed' "$WORK/torch.out" 2>/dev/null && note "PyTorch is not installed here: no PyTorch rows"

save_cache
[ -n "$CACHE_STAMP" ] || note "no kernel cache was written in $CACHE (persistence is compiled in with the cuda feature only)"

# ---------------------------------------------------------------- 5. table
MD_NAME=gpu-$SLUG-$STAMP.md
GC_CARD=$CARD GC_DRIVER=$DRIVER GC_DRIVER_CUDA=$DRIVER_CUDA GC_NVRTC="$NVRTC_VER ($NVRTC)" \
GC_CUDA_PATH=${EFF_CUDA_PATH:-unset} GC_EFFNET="$EFFNET_VERSION (sha256 $BIN_SHA...)" GC_DEVICE=$DEVICE \
GC_CACHE=$CACHE_STATE GC_AUTOTUNE=${CUBECL_AUTOTUNE_LEVEL:-default} \
GC_ITERS="warm-up $WARMUP, timed $ITERS (median)" GC_STAMP=$STAMP \
"$PY" - "$RESULTS" "$NOTES" > "$WORK/table.md" <<'PY'
import json, os, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
notes = [l.strip() for l in open(sys.argv[2]) if l.strip()]
e = os.environ
env = {
    "card": e["GC_CARD"], "driver": e["GC_DRIVER"], "driver CUDA": e["GC_DRIVER_CUDA"],
    "NVRTC": e["GC_NVRTC"], "CUDA_PATH (headers)": e["GC_CUDA_PATH"], "effnet": e["GC_EFFNET"],
    "device under test": e["GC_DEVICE"], "kernel cache at start": e["GC_CACHE"],
    "CUBECL_AUTOTUNE_LEVEL": e["GC_AUTOTUNE"], "iterations": e["GC_ITERS"],
    "date (UTC)": e["GC_STAMP"],
}
print(f"# effnet CUDA check on {env['card']} ({env['date (UTC)']})\n")
print("| | |\n|---|---|")
for k, v in env.items():
    print(f"| {k} | {v} |")

print("\n## CUDA vs CPU (effnet infer, bundled Lite0, tests/data/photos, all 1000 classes)\n")
par = [r for r in recs if r.get("kind") == "parity"]
if not par:
    print("not checked (see notes)")
for p in par:
    prec = p.get("precision", "f32")
    print(f"**{prec}: {'PASS' if p['pass'] else 'FAIL'}** (device {prec} against CPU f32: same "
          f"top-1 and max |Δ centred logit| <= {p['tol']:g})\n")
    print("| photo | top-1 CPU | top-1 device | max \\|Δ logit\\| | max \\|Δ prob\\| |")
    print("|---|---|---|---|---|")
    for r in p["rows"]:
        if "error" in r:
            print(f"| {r['photo']} | | | {r['error']} | |")
        else:
            print(f"| {r['photo']} | {r['top1_cpu']} | {r['top1_dev']} | {r['max_dlogit']:.2e} | {r['max_dprob']:.2e} |")
    print()

print("\n## Speed (img/s; higher is better)\n")
print("| engine | task | precision | batch | res | img/s | ms/iter | first iter (s) | effnet / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|")
speed = [r for r in recs if r.get("kind") == "speed"]
def fnum(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "–"
def norm(r):
    """(name, task, precision, batch, size, bench) with effnet's bench keys mapped to torch's."""
    b = dict(r.get("bench") or {})
    if r["engine"] == "torch":
        prec = {"fp32": "f32", "tf32": "tf32", "bf16": "bf16"}.get(b.get("precision"), "?")
        return (f"PyTorch {b.get('torch', '')}", b.get("task", "?"), prec, b.get("batch"),
                b.get("size"), b)
    for pre in ("train", "infer"):
        if f"{pre}_samples_per_sec" in b:
            b["img_per_s"] = b[f"{pre}_samples_per_sec"]
            b["median_ms"] = b.get(f"{pre}_step_time")
            b.setdefault("batch", b.get(f"{pre}_batch_size"))
            b.setdefault("size", b.get(f"{pre}_img_size"))
    dev = b.get("device") or e["GC_DEVICE"]
    name = "effnet (burn-cuda, NVRTC)" if dev.startswith("cuda") else f"effnet ({dev})"
    return (name, r["task"], r["precision"], b.get("batch", r.get("batch")),
            b.get("size", r.get("size")), b)
rows = [(r, *norm(r)) for r in speed]
torch_ips = {(t, p, bt, sz): b.get("img_per_s") for r, n, t, p, bt, sz, b in rows
             if r["engine"] == "torch"}
for r, name, task, prec, batch, size, b in rows:
    err = b.get("error") or r.get("error")
    if err:
        print(f"| {name} | {task} | {prec} | {batch} | {size} | {err} | | | |")
        continue
    ips = b.get("img_per_s")
    first = fnum(b.get("first_iter_s"), ".2f")
    if b.get("first_epoch_s") is not None:
        first = f"{b['first_epoch_s']:.1f} (whole epoch 1)"
    ratio = ""
    if r["engine"] == "effnet" and ips:
        t = torch_ips.get((task, prec, batch, size))
        if t:
            ratio = f"{ips / t:.2f}x"
    extra = f" ({r['note']})" if r.get("note") else ""
    print(f"| {name}{extra} | {task} | {prec} | {batch} | {size} | {fnum(ips, '.1f')} | "
          f"{fnum(b.get('median_ms'), '.1f')} | {first} | {ratio} |")
for p in [r for r in recs if r.get("kind") == "profile"]:
    print(f"\n## Training step per layer kind ({p['precision']}, batch {p['batch']}, "
          f"{p['size']} px; `effnet bench --train --profile`)\n")
    print(p["text"].replace("## ", "### "))
steps = [r for r in recs if r.get("kind") == "step"]
if steps:
    print("\n## Steps (wall seconds; rc 124 = timed out, 125 = skipped for time)\n")
    print("| step | rc | seconds |\n|---|---|---|")
    for r in steps:
        print(f"| {r['step']} | {r['rc']} | {r['secs']} |")
logs = [r for r in recs if r.get("kind") == "cubecl-log"]
if logs:
    print("\n## CubeCL log (EFFNET_GPU_LOG) of the cold and warm starts\n")
    print("| phase | lines | lines mentioning compilation | lines mentioning autotune |")
    print("|---|---|---|---|")
    for r in logs:
        print(f"| {r['phase']} | {r['lines']} | {r['compiles']} | {r['autotunes']} |")
print("\n*first iter* = the first forward (or training step) of a fresh process, model set-up "
      "included: kernel compilation (NVRTC) and autotuning when the cache is cold. "
      "*train-cold-start* starts from an empty cache folder (goal < 60 s), *train-warm-start* is "
      "a new process reusing the cache the cold run wrote (goal < 10 s), *train-warm-carried-start* "
      "a new process on the cache carried from an earlier call. PyTorch bf16 = autocast "
      "+ channels_last; effnet bf16 = f32 master weights, bf16 convs, f32 BatchNorm and loss.")
if notes:
    print("\n## Notes\n")
    for n in notes:
        print(f"- {n}")
PY
# Dry runs (DEVICE other than cuda) leave the repository alone.
if [ "$DEVICE" = cuda ]; then
  mkdir -p "$REPO/benches/results" && cp "$WORK/table.md" "$REPO/benches/results/$MD_NAME"
fi
cp "$WORK/table.md" "$OUTDIR/$MD_NAME"
echo
cat "$WORK/table.md"
echo
pack_logs
[ "$DEVICE" = cuda ] && say "wrote benches/results/$MD_NAME"
say "wrote $OUTDIR/$MD_NAME; raw rows: $RESULTS; logs: $OUTDIR/logs.tar.xz; total $(elapsed) s"
rm -rf "$WORK"
}

main 2>&1 | tee -a "$OUTDIR/gpu-check.log"
