//! # effnet-export
//!
//! Takes an effnet model out of effnet: an ONNX graph (opset 17+) that ONNX Runtime, TensorRT or
//! OpenVINO can run, and a TensorFlow Lite flatbuffer for LiteRT (phones, microcontrollers,
//! XNNPACK), each in f32 or full-integer int8, with BatchNorm folded into the convs and the
//! preprocessing recorded as metadata. Both writers lower one format-neutral [`Graph`]; int8
//! exports lower effnet's calibrated `effnet_cpu::quant::QuantModel` onto it ([`Int8Options`]),
//! so they hold the same numbers as effnet's int8 `.bpk`.
//! Half-precision native weights live with the other native formats in
//! [`effnet_model::weights`] (see [`effnet_model::StoragePrecision`]).
//!
//! ```no_run
//! use effnet_export::{OnnxOptions, TfliteOptions, write_onnx, write_tflite};
//! use effnet_model::load_native;
//!
//! let device = burn::prelude::Device::flex();
//! let pretrained = load_native("weights/efficientnet_lite0.bpk".as_ref(), &device)?;
//! write_onnx("lite0.onnx".as_ref(), &pretrained, &OnnxOptions::default())?;
//! write_tflite("lite0.tflite".as_ref(), &pretrained, &TfliteOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

mod error;
mod flatbuffer;
mod graph;
mod int8;
mod meta;
mod onnx;
mod tflite;

/// ONNX's protobuf messages, generated at build time from `proto/onnx.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// TensorFlow Lite's flatbuffer tables (`Model`, `SubGraph`, `Tensor`, …, enum values in
/// CamelCase: `BuiltinOperator::Conv2d`), generated at build time from `schema/schema.fbs` by
/// build/fbs.rs; [`tflite_bytes`] serialises them.
pub mod tflite_schema {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    use crate::flatbuffer::{Field, Table};
    include!(concat!(env!("OUT_DIR"), "/tflite_schema.rs"));
}

pub use error::ExportError;
pub use graph::{
    ConvOp, DenseOp, Evaluator, Graph, INPUT_NAME, Node, OUTPUT_NAME, Op, TensorId, TensorInfo,
};
pub use int8::{Int8Options, IoType};
pub use onnx::{BatchSize, MAX_OPSET, MIN_OPSET, OnnxOptions, export_onnx, onnx_bytes, write_onnx};
pub use tflite::{TfliteOptions, export_tflite, graph_to_tflite, tflite_bytes, write_tflite};

/// Writes `bytes` to `path` atomically and durably (effnet's one write path,
/// [`effnet_data::fsutil::write_atomic`]: a failed export leaves no half-written model behind).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    effnet_data::fsutil::write_atomic(path, bytes).map_err(|e| ExportError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
