//! `effnet warmup`: fills the GPU kernel and autotune cache with every shape a training recipe
//! (or a model at given sizes) will use, so the real run starts warm.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use effnet_train::TrainConfig;
use effnet_train::warmup::{WarmKind, warm_up, warmup_model, warmup_shapes};

/// A recipe-less warm-up: model, batch and sizes from the flags.
const BARE_RECIPE: &str = "[model]\narch = \"efficientnetv2_s\"\n[train]\nepochs = 1\n\
                           [optim]\nname = \"adamw\"\n[sched]\nwarmup_epochs = 0\n\
                           [progressive]\nmode = \"off\"\n";

/// Arguments of `effnet warmup`.
#[derive(Args, Debug, Clone)]
pub struct WarmupArgs {
    /// Training recipe whose shapes to warm (every progressive stage, eval and inference).
    #[arg(short = 'c', long)]
    pub config: Option<std::path::PathBuf>,
    /// Recipe overrides, `key=value` (as `effnet train --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Architecture (`model.arch`); without a recipe: efficientnetv2_s.
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Batch size (`train.batch_size`, also the eval batch without a recipe).
    #[arg(short = 'b', long)]
    pub batch_size: Option<usize>,
    /// Image size (all stages and eval); without a recipe: the model's train size.
    #[arg(long)]
    pub img_size: Option<usize>,
    /// Number of classes of the run (default: the model's).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Device (`device`: wgpu, cuda:0; cpu works but has nothing to cache).
    #[arg(long)]
    pub device: Option<String>,
    /// Compute precision (`train.precision`): f32, bf16 or f16.
    #[arg(long, value_name = "f32|bf16|f16")]
    pub precision: Option<String>,
}

impl WarmupArgs {
    fn recipe(&self) -> Result<TrainConfig> {
        let precision = crate::args::parse_precision(self.precision.as_deref())?;
        let mut v = self.set.clone();
        let q = |s: &str| format!("{s:?}");
        let mut push = |k: &str, val: Option<String>| v.extend(val.map(|x| format!("{k}={x}")));
        push("model.arch", self.model.as_deref().map(q));
        push("train.batch_size", self.batch_size.map(|b| b.to_string()));
        push(
            "progressive.size",
            self.img_size.map(|s| format!("[{s}, {s}]")),
        );
        push("data.eval_size", self.img_size.map(|s| s.to_string()));
        push("device", self.device.as_deref().map(q));
        push(
            "train.precision",
            self.precision.as_ref().map(|_| q(precision.name())),
        );
        match &self.config {
            Some(path) => TrainConfig::load(path, &v),
            None => {
                push(
                    "data.eval_batch_size",
                    self.batch_size.map(|b| b.to_string()),
                );
                if self.img_size.is_none() {
                    let arch = self.model.as_deref().unwrap_or("efficientnetv2_s");
                    let m = effnet::EfficientNetConfig::from_name_or_file(arch)?;
                    push(
                        "progressive.size",
                        Some(format!("[{0}, {0}]", m.train_size)),
                    );
                    push("data.eval_size", Some(m.eval_size.to_string()));
                }
                TrainConfig::from_toml_with(BARE_RECIPE, &v)
            }
        }
    }
}

/// Runs `effnet warmup`: one line per shape with its seconds, then the cache folder.
pub fn run(a: WarmupArgs) -> Result<ExitCode> {
    let cfg = a.recipe()?;
    let classes = match a.classes {
        Some(n) => n,
        None => effnet::EfficientNetConfig::from_name_or_file(&cfg.model.arch)
            .map(|m| m.num_classes)
            .unwrap_or(1000),
    };
    let (model_cfg, eval_size) = warmup_model(&cfg, classes)?;
    let mut total = 0.0;
    for shape in warmup_shapes(&cfg, eval_size) {
        let secs = warm_up(&cfg, &model_cfg, shape)?;
        total += secs;
        let kind = match shape.kind {
            WarmKind::Train => "train",
            WarmKind::Eval => "eval",
            WarmKind::Infer => "infer",
        };
        println!(
            "warmup {kind} {} b{} r{} {} on {}: {secs:.2} s",
            model_cfg.name, shape.batch, shape.size, cfg.train.precision, cfg.device
        );
    }
    let dir = effnet_model::device::gpu_cache_dir().map_or_else(
        || "(none: set EFFNET_CACHE_DIR)".into(),
        |d| d.display().to_string(),
    );
    println!("warmup done in {total:.2} s; GPU kernel/autotune cache: {dir}");
    Ok(ExitCode::SUCCESS)
}
