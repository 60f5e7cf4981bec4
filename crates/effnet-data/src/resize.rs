//! Image resampling that reproduces Pillow's `Image.resize` bit for bit on 8-bit RGB: separable
//! convolution (horizontal pass, then vertical), filter support widened by the scale when
//! shrinking (antialiasing), normalised coefficients in 22-bit fixed point, rounding and clipping
//! to `u8` after each pass. torchvision's and timm's eval transforms call exactly this.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Resampling filter.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour (PIL NEAREST).
    Nearest,
    /// Triangle filter (PIL BILINEAR, antialiased when shrinking).
    Bilinear,
    /// Keys cubic with a = -0.5 (PIL BICUBIC, antialiased when shrinking).
    #[default]
    Bicubic,
}

impl std::str::FromStr for Interpolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nearest" => Ok(Self::Nearest),
            "bilinear" => Ok(Self::Bilinear),
            "bicubic" => Ok(Self::Bicubic),
            other => Err(format!(
                "unknown interpolation '{other}' (expected nearest, bilinear or bicubic)"
            )),
        }
    }
}

impl std::fmt::Display for Interpolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nearest => "nearest",
            Self::Bilinear => "bilinear",
            Self::Bicubic => "bicubic",
        })
    }
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Self::Nearest => 0.5,
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Nearest => {
                if (-0.5..0.5).contains(&x) {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point filter taps for one axis: for each output index, the first input index and weights.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Coefficients for resampling the input span `[in0, in1)` of an axis of length `in_size` to
/// `out_size` samples, as Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`.
fn taps(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Interpolation) -> Taps {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(n) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        start.push(xmin);
        len.push(n);
    }
    Taps {
        start,
        len,
        ksize,
        weights,
    }
}

#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `img` to `width × height` exactly like Pillow's `Image.resize(size, filter)`.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Interpolation) -> RgbImage {
    let (w, h) = img.dimensions();
    resize_box(img, (0.0, 0.0, w as f64, h as f64), width, height, filter)
}

/// Resizes the region `(x0, y0, x1, y1)` of `img` (Pillow's `box=` argument) to `width × height`;
/// RandomResizedCrop uses this so cropping and scaling happen in one resampling.
pub fn resize_box(
    img: &RgbImage,
    region: (f64, f64, f64, f64),
    width: u32,
    height: u32,
    filter: Interpolation,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let (x0, y0, x1, y1) = region;
    if filter == Interpolation::Nearest {
        return resize_nearest(img, region, width, height);
    }
    let full = x0 == 0.0 && y0 == 0.0 && x1 == w as f64 && y1 == h as f64;
    if full && width == w && height == h {
        return img.clone();
    }
    let need_h = !(width == w && x0 == 0.0 && x1 == w as f64);
    let need_v = !(height == h && y0 == 0.0 && y1 == h as f64);
    let src = img.as_raw();
    // Horizontal pass over the rows the vertical pass will read.
    let vt = taps(h as usize, y0, y1, height as usize, filter);
    let (row0, rows) = if need_v {
        let first = *vt.start.first().unwrap_or(&0);
        let last = vt
            .start
            .iter()
            .zip(&vt.len)
            .map(|(s, l)| s + l)
            .max()
            .unwrap_or(0);
        (first, last - first)
    } else {
        (y0 as usize, height as usize)
    };
    let mut tmp: Vec<u8>;
    let tmp_w;
    if need_h {
        let ht = taps(w as usize, x0, x1, width as usize, filter);
        tmp_w = width as usize;
        tmp = vec![0u8; tmp_w * rows * 3];
        for y in 0..rows {
            let srow = &src[(row0 + y) * w as usize * 3..][..w as usize * 3];
            let drow = &mut tmp[y * tmp_w * 3..][..tmp_w * 3];
            for xx in 0..tmp_w {
                let k = &ht.weights[xx * ht.ksize..][..ht.len[xx]];
                let base = ht.start[xx];
                let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, &kw) in k.iter().enumerate() {
                    let p = &srow[(base + i) * 3..][..3];
                    acc[0] += p[0] as i64 * kw as i64;
                    acc[1] += p[1] as i64 * kw as i64;
                    acc[2] += p[2] as i64 * kw as i64;
                }
                drow[xx * 3] = clip8(acc[0]);
                drow[xx * 3 + 1] = clip8(acc[1]);
                drow[xx * 3 + 2] = clip8(acc[2]);
            }
        }
    } else {
        tmp_w = w as usize;
        tmp = src[row0 * tmp_w * 3..(row0 + rows) * tmp_w * 3].to_vec();
    }
    if !need_v {
        return RgbImage::from_raw(width, height, tmp).unwrap_or_default();
    }
    let mut out = vec![0u8; width as usize * height as usize * 3];
    let stride = tmp_w * 3;
    for yy in 0..height as usize {
        let k = &vt.weights[yy * vt.ksize..][..vt.len[yy]];
        let base = vt.start[yy] - row0;
        let drow = &mut out[yy * stride..][..stride];
        for (xc, d) in drow.iter_mut().enumerate() {
            let mut acc = 1i64 << (PRECISION_BITS - 1);
            for (i, &kw) in k.iter().enumerate() {
                acc += tmp[(base + i) * stride + xc] as i64 * kw as i64;
            }
            *d = clip8(acc);
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_default()
}

fn resize_nearest(
    img: &RgbImage,
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let sx = (x1 - x0) / width as f64;
    let sy = (y1 - y0) / height as f64;
    RgbImage::from_fn(width, height, |x, y| {
        let ix = ((x0 + (x as f64 + 0.5) * sx) as u32).min(w - 1);
        let iy = ((y0 + (y as f64 + 0.5) * sy) as u32).min(h - 1);
        *img.get_pixel(ix, iy)
    })
}

/// Output size of torchvision's `Resize(size)` with an int: shorter side becomes `size`, the
/// longer one `int(size * long / short)`.
pub fn shorter_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    if width <= height {
        let long = (size as f64 * height as f64 / width as f64) as u32;
        (size, long.max(1))
    } else {
        let long = (size as f64 * width as f64 / height as f64) as u32;
        (long.max(1), size)
    }
}

/// Python's `round` (half to even), used by torchvision's center crop offsets.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// torchvision `CenterCrop(size)`: offsets `round((H - size) / 2)`, zero-padded when too small.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let left = round_half_even((w as f64 - size as f64) / 2.0);
    let top = round_half_even((h as f64 - size as f64) / 2.0);
    RgbImage::from_fn(size, size, |x, y| {
        let sx = x as i64 + left;
        let sy = y as i64 + top;
        if sx >= 0 && sy >= 0 && (sx as u32) < w && (sy as u32) < h {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize(&img, 7, 5, Interpolation::Bicubic), img);
    }

    #[test]
    fn constant_image_stays_constant_through_any_filter() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 17, 99]));
        for f in [
            Interpolation::Bilinear,
            Interpolation::Bicubic,
            Interpolation::Nearest,
        ] {
            for (w, h) in [(10, 10), (80, 51), (37, 5)] {
                let out = resize(&img, w, h, f);
                assert!(out.pixels().all(|p| p.0 == [200, 17, 99]), "{f:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn shorter_side_and_crop_follow_torchvision() {
        assert_eq!(shorter_side_size(451, 300, 256), (384, 256));
        assert_eq!(shorter_side_size(300, 451, 256), (256, 384));
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = center_crop(&img, 2);
        // (5-2)/2 = 1.5 -> 2 ; (4-2)/2 = 1
        assert_eq!(c.get_pixel(0, 0).0, [2, 1, 0]);
    }
}
