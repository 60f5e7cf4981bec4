//! Evaluation preprocessing (resize shorter side, center crop, normalise), the recipe that
//! travels with every weights file because the wrong one makes good weights look broken.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::resize::{Interpolation, center_crop, resize, shorter_side_size};

/// ImageNet channel mean on the 0..1 scale.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel std on the 0..1 scale.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
    pub fn crop_image(&self, img: &RgbImage) -> RgbImage {
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
