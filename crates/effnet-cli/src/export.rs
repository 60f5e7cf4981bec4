//! `effnet export`: weights out of effnet, as ONNX (for ONNX Runtime, TensorRT, OpenVINO) or as
//! a native `.bpk` at a chosen precision (f16 halves the file; calibrated int8 runs on effnet's
//! int8 CPU executor).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use effnet::Device;
use effnet_export::{BatchSize, MIN_OPSET, OnnxOptions, write_onnx};
use effnet_model::{Pretrained, StoragePrecision};

use crate::args::ModelArgs;

/// Output format of `effnet export`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ExportFormat {
    /// ONNX graph (BatchNorm folded, preprocessing in metadata_props).
    Onnx,
    /// effnet's native burnpack, loadable by `effnet infer --weights`.
    Bpk,
}

/// Precision of the exported weights.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum PrecisionArg {
    /// 32-bit floats.
    F32,
    /// `--format bpk`: 16-bit conv/linear weights, f32 BatchNorm (half the size; computation
    /// stays f32).
    F16,
    /// `--format bpk`: full-integer int8 (weights per output channel, activations per tensor)
    /// calibrated on the images of `--calib`, run by effnet's int8 CPU executor.
    Int8,
}

/// Arguments of `effnet export`.
#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    pub format: ExportFormat,
    /// Output file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Fixed batch size of the ONNX graph.
    #[arg(
        short = 'b',
        long = "batch-size",
        visible_alias = "batch",
        conflicts_with = "dynamic_batch"
    )]
    pub batch: Option<usize>,
    /// Symbolic batch dimension in the ONNX graph (any batch size at run time).
    #[arg(long)]
    pub dynamic_batch: bool,
    /// Input height/width of the ONNX graph (default: the crop size stored with the weights).
    #[arg(long = "img-size", visible_alias = "size", value_name = "N")]
    pub size: Option<usize>,
    /// ONNX opset (17 to 21).
    #[arg(long, default_value_t = MIN_OPSET)]
    pub opset: i64,
    /// Precision: f32, f16 or int8 (`--format bpk`; int8 with `--calib`).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    #[command(flatten)]
    pub calib: crate::calibrate::CalibArgs,
}

/// Runs `effnet export`.
pub fn run(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let device = Device::flex();
    if a.format == ExportFormat::Bpk && (a.batch.is_some() || a.dynamic_batch || a.size.is_some()) {
        bail!("--batch-size, --dynamic-batch and --img-size apply to --format onnx only");
    }
    if a.format == ExportFormat::Onnx && a.precision != PrecisionArg::F32 {
        bail!("--precision applies to --format bpk only (ONNX export is f32)");
    }
    if a.calib.calib.is_some() && a.precision != PrecisionArg::Int8 {
        bail!("--calib applies to --precision int8 only");
    }
    let weights = a.model.weights_spec();
    let pre = effnet::load_pretrained(&weights.parse()?, a.model.model.as_deref(), &device)?;
    match a.format {
        ExportFormat::Onnx => export_onnx(&a, &pre)?,
        ExportFormat::Bpk => export_bpk(&a, &pre)?,
    }
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} ({}) -> {} ({:.2} MB)",
        weights,
        pre.config.name,
        a.output.display(),
        bytes as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

fn export_onnx(a: &ExportArgs, pre: &Pretrained) -> anyhow::Result<()> {
    let batch = match (a.batch, a.dynamic_batch) {
        (_, true) => BatchSize::Dynamic,
        (Some(n), false) => BatchSize::Fixed(n),
        (None, false) => BatchSize::Fixed(1),
    };
    let labels = pre
        .labels
        .clone()
        .unwrap_or_else(|| effnet::default_labels(pre.config.num_classes));
    let options = OnnxOptions {
        batch,
        opset: a.opset,
        input_size: a.size,
        labels: Some(labels),
    };
    write_onnx(&a.output, pre, &options)
        .with_context(|| format!("exporting {} to ONNX", a.model.weights_spec()))
}

fn export_bpk(a: &ExportArgs, pre: &Pretrained) -> anyhow::Result<()> {
    let precision = match a.precision {
        PrecisionArg::F32 => StoragePrecision::F32,
        PrecisionArg::F16 => StoragePrecision::F16,
        PrecisionArg::Int8 => {
            let q = crate::calibrate::calibrate(&a.calib, pre)?;
            return effnet::quantize::save_int8(&a.output, &q, pre)
                .with_context(|| format!("exporting {} to an int8 .bpk", a.model.weights_spec()));
        }
    };
    effnet_model::save_native_as(
        &a.output,
        &pre.model,
        &pre.config,
        &pre.preprocess,
        &pre.source,
        pre.labels.as_deref(),
        precision,
    )
    .with_context(|| format!("exporting {} to .bpk", a.model.weights_spec()))
}
