//! Full-integer int8 of the bundled Lite0 end to end: calibration on the bundled photos, the
//! int8 `.bpk` written and read back, its predictions on effnet's int8 executor against f32,
//! the burn engine on the same file (its weights dequantised) against the f32 executor on the
//! same dequantised network, and corrupt int8 files refused with one clear error.
#![cfg(feature = "bundled")]

use std::path::{Path, PathBuf};

use effnet::quantize::{CalibrationOptions, RangeMethod, calibrate_dir, save_int8};
use effnet::{Classifier, Device, Engine, load_rgb};
use effnet_cpu::Layout;
use image::RgbImage;

fn photos_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/photos")
}

fn photos() -> Vec<RgbImage> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(photos_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect();
    files.sort();
    files.iter().map(|p| load_rgb(p).unwrap()).collect()
}

fn top1(c: &Classifier, images: &[RgbImage]) -> Vec<usize> {
    let preds = c.predict_batch(images, 1).unwrap();
    preds.iter().map(|p| p[0].index).collect()
}

#[test]
fn int8_bpk_of_bundled_lite0_agrees_with_f32_and_reads_back() {
    let device = Device::flex();
    let pre = effnet::bundled_pretrained(&device).unwrap();
    let options = CalibrationOptions {
        method: RangeMethod::MinMax,
        ..CalibrationOptions::default()
    };
    let q = calibrate_dir(&pre, &photos_dir(), &options, |_, _| {}).unwrap();
    assert_eq!(q.calibration_images, 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lite0_int8.bpk");
    save_int8(&path, &q, &pre).unwrap();
    // int8 weights: about a quarter of the 18.8 MB f32 file.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 6_000_000, "{size} bytes");

    let images = photos();
    let f32_top1 = top1(&Classifier::bundled(&device).unwrap(), &images);
    let int8 = Classifier::from_file(&path, &device).unwrap();
    assert!(
        int8.engine_name().starts_with("native int8"),
        "{}",
        int8.engine_name()
    );
    assert_eq!(top1(&int8, &images), f32_top1);

    // The file holds exactly the calibrated model.
    let back = int8.int8().unwrap();
    assert_eq!(back.stem.weight, q.stem.weight);
    assert_eq!(back.fc.bias, q.fc.bias);
    assert_eq!(
        back.blocks.last().unwrap().output,
        q.blocks.last().unwrap().output
    );

    // burn on the dequantised weights = the f32 executor on the dequantised plan: the weights
    // went into the burn modules in the right layout.
    let burn = Classifier::from_file(&path, &device)
        .unwrap()
        .with_engine(Engine::Burn)
        .unwrap();
    let crop = pre.preprocess.crop;
    let x = burn
        .batch_tensor(&images)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let want = effnet_cpu::Executor::new(q.dequantized_plan())
        .unwrap()
        .forward(&x, images.len(), crop, crop, Layout::Nchw)
        .unwrap();
    let got = burn.logits_values(x, images.len(), crop).unwrap();
    let d = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        d < 1e-3,
        "burn on dequantised int8 weights vs the f32 executor: {d}"
    );
}

#[test]
fn corrupt_int8_files_are_refused_with_the_file_named() {
    let device = Device::flex();
    let pre = effnet::bundled_pretrained(&device).unwrap();
    let options = CalibrationOptions {
        max_images: 1,
        ..CalibrationOptions::default()
    };
    let q = calibrate_dir(&pre, &photos_dir(), &options, |_, _| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.bpk");
    save_int8(&path, &q, &pre).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.bpk");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Classifier::from_file(&cut, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cut.bpk"), "{e}");
    // A calibration folder without images is one clear error.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = calibrate_dir(&pre, &empty, &options, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("no images"), "{e}");
}
