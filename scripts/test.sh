#!/usr/bin/env bash
# The project's test command (README, CI): every crate's tests in one optimised build, with the
# wgpu backend compiled in and run on Mesa's software Vulkan (lavapipe) when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "installing Mesa's software Vulkan driver (mesa-vulkan-drivers) for the wgpu tests" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
# Pick the CPU (lavapipe) adapter unless the caller chose one.
export CUBECL_WGPU_DEFAULT_DEVICE=${CUBECL_WGPU_DEFAULT_DEVICE:-Cpu}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
exec cargo test --release --workspace --features effnet-cli/wgpu "$@"
