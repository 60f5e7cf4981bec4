//! Post-training int8 quantisation of a (ReLU6 Lite) model through burn 0.22.1's quantization,
//! measured against the f32 model on the bundled photos and, optionally, a labelled val folder.
//!
//! ```sh
//! cargo run --release --example int8_ptq                                  # bundled Lite0, photos
//! cargo run --release --example int8_ptq -- --weights runs/x/best.bpk --val data/digits/val
//! ```
//!
//! Three schemes: burn's documented `Quantizer` (per-tensor symmetric int8 over every parameter,
//! min-max calibration), the same on weights only (biases stay f32), and weights only with one
//! scale per output channel (per-block scales over `[1, d, kh, kw]` blocks, `d` dividing the
//! input channels and at most 255, burn's block-size limit).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param, Quantizer};
use burn::prelude::*;
use burn::tensor::quantization::{Calibration, QuantScheme, QuantValue, ScaleDtype};
use effnet::Classifier;
use effnet::reexports::image;
use effnet_model::{EfficientNet, Pretrained, load_native};

/// Quantises rank >= 2 float parameters (conv and linear weights), leaving biases in f32.
struct WeightQuantizer {
    per_channel: bool,
}

/// Largest divisor of `n` that is at most 255 (burn's `BlockSize` stores `u8` extents).
fn block_extent(n: usize) -> u8 {
    (1..=n.min(255))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1) as u8
}

impl WeightQuantizer {
    fn scheme(&self, dims: &[usize]) -> QuantScheme {
        let base = QuantScheme::default().with_value(QuantValue::Q8S);
        if !self.per_channel {
            return base.per_tensor(ScaleDtype::F32);
        }
        let block: Vec<u8> = match dims {
            // Conv [out, in/groups, kh, kw]: one scale per output channel (and per input slice).
            [_, cin, kh, kw] => vec![1, block_extent(*cin), *kh as u8, *kw as u8],
            // Linear [in, out]: one scale per output column (and per input slice).
            [cin, _] => vec![block_extent(*cin), 1],
            _ => return base.per_tensor(ScaleDtype::F32),
        };
        base.per_block(block, ScaleDtype::F32)
    }
}

impl ModuleMapper for WeightQuantizer {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D < 2 {
            return param;
        }
        param.map(|t| {
            let scheme = self.scheme(&t.dims());
            t.quantize_dynamic(&scheme)
        })
    }
}

fn classifier(model: EfficientNet, pre: &Pretrained, device: &Device) -> Classifier {
    let labels = effnet::default_labels(pre.config.num_classes);
    Classifier::new(
        model,
        pre.config.clone(),
        pre.preprocess.clone(),
        labels,
        device,
    )
}

/// Probabilities of every class for each image.
fn probs(c: &Classifier, images: &[image::RgbImage]) -> Vec<Vec<f32>> {
    let n = c.config().num_classes;
    images
        .chunks(32)
        .flat_map(|chunk| c.predict_batch(chunk, n).unwrap_or_default())
        .map(|preds| {
            let mut row = vec![0f32; n];
            for p in preds {
                row[p.index] = p.prob;
            }
            row
        })
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0)
}

/// Images of `dir/<class>/*` with the class index from the sorted folder names.
fn labelled(dir: &Path) -> Vec<(image::RgbImage, usize)> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("val folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut out = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(class)
            .expect("class folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            out.push((effnet::load_rgb(&f).expect("image"), label));
        }
    }
    out
}

fn report(name: &str, reference: &[Vec<f32>], ours: &[Vec<f32>], truth: Option<&[usize]>) {
    let agree = reference
        .iter()
        .zip(ours)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let max_diff = reference
        .iter()
        .zip(ours)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max);
    let acc = truth.map(|t| {
        let ok = ours.iter().zip(t).filter(|(p, y)| argmax(p) == **y).count();
        format!(
            ", top-1 accuracy {:.2}%",
            100.0 * ok as f64 / t.len() as f64
        )
    });
    println!(
        "  {name:<34} top-1 agrees with f32 on {agree}/{}, max |dp| {max_diff:.4}{}",
        reference.len(),
        acc.unwrap_or_default()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let device = Device::flex();
    let pre = match arg("--weights") {
        Some(w) => load_native(Path::new(w), &device).expect("weights"),
        None => effnet::bundled_pretrained(&device).expect("bundled"),
    };
    let (images, truth): (Vec<image::RgbImage>, Option<Vec<usize>>) = match arg("--val") {
        Some(dir) => {
            let (i, t) = labelled(Path::new(dir)).into_iter().unzip();
            (i, Some(t))
        }
        None => {
            let photos = ["chelsea.png", "china.jpg", "coffee.png", "flower.jpg"];
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/photos");
            (
                photos
                    .iter()
                    .map(|p| effnet::load_rgb(&root.join(p)).expect("photo"))
                    .collect(),
                None,
            )
        }
    };
    println!(
        "{} ({:?}), {} images",
        pre.config.name,
        pre.config.activation,
        images.len()
    );
    let folded = pre.model.clone().fold_batchnorm();
    let reference = probs(&classifier(folded.clone(), &pre, &device), &images);
    report("f32", &reference, &reference, truth.as_deref());

    let scheme = QuantScheme::default().with_value(QuantValue::Q8S);
    let mut quantizer = Quantizer::new(Calibration::MinMax, scheme);
    let all = folded.clone().quantize_weights(&mut quantizer);
    let q = probs(&classifier(all, &pre, &device), &images);
    report(
        "burn Quantizer, per-tensor, all",
        &reference,
        &q,
        truth.as_deref(),
    );

    for (name, per_channel) in [
        ("weights, per-tensor", false),
        ("weights, per-channel", true),
    ] {
        let model = folded.clone().map(&mut WeightQuantizer { per_channel });
        let q = probs(&classifier(model, &pre, &device), &images);
        report(name, &reference, &q, truth.as_deref());
    }
}
