//! Compiles the two schemas the exporters write, in pure Rust (no `protoc`, no `flatc`):
//! ONNX's protobuf schema (proto/onnx.proto, from the `onnx` 1.23 Python package) into prost
//! message types, parsed by protox; TensorFlow Lite's flatbuffer schema (schema/schema.fbs, see
//! schema/README.md) into owned table types for `src/flatbuffer.rs`, by the small schema compiler
//! in build/fbs.rs.

#[path = "build/fbs.rs"]
mod fbs;

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-changed=schema/schema.fbs");
    println!("cargo:rerun-if-changed=build/fbs.rs");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;

    let schema = std::fs::read_to_string("schema/schema.fbs")?;
    let code = fbs::compile(&schema).map_err(|e| format!("schema/schema.fbs: {e}"))?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("tflite_schema.rs");
    std::fs::write(out, code)?;
    Ok(())
}
