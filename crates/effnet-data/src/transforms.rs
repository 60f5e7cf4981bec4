//! Training transforms: RandomResizedCrop (torchvision's algorithm), horizontal flip, RandAugment,
//! normalisation and random erasing, in timm's order (crop, flip, RandAugment, to-tensor,
//! normalise, erase).

use image::RgbImage;
use rand::Rng;

use crate::preprocess::{IMAGENET_MEAN, IMAGENET_STD, normalize_into};
use crate::randaugment::RandAugment;
use crate::resize::{Interpolation, resize};

/// A crop box in pixels: `top`, `left`, `height`, `width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 tries of a random area fraction in
/// `scale` and log-uniform aspect ratio in `ratio`; if none fits, a center crop clamped to `ratio`.
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> CropBox {
    let area = width as f64 * height as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, lr0, lr1).exp();
        let w = round_half_even((target * aspect).sqrt());
        let h = round_half_even((target / aspect).sqrt());
        if w > 0 && h > 0 && w <= width as i64 && h <= height as i64 {
            let top = rng.random_range(0..=(height as i64 - h)) as u32;
            let left = rng.random_range(0..=(width as i64 - w)) as u32;
            return CropBox {
                top,
                left,
                height: h as u32,
                width: w as u32,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (rmin, rmax) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < rmin {
        (
            width,
            (round_half_even(width as f64 / rmin) as u32).clamp(1, height),
        )
    } else if in_ratio > rmax {
        (
            (round_half_even(height as f64 * rmax) as u32).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// torchvision's `F.resized_crop` on a PIL image: crop the box, then resize it to `size × size`.
/// (Cropping first matters: Pillow's filter then clamps at the crop edge, not the image edge.)
/// Bit-identical to `resize(&crop(img, b), size, size, interp)` (tested), but reads the crop in
/// place instead of copying it.
pub fn resized_crop(img: &RgbImage, b: CropBox, size: u32, interp: Interpolation) -> RgbImage {
    let (w, h) = img.dimensions();
    let inside = b.left + b.width <= w && b.top + b.height <= h && b.width > 0 && b.height > 0;
    if interp == Interpolation::Nearest || !inside || size == 0 {
        let c = crop(img, b);
        return resize(&c, size, size, interp);
    }
    crate::resize::resize_region(img, (b.left, b.top, b.width, b.height), size, size, interp)
}

/// Copies the pixels inside `b` (clamped to the image).
pub fn crop(img: &RgbImage, b: CropBox) -> RgbImage {
    let (w, h) = img.dimensions();
    let x0 = b.left.min(w);
    let y0 = b.top.min(h);
    let cw = b.width.min(w - x0) as usize;
    let ch = b.height.min(h - y0) as usize;
    let src = img.as_raw();
    let mut out = Vec::with_capacity(cw * ch * 3);
    for y in 0..ch {
        let start = ((y0 as usize + y) * w as usize + x0 as usize) * 3;
        out.extend_from_slice(&src[start..start + cw * 3]);
    }
    RgbImage::from_raw(cw as u32, ch as u32, out).unwrap_or_default()
}

/// Mirrors the image left-right in place.
pub fn hflip(img: &mut RgbImage) {
    let w = img.width() as usize;
    for row in img.as_mut().chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

/// The training transform; every random choice comes from the RNG passed to
/// [`apply_into`](Self::apply_into), so a sample's result depends only on its seed.
/// With a timm RandAugment and a non-ImageNet `mean`, set the fill to match
/// (`RandAugment::with_fill(mean)`), as timm derives it from the model's mean.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTransform {
    /// Output side (the network sees `size × size`); progressive learning changes it per epoch.
    pub size: usize,
    /// Area fraction range of the random crop.
    pub scale: (f64, f64),
    /// Aspect ratio range of the random crop.
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Optional RandAugment after crop and flip.
    pub randaugment: Option<RandAugment>,
    /// Resize filter of the crop.
    pub interpolation: Interpolation,
    /// Per-channel mean on the 0..1 scale.
    pub mean: [f32; 3],
    /// Per-channel std on the 0..1 scale.
    pub std: [f32; 3],
    /// Probability of random erasing (timm's `--reprob`, mode `pixel`) after normalisation.
    pub reprob: f64,
}

impl TrainTransform {
    /// ImageNet defaults (scale (0.08, 1), ratio (3/4, 4/3), flip 0.5, bilinear, ImageNet mean/std).
    pub fn imagenet(size: usize, randaugment: Option<RandAugment>) -> Self {
        Self {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.5,
            randaugment,
            interpolation: Interpolation::Bilinear,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            reprob: 0.0,
        }
    }

    /// Copy at another image size and RandAugment magnitude (progressive learning's per-epoch knobs);
    /// `None` keeps the current magnitude.
    pub fn at_stage(&self, size: usize, magnitude: Option<f64>) -> Self {
        let mut t = self.clone();
        t.size = size;
        if let (Some(m), Some(ra)) = (magnitude, t.randaugment.as_mut()) {
            ra.magnitude = m;
        }
        t
    }

    /// Crop, flip and augment to 8-bit RGB (what PIL would hand to `ToTensor`).
    pub fn augment(&self, img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
        let (w, h) = img.dimensions();
        let b = random_resized_crop_box(w, h, self.scale, self.ratio, rng);
        let mut out = resized_crop(img, b, self.size as u32, self.interpolation);
        if self.hflip > 0.0 && rng.random::<f64>() < self.hflip {
            hflip(&mut out);
        }
        if let Some(ra) = &self.randaugment {
            out = ra.apply(out, rng);
        }
        out
    }

    /// The full transform into one batch slot of `3 × size × size` normalised CHW floats.
    pub fn apply_into(&self, img: &RgbImage, rng: &mut impl Rng, out: &mut [f32]) {
        let a = self.augment(img, rng);
        normalize_into(&a, self.mean, self.std, out);
        if self.reprob > 0.0 && rng.random::<f64>() < self.reprob {
            random_erase(out, self.size, rng);
        }
    }
}

/// timm's `RandomErasing` (mode `pixel`, one box): up to 10 tries of a box of 2 %..1/3 of the
/// image with a log-uniform aspect ratio in [0.3, 1/0.3]; the first that fits is filled with
/// standard normal noise (per pixel and channel) in the normalised `3 × size × size` image.
pub fn random_erase(chw: &mut [f32], size: usize, rng: &mut impl Rng) {
    let area = (size * size) as f64;
    let (lr0, lr1) = (0.3f64.ln(), (1.0f64 / 0.3).ln());
    for _ in 0..10 {
        let target = area * uniform(rng, 0.02, 1.0 / 3.0);
        let aspect = uniform(rng, lr0, lr1).exp();
        let h = (target * aspect).sqrt().round() as usize;
        let w = (target / aspect).sqrt().round() as usize;
        if w == 0 || h == 0 || w >= size || h >= size {
            continue;
        }
        let top = rng.random_range(0..=size - h);
        let left = rng.random_range(0..=size - w);
        for plane in chw.chunks_exact_mut(size * size) {
            for row in plane.chunks_exact_mut(size).skip(top).take(h) {
                for v in &mut row[left..left + w] {
                    *v = standard_normal(rng);
                }
            }
        }
        return;
    }
}

/// One standard normal sample (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn uniform(rng: &mut impl Rng, a: f64, b: f64) -> f64 {
    a + (b - a) * rng.random::<f64>()
}

fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}
