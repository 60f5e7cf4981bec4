#!/usr/bin/env bash
# One prepared GPU check for effnet's CUDA build, meant for a single device call of a few
# minutes on an H100/H200 with CUDA 13 and PyTorch (no Rust, no network):
#
#   1. unpacks the release binary built by scripts/build-cuda-release.sh (target-gpu/effnet.xz),
#   2. finds libcuda.so.1, libnvrtc.so.13 and the CUDA headers NVRTC needs (system toolkit or
#      PyTorch's nvidia/* wheels) and sets LD_LIBRARY_PATH / CUDA_PATH,
#   3. runs effnet from a work folder holding a cubecl.toml that keeps compiled kernels and
#      autotune results on disk, seeded from target-gpu/cubecl-cache.tar.xz when carried,
#   4. checks CUDA against CPU on tests/data/photos (`effnet infer`, all 1000 classes; the
#      centred logits are recovered from the probabilities, tolerance 1e-3),
#   5. cold and warm start: the first training step of V2-S b128 r224 bf16 (`effnet bench --train`)
#      from an empty kernel/autotune cache, then again in a new process with the cache it wrote
#      (goal: under 60 s cold, under 10 s warm),
#   6. steady-state `effnet bench` (V2-S): training b64 r224 f32 and bf16, b128 r128 bf16, b128 r224
#      bf16; inference b128 r384 f32 and bf16 (older binaries without --precision: f32 rows only,
#      `effnet train` on a synthetic folder when there is no `bench --train`),
#   7. the same cases in PyTorch (scripts/gpu_bench_torch.py: fp32, tf32, bf16 autocast +
#      channels_last, cuDNN benchmark on), and `--device wgpu` inference (the card's Vulkan driver)
#      beside CUDA,
#   8. prints one table (img/s for both and effnet / PyTorch) and writes it to
#      benches/results/gpu-<card>-<date>.md, plus $OUT/ (table, raw JSON lines, logs and the
#      kernel cache as cubecl-cache.tar.xz for the next call).
#
# Every step runs under `timeout`, sized from what is left of GPU_CHECK_BUDGET (default 540 s,
# under a 600 s call), keeping TORCH_RESERVE seconds for PyTorch, so one stall cannot eat the call.
# The script never stops on a failed step: the table says what failed.
#
# Device call (from the repo root; target-gpu is git-ignored so it must be carried):
#   scripts/build-cuda-release.sh                      # here, once (20+ min on 2 cores)
#   run(command="scripts/gpu-check.sh", carry=["target-gpu"], timeout_s=600)
#   afterwards copy <files_at>/benches/results/*.md into benches/results/, and
#   <files_at>/cubecl-cache.tar.xz into target-gpu/ to start the next call with warm kernels.
#
# Environment knobs (defaults in brackets):
#   GPU_CHECK_BUDGET [540]  seconds for the whole script     TORCH_RESERVE [150]
#   ITERS [20] WARMUP [3]   timed / untimed iterations       EFFNET_XZ [target-gpu/effnet.xz]
#   EFFNET_BIN              use this unpacked binary instead of EFFNET_XZ
#   INFER_BATCH [128] INFER_SIZE [384] TRAIN_BATCH [64] TRAIN_SIZE [224]
#   DEVICE [cuda]           effnet device under test; TORCH_DEVICE [cuda]
#   CUBECL_CACHE_IN [target-gpu/cubecl-cache.tar.xz]  kernel cache to start from (tar.xz or dir)
#   EFFNET_TRAIN_CONFIG     recipe for the `effnet train` fallback [configs/train/efficientnetv2_s.toml]
#   CUBECL_AUTOTUNE_LEVEL   passed through to cubecl (minimal|balanced|extensive|full); effnet also
#                           reads EFFNET_AUTOTUNE_LEVEL (same values)
#   COLD_BATCH [128] COLD_SIZE [224]  the cold/warm-start training step (bf16)
#   WGPU [1]                also run `--device wgpu` inference rows (0: skip)
# Dry run without a GPU (tiny sizes, CPU everywhere; `wgpu` rows use lavapipe if compiled in):
#   EFFNET_BIN=$CARGO_TARGET_DIR/release/effnet DEVICE=cpu TORCH_DEVICE=cpu INFER_BATCH=2 \
#   INFER_SIZE=64 TRAIN_BATCH=2 TRAIN_SIZE=64 BIG_BATCH=2 SMALL_SIZE=32 COLD_BATCH=2 \
#   COLD_SIZE=64 ITERS=2 WARMUP=1 WGPU=0 scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-540}
TORCH_RESERVE=${TORCH_RESERVE:-150}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-3}
INFER_BATCH=${INFER_BATCH:-128}
INFER_SIZE=${INFER_SIZE:-384}
TRAIN_BATCH=${TRAIN_BATCH:-64}
TRAIN_SIZE=${TRAIN_SIZE:-224}
BIG_BATCH=${BIG_BATCH:-128}        # the b128 training rows
SMALL_SIZE=${SMALL_SIZE:-128}      # the r128 training row
COLD_BATCH=${COLD_BATCH:-128}
COLD_SIZE=${COLD_SIZE:-224}
WGPU=${WGPU:-1}
DEVICE=${DEVICE:-cuda}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
EFFNET_XZ=${EFFNET_XZ:-target-gpu/effnet.xz}
CUBECL_CACHE_IN=${CUBECL_CACHE_IN:-target-gpu/cubecl-cache.tar.xz}
OUTDIR=${OUT:-$REPO/target-gpu/out}
PY=${PYTHON:-python3}

mkdir -p "$OUTDIR/logs"
main() {
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
RUN=$WORK/run          # effnet's working directory: cubecl.toml and the kernel cache live here
mkdir -p "$RUN"
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
# $WORK/NAME.err (both copied to $OUTDIR/logs), under timeout min(CAP, left - RESERVE).
# Sets STEP_RC (124 = timed out, 125 = skipped for lack of time) and STEP_SECS.
run_step() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local avail=$(( $(left) - reserve ))
  [ "$cap" -gt "$avail" ] && cap=$avail
  STEP_SECS=0
  if [ "$cap" -lt 10 ]; then
    STEP_RC=125
    note "$name: skipped, time budget used up"
    return
  fi
  say "$name: start (limit ${cap} s)"
  local t=$(date +%s)
  (cd "$RUN" && timeout -k 5 "$cap" "$@") > "$WORK/$name.out" 2> "$WORK/$name.err"
  STEP_RC=$?
  STEP_SECS=$(( $(date +%s) - t ))
  cp "$WORK/$name.out" "$OUTDIR/logs/$name.out" 2>/dev/null
  cp "$WORK/$name.err" "$OUTDIR/logs/$name.err" 2>/dev/null
  case $STEP_RC in
    0) say "$name: ok in ${STEP_SECS} s" ;;
    124|137) say "$name: TIMED OUT after ${STEP_SECS} s"; STEP_RC=124 ;;
    *) say "$name: FAILED (rc $STEP_RC) after ${STEP_SECS} s"
       tail -n 15 "$WORK/$name.err" | sed 's/^/    /' ;;
  esac
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

save_cache() {
  local files
  files=$(cd "$RUN" && { ls -1 "$SLUG".db* 2>/dev/null; [ -d cache ] && echo cache; })
  if [ -n "$files" ]; then
    (cd "$RUN" && tar -cJf "$OUTDIR/cubecl-cache.tar.xz" cubecl.toml $files) && \
      say "kernel cache saved: $OUTDIR/cubecl-cache.tar.xz ($(du -h "$OUTDIR/cubecl-cache.tar.xz" | cut -f1); $(cd "$RUN" && du -ch $files | tail -n 1 | cut -f1) unpacked)"
  else
    note "no kernel cache written in $RUN (is persistence compiled in?)"
  fi
}

# ---------------------------------------------------------------- 1. correctness: infer CPU vs device
PHOTOS=$REPO/tests/data/photos
run_step infer-cpu 90 "$TORCH_RESERVE" "$BIN" infer --device cpu --topk 1000 --format json \
  --output "$WORK/infer-cpu.json" "$PHOTOS"
CPU_RC=$STEP_RC
run_step infer-dev 180 "$TORCH_RESERVE" "$BIN" infer --device "$DEVICE" --topk 1000 --format json \
  --output "$WORK/infer-dev.json" "$PHOTOS"
DEV_RC=$STEP_RC
record kind=infer-run device="$DEVICE" rc="$DEV_RC" secs="$STEP_SECS"
BF16_RC=125
if "$BIN" infer --help 2>/dev/null | grep -q -- '--precision'; then
  run_step infer-dev-bf16 120 "$TORCH_RESERVE" "$BIN" infer --device "$DEVICE" --precision bf16 \
    --topk 1000 --format json --output "$WORK/infer-dev-bf16.json" "$PHOTOS"
  BF16_RC=$STEP_RC
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
# bf16 against the f32 CPU reference: tolerance 0.5 on centred logits (on the CPU the bundled
# Lite0 differs by at most 0.14 in bf16: crates/effnet/tests/precision.rs).
if [ "$CPU_RC" = 0 ] && [ "$BF16_RC" = 0 ]; then
  parity "$WORK/infer-cpu.json" "$WORK/infer-dev-bf16.json" bf16 0.5
fi

# ---------------------------------------------------------------- 2. speed rows
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
HELP=$("$BIN" --help 2>/dev/null)
BENCH_HELP=$("$BIN" bench --help 2>/dev/null)
HAS_PREC=0; echo "$BENCH_HELP" | grep -q -- '--precision' && HAS_PREC=1
HAS_TRAIN=0; echo "$BENCH_HELP" | grep -q -- '--train' && HAS_TRAIN=1
[ "$HAS_PREC" = 1 ] || note "this binary has no --precision: f32 rows only"
# bench_case NAME CAP TASK PRECISION BATCH SIZE [ENV...]: one `effnet bench` row.
bench_case() {
  local name=$1 cap=$2 task=$3 prec=$4 batch=$5 size=$6
  shift 6
  local args=(bench --model efficientnetv2_s --batch "$batch" --size "$size" --device "$DEVICE"
              --warmup "$WARMUP" --iters "$ITERS" --json)
  case $task in train*) args+=(--train) ;; esac
  if [ "$prec" != f32 ]; then
    [ "$HAS_PREC" = 1 ] || { STEP_RC=125; note "$name: skipped, no --precision"; return; }
    args+=(--precision "$prec")
  fi
  run_step "$name" "$cap" "$TORCH_RESERVE" env "$@" "$BIN" "${args[@]}"
  bench_row "$name" "$task" "$prec" "$batch" "$size"
}

# Cold start: the first training step from an empty cache; warm: a new process reusing it.
if [ "$HAS_TRAIN" = 1 ]; then
  COLD_PREC=bf16; [ "$HAS_PREC" = 1 ] || COLD_PREC=f32
  for phase in cold warm; do
    WARMUP_SAVE=$WARMUP ITERS_SAVE=$ITERS; WARMUP=1 ITERS=2
    bench_case "start-$phase" 200 "train-$phase-start" "$COLD_PREC" "$COLD_BATCH" "$COLD_SIZE" \
      EFFNET_CACHE_DIR="$WORK/cold-cache" EFFNET_GPU_LOG="$WORK/cubecl-$phase.log"
    WARMUP=$WARMUP_SAVE ITERS=$ITERS_SAVE
    log=$WORK/cubecl-$phase.log
    if [ -f "$log" ]; then
      cp "$log" "$OUTDIR/logs/"
      record kind=cubecl-log phase="$phase" lines="$(wc -l < "$log")" \
        compiles="$(grep -ci 'compil' "$log")" autotunes="$(grep -ci 'autotun\|tune' "$log")"
      say "cubecl log ($phase): $(wc -l < "$log") lines, $(grep -ci 'compil' "$log") mention compilation"
    fi
  done
fi

# Steady state: training, then inference.
if [ "$HAS_TRAIN" = 1 ]; then
  bench_case train-f32 150 train f32 "$TRAIN_BATCH" "$TRAIN_SIZE"
  bench_case train-bf16 150 train bf16 "$TRAIN_BATCH" "$TRAIN_SIZE"
  bench_case train-bf16-b"$BIG_BATCH"-r"$SMALL_SIZE" 150 train bf16 "$BIG_BATCH" "$SMALL_SIZE"
  bench_case train-bf16-b"$BIG_BATCH"-r"$TRAIN_SIZE" 150 train bf16 "$BIG_BATCH" "$TRAIN_SIZE"
else
  note "training rows skipped: this binary has no \`bench --train\`"
fi
bench_case infer-f32 200 infer f32 "$INFER_BATCH" "$INFER_SIZE"
INFER_OK=$STEP_RC
bench_case infer-bf16 150 infer bf16 "$INFER_BATCH" "$INFER_SIZE"

# wgpu on the same card (Vulkan), when compiled in.
if [ "$WGPU" = 1 ]; then
  if echo "$("$BIN" infer --help 2>/dev/null)" | grep -q wgpu && \
     "$BIN" bench --device wgpu --size 32 --iters 1 --warmup 1 --model efficientnet_lite0 >/dev/null 2>&1; then
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

# ---------------------------------------------------------------- 3. PyTorch
TORCH_CASES="infer-fp32@${INFER_BATCH}x$INFER_SIZE,infer-tf32@${INFER_BATCH}x$INFER_SIZE"
TORCH_CASES="$TORCH_CASES,infer-bf16@${INFER_BATCH}x$INFER_SIZE,train-fp32@${TRAIN_BATCH}x$TRAIN_SIZE"
TORCH_CASES="$TORCH_CASES,train-tf32@${TRAIN_BATCH}x$TRAIN_SIZE,train-bf16@${TRAIN_BATCH}x$TRAIN_SIZE"
TORCH_CASES="$TORCH_CASES,train-bf16@${BIG_BATCH}x$SMALL_SIZE,train-bf16@${BIG_BATCH}x$TRAIN_SIZE"
run_step torch 240 15 "$PY" "$REPO/scripts/gpu_bench_torch.py" --device "$TORCH_DEVICE" \
  --warmup "$WARMUP" --iters "$ITERS" --cases "$TORCH_CASES" \
  --budget "$(( $(left) > 70 ? $(left) - 60 : 10 ))"
grep -E '^\{' "$WORK/torch.out" 2>/dev/null | while IFS= read -r line; do
  record kind=speed engine=torch bench="$line"
done
[ "$STEP_RC" = 0 ] || note "PyTorch step rc $STEP_RC (see logs/torch.err)"
grep -q '"error": "PyTorch not installed' "$WORK/torch.out" 2>/dev/null && note "PyTorch is not installed here: no PyTorch rows"

save_cache

# ---------------------------------------------------------------- table
MD_NAME=gpu-$SLUG-$STAMP.md
mkdir -p "$OUTDIR/benches/results"
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
      "a new process reusing the cache the cold run wrote (goal < 10 s). PyTorch bf16 = autocast "
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
cp "$WORK/table.md" "$OUTDIR/benches/results/$MD_NAME"
cp "$WORK/table.md" "$OUTDIR/$MD_NAME"
echo
cat "$WORK/table.md"
echo
say "wrote benches/results/$MD_NAME (also under $OUTDIR); raw rows: $RESULTS; total $(elapsed) s"
rm -rf "$WORK/synth"
}

main 2>&1 | tee -a "$OUTDIR/gpu-check.log"
