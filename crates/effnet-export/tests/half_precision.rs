//! Half-precision native weights (`StoragePrecision::F16`): about half the file, loaded transparently by
//! `Classifier::from_file` (computation in f32), same top-1 as the f32 weights on the photos.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use effnet::reexports::image;
use effnet::{BUNDLED_WEIGHTS, Classifier};
use effnet_model::{StoragePrecision, load_native, save_native_as};

/// Bound on |p_f16 - p_f32| over all classes of the photos (measured: 1.1e-3 for Lite0).
const MAX_PROB_DIFF: f32 = 2e-3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn photo_images() -> Vec<image::RgbImage> {
    ["chelsea.png", "china.jpg", "coffee.png", "flower.jpg"]
        .iter()
        .map(|f| effnet::load_rgb(&root().join("tests/data/photos").join(f)).expect("photo"))
        .collect()
}

fn probs(c: &Classifier, images: &[image::RgbImage]) -> Vec<Vec<f32>> {
    c.predict_batch(images, c.config().num_classes)
        .expect("predictions")
        .into_iter()
        .map(|preds| {
            let mut row = vec![0f32; preds.len()];
            for p in preds {
                row[p.index] = p.prob;
            }
            row
        })
        .collect()
}

fn top1(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .expect("classes")
}

#[test]
fn f16_lite0_is_half_the_size_with_the_same_top1_on_photos() {
    let device = Device::flex();
    let pre = effnet::bundled_pretrained(&device).expect("bundled");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lite0_f16.bpk");
    save_native_as(
        &path,
        &pre.model,
        &pre.config,
        &pre.preprocess,
        &pre.source,
        pre.labels.as_deref(),
        StoragePrecision::F16,
    )
    .expect("save f16");
    let size = std::fs::metadata(&path).expect("file").len() as f64;
    let ratio = size / BUNDLED_WEIGHTS.len() as f64;
    println!(
        "f32 {} bytes, f16 {} bytes (ratio {ratio:.3})",
        BUNDLED_WEIGHTS.len(),
        size
    );
    assert!(ratio < 0.55, "f16 file is {ratio:.3} of the f32 one");

    // Loaded back as f32 parameters, same description and preprocessing.
    let reloaded = load_native(&path, &device).expect("load f16");
    assert_eq!(reloaded.config, pre.config);
    assert_eq!(reloaded.preprocess, pre.preprocess);
    let w = reloaded.model.conv_stem.weight.val();
    assert_eq!(w.dtype(), burn::tensor::DType::F32);

    let images = photo_images();
    let full = probs(&Classifier::bundled(&device).expect("bundled"), &images);
    let half = probs(
        &Classifier::from_file(&path, &device).expect("f16"),
        &images,
    );
    let mut max_diff = 0f32;
    for (a, b) in full.iter().zip(&half) {
        assert_eq!(top1(a), top1(b), "top-1 changes with f16 weights");
        for (x, y) in a.iter().zip(b) {
            max_diff = max_diff.max((x - y).abs());
        }
    }
    println!("max |p_f16 - p_f32| over photos and classes: {max_diff:.2e}");
    assert!(max_diff > 0.0, "f16 rounding must change something");
    assert!(max_diff <= MAX_PROB_DIFF, "max prob diff {max_diff:e}");
}
