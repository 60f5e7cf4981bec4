//! Real-image data sets for the learning tests, generated into temporary folders from
//! `crates/effnet-train/tests/data/` (licences in its README).

use std::io::Read;
use std::path::{Path, PathBuf};

use image::{GrayImage, Rgb, RgbImage, imageops};

/// `crates/effnet-train/tests/data`, where the source images and the tiny model live.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../effnet-train/tests/data")
}

/// The tiny EfficientNetV2 model description.
pub fn tiny_model() -> String {
    data_dir().join("effnetv2_tiny.toml").display().to_string()
}

/// Rows of the digits CSV: 64 pixels (0..16) and a label.
pub fn digits() -> Vec<([u8; 64], usize)> {
    let f = std::fs::File::open(data_dir().join("digits.csv.gz")).expect("digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut text)
        .expect("gunzip digits");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<u8> = l
                .split(',')
                .map(|x| x.trim().parse().expect("int"))
                .collect();
            let mut px = [0u8; 64];
            px.copy_from_slice(&v[..64]);
            (px, v[64] as usize)
        })
        .collect()
}

/// Writes digits as `size`×`size` RGB PNGs: `root/{train,val}/<digit>/<i>.png`, every 5th sample
/// to val; at most `per_class_train` / `per_class_val` per class (0 = all).
pub fn make_digits(root: &Path, size: u32, per_class_train: usize, per_class_val: usize) {
    let mut counts = [[0usize; 10]; 2];
    for (i, (px, label)) in digits().into_iter().enumerate() {
        let split = usize::from(i % 5 == 0);
        let cap = if split == 1 {
            per_class_val
        } else {
            per_class_train
        };
        if cap > 0 && counts[split][label] >= cap {
            continue;
        }
        counts[split][label] += 1;
        let small = GrayImage::from_fn(8, 8, |x, y| {
            image::Luma([(px[(y * 8 + x) as usize] as u32 * 255 / 16) as u8])
        });
        let big = imageops::resize(&small, size, size, imageops::FilterType::Triangle);
        let rgb = RgbImage::from_fn(size, size, |x, y| {
            let v = big.get_pixel(x, y)[0];
            Rgb([v, v, v])
        });
        let dir = root
            .join(if split == 1 { "val" } else { "train" })
            .join(label.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        rgb.save(dir.join(format!("{i:04}.png"))).unwrap();
    }
}

/// Writes a 3-class texture dataset (brick, grass, gravel): `n_train` random `crop`×`crop`
/// patches per class from the top half of each photo and `n_val` from the bottom half, so
/// train and val never share pixels.
pub fn make_textures(root: &Path, crop: u32, n_train: usize, n_val: usize, seed: u64) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |max: u32| -> u32 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % max as u64) as u32
    };
    for class in ["brick", "grass", "gravel"] {
        let img = image::open(data_dir().join(format!("{class}.png")))
            .expect("texture")
            .to_rgb8();
        let (w, h) = img.dimensions();
        let half = h / 2;
        for (split, n, y0) in [("train", n_train, 0), ("val", n_val, half)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for k in 0..n {
                let x = next(w - crop);
                let y = y0 + next(half - crop);
                let patch = imageops::crop_imm(&img, x, y, crop, crop).to_image();
                patch.save(dir.join(format!("{k:03}.png"))).unwrap();
            }
        }
    }
}

/// A recipe for the tiny CPU tests, on top of `configs/train/tiny_cpu.toml`.
pub fn tiny_recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/train/tiny_cpu.toml")
}

/// Overrides that point the tiny recipe at the test model description.
pub fn tiny_overrides(extra: &[&str]) -> Vec<String> {
    let mut v = vec![format!("model.arch={:?}", tiny_model())];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}
