//! Flags shared by several subcommands, spelled as timm spells them, so each means the same
//! everywhere (infer and import today; eval and train can flatten the same structs).

use anyhow::bail;
use clap::Args;
use effnet::{Interpolation, PreprocessOverrides};

/// Overrides of the preprocessing stored with the weights (timm's names).
#[derive(Args, Clone, Debug, Default)]
pub struct PreprocessArgs {
    /// Input (crop) size in pixels; the resize keeps the same crop fraction.
    #[arg(long = "img-size", visible_alias = "size", value_name = "N")]
    pub img_size: Option<usize>,
    /// Crop fraction: resize the shorter side to floor(size / crop_pct), then center-crop.
    #[arg(long)]
    pub crop_pct: Option<f64>,
    /// Resize filter: nearest, bilinear or bicubic.
    #[arg(long)]
    pub interpolation: Option<Interpolation>,
    /// Channel mean on the 0..1 scale: one value or three, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..=3)]
    pub mean: Option<Vec<f32>>,
    /// Channel std on the 0..1 scale: one value or three, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..=3)]
    pub std: Option<Vec<f32>>,
}

fn triple(v: &[f32], what: &str) -> anyhow::Result<[f32; 3]> {
    match v {
        [a] => Ok([*a; 3]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => bail!("--{what} takes one or three values, got {}", v.len()),
    }
}

impl PreprocessArgs {
    /// The library's override set these flags describe.
    pub fn overrides(&self) -> anyhow::Result<PreprocessOverrides> {
        Ok(PreprocessOverrides {
            size: self.img_size,
            crop_pct: self.crop_pct,
            interpolation: self.interpolation,
            mean: self
                .mean
                .as_deref()
                .map(|m| triple(m, "mean"))
                .transpose()?,
            std: self.std.as_deref().map(|s| triple(s, "std")).transpose()?,
        })
    }

    /// Applies the overrides to `base`, rejecting impossible values with the flag named (the
    /// library checks the same bounds again, for embedders).
    pub fn apply(&self, base: effnet::Preprocess) -> anyhow::Result<effnet::Preprocess> {
        let o = self.overrides()?;
        let max = effnet_data::MAX_INPUT_SIDE;
        if let Some(size) = o.size.filter(|s| !(1..=max).contains(s)) {
            bail!("--img-size {size} is outside 1..={max}");
        }
        if let Some(v) = o.mean.iter().flatten().find(|v| !v.is_finite()) {
            bail!("--mean {v}: every mean must be a finite number");
        }
        if let Some(v) = (o.std.iter().flatten()).find(|v| !(v.is_finite() && **v > 0.0)) {
            bail!("--std {v}: every std must be a finite positive number");
        }
        o.apply(base)
            .map_err(|e| anyhow::anyhow!("{e} (check --img-size and --crop-pct)"))
    }
}

/// Which model and weights to use (timm's `-m/--model` and `--checkpoint`).
#[derive(Args, Clone, Debug, Default)]
pub struct ModelArgs {
    /// Architecture: a preset or alias (`effnet models`) or a model TOML. Needed with PyTorch
    /// weights, checked against .bpk files, taken from the repository for hf-hub: weights.
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Weights: an effnet .bpk, a PyTorch .pth/.safetensors (with --model),
    /// hf-hub:owner/name[@revision] (Hugging Face Hub, cached under HF_HOME) or `bundled`.
    #[arg(long, visible_alias = "checkpoint", value_name = "PATH|hf-hub:REPO")]
    pub weights: Option<String>,
}

impl ModelArgs {
    /// The weights spec, `bundled` when none was given.
    pub fn weights_spec(&self) -> &str {
        self.weights
            .as_deref()
            .unwrap_or(effnet::source::BUNDLED_SPEC)
    }
}

/// Sets the number of CPU threads (timm's `-j/--workers`): image decoding and, on the CPU
/// backend, the batch split. 0 keeps rayon's default (all cores, or RAYON_NUM_THREADS).
pub fn set_workers(workers: usize) -> anyhow::Result<()> {
    if workers > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build_global()
            .map_err(|e| anyhow::anyhow!("--workers {workers}: {e}"))?;
    }
    Ok(())
}

/// `--precision` of infer, eval and bench (train has its own: the recipe supplies the default).
#[derive(Args, Clone, Debug, Default)]
pub struct PrecisionArgs {
    /// Compute precision: f32 (default), bf16 or f16 (mixed precision as timm's --amp: f32
    /// weights, BatchNorm and softmax; convs and activations in half). On the cpu device half
    /// precision runs on the burn engine (the native executor computes in f32 only).
    #[arg(long, value_name = "f32|bf16|f16")]
    pub precision: Option<String>,
}

impl PrecisionArgs {
    /// The parsed value (f32 when absent); an unknown name is one clear error.
    pub fn get(&self) -> anyhow::Result<effnet::ComputePrecision> {
        parse_precision(self.precision.as_deref())
    }
}

/// Parses a `--precision` value (f32 when absent).
pub fn parse_precision(value: Option<&str>) -> anyhow::Result<effnet::ComputePrecision> {
    match value {
        None => Ok(effnet::ComputePrecision::F32),
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("--precision: {e}")),
    }
}
