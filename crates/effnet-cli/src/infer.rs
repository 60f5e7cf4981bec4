//! `effnet infer`: top-k classes for image files and folders, as text, JSON or CSV.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use effnet::{Classifier, Device};
use effnet_data::{DataError, collect_images, load_rgb};
use image::RgbImage;

use crate::args::{DecodeArgs, ModelArgs, PreprocessArgs, RuntimeArgs};

/// Output format (timm's `--results-format` names, plus `text`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// `file: label 39.5%, label 35.5%, ...`
    Text,
    /// `{"file": {"index": [...], "label": [...], "prob": [...]}}` (timm's `json`, orient=index).
    Json,
    /// One `{"filename": ..., "index": [...], "label": [...], "prob": [...]}` per line (timm's
    /// `json-records`).
    JsonRecords,
    /// `{"columns": [...], "data": [[...], ...]}` (timm's `json-split`).
    JsonSplit,
    /// `filename,index_0..,label_0..,prob_0..` (timm's csv with `--results-separate-col`).
    Csv,
}

impl Format {
    /// The format an output file's extension implies: `.csv`, `.json`, `.jsonl`; else text.
    pub fn from_extension(path: &Path) -> Self {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Self::Csv,
            "json" => Self::Json,
            "jsonl" | "ndjson" => Self::JsonRecords,
            _ => Self::Text,
        }
    }
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
    #[command(flatten)]
    pub model: ModelArgs,
    /// Class names, one per line (default: from the weights, or ImageNet's for 1000 classes).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(short = 'b', long, visible_alias = "batch", default_value_t = 8)]
    pub batch_size: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Output format; default: from the -o extension (.csv, .json, .jsonl), else text.
    #[arg(long, visible_alias = "results-format", value_enum)]
    pub format: Option<Format>,
    /// Write results to this file instead of standard output.
    #[arg(long, short, visible_alias = "results-file")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

/// Builds the classifier the arguments ask for, with the preprocessing and label overrides.
fn classifier(a: &InferArgs, device: &Device) -> anyhow::Result<Classifier> {
    let mut c = Classifier::load(a.model.weights_spec(), a.model.model.as_deref(), device)?;
    let pre = a.preprocess.apply(c.preprocess().clone())?;
    c = c.with_preprocess(pre);
    if let Some(path) = &a.labels {
        let labels = effnet::read_labels(path, Some(c.config().num_classes))?;
        c = c.with_labels(labels);
    }
    Ok(c)
}

/// Runs `effnet infer`.
pub fn run(a: InferArgs) -> anyhow::Result<ExitCode> {
    if a.topk == 0 || a.batch_size == 0 {
        bail!("--topk and --batch-size must be at least 1");
    }
    a.decode.apply()?;
    a.runtime.set_threads()?;
    let device = a.runtime.device()?;
    let classifier = a.runtime.configure(classifier(&a, &device)?)?;
    let topk = a.topk.min(classifier.config().num_classes);

    let (files, listing_errors) = collect_images(&a.paths);
    // Memory for the largest batch actually formed, before any image is decoded.
    effnet_model::check_fits(
        classifier.config(),
        a.batch_size.min(files.len()).max(1),
        classifier.preprocess().crop,
        effnet_model::Workload::Inference,
    )?;
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
    let format = a.format.unwrap_or_else(|| match &a.output {
        Some(path) => Format::from_extension(path),
        None => Format::Text,
    });
    let mut writer = Writer::new(format, topk);
    writer.begin(&mut out)?;
    let bar = progress(files.len());
    for chunk in files.chunks(a.batch_size) {
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
        let preds = classifier.predict_batch(&images, topk)?;
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

/// timm's column names: the class indices, names and probabilities of the top-k.
const COLUMNS: [&str; 4] = ["filename", "index", "label", "prob"];

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
            Format::Json => writeln!(out, "{{"),
            Format::JsonSplit => {
                let columns = serde_json::json!(COLUMNS);
                writeln!(out, "{{\"columns\": {columns},\n\"data\": [")
            }
            Format::Csv => {
                let mut cols = vec![COLUMNS[0].to_string()];
                for name in &COLUMNS[1..] {
                    cols.extend((0..self.topk).map(|i| format!("{name}_{i}")));
                }
                writeln!(out, "{}", cols.join(","))
            }
            Format::Text | Format::JsonRecords => Ok(()),
        }
    }

    fn row(
        &mut self,
        out: &mut dyn Write,
        path: &Path,
        preds: &[effnet::Prediction],
    ) -> std::io::Result<()> {
        let name = path.display().to_string();
        let index: Vec<usize> = preds.iter().map(|p| p.index).collect();
        let label: Vec<&str> = preds.iter().map(|p| p.label.as_str()).collect();
        let prob: Vec<f32> = preds.iter().map(|p| p.prob).collect();
        let sep = if std::mem::replace(&mut self.first, false) {
            ""
        } else {
            ",\n"
        };
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
                cols.extend(index.iter().map(usize::to_string));
                cols.extend(label.iter().map(|l| csv_field(l)));
                cols.extend(prob.iter().map(|p| format!("{p:.6}")));
                writeln!(out, "{}", cols.join(","))
            }
            Format::Json => {
                let key = serde_json::Value::from(name);
                let rec = serde_json::json!({"index": index, "label": label, "prob": prob});
                write!(out, "{sep}  {key}: {rec}")
            }
            Format::JsonRecords => {
                let rec = serde_json::json!({
                    "filename": name, "index": index, "label": label, "prob": prob
                });
                writeln!(out, "{rec}")
            }
            Format::JsonSplit => {
                let row = serde_json::json!([name, index, label, prob]);
                write!(out, "{sep}  {row}")
            }
        }
    }

    fn end(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        match self.format {
            Format::Json => writeln!(out, "\n}}"),
            Format::JsonSplit => writeln!(out, "\n]}}"),
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
