//! # effnet-export
//!
//! Takes an effnet model out of effnet: an ONNX graph (opset 17+) that ONNX Runtime, TensorRT or
//! OpenVINO can run, with BatchNorm folded into the convs and the preprocessing recorded as
//! metadata. Half-precision native weights live with the other native formats in
//! [`effnet_model::weights`] (see [`effnet_model::StoragePrecision`]).
//!
//! ```no_run
//! use effnet_export::{OnnxOptions, write_onnx};
//! use effnet_model::load_native;
//!
//! let device = burn::prelude::Device::flex();
//! let pretrained = load_native("weights/efficientnet_lite0.bpk".as_ref(), &device)?;
//! write_onnx("lite0.onnx".as_ref(), &pretrained, &OnnxOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod graph;
mod onnx;

/// ONNX's protobuf messages, generated at build time from `proto/onnx.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use error::ExportError;
pub use onnx::{BatchSize, MAX_OPSET, MIN_OPSET, OnnxOptions, export_onnx, onnx_bytes, write_onnx};
