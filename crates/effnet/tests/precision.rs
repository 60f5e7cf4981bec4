//! Mixed precision inference on the bundled ImageNet Lite0 and the real photos: bf16 and f16
//! logits stay within a stated distance of f32's and give the same top-1.
//!
//! Tolerances (absolute, on logits whose largest values are ~10-20): bf16 0.5, f16 0.1. The
//! measured maxima are printed (`cargo test --release -p effnet --test precision -- --nocapture`).
#![cfg(feature = "bundled")]

use std::path::{Path, PathBuf};

use effnet::{Classifier, ComputePrecision, Device, Engine, load_rgb};

fn photos() -> Vec<image::RgbImage> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/photos");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/photos")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "the photos are there");
    names.iter().map(|p| load_rgb(p).expect("photo")).collect()
}

fn logits(c: &Classifier, images: &[image::RgbImage]) -> Vec<f32> {
    c.logits(images)
        .expect("logits")
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32")
}

fn top1(v: &[f32]) -> Vec<usize> {
    v.chunks(1000)
        .map(|r| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap())
        .collect()
}

#[test]
fn half_precision_lite0_matches_f32_on_photos() {
    let device = Device::flex();
    let images = photos();
    let f32_burn = Classifier::bundled(&device)
        .unwrap()
        .with_engine(Engine::Burn)
        .unwrap();
    let reference = logits(&f32_burn, &images);
    for (precision, tol) in [
        (ComputePrecision::Bf16, 0.5f32),
        (ComputePrecision::F16, 0.1),
    ] {
        let c = Classifier::bundled(&device)
            .unwrap()
            .with_precision(precision)
            .unwrap();
        assert_eq!(c.engine(), Engine::Burn, "half precision runs on burn");
        let got = logits(&c, &images);
        let max = reference
            .iter()
            .zip(&got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("Lite0 photos {precision}: max |logit diff| = {max:.4} (tolerance {tol})");
        assert!(
            max < tol,
            "{precision}: max logit difference {max} >= {tol}"
        );
        assert!(
            max > 0.0,
            "{precision} must really compute in half precision"
        );
        assert_eq!(top1(&got), top1(&reference), "{precision}: same top-1");
    }
}

#[test]
fn native_engine_refuses_half_precision_with_a_clear_error() {
    let c = Classifier::bundled(&Device::flex())
        .unwrap()
        .with_precision(ComputePrecision::Bf16)
        .unwrap();
    let err = c
        .with_engine(Engine::Native)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("f32 only") && err.contains("bf16"), "{err}");
}
