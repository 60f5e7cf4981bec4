//! `effnet eval`: top-1/top-5 of weights (`.bpk`, or PyTorch `.pth`/`.safetensors` with
//! `--model`) on a labelled folder tree, as timm's `validate.py` reports them. Class folders are
//! matched with the model's classes by WordNet id (`n02123159/`), by class name (`tiger cat/`),
//! through timm's `--class-map`, or by sorted position (`--positional-labels`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use effnet::{ClassMatcher, Classifier, FolderMatch};
use effnet_data::ImageFolder;
use effnet_data::dataset::class_dirs;
use effnet_train::{Evaluation, Reporter};
use serde::Serialize;

use crate::args::{DecodeArgs, ModelArgs, PreprocessArgs, RuntimeArgs};

/// Format of the result record (timm's `--results-format`).
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
    /// Image folder (`<class>/<images>`), or a dataset root with a `val/` split.
    #[arg(value_name = "DATA", required_unless_present = "data_flag")]
    pub data: Option<PathBuf>,
    /// The image folder, as a flag (timm's `--data-dir`).
    #[arg(
        long = "data",
        alias = "data-dir",
        value_name = "DIR",
        conflicts_with = "data"
    )]
    pub data_flag: Option<PathBuf>,
    /// Weights (`--weights`/`--checkpoint`: .bpk such as a run's best.bpk, a run folder,
    /// .pth/.safetensors with -m, hf-hub:, bundled) and architecture (`-m/--model`).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images per forward pass.
    #[arg(short = 'b', long, visible_alias = "batch", default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Overrides of the weights' preprocessing (same flags as `infer`).
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    /// Also write the result record to this file (`.csv`: CSV, else JSON, unless
    /// --results-format says).
    #[arg(short = 'o', long = "output", visible_alias = "results-file")]
    pub output: Option<PathBuf>,
    /// Format of the result record (stdout and -o); default: -o's extension, else json.
    #[arg(long, visible_alias = "format", value_enum)]
    pub results_format: Option<ResultsFormat>,
    /// timm's class map: one class folder name per line, line N (from 0) naming class N;
    /// folders not in it are skipped.
    #[arg(long, value_name = "FILE", conflicts_with = "positional_labels")]
    pub class_map: Option<PathBuf>,
    /// Label class folders by their sorted position instead of matching their names with the
    /// model's classes (for weights without names, or folders named differently).
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
    /// Whether the weights name their classes (else their labels are `class_N` placeholders).
    named: bool,
    /// Trainable parameters of the unfolded model.
    params: usize,
}

/// The weights as a classifier (ImageNet's names for 1000-class weights without any, as timm
/// assumes).
fn load(a: &EvalArgs) -> Result<Loaded> {
    let device = a.runtime.device()?;
    let spec = a.model.weights_spec();
    let pre = effnet::load_pretrained(&spec.parse()?, a.model.model.as_deref(), &device)
        .with_context(|| format!("loading {spec}"))?;
    let classes = pre.config.num_classes;
    let named = pre.labels.as_ref().is_some_and(|l| l.len() == classes) || classes == 1000;
    // Counted before BatchNorm is folded away, as timm counts them.
    let params = pre.model.num_trainable_params();
    let c = a
        .runtime
        .configure(Classifier::from_pretrained(pre, &device))?;
    let p = a.preprocess.apply(c.preprocess().clone())?;
    Ok(Loaded {
        classifier: c.with_preprocess(p),
        named,
        params,
    })
}

/// The folder the images are in: `DATA/val` when there is one, else `DATA`.
fn eval_root(data: &Path) -> PathBuf {
    if data.join("val").is_dir() {
        data.join("val")
    } else {
        data.to_path_buf()
    }
}

/// Warnings of the evaluation (decode failures), on stderr.
struct Warnings {
    skipped: usize,
}

impl Reporter for Warnings {
    fn warning(&mut self, message: &str) {
        self.skipped += 1;
        eprintln!("warning: {message}");
    }
}

impl EvalArgs {
    fn data(&self) -> &Path {
        self.data
            .as_deref()
            .or(self.data_flag.as_deref())
            .unwrap_or(Path::new("."))
    }

    /// The evaluation folder, its class folders matched with the model's classes.
    fn dataset(&self, c: &Classifier, named: bool) -> Result<ImageFolder> {
        let root = eval_root(self.data());
        let labels = c.labels();
        let classes = labels.len();
        if self.positional_labels {
            return positional(&root, classes);
        }
        let folders = class_dirs(&root)?;
        if folders.is_empty() {
            bail!(
                "{}: no class folders (expected <root>/<class>/<images>)",
                root.display()
            );
        }
        let mapped = match &self.class_map {
            Some(path) => by_class_map(path, &folders, classes)?,
            None if !named => bail!(
                "{}: the weights carry no class names to match the folder names against; pass \
                 --class-map FILE or --positional-labels to label folders by sorted position",
                self.model.weights_spec()
            ),
            None => by_name(&root, &folders, labels)?,
        };
        Ok(ImageFolder::scan_mapped(&root, labels.to_vec(), &mapped)?)
    }

    /// Evaluates and returns the result (what `run` prints).
    pub fn evaluate(&self) -> Result<EvalResult> {
        if self.batch_size == 0 {
            bail!("--batch-size must be >= 1");
        }
        self.decode.apply()?;
        self.runtime.set_threads()?;
        let Loaded {
            classifier: c,
            named,
            params,
        } = load(self)?;
        let (cfg, p) = (c.config(), c.preprocess());
        effnet_model::check_fits(
            cfg,
            self.batch_size,
            p.crop,
            effnet_model::Workload::Inference,
        )?;
        let ds = self.dataset(&c, named)?;
        for w in ds.unreadable_warnings() {
            eprintln!("{w}");
        }
        let eval = Evaluation {
            ds: &ds,
            pre: p,
            batch_size: self.batch_size,
            workers: self.runtime.loader_threads(),
            classes: cfg.num_classes,
        };
        let logits = &mut |x: Vec<f32>, b: usize, s: usize| Ok(c.logits_values(x, b, s)?);
        let mut warnings = Warnings { skipped: 0 };
        let k = effnet_train::evaluate_with(&eval, logits, &mut warnings, (0, "eval"))?;
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
            images: k.count,
            unreadable_files: ds.unreadable_count() + warnings.skipped,
        })
    }

    /// The format of the record: `--results-format`, else `-o`'s extension, else JSON.
    fn format(&self) -> ResultsFormat {
        let csv = |p: &PathBuf| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        match (self.results_format, &self.output) {
            (Some(f), _) => f,
            (None, Some(p)) if csv(p) => ResultsFormat::Csv,
            _ => ResultsFormat::Json,
        }
    }
}

/// Folders labelled by sorted position, with a warning when their number is not the model's.
fn positional(root: &Path, classes: usize) -> Result<ImageFolder> {
    let ds = ImageFolder::scan(root)?;
    let n = ds.classes.len();
    if n > classes {
        bail!(
            "{} has {n} class folders but the model predicts {classes} classes \
             (--positional-labels labels folder i as class i)",
            root.display()
        );
    }
    if n != classes {
        eprintln!(
            "warning: --positional-labels: {n} folders become classes 0..{} of the model's \
             {classes}; unless the weights were trained on exactly these folders, match them by \
             name instead (WordNet ids or class names) or pass --class-map",
            n - 1
        );
    }
    Ok(ds)
}

/// Folders matched by WordNet id or class name; an unknown or ambiguous name is an error.
fn by_name(root: &Path, folders: &[String], labels: &[String]) -> Result<Vec<(String, usize)>> {
    let matcher = ClassMatcher::new(labels);
    let mut mapped = Vec::new();
    for f in folders {
        match matcher.find(f) {
            FolderMatch::Class(i) => mapped.push((f.clone(), i)),
            FolderMatch::Ambiguous(many) => {
                let names: Vec<String> =
                    many.iter().map(|&i| format!("{i} {}", labels[i])).collect();
                bail!(
                    "{}: folder '{f}' names several classes ({}); name it by WordNet id or \
                     pass --class-map",
                    root.display(),
                    names.join(", ")
                );
            }
            FolderMatch::Unknown => {
                let known: Vec<&str> = labels.iter().take(5).map(String::as_str).collect();
                let ids = if effnet::imagenet_class_ids(labels).is_some() {
                    "WordNet id (n02123159) or "
                } else {
                    ""
                };
                bail!(
                    "{}: folder '{f}' is not a class of the weights by {ids}name (their classes: \
                     {}{}); pass --class-map FILE or --positional-labels",
                    root.display(),
                    known.join(", "),
                    if labels.len() > 5 { ", ..." } else { "" }
                );
            }
        }
    }
    Ok(mapped)
}

/// Folders labelled by timm's class map; folders it does not list are skipped with a warning.
fn by_class_map(path: &Path, folders: &[String], classes: usize) -> Result<Vec<(String, usize)>> {
    let map = effnet::read_class_map(path)?;
    if let Some((name, i)) = map.iter().find(|(_, i)| *i >= classes) {
        bail!(
            "{}: '{name}' is class {i} but the model predicts {classes} classes",
            path.display()
        );
    }
    let mut mapped = Vec::new();
    let mut skipped = Vec::new();
    for f in folders {
        match map.iter().find(|(name, _)| name == f) {
            Some((_, i)) => mapped.push((f.clone(), *i)),
            None => skipped.push(f.as_str()),
        }
    }
    if mapped.is_empty() {
        bail!(
            "--class-map {}: none of the class folders is in it (e.g. '{}')",
            path.display(),
            folders[0]
        );
    }
    if !skipped.is_empty() {
        eprintln!(
            "warning: --class-map {}: {} folder(s) not in the map are skipped: {}",
            path.display(),
            skipped.len(),
            skipped.join(", ")
        );
    }
    Ok(mapped)
}

/// Runs `effnet eval`: prints ` * Acc@1 ... Acc@5 ...` and the result record.
pub fn run(a: EvalArgs) -> Result<ExitCode> {
    let res = a.evaluate()?;
    println!(
        " * Acc@1 {:.3} ({:.3}) Acc@5 {:.3} ({:.3})",
        res.top1, res.top1_err, res.top5, res.top5_err
    );
    let text = match a.format() {
        ResultsFormat::Json => serde_json::to_string_pretty(&res)? + "\n",
        ResultsFormat::Csv => res.csv(),
    };
    print!("--result\n{text}");
    if let Some(f) = &a.output {
        effnet_data::fsutil::write_atomic(f, text.as_bytes())
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
