//! `effnet warmup`: fills the GPU kernel and autotune cache with every shape a training recipe
//! (or a model at given sizes) will use, so the real run starts warm.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use effnet_train::TrainConfig;
use effnet_train::warmup::{WarmKind, warm_up, warmup_model, warmup_shapes};

use crate::recipe::RecipeArgs;

/// Arguments of `effnet warmup`.
#[derive(Args, Debug, Clone)]
pub struct WarmupArgs {
    /// The run's recipe flags, as `effnet train` takes them (without a recipe: timm's defaults
    /// scaled by -m, default efficientnetv2_s).
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Number of classes of the run (default: the model's).
    #[arg(long)]
    pub classes: Option<usize>,
}

impl WarmupArgs {
    fn recipe(&self) -> Result<TrainConfig> {
        let mut recipe = self.recipe.clone();
        if recipe.config.is_none() && recipe.model.is_none() {
            recipe.model = Some("efficientnetv2_s".into());
        }
        recipe.load(recipe.config.as_deref())
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
