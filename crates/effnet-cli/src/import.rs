//! `effnet import`: PyTorch checkpoint in, native `.bpk` (weights + model + preprocessing) out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use effnet::{Device, EfficientNetConfig};
use effnet_model::{import_pytorch, save_native, weights::default_preprocess};

use crate::infer::PreprocessArgs;

/// Arguments of `effnet import`.
#[derive(Args)]
pub struct ImportArgs {
    /// PyTorch `.pth`/`.pt` or `.safetensors` state dict (torchvision, timm or lukemelas keys).
    pub source: PathBuf,
    /// Architecture: a preset name (see `effnet models`) or a model TOML file.
    #[arg(long)]
    pub model: String,
    /// Output file (`.bpk`).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Provenance text stored in the file (source, licence).
    #[arg(long, default_value = "")]
    pub source_note: String,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// Runs the import.
pub fn run(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let cfg = EfficientNetConfig::from_name_or_file(&a.model)?;
    let device = Device::flex();
    let imported = import_pytorch(&a.source, &cfg, &device)?;
    let pre = a.preprocess.apply(default_preprocess(&imported.config))?;
    let note = if a.source_note.is_empty() {
        format!("imported from {}", a.source.display())
    } else {
        a.source_note.clone()
    };
    save_native(&a.output, &imported.model, &imported.config, &pre, &note)
        .with_context(|| format!("writing {}", a.output.display()))?;
    println!(
        "{}: {} tensors ({:?} layout), {} classes -> {} (resize {} crop {} {} mean {:?} std {:?})",
        a.source.display(),
        imported.applied,
        imported.layout,
        imported.config.num_classes,
        a.output.display(),
        pre.resize,
        pre.crop,
        pre.interpolation,
        pre.mean,
        pre.std
    );
    Ok(ExitCode::SUCCESS)
}
