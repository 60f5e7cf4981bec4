//! Compiles ONNX's protobuf schema (proto/onnx.proto, from the `onnx` 1.23 Python package) into
//! prost message types, with protox as the parser so that no `protoc` binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
