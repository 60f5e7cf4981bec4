//! int8 against f32 on effnet's native executors, for every calibration method and for weight
//! scales per channel and per tensor:
//! - the bundled ImageNet Lite0 (ReLU6, no SE): calibrated on random crops of the bundled
//!   photos, textures and augmentation fixtures; top-1 agreement with f32 on the four photos
//!   and on other random crops of them;
//! - with `WEIGHTS DATA` (e.g. a tiny V2 trained on digits: SiLU and SE): calibrated on up to
//!   200 images of `DATA/train`, top-1 of f32 and int8 on `DATA/val` and their agreement.
//!
//! `cargo run --release -p effnet --example int8_accuracy [-- runs/x/best.bpk data/digits]`
//! Prints markdown tables.

use std::path::{Path, PathBuf};

use effnet::quantize::{Quantizer, RangeMethod, WeightScales};
use effnet::{Device, Pretrained, collect_images, load_rgb};
use effnet_cpu::{Executor, Int8Executor, Layout};
use image::RgbImage;

const METHODS: [RangeMethod; 4] = [
    RangeMethod::MinMax,
    RangeMethod::Percentile(99.99),
    RangeMethod::Percentile(99.999),
    RangeMethod::Mse,
];

/// A small deterministic generator (no dependency for a few random crops).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n.max(1) as u64) as u32
    }
}

/// `n` random square crops (40-100% of the shorter side, half of them mirrored) of `img`.
fn crops(img: &RgbImage, n: usize, rng: &mut Lcg) -> Vec<RgbImage> {
    let (w, h) = img.dimensions();
    let short = w.min(h);
    (0..n)
        .map(|_| {
            let side = short * (40 + rng.below(61)) / 100;
            let (x, y) = (rng.below(w - side + 1), rng.below(h - side + 1));
            let c = image::imageops::crop_imm(img, x, y, side, side).to_image();
            if rng.below(2) == 1 {
                image::imageops::flip_horizontal(&c)
            } else {
                c
            }
        })
        .collect()
}

fn images_in(dir: &Path) -> Vec<RgbImage> {
    let (mut files, _) = collect_images(&[dir.to_path_buf()]);
    files.sort();
    files.iter().filter_map(|f| load_rgb(f).ok()).collect()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Preprocessed `[B][3][crop][crop]` values of `images`.
fn batch(pre: &Pretrained, images: &[RgbImage]) -> Vec<f32> {
    let c = pre.preprocess.crop;
    let per = 3 * c * c;
    let mut buf = vec![0f32; images.len() * per];
    for (out, img) in buf.chunks_mut(per).zip(images) {
        pre.preprocess.apply_into(img, out);
    }
    buf
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

/// Top-1 of each row of `[B][classes]` logits.
fn top1(logits: &[f32], classes: usize) -> Vec<usize> {
    logits.chunks(classes).map(argmax).collect()
}

fn percent(hits: usize, n: usize) -> f64 {
    100.0 * hits as f64 / n.max(1) as f64
}

fn lite0() -> Result<(), Box<dyn std::error::Error>> {
    let pre = effnet::bundled_pretrained(&Device::flex())?;
    let photos = images_in(&repo("tests/data/photos"));
    let mut rng = Lcg(7);
    let mut calib: Vec<RgbImage> = Vec::new();
    for dir in ["tests/data/photos", "tests/data/augment"] {
        for img in images_in(&repo(dir)) {
            calib.extend(crops(&img, 8, &mut rng));
        }
    }
    let mut eval = photos.clone();
    for img in &photos {
        eval.extend(crops(img, 50, &mut rng));
    }
    let x = batch(&pre, &eval);
    let (crop, classes) = (pre.preprocess.crop, pre.config.num_classes);
    let folded = pre.model.clone().fold_batchnorm();
    let f32_exec = effnet_model::native::executor(&folded, &pre.config)?;
    let want = top1(
        &f32_exec.forward(&x, eval.len(), crop, crop, Layout::Nchw)?,
        classes,
    );
    println!(
        "## bundled Lite0: {} calibration crops; f32 vs int8 top-1 agreement on the 4 photos and on {} crops of them\n",
        calib.len(),
        eval.len() - photos.len()
    );
    println!("| weight scales | ranges | photos | crops |");
    println!("|---|---|---|---|");
    for scales in [WeightScales::PerChannel, WeightScales::PerTensor] {
        let mut q = Quantizer::new(&pre, scales)?;
        q.observe(&calib)?;
        for method in METHODS {
            let exec = Int8Executor::new(q.finish(method)?)?;
            let got = top1(
                &exec.forward(&x, eval.len(), crop, crop, Layout::Nchw)?,
                classes,
            );
            let agree =
                |r: std::ops::Range<usize>| r.clone().filter(|&i| got[i] == want[i]).count();
            let n = photos.len();
            println!(
                "| {scales:?} | {method} | {}/{n} | {:.1}% |",
                agree(0..n),
                percent(agree(n..eval.len()), eval.len() - n)
            );
        }
    }
    Ok(())
}

/// Images and labels of an ImageNet-style split, labels by the weights' class names (or by
/// sorted folder position).
fn split(dir: &Path, names: Option<&[String]>) -> Vec<(PathBuf, usize)> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    classes.sort();
    let mut out = Vec::new();
    for (pos, class) in classes.iter().enumerate() {
        let name = class.file_name().map(|n| n.to_string_lossy().to_string());
        let label = match (names, name) {
            (Some(names), Some(n)) => names.iter().position(|x| *x == n).unwrap_or(pos),
            _ => pos,
        };
        let (mut files, _) = collect_images(std::slice::from_ref(class));
        files.sort();
        out.extend(files.into_iter().map(|f| (f, label)));
    }
    out
}

fn trained(weights: &Path, data: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let pre = effnet::load_pretrained(&weights.to_string_lossy().parse()?, None, &Device::flex())?;
    let names = pre.labels.clone();
    let train = split(&data.join("train"), names.as_deref());
    let val = split(&data.join("val"), names.as_deref());
    let n = train.len();
    let calib: Vec<RgbImage> = (0..n.min(200))
        .map(|i| load_rgb(&train[i * n / n.min(200)].0))
        .collect::<Result<_, _>>()?;
    let images: Vec<RgbImage> = val
        .iter()
        .map(|(p, _)| load_rgb(p))
        .collect::<Result<_, _>>()?;
    let labels: Vec<usize> = val.iter().map(|(_, l)| *l).collect();
    let x = batch(&pre, &images);
    let (crop, classes) = (pre.preprocess.crop, pre.config.num_classes);
    let folded = pre.model.clone().fold_batchnorm();
    let f32_exec: Executor = effnet_model::native::executor(&folded, &pre.config)?;
    let want = top1(
        &f32_exec.forward(&x, images.len(), crop, crop, Layout::Nchw)?,
        classes,
    );
    let correct = |p: &[usize]| p.iter().zip(&labels).filter(|(a, b)| a == b).count();
    println!(
        "\n## {} ({}, {} calibration images from train/): top-1 on {} val images\n",
        weights.display(),
        pre.config.name,
        calib.len(),
        images.len()
    );
    println!("| weight scales | ranges | f32 top-1 | int8 top-1 | agreement |");
    println!("|---|---|---|---|---|");
    for scales in [WeightScales::PerChannel, WeightScales::PerTensor] {
        let mut q = Quantizer::new(&pre, scales)?;
        q.observe(&calib)?;
        for method in METHODS {
            let exec = Int8Executor::new(q.finish(method)?)?;
            let got = top1(
                &exec.forward(&x, images.len(), crop, crop, Layout::Nchw)?,
                classes,
            );
            let agree = got.iter().zip(&want).filter(|(a, b)| a == b).count();
            println!(
                "| {scales:?} | {method} | {:.2}% | {:.2}% | {:.2}% |",
                percent(correct(&want), labels.len()),
                percent(correct(&got), labels.len()),
                percent(agree, labels.len())
            );
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    lite0()?;
    if let [weights, data] = args.as_slice() {
        trained(weights.as_ref(), data.as_ref())?;
    }
    Ok(())
}
