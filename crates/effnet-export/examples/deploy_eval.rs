//! Exports a model as f32 and int8 TFLite and ONNX (QDQ), runs every file in its runtime
//! (LiteRT, ONNX Runtime; through scripts/tflite_run.py and scripts/onnx_run.py) on a set of
//! images, and prints a table: top-1 accuracy (on a labelled folder), top-1 agreement with
//! effnet's f32 logits, largest logit difference, and the file sizes.
//!
//! ```sh
//! # bundled Lite0 on the bundled photos (agreement only), calibrated on the same photos
//! cargo run --release -p effnet-export --example deploy_eval
//! # a trained digits model on its validation set, calibrated on 200 training images
//! cargo run --release -p effnet-export --example deploy_eval -- \
//!     --weights runs/tiny/best.bpk --val data/digits/val --calib data/digits/train
//! # V2-S with random weights (for speed runs: scripts/bench_deploy_cpu.sh), files only
//! cargo run --release -p effnet-export --example deploy_eval -- \
//!     --random efficientnetv2_s --out /tmp/v2s --no-eval
//! ```
//!
//! Options: `--weights W` (.bpk/.pth/.safetensors; `--model M` with PyTorch files), `--random
//! ARCH`, `--val DIR` (ImageNet folder layout; folder names are the class names, sorted, unless
//! the weights carry labels), `--calib DIR` (default: the evaluation images), `--calib-images N`
//! (200), `--size S`, `--out DIR` (keeps the files; default a temporary folder), `--no-eval`,
//! `--per-tensor` (int8 weights with one scale per layer instead of per output channel),
//! `--calib-method minmax|percentile[:P]|mse` (default minmax, as the tables in docs/deploy.md
//! were made; the CLI's default is mse).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::*;
use effnet_cpu::Layout;
use effnet_cpu::quant::calib::Calibrator;
use effnet_cpu::quant::{RangeMethod, WeightScales};
use effnet_export::{
    BatchSize, Int8Options, IoType, OnnxOptions, TfliteOptions, write_onnx, write_tflite,
};
use effnet_model::weights::default_preprocess;
use effnet_model::{EfficientNetConfig, Preprocess, Pretrained};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The model to export: weights, bundled Lite0, or an architecture with seeded random weights.
fn load(args: &[String], device: &Device) -> Result<Pretrained> {
    if let Some(arch) = arg(args, "--random") {
        let config = EfficientNetConfig::from_name_or_file(&arch)?;
        device.seed(0);
        let model = config.init(device);
        return Ok(Pretrained {
            preprocess: default_preprocess(&config),
            model,
            config,
            source: format!("{arch} (random weights, seed 0)"),
            labels: None,
            int8: None,
        });
    }
    let spec = arg(args, "--weights").unwrap_or_else(|| "bundled".into());
    let model = arg(args, "--model");
    Ok(effnet::load_pretrained(
        &spec.parse()?,
        model.as_deref(),
        device,
    )?)
}

/// Labelled images: every image under `dir` with its class index (`None` without labels).
fn images(dir: &Path, pre: &Pretrained) -> Result<Vec<(PathBuf, Option<usize>)>> {
    let (files, errors) = effnet::collect_images(&[dir.to_path_buf()]);
    if let Some(e) = errors.into_iter().next() {
        return Err(e.into());
    }
    let mut classes: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Ok(files.into_iter().map(|f| (f, None)).collect());
    }
    let names = pre.labels.clone().unwrap_or(classes);
    files
        .into_iter()
        .map(|f| {
            let class = f
                .strip_prefix(dir)?
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            let index = names.iter().position(|n| *n == class);
            Ok((f, index))
        })
        .collect()
}

/// Preprocessed NCHW values of `files`.
fn batch(files: &[PathBuf], p: &Preprocess) -> Result<(Vec<f32>, [usize; 4])> {
    let per = 3 * p.crop * p.crop;
    let mut buf = vec![0f32; per * files.len()];
    for (slot, path) in buf.chunks_mut(per).zip(files) {
        p.apply_into(&effnet::load_rgb(path)?, slot);
    }
    Ok((buf, [files.len(), 3, p.crop, p.crop]))
}

fn top1(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|r| {
            (0..r.len())
                .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                .unwrap_or(0)
        })
        .collect()
}

/// Runs `script` (a peer runner) on the raw input file; returns the logits.
fn run_peer(script: &str, model: &Path, input: &Path, shape: [usize; 4]) -> Result<Vec<f32>> {
    let output = model.with_extension("logits.f32");
    let shape = shape.map(|d| d.to_string()).join(",");
    let out = Command::new("python3")
        .arg(root().join("scripts").join(script))
        .args([model, input])
        .arg(shape)
        .arg(&output)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "{script} {}: {}",
            model.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(std::fs::read(&output)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let device = Device::flex();
    let pre = load(&args, &device)?;
    let size = match arg(&args, "--size") {
        Some(s) => s.parse()?,
        None => pre.preprocess.crop,
    };
    let preprocess = Preprocess {
        crop: size,
        ..pre.preprocess.clone()
    }
    .with_crop_pct(pre.preprocess.crop_pct());
    let eval_dir = arg(&args, "--val")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/data/photos"));
    let eval = images(&eval_dir, &pre)?;
    let calib_dir = arg(&args, "--calib")
        .map(PathBuf::from)
        .unwrap_or_else(|| eval_dir.clone());
    let calib_n: usize = arg(&args, "--calib-images").map_or(Ok(200), |s| s.parse())?;
    let mut calib: Vec<PathBuf> = images(&calib_dir, &pre)?
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    // Spread the calibration images over the classes (the walk is sorted by folder).
    let step = calib.len().div_ceil(calib_n).max(1);
    calib = calib.into_iter().step_by(step).take(calib_n).collect();

    let tmp = tempfile_dir()?;
    let out = arg(&args, "--out").map_or(tmp.clone(), PathBuf::from);
    std::fs::create_dir_all(&out)?;
    let name = pre.config.name.clone();
    let folded = pre.model.clone().fold_batchnorm();
    // effnet's own calibrator, as `effnet export --precision int8 --calib` runs it.
    let per_tensor = args.iter().any(|a| a == "--per-tensor");
    let method: RangeMethod = match arg(&args, "--calib-method") {
        Some(m) => m.parse()?,
        None => RangeMethod::MinMax,
    };
    let scales = if per_tensor {
        WeightScales::PerTensor
    } else {
        WeightScales::PerChannel
    };
    let plan = effnet_model::native::plan(&folded, &pre.config)?;
    let mut cal = Calibrator::new(plan)?.weight_scales(scales);
    let p = &pre.preprocess;
    for chunk in calib.chunks(16) {
        let (values, shape) = batch(chunk, p)?;
        cal.observe(&values, shape[0], p.crop, p.crop, Layout::Nchw)?;
    }
    let int8 = Int8Options {
        model: cal.finish(method)?,
        input: IoType::Float32,
        output: IoType::Float32,
    };
    let mut files = Vec::new();
    for quant in [None, Some(int8)] {
        let tag = match (&quant, per_tensor) {
            (None, _) => "f32",
            (Some(_), false) => "int8",
            (Some(_), true) => "int8-per-tensor",
        };
        let tflite = out.join(format!("{name}_{size}_{tag}.tflite"));
        let options = TfliteOptions {
            batch: BatchSize::Dynamic,
            input_size: Some(size),
            labels: None,
            int8: quant.clone(),
        };
        write_tflite(&tflite, &pre, &options)?;
        files.push(("LiteRT", tag, tflite));
        let onnx = out.join(format!("{name}_{size}_{tag}.onnx"));
        let options = OnnxOptions {
            batch: BatchSize::Dynamic,
            input_size: Some(size),
            int8: quant,
            ..OnnxOptions::default()
        };
        write_onnx(&onnx, &pre, &options)?;
        files.push(("ONNX Runtime", tag, onnx));
    }
    println!(
        "{name} at {size}: calibrated ({method}) on {} images of {}; {} evaluation images from {}",
        calib.len(),
        calib_dir.display(),
        eval.len(),
        eval_dir.display()
    );
    if args.iter().any(|a| a == "--no-eval") {
        for (_, _, f) in &files {
            println!(
                "{} ({:.2} MB)",
                f.display(),
                std::fs::metadata(f)?.len() as f64 / 1e6
            );
        }
        return Ok(());
    }
    let paths: Vec<PathBuf> = eval.iter().map(|(f, _)| f.clone()).collect();
    let (values, shape) = batch(&paths, &preprocess)?;
    let input = tmp.join("eval.f32");
    std::fs::write(
        &input,
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let x = Tensor::<4>::from_data(TensorData::new(values, shape), &device);
    let classes = pre.config.num_classes;
    let ours = folded
        .forward(x)
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let ours_top1 = top1(&ours, classes);
    let labels: Vec<Option<usize>> = eval.iter().map(|(_, l)| *l).collect();
    let labelled = labels.iter().all(Option::is_some);
    let accuracy = |pred: &[usize]| {
        let right = pred
            .iter()
            .zip(&labels)
            .filter(|(p, l)| Some(**p) == **l)
            .count();
        format!("{:.2} %", 100.0 * right as f64 / pred.len() as f64)
    };
    println!();
    println!(
        "| engine | precision | top-1 | top-1 = effnet f32 | max \\|logit - effnet f32\\| | file |"
    );
    println!("|---|---|---|---|---|---|");
    let na = "n/a (no labels)".to_string();
    println!(
        "| effnet (burn) | f32 | {} | {}/{} | 0 | |",
        if labelled {
            accuracy(&ours_top1)
        } else {
            na.clone()
        },
        shape[0],
        shape[0]
    );
    for (engine, tag, file) in &files {
        let script = if engine.starts_with("LiteRT") {
            "tflite_run.py"
        } else {
            "onnx_run.py"
        };
        let theirs = run_peer(script, file, &input, shape)?;
        let t1 = top1(&theirs, classes);
        let agree = t1.iter().zip(&ours_top1).filter(|(a, b)| a == b).count();
        let diff = theirs
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "| {engine} | {tag} | {} | {agree}/{} | {diff:.2e} | {:.2} MB |",
            if labelled { accuracy(&t1) } else { na.clone() },
            shape[0],
            std::fs::metadata(file)?.len() as f64 / 1e6
        );
    }
    Ok(())
}

/// A fresh folder under the system temp dir for this run's inputs and outputs.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("effnet-deploy-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
