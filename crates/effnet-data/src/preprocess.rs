//! Evaluation preprocessing (resize shorter side, center crop, normalise), the recipe that
//! travels with every weights file because the wrong one makes good weights look broken.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::resize::{Interpolation, center_crop, resize, shorter_side_size};

/// ImageNet channel mean on the 0..1 scale.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel std on the 0..1 scale.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest network input side accepted anywhere (CLI `--size`, model and training configs): far
/// above any EfficientNet resolution (V2-XL evaluates at 512), small enough that one image's
/// activations stay in the gigabytes, not terabytes.
pub const MAX_INPUT_SIDE: usize = 4096;

/// Largest resize target (the shorter side before the center crop).
pub const MAX_RESIZE_SIDE: usize = 2 * MAX_INPUT_SIDE;

/// Longest-to-shortest side ratio kept before resizing for the center crop: a 100000×1 image
/// would otherwise be resized to gigapixels to cut a 224×224 square from its middle.
pub const MAX_ASPECT_BEFORE_CROP: u32 = 4;

/// Checks normalisation statistics: every mean finite, every std finite and positive (a NaN or
/// infinite value, or a zero std, turns every probability into NaN).
pub fn check_mean_std(mean: &[f32; 3], std: &[f32; 3]) -> Result<(), String> {
    if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
        return Err(format!("mean {mean:?}: {m} is not a finite number"));
    }
    if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(format!("std {std:?}: {s} is not a finite positive number"));
    }
    Ok(())
}

/// How an image becomes the network input.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Shorter side after resizing, before the center crop.
    pub resize: usize,
    /// Center crop size: the network sees `crop × crop`.
    pub crop: usize,
    /// Resize filter.
    pub interpolation: Interpolation,
    /// Per-channel mean on the 0..1 scale.
    pub mean: [f32; 3],
    /// Per-channel std on the 0..1 scale.
    pub std: [f32; 3],
}

impl Preprocess {
    /// ImageNet mean/std with timm's `crop_pct` rule: resize to `floor(crop / crop_pct)`.
    pub fn imagenet(crop: usize, crop_pct: f64, interpolation: Interpolation) -> Self {
        Self {
            resize: (crop as f64 / crop_pct).floor() as usize,
            crop,
            interpolation,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Rejects settings that would produce NaN or exhaust memory: crop in `1..=MAX_INPUT_SIDE`,
    /// resize in `crop..=MAX_RESIZE_SIDE`, finite mean, finite positive std.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_INPUT_SIDE).contains(&self.crop) {
            return Err(format!(
                "crop size {} is outside 1..={MAX_INPUT_SIDE}",
                self.crop
            ));
        }
        if !(self.crop..=MAX_RESIZE_SIDE).contains(&self.resize) {
            return Err(format!(
                "resize {} must be between the crop size {} and {MAX_RESIZE_SIDE}",
                self.resize, self.crop
            ));
        }
        check_mean_std(&self.mean, &self.std)
    }

    /// The crop fraction `crop / resize`.
    pub fn crop_pct(&self) -> f64 {
        self.crop as f64 / self.resize as f64
    }

    /// Sets the crop fraction, keeping the crop size (timm's `--crop-pct`).
    pub fn with_crop_pct(mut self, crop_pct: f64) -> Self {
        self.resize = (self.crop as f64 / crop_pct).floor() as usize;
        self
    }

    /// Resize + center crop, as 8-bit RGB (what PIL would hand to `ToTensor`).
    ///
    /// An image more than [`MAX_ASPECT_BEFORE_CROP`] times longer than wide (or the reverse) is
    /// first cut to its central part of that ratio, which holds the whole crop: this bounds the
    /// resized image, at the price of a sub-pixel shift against PIL for such images only.
    pub fn crop_image(&self, img: &RgbImage) -> RgbImage {
        let limited = limit_aspect(img, MAX_ASPECT_BEFORE_CROP);
        let img = limited.as_ref().unwrap_or(img);
        let (w, h) = img.dimensions();
        let (nw, nh) = shorter_side_size(w, h, self.resize as u32);
        let resized = resize(img, nw, nh, self.interpolation);
        center_crop(&resized, self.crop as u32)
    }

    /// The full transform: a normalised CHW `f32` buffer of `3 × crop × crop`.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0f32; 3 * self.crop * self.crop];
        self.apply_into(img, &mut out);
        out
    }

    /// [`apply`](Self::apply) into a caller's buffer (one slot of a batch).
    pub fn apply_into(&self, img: &RgbImage, out: &mut [f32]) {
        let cropped = self.crop_image(img);
        normalize_into(&cropped, self.mean, self.std, out);
    }
}

/// The central `max_aspect : 1` part of an image that is longer than that, else `None`.
fn limit_aspect(img: &RgbImage, max_aspect: u32) -> Option<RgbImage> {
    let (w, h) = img.dimensions();
    let (x, y, cw, ch) = if w / max_aspect > h {
        let cw = h * max_aspect;
        ((w - cw) / 2, 0, cw, h)
    } else if h / max_aspect > w {
        let ch = w * max_aspect;
        (0, (h - ch) / 2, w, ch)
    } else {
        return None;
    };
    Some(image::imageops::crop_imm(img, x, y, cw, ch).to_image())
}

/// RGB8 HWC to normalised CHW `f32`: `(v / 255 - mean) / std`.
pub fn normalize_into(img: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    assert_eq!(out.len(), 3 * plane, "output buffer size");
    let lut: Vec<[f32; 256]> = (0..3)
        .map(|c| {
            let mut t = [0f32; 256];
            for (v, slot) in t.iter_mut().enumerate() {
                *slot = (v as f32 / 255.0 - mean[c]) / std[c];
            }
            t
        })
        .collect();
    for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
        out[i] = lut[0][p[0] as usize];
        out[plane + i] = lut[1][p[1] as usize];
        out[2 * plane + i] = lut[2][p[2] as usize];
    }
}
