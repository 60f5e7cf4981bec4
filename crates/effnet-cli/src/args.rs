//! Flags shared by several subcommands, spelled as timm spells them, so each means the same
//! everywhere: the weights ([`ModelArgs`]), preprocessing overrides ([`PreprocessArgs`]), where
//! and how the forward runs ([`RuntimeArgs`]: infer, eval, bench) and the compute precision
//! ([`PrecisionArgs`]).

use anyhow::bail;
use clap::{Args, ValueEnum};
use effnet::{Classifier, Device, Interpolation, PreprocessOverrides};

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
    /// Weights: an effnet .bpk (a training run folder: its best.bpk), a PyTorch
    /// .pth/.safetensors (with --model), hf-hub:owner/name[@revision] (Hugging Face Hub, cached
    /// under HF_HOME) or `bundled` (the default).
    #[arg(long, visible_alias = "checkpoint", value_name = "PATH|hf-hub:REPO")]
    pub weights: Option<String>,
}

impl ModelArgs {
    /// The weights spec, `bundled` when none was given.
    pub fn weights_spec(&self) -> &str {
        self.weights.as_deref().unwrap_or(effnet::BUNDLED_SPEC)
    }
}

/// The limit on decoded images, for the commands that read images (infer, eval, train).
#[derive(Args, Clone, Debug, Default)]
pub struct DecodeArgs {
    /// Largest image decoded, in pixels (e.g. 250M); larger files are refused before decoding.
    /// Default 100M, or the EFFNET_MAX_IMAGE_PIXELS environment variable.
    #[arg(long, value_name = "PIXELS")]
    pub max_image_pixels: Option<String>,
}

impl DecodeArgs {
    /// Sets the process's decoding limits from the environment and `--max-image-pixels`.
    pub fn apply(&self) -> anyhow::Result<()> {
        let mut limits = effnet_data::DecodeLimits::from_env().map_err(anyhow::Error::msg)?;
        if let Some(text) = &self.max_image_pixels {
            limits.max_pixels = effnet_data::image_io::parse_pixel_count(text)
                .map_err(|e| anyhow::anyhow!("--max-image-pixels {text}: {e}"))?;
        }
        effnet_data::set_decode_limits(limits);
        Ok(())
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

/// The compute precision (infer, eval, bench, train, warmup), with timm's `--amp` spellings.
#[derive(Args, Clone, Debug, Default)]
pub struct PrecisionArgs {
    /// Compute precision: f32 (default; train: the recipe's `train.precision`), bf16 or f16
    /// (mixed precision as timm's --amp: f32 weights, BatchNorm and softmax; convs and
    /// activations in half). On the cpu device half precision runs on the burn engine.
    #[arg(long, value_name = "f32|bf16|f16")]
    pub precision: Option<String>,
    /// timm's --amp: mixed precision in --amp-dtype (default float16), as --precision f16
    /// (train: `train.precision`).
    #[arg(long, conflicts_with = "precision")]
    pub amp: bool,
    /// timm's --amp-dtype: float16 or bfloat16 (implies --amp), as --precision f16|bf16
    /// (train: `train.precision`).
    #[arg(long, value_name = "float16|bfloat16", conflicts_with = "precision")]
    pub amp_dtype: Option<String>,
}

impl PrecisionArgs {
    /// The precision asked for, `None` when no flag was given (the recipe or f32 decides).
    pub fn requested(&self) -> anyhow::Result<Option<effnet::ComputePrecision>> {
        if self.precision.is_some() {
            return parse_precision(self.precision.as_deref()).map(Some);
        }
        match (self.amp, self.amp_dtype.as_deref()) {
            (false, None) => Ok(None),
            (_, None) => Ok(Some(effnet::ComputePrecision::F16)),
            (_, Some(d)) => match d.trim().to_ascii_lowercase().as_str() {
                "float16" | "half" | "f16" | "fp16" => Ok(Some(effnet::ComputePrecision::F16)),
                "bfloat16" | "bf16" => Ok(Some(effnet::ComputePrecision::Bf16)),
                other => bail!("--amp-dtype {other}: expected float16 or bfloat16"),
            },
        }
    }

    /// The parsed value (f32 when absent); an unknown name is one clear error.
    pub fn get(&self) -> anyhow::Result<effnet::ComputePrecision> {
        Ok(self.requested()?.unwrap_or(effnet::ComputePrecision::F32))
    }
}

/// `--engine`: which code runs the forward pass.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum EngineArg {
    /// effnet's dedicated CPU executor (crate effnet-cpu); cpu device only.
    Native,
    /// burn's forward (any device).
    Burn,
}

/// Where and how the forward runs: the flags infer, eval and bench share, with the same
/// defaults (timm's `--device`, `-j/--workers`; effnet's `--engine`; the precision).
#[derive(Args, Clone, Debug)]
pub struct RuntimeArgs {
    /// Device: cpu, wgpu or cuda[:N] (GPU backends when compiled in).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for decoding, loading and the CPU forward (0: all cores).
    #[arg(short = 'j', long, default_value_t = 0)]
    pub workers: usize,
    /// Inference engine: native (effnet's CPU executor; the default on cpu in f32) or burn.
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

impl RuntimeArgs {
    /// The device `--device` names.
    pub fn device(&self) -> anyhow::Result<Device> {
        effnet::parse_device(&self.device).map_err(|e| anyhow::anyhow!("--device: {e}"))
    }

    /// Sets the CPU thread count (`-j`) for the process.
    pub fn set_threads(&self) -> anyhow::Result<()> {
        set_workers(self.workers)
    }

    /// Threads for a loader: `-j`, or every core for 0.
    pub fn loader_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Applies `--precision`, then `--engine` (absent: native on the cpu in f32, burn
    /// otherwise).
    pub fn configure(&self, c: Classifier) -> anyhow::Result<Classifier> {
        let c = c
            .with_precision(self.precision.get()?)
            .map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
        let engine = match self.engine {
            None => effnet::Engine::Auto,
            Some(EngineArg::Native) => effnet::Engine::Native,
            Some(EngineArg::Burn) => effnet::Engine::Burn,
        };
        c.with_engine(engine)
            .map_err(|e| anyhow::anyhow!("--engine native: {e}"))
    }
}

/// Parses a `--precision` value (f32 when absent).
pub fn parse_precision(value: Option<&str>) -> anyhow::Result<effnet::ComputePrecision> {
    match value {
        None => Ok(effnet::ComputePrecision::F32),
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("--precision: {e}")),
    }
}
