//! `effnet import`: PyTorch checkpoint or Hugging Face Hub repository in, native `.bpk`
//! (weights + model + preprocessing + class names) out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use effnet::{Device, WeightsSource};
use effnet_model::save_native_labeled;

use crate::args::PreprocessArgs;

/// Arguments of `effnet import`.
#[derive(Args)]
pub struct ImportArgs {
    /// PyTorch `.pth`/`.pt`/`.safetensors` state dict (torchvision, timm or lukemelas keys), or
    /// `hf-hub:owner/name[@revision]` (downloaded into the Hugging Face cache, HF_HOME).
    pub source: String,
    /// Architecture: a preset or alias (see `effnet models`) or a model TOML file. Needed for
    /// files; for hf-hub: repositories it is read from their config.json or name.
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Output file (`.bpk`); default: the source's name with `.bpk`, in the current folder.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Provenance text stored in the file (source, licence).
    #[arg(long, default_value = "")]
    pub source_note: String,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// `model.bpk` for `.../model.safetensors`, `tf_efficientnetv2_s.in21k_ft_in1k.bpk` for a Hub repo.
fn default_output(source: &WeightsSource) -> PathBuf {
    let stem = match source {
        WeightsSource::Hub { repo, .. } => repo.rsplit('/').next().unwrap_or(repo).to_string(),
        WeightsSource::File(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
        WeightsSource::Bundled => "efficientnet_lite0".into(),
    };
    PathBuf::from(format!("{stem}.bpk"))
}

/// Runs the import.
pub fn run(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let source: WeightsSource = a.source.parse()?;
    let output = a.output.clone().unwrap_or_else(|| default_output(&source));
    let pre = effnet::load_pretrained(&source, a.model.as_deref(), &Device::flex())?;
    let preprocess = a.preprocess.apply(pre.preprocess.clone())?;
    let note = if a.source_note.is_empty() {
        match &source {
            WeightsSource::File(p) => format!("imported from {}", p.display()),
            _ => pre.source.clone(),
        }
    } else {
        a.source_note.clone()
    };
    save_native_labeled(
        &output,
        &pre.model,
        &pre.config,
        &preprocess,
        &note,
        pre.labels.as_deref(),
    )
    .with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} ({} classes) -> {} (resize {} crop {} {} mean {:?} std {:?})",
        source,
        pre.config.name,
        pre.config.num_classes,
        output.display(),
        preprocess.resize,
        preprocess.crop,
        preprocess.interpolation,
        preprocess.mean,
        preprocess.std
    );
    Ok(ExitCode::SUCCESS)
}
