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
# ONNX Runtime (PyPI) runs the exported ONNX graphs in crates/effnet-export/tests/onnx_runtime.rs.
# Those tests fail without it, unless EFFNET_SKIP_ONNXRUNTIME names why it cannot be installed.
if ! python3 -c "import onnxruntime, numpy, onnx" >/dev/null 2>&1; then
  echo "installing onnxruntime, numpy and onnx from PyPI for the ONNX export tests" >&2
  if ! command -v python3 >/dev/null; then
    export EFFNET_SKIP_ONNXRUNTIME="no python3 on this machine"
  elif ! python3 -m pip install -q onnxruntime numpy onnx 2>/dev/null \
      && ! python3 -m pip install -q --break-system-packages onnxruntime numpy onnx; then
    export EFFNET_SKIP_ONNXRUNTIME="pip install onnxruntime numpy onnx failed"
  fi
  if [ -n "${EFFNET_SKIP_ONNXRUNTIME:-}" ]; then
    echo "warning: $EFFNET_SKIP_ONNXRUNTIME: the ONNX Runtime parity tests will be skipped" >&2
  fi
fi
# LiteRT (PyPI ai-edge-litert) runs the exported .tflite models in
# crates/effnet-export/tests/litert.rs. Those tests fail without it, unless EFFNET_SKIP_LITERT
# names why it cannot be installed.
if ! python3 -c "import ai_edge_litert, numpy" >/dev/null 2>&1; then
  echo "installing ai-edge-litert and numpy from PyPI for the TFLite export tests" >&2
  if ! command -v python3 >/dev/null; then
    export EFFNET_SKIP_LITERT="no python3 on this machine"
  elif ! python3 -m pip install -q ai-edge-litert numpy 2>/dev/null \
      && ! python3 -m pip install -q --break-system-packages ai-edge-litert numpy; then
    export EFFNET_SKIP_LITERT="pip install ai-edge-litert numpy failed"
  fi
  if [ -n "${EFFNET_SKIP_LITERT:-}" ]; then
    echo "warning: $EFFNET_SKIP_LITERT: the LiteRT parity tests will be skipped" >&2
  fi
fi
# Pick the CPU (lavapipe) adapter unless the caller chose one.
export CUBECL_WGPU_DEFAULT_DEVICE=${CUBECL_WGPU_DEFAULT_DEVICE:-Cpu}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
exec cargo test --release --workspace --features effnet-cli/wgpu "$@"
