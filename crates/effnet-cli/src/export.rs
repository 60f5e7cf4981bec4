//! `effnet export`: weights out of effnet, as ONNX (for ONNX Runtime, TensorRT, OpenVINO) or as
//! a native `.bpk` at a chosen storage precision (f16 halves the file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use effnet::{BUNDLED_WEIGHTS, Device, EfficientNetConfig};
use effnet_export::{BatchSize, MIN_OPSET, OnnxOptions, write_onnx};
use effnet_model::weights::default_preprocess;
use effnet_model::{Precision, Pretrained, import_pytorch, load_native, load_native_bytes};

/// Output format of `effnet export`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ExportFormat {
    /// ONNX graph (BatchNorm folded, preprocessing in metadata_props).
    Onnx,
    /// effnet's native burnpack, loadable by `effnet infer --weights`.
    Bpk,
}

/// Storage precision of `--format bpk`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum PrecisionArg {
    /// 32-bit floats.
    F32,
    /// 16-bit conv/linear weights, f32 BatchNorm (half the size; computation stays f32).
    F16,
}

/// Arguments of `effnet export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Weights: effnet .bpk, `bundled` (Lite0), or PyTorch .pth/.safetensors (with --model).
    #[arg(long, default_value = "bundled")]
    pub weights: String,
    /// Architecture preset or model TOML; needed with PyTorch weights, checked against .bpk ones.
    #[arg(long)]
    pub model: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    pub format: ExportFormat,
    /// Output file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Fixed batch size of the ONNX graph.
    #[arg(long, conflicts_with = "dynamic_batch")]
    pub batch: Option<usize>,
    /// Symbolic batch dimension in the ONNX graph (any batch size at run time).
    #[arg(long)]
    pub dynamic_batch: bool,
    /// Input height/width of the ONNX graph (default: the crop size stored with the weights).
    #[arg(long)]
    pub size: Option<usize>,
    /// ONNX opset (17 to 21).
    #[arg(long, default_value_t = MIN_OPSET)]
    pub opset: i64,
    /// Storage precision of `--format bpk`.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

/// Loads the weights named by `--weights`/`--model` with BatchNorm intact, as stored.
pub fn load_pretrained(
    weights: &str,
    model: Option<&str>,
    device: &Device,
) -> anyhow::Result<Pretrained> {
    let want = model
        .map(EfficientNetConfig::from_name_or_file)
        .transpose()?;
    if weights == "bundled" {
        let pre = load_native_bytes(
            Path::new("<bundled efficientnet_lite0>"),
            BUNDLED_WEIGHTS.to_vec(),
            device,
        )?;
        check_model(weights, &pre, want.as_ref())?;
        return Ok(pre);
    }
    let path = Path::new(weights);
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "bpk" || ext.is_empty() {
        let pre = load_native(path, device)?;
        check_model(weights, &pre, want.as_ref())?;
        return Ok(pre);
    }
    if !["pth", "pt", "bin", "safetensors"].contains(&ext.as_str()) {
        bail!("{weights}: unknown weights format (expected .bpk, .pth/.pt/.bin or .safetensors)");
    }
    let Some(cfg) = want else {
        bail!("{weights}: PyTorch weights need --model <preset or TOML> to know the architecture");
    };
    let imported = import_pytorch(path, &cfg, device)?;
    Ok(Pretrained {
        preprocess: default_preprocess(&imported.config),
        model: imported.model,
        config: imported.config,
        source: format!("imported from {weights}"),
        labels: None,
    })
}

fn check_model(
    weights: &str,
    pre: &Pretrained,
    want: Option<&EfficientNetConfig>,
) -> anyhow::Result<()> {
    match want {
        Some(w) if w.name != pre.config.name => bail!(
            "{weights}: weights are for model '{}', not '{}'",
            pre.config.name,
            w.name
        ),
        _ => Ok(()),
    }
}

/// Runs `effnet export`.
pub fn run(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let device = Device::flex();
    if a.format == ExportFormat::Bpk && (a.batch.is_some() || a.dynamic_batch || a.size.is_some()) {
        bail!("--batch, --dynamic-batch and --size apply to --format onnx only");
    }
    if a.format == ExportFormat::Onnx && a.precision != PrecisionArg::F32 {
        bail!("--precision applies to --format bpk only (ONNX export is f32)");
    }
    let pre = load_pretrained(&a.weights, a.model.as_deref(), &device)?;
    match a.format {
        ExportFormat::Onnx => export_onnx(&a, &pre)?,
        ExportFormat::Bpk => export_bpk(&a, &pre)?,
    }
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} ({}) -> {} ({:.2} MB)",
        a.weights,
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
    write_onnx(&a.output, pre, &options).with_context(|| format!("exporting {} to ONNX", a.weights))
}

fn export_bpk(a: &ExportArgs, pre: &Pretrained) -> anyhow::Result<()> {
    let precision = match a.precision {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::F16 => Precision::F16,
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
    .with_context(|| format!("exporting {} to .bpk", a.weights))
}
