//! Each RandAugment op and RandomResizedCrop against Pillow / timm outputs recorded by
//! `scripts/make_data_fixtures.py` (tests/data/augment/manifest.txt lists the cases).

use std::path::{Path, PathBuf};

use effnet_data::randaugment::ops;
use effnet_data::transforms::{CropBox, resized_crop};
use effnet_data::{Interpolation, load_rgb};
use image::RgbImage;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/augment")
}

fn interp(s: &str) -> Interpolation {
    s.parse().expect("interpolation name")
}

fn run_case(op: &str, args: &[&str], img: &RgbImage) -> RgbImage {
    let f = |i: usize| -> f64 { args[i].parse().expect("numeric arg") };
    let fill = [124, 116, 104];
    let mut out = img.clone();
    match op {
        "autocontrast" => ops::auto_contrast(&mut out),
        "equalize" => ops::equalize(&mut out),
        "invert" => ops::invert(&mut out),
        "posterize" => ops::posterize(&mut out, f(0) as i64),
        "solarize" => ops::solarize(&mut out, f(0) as i64),
        "solarize_add" => ops::solarize_add(&mut out, f(0) as i64, 128),
        "color" => ops::color(&mut out, f(0)),
        "contrast" => ops::contrast(&mut out, f(0)),
        "brightness" => ops::brightness(&mut out, f(0)),
        "sharpness" => ops::sharpness(&mut out, f(0)),
        "rotate" => {
            let fill = if args[1] == "nearest" { [128; 3] } else { fill };
            out = ops::rotate(img, f(0), interp(args[1]), fill)
        }
        "shear_x" => out = ops::affine(img, [1.0, f(0), 0.0, 0.0, 1.0, 0.0], interp(args[1]), fill),
        "shear_y" => out = ops::affine(img, [1.0, 0.0, 0.0, f(0), 1.0, 0.0], interp(args[1]), fill),
        "translate_x_rel" => {
            let px = f(0) * img.width() as f64;
            out = ops::affine(img, [1.0, 0.0, px, 0.0, 1.0, 0.0], interp(args[1]), fill)
        }
        "translate_y_rel" => {
            let px = f(0) * img.height() as f64;
            out = ops::affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, px], interp(args[1]), fill)
        }
        "resized_crop" => {
            let b = CropBox {
                top: f(0) as u32,
                left: f(1) as u32,
                height: f(2) as u32,
                width: f(3) as u32,
            };
            out = resized_crop(img, b, f(4) as u32, interp(args[5]))
        }
        other => panic!("unknown op {other} in manifest"),
    }
    out
}

/// Largest per-channel difference and the number of differing channel values.
fn compare(a: &RgbImage, b: &RgbImage) -> (u8, usize) {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .fold((0, 0), |(m, n), (&x, &y)| {
            let d = x.abs_diff(y);
            (m.max(d), n + usize::from(d > 0))
        })
}

#[test]
fn every_op_matches_pillow_fixtures() {
    let dir = fixture_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.txt"))
        .expect("run scripts/make_data_fixtures.py to create tests/data/augment");
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (name, input, op, tol) = (parts[0], parts[1], parts[2], parts[3]);
        let tol: u8 = tol.parse().expect("tolerance");
        let img = load_rgb(&dir.join(format!("{input}.png"))).expect("input fixture");
        let want = load_rgb(&dir.join(format!("{name}.png"))).expect("expected fixture");
        let got = run_case(op, &parts[4..], &img);
        let (maxd, n) = compare(&got, &want);
        checked += 1;
        if maxd > tol {
            failures.push(format!(
                "{name}: max diff {maxd} > {tol} ({n} values differ)"
            ));
        }
    }
    assert!(checked >= 40, "manifest too short: {checked}");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn resized_crop_equals_crop_then_pillow_resize() {
    use effnet_data::transforms::{crop, random_resized_crop_box};
    use rand::SeedableRng;
    // Real photo content, so rounding differences would show.
    let img = load_rgb(&fixture_dir().join("input.png")).expect("input fixture");
    let big = effnet_data::resize(&img, 300, 220, Interpolation::Bicubic);
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for i in 0..300 {
        let b =
            random_resized_crop_box(big.width(), big.height(), (0.01, 1.0), (0.3, 3.0), &mut rng);
        let size = [8, 24, 57, 64, 224][i % 5];
        for f in [Interpolation::Bilinear, Interpolation::Bicubic] {
            let want = effnet_data::resize(&crop(&big, b), size, size, f);
            let got = resized_crop(&big, b, size, f);
            assert_eq!(compare(&got, &want), (0, 0), "{b:?} -> {size} {f:?}");
        }
    }
}
