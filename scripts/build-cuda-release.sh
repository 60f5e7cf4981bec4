#!/usr/bin/env bash
# Builds the release `effnet` binary with the CUDA backend (NVRTC kernels, CUDA loaded at run
# time), strips it and xz-compresses it to target-gpu/effnet.xz (git-ignored), the file
# scripts/gpu-check.sh unpacks on a GPU machine (carry `target-gpu` there; a call may carry
# 64 MiB).
#
# Works offline on a machine without CUDA: the cubecl-llvm stub (crates/cubecl-llvm-stub) replaces the
# LLVM download, and cudarc dlopens libcuda/libnvrtc at run time, with CUDA 13.0 bindings pinned by
# CUDARC_CUDA_VERSION=13000. A cold build takes 20+ minutes on 2 cores.
#
# Usage: scripts/build-cuda-release.sh [extra cargo args, e.g. --offline]
# Env:   CARGO_TARGET_DIR (default ~/.cache/effnet-target), NICE (default 15),
#        FEATURES (default "cuda"; e.g. "cuda wgpu"), XZ_LEVEL (default -9e)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
FEATURES=${FEATURES:-cuda}
OUT_DIR=target-gpu
OUT=$OUT_DIR/effnet.xz

start=$(date +%s)
nice -n "${NICE:-15}" cargo build --release -p effnet-cli --features "$FEATURES" "$@"
BIN=$CARGO_TARGET_DIR/release/effnet
echo "build: $(( $(date +%s) - start )) s"

mkdir -p "$OUT_DIR"
tmp=$(mktemp "$OUT_DIR/effnet.XXXXXX")
trap 'rm -f "$tmp" "$tmp.xz"' EXIT
cp "$BIN" "$tmp"
strip "$tmp"
# Sanity: the binary must not link CUDA (it dlopens it) and must say it has the cuda device.
if ldd "$tmp" | grep -Eq 'libcuda|libnvrtc'; then
  echo "error: $BIN links CUDA libraries directly; expected run-time loading" >&2
  exit 1
fi
"$tmp" --version
nice -n "${NICE:-15}" xz -T0 "${XZ_LEVEL:--9e}" -c "$tmp" > "$tmp.xz"
mv "$tmp.xz" "$OUT"
sha256sum "$OUT" > "$OUT.sha256"
raw=$(stat -c %s "$tmp")
packed=$(stat -c %s "$OUT")
awk -v o="$OUT" -v p="$packed" -v r="$raw" \
  'BEGIN { printf "wrote %s: %.1f MiB (stripped binary %.1f MiB)\n", o, p / 1048576, r / 1048576 }'
# A device call carries the working tree (tracked and untracked-not-ignored files) and the
# carried target-gpu together, 64 MiB in all.
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
carry=$(du -sb "$OUT_DIR" | cut -f1)
awk -v t="${tree:-0}" -v c="$carry" \
  'BEGIN { printf "a device call carries %.1f MiB (working tree %.1f + target-gpu %.1f; limit 64)\n", (t + c) / 1048576, t / 1048576, c / 1048576 }'
if [ $(( ${tree:-0} + carry )) -gt $(( 62 * 1048576 )) ]; then
  echo "warning: over 62 MiB with the working tree; a device call carries at most 64 MiB in all" \
       "(remove old files from target-gpu, or build with XZ_LEVEL=-9e)" >&2
fi
