#!/usr/bin/env bash
# Copies TensorFlow Lite's flatbuffer schema (Apache-2.0, TensorFlow's licence header kept in the
# file) into crates/effnet-export/schema/schema.fbs, from the copy that the `tract-tflite` crate
# ships on crates.io (schema/tflite.fbs: TFLite's schema.fbs, schema version 3b). `cargo info`
# downloads and unpacks the crate into cargo's registry cache; the copy is checked by its hash.
# Run it only to refresh the committed file; builds never run it.
set -euo pipefail
cd "$(dirname "$0")/.."
crate=tract-tflite version=0.23.9
sha256=cf3a0e48176c6f87f3df6699af2d263be9d524d84e33dd8a38af912d8ac39d23
cargo info "$crate@$version" >/dev/null
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$version"/schema/tflite.fbs | head -1)
echo "$sha256  $src" | sha256sum -c --quiet
cp "$src" crates/effnet-export/schema/schema.fbs
echo "crates/effnet-export/schema/schema.fbs <- $crate $version schema/tflite.fbs"
