#!/usr/bin/env bash
# Builds the web page (docs/deploy.md): the effnet-web crate compiled to wasm32 with
# wasm-bindgen (`--target web`), web/'s static files, half-size (f16) Lite0 weights made by `effnet export` and the sample photos, all in
# web/dist/ (git-ignored). `--serve [PORT]` then serves web/dist on http://127.0.0.1:PORT/
# (default 8000).
#
# Needs: rustup's wasm32-unknown-unknown target (added when missing) and wasm-bindgen-cli of
# exactly the wasm-bindgen version in Cargo.lock (installed with `cargo install` when missing).
# The weights come from the native effnet CLI: $EFFNET if set, else $CARGO_TARGET_DIR/release/effnet
# when built, else it is built (`cargo build --release -p effnet-cli`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}
serve=""
port=8000
while [ $# -gt 0 ]; do
  case "$1" in
    --serve) serve=1; if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then port=$2; shift; fi ;;
    *) echo "usage: scripts/build-web.sh [--serve [PORT]]" >&2; exit 2 ;;
  esac
  shift
done
dist=web/dist
start=$(date +%s)

# 1. The wasm: only for wasm32 is the crate a cdylib (natively an rlib, see its Cargo.toml).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
# simd128: every current browser has it (Chrome 91, Firefox 89, Safari 16.4), and LLVM
# vectorises effnet-cpu's portable kernels with it. getrandom 0.3 (a dependency of burn's) needs
# its browser backend named explicitly. Only the wasm32 target sees these flags.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128 --cfg getrandom_backend=\"wasm_js\""
cargo rustc --release -p effnet-web --target wasm32-unknown-unknown --crate-type cdylib
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/effnet_web.wasm"

# 2. JS bindings: the CLI must be the very version of the wasm-bindgen crate.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb_version"; then
  echo "installing wasm-bindgen-cli $wb_version (must match the wasm-bindgen crate)" >&2
  cargo install wasm-bindgen-cli --version "=$wb_version"
fi
rm -rf "$dist"
mkdir -p "$dist/pkg" "$dist/photos"
wasm-bindgen --target web --no-typescript --out-dir "$dist/pkg" "$wasm"
# wasm-opt (binaryen) is opt-in (EFFNET_WASM_OPT=1): Debian 12's binaryen 108 shrinks the wasm
# by 18 % (6.8 -> 5.6 MB, gzipped 1.30 -> 1.25 MB, measured before WebGPU was added) but breaks wasm-bindgen's externref table,
# and the page then fails with "WebAssembly.Table.set(): Argument 1 is invalid for table".
if [ "${EFFNET_WASM_OPT:-0}" = 1 ]; then
  wasm-opt -O3 -all "$dist/pkg/effnet_web_bg.wasm" -o "$dist/pkg/effnet_web_bg.opt.wasm"
  mv "$dist/pkg/effnet_web_bg.opt.wasm" "$dist/pkg/effnet_web_bg.wasm"
fi

# 3. Weights: the bundled Lite0 with f16 conv/linear weights (half the download).
effnet=${EFFNET:-$CARGO_TARGET_DIR/release/effnet}
if [ ! -x "$effnet" ]; then
  cargo build --release -p effnet-cli
fi
"$effnet" export --format bpk --precision f16 -o "$dist/lite0_f16.bpk"

# 4. Static files and sample photos (the browser test classifies photos/chelsea.png).
cp web/index.html web/app.js "$dist/"
cp tests/data/photos/*.png tests/data/photos/*.jpg "$dist/photos/"

raw=$(stat -c %s "$dist/pkg/effnet_web_bg.wasm")
gz=$(gzip -9 -c "$dist/pkg/effnet_web_bg.wasm" | wc -c)
js=$(stat -c %s "$dist/pkg/effnet_web.js")
weights=$(stat -c %s "$dist/lite0_f16.bpk")
weights_gz=$(gzip -9 -c "$dist/lite0_f16.bpk" | wc -c)
echo "web: built $dist in $(( $(date +%s) - start )) s: wasm $raw bytes ($gz gzipped), JS glue $js bytes, weights $weights bytes ($weights_gz gzipped)"

if [ -n "$serve" ]; then
  echo "serving $dist on http://127.0.0.1:$port/ (Ctrl-C stops)"
  exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$dist"
fi
