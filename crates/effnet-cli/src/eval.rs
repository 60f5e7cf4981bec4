//! `effnet eval`: top-1/top-5 of weights (`.bpk`, or PyTorch `.pth`/`.safetensors` with
//! `--model`) on a labelled folder tree, as timm's `validate.py` reports them. Folder names are
//! mapped to the class names stored with the weights; an unknown folder is an error unless
//! `--positional-labels` asks for sorted-position labels.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use effnet::{Device, EfficientNetConfig, Interpolation, Preprocess};
use effnet_data::ImageFolder;
use effnet_data::dataset::class_dirs;
use effnet_model::{EfficientNet, import_pytorch, load_native, weights::default_preprocess};
use effnet_train::Silent;
use serde::Serialize;

/// Format of `--results-file` (timm's `--results-format`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ResultsFormat {
    /// One JSON object.
    Json,
    /// A header line and one row.
    Csv,
}

/// Evaluate weights on an image folder: top-1/top-5 and a result record like timm's
/// `validate.py`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Weights: effnet .bpk (e.g. a run's best.bpk), or PyTorch .pth/.safetensors with --model.
    #[arg(long, alias = "checkpoint")]
    pub weights: PathBuf,
    /// Architecture preset or model TOML; needed with PyTorch weights, checked against .bpk ones.
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Image folder (`<class>/<images>`), or a dataset root with a `val/` split.
    #[arg(long, alias = "data-dir")]
    pub data: PathBuf,
    /// Batch size.
    #[arg(short = 'b', long, default_value_t = 32)]
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
    pub interpolation: Option<Interpolation>,
    /// Loader threads.
    #[arg(short = 'j', long, default_value_t = 2)]
    pub workers: usize,
    /// Also write the result to this file.
    #[arg(long)]
    pub results_file: Option<PathBuf>,
    /// Format of the result (stdout and --results-file).
    #[arg(long, value_enum, default_value_t = ResultsFormat::Json)]
    pub results_format: ResultsFormat,
    /// Label class folders by their sorted position instead of by the class names stored with
    /// the weights (for weights without names, or folders named differently).
    #[arg(long)]
    pub positional_labels: bool,
}

/// The result record of `effnet eval` (timm `validate.py` fields and order).
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

impl EvalResult {
    fn csv(&self) -> String {
        format!(
            "model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation\n\
             {},{},{},{},{},{},{},{},{}\n",
            self.model,
            self.top1,
            self.top1_err,
            self.top5,
            self.top5_err,
            self.param_count,
            self.img_size,
            self.crop_pct,
            self.interpolation
        )
    }
}

/// Weights with what eval needs to know about them.
struct Loaded {
    model: EfficientNet,
    config: EfficientNetConfig,
    preprocess: Preprocess,
    /// Class names stored with the weights (None for PyTorch files and unlabelled .bpk).
    labels: Option<Vec<String>>,
}

fn load(weights: &Path, model: Option<&str>, device: &Device) -> Result<Loaded> {
    let ext = weights
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "bpk" || ext.is_empty() {
        let pre = load_native(weights, device)?;
        if let Some(m) = model {
            let want = EfficientNetConfig::from_name_or_file(m)?;
            if want.name != pre.config.name {
                bail!(
                    "{}: weights are for model '{}', not '{}'",
                    weights.display(),
                    pre.config.name,
                    want.name
                );
            }
        }
        let labels = pre.labels.filter(|l| l.len() == pre.config.num_classes);
        return Ok(Loaded {
            model: pre.model,
            config: pre.config,
            preprocess: pre.preprocess,
            labels,
        });
    }
    let Some(m) = model else {
        bail!(
            "{}: PyTorch weights need --model <preset or TOML> to know the architecture",
            weights.display()
        );
    };
    let cfg = EfficientNetConfig::from_name_or_file(m)?;
    let imported = import_pytorch(weights, &cfg, device)?;
    let labels = (imported.config.num_classes == 1000).then(effnet::imagenet_labels);
    Ok(Loaded {
        preprocess: default_preprocess(&imported.config),
        model: imported.model,
        config: imported.config,
        labels,
    })
}

impl EvalArgs {
    fn preprocess(&self, mut p: Preprocess) -> Result<Preprocess> {
        let crop_pct = self.crop_pct.unwrap_or_else(|| p.crop_pct());
        if !(crop_pct > 0.0 && crop_pct <= 1.0) {
            bail!("--crop-pct {crop_pct} must be in (0, 1]");
        }
        if let Some(s) = self.img_size {
            if !(8..=4096).contains(&s) {
                bail!("--img-size {s} must be in [8, 4096]");
            }
            p.crop = s;
        }
        p = p.with_crop_pct(crop_pct);
        if let Some(i) = self.interpolation {
            p.interpolation = i;
        }
        Ok(p)
    }

    /// The evaluation folder, labelled by the weights' class names (or by position).
    fn dataset(&self, labels: Option<&[String]>, num_classes: usize) -> Result<ImageFolder> {
        let root = if self.data.join("val").is_dir() {
            self.data.join("val")
        } else {
            self.data.clone()
        };
        let ds = if self.positional_labels {
            ImageFolder::scan(&root)?
        } else {
            let Some(labels) = labels else {
                bail!(
                    "{}: the weights carry no class names to match the folder names against; \
                     pass --positional-labels to label folders by sorted position",
                    self.weights.display()
                );
            };
            let folders = class_dirs(&root)?;
            if let Some(bad) = folders.iter().find(|f| !labels.contains(f)) {
                let known: Vec<&str> = labels.iter().take(10).map(String::as_str).collect();
                bail!(
                    "{}: folder '{bad}' is not a class of the weights (their classes: {}{}); \
                     pass --positional-labels to label folders by sorted position",
                    root.display(),
                    known.join(", "),
                    if labels.len() > 10 { ", ..." } else { "" }
                );
            }
            ImageFolder::scan_with_classes(&root, labels)?
        };
        if ds.classes.len() > num_classes {
            bail!(
                "{} has {} classes but the model predicts {num_classes}",
                root.display(),
                ds.classes.len()
            );
        }
        Ok(ds)
    }

    /// Evaluates and returns the result (what `run` prints).
    pub fn evaluate(&self) -> Result<EvalResult> {
        if self.batch_size == 0 || self.workers == 0 {
            bail!("--batch-size and --workers must be >= 1");
        }
        let device =
            effnet::parse_device(&self.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
        let w = load(&self.weights, self.model.as_deref(), &device)
            .with_context(|| format!("loading {}", self.weights.display()))?;
        let p = self.preprocess(w.preprocess.clone())?;
        let ds = self.dataset(w.labels.as_deref(), w.config.num_classes)?;
        let k = effnet_train::evaluate(
            &w.model,
            &ds,
            &p,
            self.batch_size,
            self.workers,
            &device,
            &mut Silent,
            (0, "eval"),
        )?;
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        Ok(EvalResult {
            model: w.config.name.clone(),
            top1: r(k.top1_pct()),
            top1_err: r(100.0 - k.top1_pct()),
            top5: r(k.top5_pct()),
            top5_err: r(100.0 - k.top5_pct()),
            param_count: (w.model.num_trainable_params() as f64 / 1e4).round() / 100.0,
            img_size: p.crop,
            crop_pct: r(p.crop_pct()),
            interpolation: p.interpolation.to_string(),
        })
    }
}

/// Runs `effnet eval`: prints ` * Acc@1 ... Acc@5 ...` and the result record.
pub fn run(a: EvalArgs) -> Result<ExitCode> {
    let res = a.evaluate()?;
    println!(
        " * Acc@1 {:.3} ({:.3}) Acc@5 {:.3} ({:.3})",
        res.top1, res.top1_err, res.top5, res.top5_err
    );
    let text = match a.results_format {
        ResultsFormat::Json => serde_json::to_string_pretty(&res)? + "\n",
        ResultsFormat::Csv => res.csv(),
    };
    print!("--result\n{text}");
    if let Some(f) = &a.results_file {
        effnet_data::fsutil::write_atomic(f, text.as_bytes())
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
