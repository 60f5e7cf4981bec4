//! `effnet export`: weights out of effnet, as ONNX (for ONNX Runtime, TensorRT, OpenVINO), as
//! TensorFlow Lite (LiteRT on phones and edge devices) or as a native `.bpk` (f16 halves the
//! file). Any of the three in full-integer int8, calibrated once on a folder of images by
//! effnet's calibrator: the `.bpk` runs on effnet's int8 CPU executor, the others lower the
//! same calibrated model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use effnet::Device;
use effnet_export::{
    BatchSize, Int8Options, IoType, MIN_OPSET, OnnxOptions, TfliteOptions, write_onnx, write_tflite,
};
use effnet_model::{Pretrained, StoragePrecision};

use crate::args::ModelArgs;

/// Output format of `effnet export`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ExportFormat {
    /// ONNX graph (BatchNorm folded, preprocessing in metadata_props; int8: QDQ).
    Onnx,
    /// TensorFlow Lite flatbuffer for LiteRT (NHWC, builtin ops, preprocessing in metadata).
    Tflite,
    /// effnet's native burnpack, loadable by `effnet infer --weights`.
    Bpk,
}

/// Precision of the exported model.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum PrecisionArg {
    /// 32-bit floats.
    F32,
    /// `--format bpk`: 16-bit conv/linear weights, f32 BatchNorm (half the size; computation
    /// stays f32).
    F16,
    /// Full-integer int8 (weights per output channel, activations per tensor), calibrated on
    /// the images of `--calib`.
    Int8,
}

/// Element type at the boundary of an int8 model.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum IoTypeArg {
    /// float32, quantised inside the model (a drop-in for the f32 model).
    F32,
    /// int8 with the tensor's scale and zero point.
    Int8,
}

impl From<IoTypeArg> for IoType {
    fn from(a: IoTypeArg) -> Self {
        match a {
            IoTypeArg::F32 => IoType::Float32,
            IoTypeArg::Int8 => IoType::Int8,
        }
    }
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
    /// Precision: f32, f16 (`--format bpk`) or int8 (with `--calib`).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    #[command(flatten)]
    pub calib: crate::calibrate::CalibArgs,
    /// Element type of an int8 ONNX/TFLite model's input.
    #[arg(long, value_enum, default_value_t = IoTypeArg::F32)]
    pub input_type: IoTypeArg,
    /// Element type of an int8 ONNX/TFLite model's output.
    #[arg(long, value_enum, default_value_t = IoTypeArg::F32)]
    pub output_type: IoTypeArg,
}

/// Runs `effnet export`.
pub fn run(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let device = Device::flex();
    check_args(&a)?;
    let weights = a.model.weights_spec();
    let pre = effnet::load_pretrained(&weights.parse()?, a.model.model.as_deref(), &device)?;
    let quant = match a.precision {
        PrecisionArg::Int8 => Some(crate::calibrate::calibrate(&a.calib, &pre)?),
        _ => None,
    };
    let int8 = |model| Int8Options {
        model,
        input: a.input_type.into(),
        output: a.output_type.into(),
    };
    match (a.format, quant) {
        (ExportFormat::Onnx, q) => export_onnx(&a, &pre, q.map(int8))?,
        (ExportFormat::Tflite, q) => export_tflite(&a, &pre, q.map(int8))?,
        (ExportFormat::Bpk, Some(q)) => effnet::quantize::save_int8(&a.output, &q, &pre)
            .with_context(|| format!("exporting {weights} to an int8 .bpk"))?,
        (ExportFormat::Bpk, None) => export_bpk(&a, &pre)?,
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

/// Rejects flag combinations that mean nothing, naming the flags.
fn check_args(a: &ExportArgs) -> anyhow::Result<()> {
    let graph_format = a.format != ExportFormat::Bpk;
    if !graph_format && (a.batch.is_some() || a.dynamic_batch || a.size.is_some()) {
        bail!("--batch-size, --dynamic-batch and --img-size apply to --format onnx|tflite only");
    }
    let int8_io = a.input_type != IoTypeArg::F32 || a.output_type != IoTypeArg::F32;
    match a.precision {
        PrecisionArg::F16 if graph_format => {
            bail!("--precision f16 applies to --format bpk only (ONNX/TFLite: f32 or int8)")
        }
        PrecisionArg::Int8 if a.calib.calib.is_none() => {
            bail!("--precision int8 needs calibration images: --calib DIR")
        }
        PrecisionArg::Int8 if int8_io && !graph_format => {
            bail!("--input-type/--output-type apply to --format onnx|tflite only")
        }
        PrecisionArg::Int8 => {}
        _ if a.calib.calib.is_some() => bail!("--calib applies to --precision int8 only"),
        _ if int8_io => bail!("--input-type/--output-type apply to --precision int8 only"),
        _ => {}
    }
    if a.format == ExportFormat::Tflite && a.opset != MIN_OPSET {
        bail!("--opset applies to --format onnx only");
    }
    Ok(())
}

fn batch(a: &ExportArgs) -> BatchSize {
    match (a.batch, a.dynamic_batch) {
        (_, true) => BatchSize::Dynamic,
        (Some(n), false) => BatchSize::Fixed(n),
        (None, false) => BatchSize::Fixed(1),
    }
}

fn labels(pre: &Pretrained) -> Vec<String> {
    pre.labels
        .clone()
        .unwrap_or_else(|| effnet::default_labels(pre.config.num_classes))
}

fn export_onnx(a: &ExportArgs, pre: &Pretrained, int8: Option<Int8Options>) -> anyhow::Result<()> {
    let options = OnnxOptions {
        batch: batch(a),
        opset: a.opset,
        input_size: a.size,
        labels: Some(labels(pre)),
        int8,
    };
    write_onnx(&a.output, pre, &options)
        .with_context(|| format!("exporting {} to ONNX", a.model.weights_spec()))
}

fn export_tflite(
    a: &ExportArgs,
    pre: &Pretrained,
    int8: Option<Int8Options>,
) -> anyhow::Result<()> {
    let options = TfliteOptions {
        batch: batch(a),
        input_size: a.size,
        labels: Some(labels(pre)),
        int8,
    };
    write_tflite(&a.output, pre, &options)
        .with_context(|| format!("exporting {} to TFLite", a.model.weights_spec()))
}

fn export_bpk(a: &ExportArgs, pre: &Pretrained) -> anyhow::Result<()> {
    let precision = match a.precision {
        PrecisionArg::F16 => StoragePrecision::F16,
        _ => StoragePrecision::F32,
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
