//! `effnet infer`: top-k classes for image files and folders, as text, JSON or CSV.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use effnet::{Classifier, Device, EfficientNetConfig, Interpolation, Preprocess};
use effnet_data::{DataError, collect_images, load_rgb};
use effnet_model::{import_pytorch, weights::default_preprocess};
use image::RgbImage;

/// Overrides of the preprocessing stored with the weights.
#[derive(Args, Clone, Default)]
pub struct PreprocessArgs {
    /// Input (crop) size in pixels; the resize keeps the same crop fraction.
    #[arg(long)]
    pub size: Option<usize>,
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
    /// Applies the overrides to `base`, rejecting impossible values.
    pub fn apply(&self, mut p: Preprocess) -> anyhow::Result<Preprocess> {
        if let Some(size) = self.size {
            if size == 0 {
                bail!("--size must be positive");
            }
            let pct = p.crop_pct();
            p.crop = size;
            p.resize = ((size as f64 / pct).floor() as usize).max(size);
        }
        if let Some(pct) = self.crop_pct {
            if !(pct > 0.0 && pct <= 1.0) {
                bail!("--crop-pct must be in (0, 1], got {pct}");
            }
            p = p.with_crop_pct(pct);
        }
        if let Some(i) = self.interpolation {
            p.interpolation = i;
        }
        if let Some(m) = &self.mean {
            p.mean = triple(m, "mean")?;
        }
        if let Some(s) = &self.std {
            p.std = triple(s, "std")?;
            if p.std.iter().any(|s| *s <= 0.0) {
                bail!("--std values must be positive");
            }
        }
        Ok(p)
    }
}

/// Output format.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// `file: label 39.5%, label 35.5%, ...`
    Text,
    /// A JSON array of records (timm's inference.py shape).
    Json,
    /// `filename,label_0..label_{k-1},prob_0..prob_{k-1}` (timm's inference.py shape).
    Csv,
}

/// Arguments of `effnet infer`.
#[derive(Args)]
pub struct InferArgs {
    /// Image files and/or folders (searched recursively for jpg, jpeg, png, webp, bmp).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub topk: usize,
    /// Architecture preset or model TOML; needed with PyTorch weights, checked against .bpk ones.
    #[arg(long)]
    pub model: Option<String>,
    /// Weights: effnet .bpk, or PyTorch .pth/.safetensors (with --model). Default: bundled Lite0.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Class names, one per line (default: from the weights, or ImageNet's for 1000 classes).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Device: cpu, wgpu or cuda (GPU backends when compiled in).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Inference engine: native (effnet's CPU executor; the default on cpu) or burn.
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write results to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// Builds the classifier the arguments ask for.
pub fn load_classifier(
    model: Option<&str>,
    weights: Option<&Path>,
    device: &Device,
) -> anyhow::Result<Classifier> {
    let Some(weights) = weights else {
        if let Some(m) = model {
            let cfg = EfficientNetConfig::from_name_or_file(m)?;
            if cfg.name != "efficientnet_lite0" {
                bail!(
                    "--model {m} needs --weights: only efficientnet_lite0 weights are bundled \
                     (import others with `effnet import`)"
                );
            }
        }
        return Ok(Classifier::bundled(device)?);
    };
    let ext = weights
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "bpk" || ext.is_empty() {
        let c = Classifier::from_file(weights, device)?;
        if let Some(m) = model {
            let want = EfficientNetConfig::from_name_or_file(m)?;
            if want.name != c.config().name {
                bail!(
                    "{}: weights are for model '{}', not '{}'",
                    weights.display(),
                    c.config().name,
                    want.name
                );
            }
        }
        return Ok(c);
    }
    let Some(m) = model else {
        bail!(
            "{}: PyTorch weights need --model <preset or TOML> to know the architecture",
            weights.display()
        );
    };
    let cfg = EfficientNetConfig::from_name_or_file(m)?;
    let imported = import_pytorch(weights, &cfg, device)?;
    let pre = default_preprocess(&imported.config);
    let labels = effnet::default_labels(imported.config.num_classes);
    Ok(Classifier::new(
        imported.model,
        imported.config,
        pre,
        labels,
        device,
    ))
}

/// `--engine` of `infer` and `bench`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum EngineArg {
    /// effnet's dedicated CPU executor (crate effnet-cpu); cpu device only.
    Native,
    /// burn's forward (any device).
    Burn,
}

/// Applies `--engine` (absent: native on the cpu, burn elsewhere).
pub fn choose_engine(c: Classifier, engine: Option<EngineArg>) -> anyhow::Result<Classifier> {
    let engine = match engine {
        None => effnet::Engine::Auto,
        Some(EngineArg::Native) => effnet::Engine::Native,
        Some(EngineArg::Burn) => effnet::Engine::Burn,
    };
    c.with_engine(engine)
        .map_err(|e| anyhow::anyhow!("--engine native: {e}"))
}

/// Runs `effnet infer`.
pub fn run(a: InferArgs) -> anyhow::Result<ExitCode> {
    if a.topk == 0 || a.batch == 0 {
        bail!("--topk and --batch must be at least 1");
    }
    let device = effnet::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let mut classifier = load_classifier(a.model.as_deref(), a.weights.as_deref(), &device)?;
    classifier = choose_engine(classifier, a.engine)?;
    let pre = a.preprocess.apply(classifier.preprocess().clone())?;
    classifier = classifier.with_preprocess(pre);
    if let Some(path) = &a.labels {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read labels", path.display()))?;
        let labels: Vec<String> = text.lines().map(str::to_string).collect();
        if labels.len() != classifier.config().num_classes {
            bail!(
                "{}: {} labels for a model with {} classes",
                path.display(),
                labels.len(),
                classifier.config().num_classes
            );
        }
        classifier = classifier.with_labels(labels);
    }
    let topk = a.topk.min(classifier.config().num_classes);

    let (files, listing_errors) = collect_images(&a.paths);
    for e in &listing_errors {
        eprintln!("error: {e}");
    }
    let mut failed = listing_errors.len();
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("{}: cannot create", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = Writer::new(a.format, topk);
    writer.begin(&mut out)?;
    let bar = progress(files.len());
    for chunk in files.chunks(a.batch) {
        let loaded: Vec<Result<RgbImage, DataError>> = {
            use rayon::prelude::*;
            chunk.par_iter().map(|p| load_rgb(p)).collect()
        };
        let mut good_paths = Vec::new();
        let mut images = Vec::new();
        for (p, r) in chunk.iter().zip(loaded) {
            match r {
                Ok(img) => {
                    good_paths.push(p);
                    images.push(img);
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("error: {e}"));
                    failed += 1;
                }
            }
        }
        let preds = classifier.predict_batch(&images, topk);
        for (p, pred) in good_paths.into_iter().zip(preds) {
            writer.row(&mut out, p, &pred)?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    writer.end(&mut out)?;
    out.flush()?;
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        let total = files.len() + listing_errors.len();
        eprintln!("error: {failed} of {total} inputs failed");
        Ok(ExitCode::FAILURE)
    }
}

fn progress(n: usize) -> indicatif::ProgressBar {
    if n < 64 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images [{elapsed_precise} < {eta}, {per_sec}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Streams results in the chosen format.
struct Writer {
    format: Format,
    topk: usize,
    first: bool,
}

impl Writer {
    fn new(format: Format, topk: usize) -> Self {
        Self {
            format,
            topk,
            first: true,
        }
    }

    fn begin(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        match self.format {
            Format::Json => writeln!(out, "["),
            Format::Csv => {
                let mut cols = vec!["filename".to_string()];
                cols.extend((0..self.topk).map(|i| format!("label_{i}")));
                cols.extend((0..self.topk).map(|i| format!("prob_{i}")));
                cols.extend((0..self.topk).map(|i| format!("index_{i}")));
                writeln!(out, "{}", cols.join(","))
            }
            Format::Text => Ok(()),
        }
    }

    fn row(
        &mut self,
        out: &mut dyn Write,
        path: &Path,
        preds: &[effnet::Prediction],
    ) -> std::io::Result<()> {
        let name = path.display().to_string();
        match self.format {
            Format::Text => {
                let items: Vec<String> = preds
                    .iter()
                    .map(|p| format!("{} {:.1}%", p.label, 100.0 * p.prob))
                    .collect();
                writeln!(out, "{name}: {}", items.join(", "))
            }
            Format::Csv => {
                let mut cols = vec![csv_field(&name)];
                cols.extend(preds.iter().map(|p| csv_field(&p.label)));
                cols.extend(preds.iter().map(|p| format!("{:.6}", p.prob)));
                cols.extend(preds.iter().map(|p| p.index.to_string()));
                writeln!(out, "{}", cols.join(","))
            }
            Format::Json => {
                let mut rec = serde_json::Map::new();
                rec.insert("filename".into(), name.into());
                for (i, p) in preds.iter().enumerate() {
                    rec.insert(format!("label_{i}"), p.label.clone().into());
                    rec.insert(format!("prob_{i}"), serde_json::json!(p.prob));
                    rec.insert(format!("index_{i}"), p.index.into());
                }
                let sep = if self.first { "" } else { ",\n" };
                self.first = false;
                write!(out, "{sep}  {}", serde_json::Value::Object(rec))
            }
        }
    }

    fn end(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        match self.format {
            Format::Json => writeln!(out, "\n]"),
            _ => Ok(()),
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
