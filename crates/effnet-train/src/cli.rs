//! `effnet train` and `effnet eval` as clap argument structs the CLI mounts as subcommands.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use effnet_data::ImageFolder;
use effnet_model::{load_native, parse_device};
use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::parse_interpolation;
use crate::trainer::{evaluate, train};

/// Train an EfficientNet from a TOML recipe (progressive learning, RandAugment, mixup, EMA).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Recipe TOML (e.g. configs/train/efficientnetv2_s.toml). With --resume it defaults to the
    /// run folder's saved config.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset root holding the train/ and val/ class folders.
    #[arg(long)]
    pub data: PathBuf,
    /// Parent folder of run folders.
    #[arg(long, default_value = "runs")]
    pub output: PathBuf,
    /// Continue the run in this folder from its latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Override any recipe key: `--set optim.lr_base=0.01 --set progressive.mode=automl`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Shorthand for `--set train.epochs=N`.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Shorthand for `--set train.batch_size=N`.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Shorthand for `--set optim.lr_base=X` (the LR for a batch of `optim.lr_base_batch`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Shorthand for `--set seed=N`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shorthand for `--set device=NAME` (cpu, wgpu, cuda:0).
    #[arg(long)]
    pub device: Option<String>,
    /// Shorthand for `--set model.init_weights=PATH` (fine-tuning from native weights).
    #[arg(long)]
    pub init_weights: Option<PathBuf>,
    /// Shorthand for `--set name=NAME` (the run folder name).
    #[arg(long)]
    pub experiment: Option<String>,
}

impl TrainArgs {
    /// All overrides as `key=value` strings, shorthand flags last so they win.
    pub fn overrides(&self) -> Vec<String> {
        let mut v = self.set.clone();
        let q = |s: &str| format!("{s:?}");
        if let Some(x) = self.epochs {
            v.push(format!("train.epochs={x}"));
        }
        if let Some(x) = self.batch_size {
            v.push(format!("train.batch_size={x}"));
        }
        if let Some(x) = self.lr {
            v.push(format!("optim.lr_base={x:e}"));
        }
        if let Some(x) = self.seed {
            v.push(format!("seed={x}"));
        }
        if let Some(x) = &self.device {
            v.push(format!("device={}", q(x)));
        }
        if let Some(x) = &self.init_weights {
            v.push(format!("model.init_weights={}", q(&x.to_string_lossy())));
        }
        if let Some(x) = &self.experiment {
            v.push(format!("name={}", q(x)));
        }
        v
    }

    /// Resolves the recipe and run folder and trains.
    pub fn run(self) -> Result<()> {
        let overrides = self.overrides();
        let (cfg, run_dir, resume) = match &self.resume {
            Some(run) => {
                let path = self
                    .config
                    .clone()
                    .unwrap_or_else(|| run.join("config.toml"));
                let cfg = TrainConfig::load(&path, &overrides)?;
                (cfg, run.clone(), true)
            }
            None => {
                let path = self
                    .config
                    .clone()
                    .context("--config is required (or --resume RUN_DIR)")?;
                let cfg = TrainConfig::load(&path, &overrides)?;
                let name = if cfg.name.is_empty() {
                    default_run_name(&cfg)
                } else {
                    cfg.name.clone()
                };
                let run = self.output.join(name);
                if run.join("latest.json").exists() {
                    bail!(
                        "{} already holds a run; continue it with --resume {} or pick another --experiment",
                        run.display(),
                        run.display()
                    );
                }
                (cfg, run, false)
            }
        };
        let out = train(&cfg, &self.data, &run_dir, resume)?;
        if !out.interrupted {
            println!(
                "done: best top-1 {:.2} ({} weights) in {}",
                out.best_top1,
                if out.best_is_ema { "EMA" } else { "raw" },
                out.run_dir.join("best.bpk").display()
            );
        }
        Ok(())
    }
}

/// `<model>-<YYYYmmdd-HHMMSS>` like timm's output folders.
fn default_run_name(cfg: &TrainConfig) -> String {
    let arch = Path::new(&cfg.model.arch)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{arch}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Evaluate native weights on an image folder: top-1/top-5 and a JSON result like timm's
/// `validate.py`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Native weights (`.bpk`, e.g. a run's best.bpk).
    #[arg(long)]
    pub weights: PathBuf,
    /// Image folder (`<class>/<images>`), or a dataset root with a `val/` split.
    #[arg(long)]
    pub data: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Device (cpu, wgpu, cuda:0).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Evaluation resolution (default: the weights' preprocessing).
    #[arg(long)]
    pub img_size: Option<usize>,
    /// Center-crop fraction (default: the weights' preprocessing).
    #[arg(long)]
    pub crop_pct: Option<f64>,
    /// Resize filter (nearest, bilinear, bicubic; default: the weights' preprocessing).
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Loader threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Also write the JSON result to this file.
    #[arg(long)]
    pub results_file: Option<PathBuf>,
}

/// The result record of `effnet eval` (timm `validate.py` fields).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// Model name.
    pub model: String,
    /// Top-1 accuracy (%).
    pub top1: f64,
    /// 100 - top1.
    pub top1_err: f64,
    /// Top-5 accuracy (%).
    pub top5: f64,
    /// 100 - top5.
    pub top5_err: f64,
    /// Parameters in millions.
    pub param_count: f64,
    /// Input resolution.
    pub img_size: usize,
    /// Center-crop fraction.
    pub crop_pct: f64,
    /// Resize filter.
    pub interpolation: String,
}

impl EvalArgs {
    /// Evaluates and returns the result (what `run` prints).
    pub fn evaluate(&self) -> Result<EvalResult> {
        if self.batch_size == 0 {
            bail!("--batch-size must be >= 1");
        }
        let device = parse_device(&self.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
        let pre = load_native(&self.weights, &device)
            .with_context(|| format!("loading {}", self.weights.display()))?;
        let mut p = pre.preprocess.clone();
        let crop_pct = self.crop_pct.unwrap_or_else(|| p.crop_pct());
        if !(crop_pct > 0.0 && crop_pct <= 1.0) {
            bail!("--crop-pct {crop_pct} must be in (0, 1]");
        }
        if let Some(s) = self.img_size {
            if s < 8 {
                bail!("--img-size {s} is too small");
            }
            p.crop = s;
        }
        p = p.with_crop_pct(crop_pct);
        if let Some(i) = &self.interpolation {
            p.interpolation = parse_interpolation(i)?;
        }
        let root = if self.data.join("val").is_dir() {
            self.data.join("val")
        } else {
            self.data.clone()
        };
        let ds = ImageFolder::scan(&root)
            .with_context(|| format!("evaluation folder {}", root.display()))?;
        let classes = pre.model.num_classes();
        if ds.classes.len() > classes {
            bail!(
                "{} has {} classes but the model predicts {classes}",
                root.display(),
                ds.classes.len()
            );
        }
        let k = evaluate(&pre.model, &ds, &p, self.batch_size, self.workers, &device)?;
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        Ok(EvalResult {
            model: pre.config.name.clone(),
            top1: r(k.top1_pct()),
            top1_err: r(100.0 - k.top1_pct()),
            top5: r(k.top5_pct()),
            top5_err: r(100.0 - k.top5_pct()),
            param_count: (pre.model.num_trainable_params() as f64 / 1e4).round() / 100.0,
            img_size: p.crop,
            crop_pct: r(p.crop_pct()),
            interpolation: p.interpolation.to_string(),
        })
    }

    /// Prints ` * Acc@1 ... Acc@5 ...` and the JSON result.
    pub fn run(self) -> Result<()> {
        let res = self.evaluate()?;
        println!(
            " * Acc@1 {:.3} ({:.3}) Acc@5 {:.3} ({:.3})",
            res.top1, res.top1_err, res.top5, res.top5_err
        );
        let json = serde_json::to_string_pretty(&res)?;
        println!("--result\n{json}");
        if let Some(f) = &self.results_file {
            std::fs::write(f, &json).with_context(|| format!("cannot write {}", f.display()))?;
        }
        Ok(())
    }
}
