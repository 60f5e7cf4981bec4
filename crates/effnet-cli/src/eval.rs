//! `effnet eval`: top-1/top-5 of weights (`.bpk`, or PyTorch `.pth`/`.safetensors` with
//! `--model`) on a labelled folder tree, as timm's `validate.py` reports them. Folder names are
//! mapped to the class names stored with the weights; an unknown folder is an error unless
//! `--positional-labels` asks for sorted-position labels.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use effnet::Classifier;
use effnet_data::ImageFolder;
use effnet_data::dataset::class_dirs;
use effnet_train::{Evaluation, Silent};
use serde::Serialize;

use crate::args::{ModelArgs, PrecisionArgs, PreprocessArgs};
use crate::infer::{EngineArg, choose_engine};

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
    /// Weights (`--weights`/`--checkpoint`: .bpk such as a run's best.bpk, .pth/.safetensors
    /// with -m, hf-hub:, bundled) and architecture (`-m/--model`).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image folder (`<class>/<images>`), or a dataset root with a `val/` split.
    #[arg(long, alias = "data-dir")]
    pub data: PathBuf,
    /// Batch size.
    #[arg(short = 'b', long, visible_alias = "batch", default_value_t = 32)]
    pub batch_size: usize,
    /// Device (cpu, wgpu, cuda:0).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Inference engine: native (effnet's CPU executor; the default on cpu in f32) or burn.
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Overrides of the weights' preprocessing (same flags as `infer`).
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
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
    /// Images evaluated.
    pub images: usize,
    /// Files in the folder that could not be read (skipped, not counted as errors).
    pub unreadable_files: usize,
}

impl EvalResult {
    fn csv(&self) -> String {
        format!(
            "model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation,\
             images,unreadable_files\n{},{},{},{},{},{},{},{},{},{},{}\n",
            self.model,
            self.top1,
            self.top1_err,
            self.top5,
            self.top5_err,
            self.param_count,
            self.img_size,
            self.crop_pct,
            self.interpolation,
            self.images,
            self.unreadable_files
        )
    }
}

/// Weights ready to evaluate.
struct Loaded {
    classifier: Classifier,
    /// Class names stored with the weights, to map folder names to.
    labels: Option<Vec<String>>,
    /// Trainable parameters of the unfolded model.
    params: usize,
}

/// The weights as a classifier, and the class names stored with them (None for PyTorch files
/// and unlabelled .bpk files; ImageNet's for 1000-class PyTorch weights, as timm assumes).
fn load(a: &EvalArgs) -> Result<Loaded> {
    let precision = a.precision.get()?;
    let device = effnet::parse_device(&a.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    let spec = a.model.weights_spec();
    let pre = effnet::load_pretrained(&spec.parse()?, a.model.model.as_deref(), &device)
        .with_context(|| format!("loading {spec}"))?;
    let classes = pre.config.num_classes;
    let imported = pre.source.starts_with("imported");
    let labels = (pre.labels.clone())
        .filter(|l| l.len() == classes)
        .or_else(|| (imported && classes == 1000).then(effnet::imagenet_labels));
    // Counted before BatchNorm is folded away, as timm counts them.
    let params = pre.model.num_trainable_params();
    let c = choose_engine(
        Classifier::from_pretrained(pre, &device),
        precision,
        a.engine,
    )?;
    let p = a.preprocess.apply(c.preprocess().clone())?;
    Ok(Loaded {
        classifier: c.with_preprocess(p),
        labels,
        params,
    })
}

impl EvalArgs {
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
                    self.model.weights_spec()
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
        let Loaded {
            classifier: c,
            labels,
            params,
        } = load(self)?;
        let (cfg, p) = (c.config(), c.preprocess());
        effnet_model::check_fits(
            cfg,
            self.batch_size,
            p.crop,
            effnet_model::Workload::Inference,
        )?;
        let ds = self.dataset(labels.as_deref(), cfg.num_classes)?;
        for w in ds.unreadable_warnings() {
            eprintln!("{w}");
        }
        let eval = Evaluation {
            ds: &ds,
            pre: p,
            batch_size: self.batch_size,
            workers: self.workers,
            classes: cfg.num_classes,
        };
        let logits = &mut |x: Vec<f32>, b: usize, s: usize| Ok(c.logits_values(x, b, s)?);
        let k = effnet_train::evaluate_with(&eval, logits, &mut Silent, (0, "eval"))?;
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        Ok(EvalResult {
            model: cfg.name.clone(),
            top1: r(k.top1_pct()),
            top1_err: r(100.0 - k.top1_pct()),
            top5: r(k.top5_pct()),
            top5_err: r(100.0 - k.top5_pct()),
            param_count: (params as f64 / 1e4).round() / 100.0,
            img_size: p.crop,
            crop_pct: r(p.crop_pct()),
            interpolation: p.interpolation.to_string(),
            images: ds.len(),
            unreadable_files: ds.unreadable_count(),
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
