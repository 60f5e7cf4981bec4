//! What the runtime parity tests share: the bundled photos, the parity fixtures, effnet's own
//! logits, and running a Python peer (ONNX Runtime, LiteRT) on raw f32 files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::*;
use effnet_model::weights::default_preprocess;
use effnet_model::{EfficientNetConfig, Preprocess, Pretrained, import_pytorch};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn photos() -> Vec<PathBuf> {
    ["chelsea.png", "china.jpg", "coffee.png", "flower.jpg"]
        .iter()
        .map(|f| root().join("tests/data/photos").join(f))
        .collect()
}

/// The photos preprocessed as `[N, 3, S, S]` values.
pub fn photo_batch(pre: &Preprocess) -> (Vec<f32>, [usize; 4]) {
    let per = 3 * pre.crop * pre.crop;
    let paths = photos();
    let mut buf = vec![0f32; per * paths.len()];
    for (slot, path) in buf.chunks_mut(per).zip(&paths) {
        let img = effnet::load_rgb(path).expect("photo");
        pre.apply_into(&img, slot);
    }
    (buf, [paths.len(), 3, pre.crop, pre.crop])
}

/// Whether `python3` can import `modules`; `Err(reason)` when the variable `skip_var` asks to
/// skip, a panic naming the install command otherwise.
pub fn python_or_skip(modules: &str, install: &str, skip_var: &str) -> Result<(), String> {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    match std::env::var(skip_var) {
        Ok(reason) => Err(reason),
        Err(_) => {
            panic!("python3 with {modules} is needed ({install}); set {skip_var}=<reason> to skip")
        }
    }
}

/// Runs `script MODEL INPUT.f32 N,C,H,W OUTPUT.f32 [extra]` on `input` and returns its output.
pub fn run_peer(
    script: &str,
    model: &Path,
    input: &[f32],
    shape: [usize; 4],
    extra: &[&str],
) -> Vec<f32> {
    let dir = model.parent().expect("model in a folder");
    let input_path = dir.join("input.f32");
    let output_path = dir.join("output.f32");
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input_path, bytes).expect("write input");
    let shape = shape.map(|d| d.to_string()).join(",");
    let out = Command::new("python3")
        .arg(root().join("scripts").join(script))
        .args([model, &input_path])
        .arg(shape)
        .arg(&output_path)
        .args(extra)
        .output()
        .expect("run python3");
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed: {log}");
    println!("{}", log.trim());
    std::fs::read(&output_path)
        .expect("read output")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// effnet's own logits, as `effnet infer` computes them (BatchNorm folded).
pub fn effnet_logits(pre: &Pretrained, input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let device = Device::flex();
    let x = Tensor::<4>::from_data(TensorData::new(input.to_vec(), shape), &device);
    let model = pre.model.clone().fold_batchnorm();
    model
        .forward(x)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 logits")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit count");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Index of the largest logit of each row of `classes`.
pub fn top1(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .expect("classes")
        })
        .collect()
}

pub fn bundled() -> Pretrained {
    effnet::bundled_pretrained(&Device::flex()).expect("bundled weights")
}

pub fn parity_fixture(name: &str, weights: &str) -> Pretrained {
    let text = std::fs::read_to_string(root().join(format!("tests/data/parity/{name}.toml")))
        .expect("fixture config");
    let cfg = EfficientNetConfig::from_toml(&text).expect("config");
    let imported = import_pytorch(
        &root().join("tests/data/parity").join(weights),
        &cfg,
        &Device::flex(),
    )
    .expect("fixture weights");
    Pretrained {
        preprocess: default_preprocess(&imported.config),
        model: imported.model,
        config: imported.config,
        source: name.into(),
        labels: None,
        int8: None,
    }
}

/// effnet's int8 model of `pre`, calibrated (min/max) on the bundled photos with effnet's own
/// calibrator (what `--precision int8 --calib` runs).
pub fn photo_quant(pre: &Pretrained) -> effnet_cpu::quant::QuantModel {
    use effnet_cpu::quant::{RangeMethod, calib::Calibrator};
    let folded = pre.model.clone().fold_batchnorm();
    let plan = effnet_model::native::plan(&folded, &pre.config).expect("native plan");
    let mut cal = Calibrator::new(plan).expect("calibrator");
    let (input, [n, _, h, w]) = photo_batch(&pre.preprocess);
    cal.observe(&input, n, h, w, effnet_cpu::Layout::Nchw)
        .expect("calibration");
    cal.finish(RangeMethod::MinMax).expect("int8 model")
}
