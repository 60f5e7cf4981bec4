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
    pub(crate) fn support(self) -> f64 {
        match self {
            Self::Nearest => 0.5,
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    pub(crate) fn weight(self, x: f64) -> f64 {
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

/// Resizes `img` to `width × height` exactly like Pillow's `Image.resize(size, filter)`.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Interpolation) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (width, height) {
        return img.clone();
    }
    resize_region(img, (0, 0, w, h), width, height, filter)
}

/// Fixed-point taps: `ksize` slots per output sample, of which the first `len` are used.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for an axis of `in_size` samples
/// resampled to `out_size`.
fn taps(in_size: usize, out_size: usize, filter: Interpolation) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let sup = filter.support() * filterscale;
    let ksize = sup.ceil() as usize * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut lens = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - sup + 0.5) as i64).max(0) as usize;
        let xmax = ((center + sup + 0.5) as i64).min(in_size as i64) as usize;
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
        lens.push(n);
    }
    Taps {
        start,
        len: lens,
        ksize,
        weights,
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass with a compile-time tap count: rows are copied into a zero-padded buffer so
/// every output reads exactly `KS` taps (the padding taps have weight 0), letting the loop unroll.
fn hpass<'a, const KS: usize>(
    ht: &Taps,
    row_in: &impl Fn(usize) -> &'a [u8],
    r0: usize,
    out_w: usize,
    in_w: usize,
    tmp: &mut [u8],
) {
    let mut padded = vec![0u8; (in_w + KS) * 3];
    let half = 1i32 << (PRECISION_BITS - 1);
    for (y, trow) in tmp.chunks_exact_mut(out_w * 3).enumerate() {
        padded[..in_w * 3].copy_from_slice(row_in(r0 + y));
        for (xx, o) in trow.chunks_exact_mut(3).enumerate() {
            let k: &[i32; KS] = ht.weights[xx * KS..][..KS].try_into().unwrap_or(&[0; KS]);
            let p = &padded[ht.start[xx] * 3..][..KS * 3];
            let (mut a0, mut a1, mut a2) = (half, half, half);
            for t in 0..KS {
                a0 += p[t * 3] as i32 * k[t];
                a1 += p[t * 3 + 1] as i32 * k[t];
                a2 += p[t * 3 + 2] as i32 * k[t];
            }
            o[0] = clip8(a0);
            o[1] = clip8(a1);
            o[2] = clip8(a2);
        }
    }
}

/// Horizontal pass for any tap count (each output reads its real `len` taps).
fn hpass_any<'a>(
    ht: &Taps,
    row_in: &impl Fn(usize) -> &'a [u8],
    r0: usize,
    out_w: usize,
    tmp: &mut [u8],
) {
    let ks = ht.ksize;
    let half = 1i32 << (PRECISION_BITS - 1);
    for (y, trow) in tmp.chunks_exact_mut(out_w * 3).enumerate() {
        let row = row_in(r0 + y);
        for (xx, o) in trow.chunks_exact_mut(3).enumerate() {
            let n = ht.len[xx];
            let k = &ht.weights[xx * ks..][..n];
            let p = &row[ht.start[xx] * 3..][..n * 3];
            let (mut a0, mut a1, mut a2) = (half, half, half);
            for (px, &kw) in p.chunks_exact(3).zip(k) {
                a0 += px[0] as i32 * kw;
                a1 += px[1] as i32 * kw;
                a2 += px[2] as i32 * kw;
            }
            o[0] = clip8(a0);
            o[1] = clip8(a1);
            o[2] = clip8(a2);
        }
    }
}

/// Resizes the rectangle `(left, top, width, height)` of `img` (which must lie inside it) to
/// `out_w × out_h`, exactly as Pillow's `img.crop(box).resize(size)`: how torchvision's
/// RandomResizedCrop works, without copying the crop.
pub fn resize_region(
    img: &RgbImage,
    (left, top, width, height): (u32, u32, u32, u32),
    out_w: u32,
    out_h: u32,
    filter: Interpolation,
) -> RgbImage {
    if filter == Interpolation::Nearest {
        let region = (
            left as f64,
            top as f64,
            (left + width) as f64,
            (top + height) as f64,
        );
        return resize_nearest(img, region, out_w, out_h);
    }
    let (out_w, out_h) = (out_w as usize, out_h as usize);
    let src_w = img.width() as usize;
    let src = img.as_raw();
    let (in_w, in_h) = (width as usize, height as usize);
    let (x0, y0) = (left as usize, top as usize);
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let vt = need_v.then(|| taps(in_h, out_h, filter));
    // Input rows the vertical pass reads.
    let (r0, r1) = match &vt {
        Some(t) => {
            let first = t.start.first().copied().unwrap_or(0);
            let last = t
                .start
                .iter()
                .zip(&t.len)
                .map(|(s, n)| s + n)
                .max()
                .unwrap_or(0);
            (first, last)
        }
        None => (0, in_h),
    };
    let rows = r1 - r0;
    let row_in = |y: usize| &src[((y0 + y) * src_w + x0) * 3..][..in_w * 3];
    // Horizontal pass into `tmp` (rows × out_w × 3).
    let mut tmp = vec![0u8; rows * out_w * 3];
    if need_h {
        let ht = taps(in_w, out_w, filter);
        match ht.ksize {
            3 => hpass::<3>(&ht, &row_in, r0, out_w, in_w, &mut tmp),
            5 => hpass::<5>(&ht, &row_in, r0, out_w, in_w, &mut tmp),
            7 => hpass::<7>(&ht, &row_in, r0, out_w, in_w, &mut tmp),
            9 => hpass::<9>(&ht, &row_in, r0, out_w, in_w, &mut tmp),
            _ => hpass_any(&ht, &row_in, r0, out_w, &mut tmp),
        }
    } else {
        for (y, trow) in tmp.chunks_exact_mut(out_w * 3).enumerate() {
            trow.copy_from_slice(row_in(r0 + y));
        }
    }
    let Some(vt) = vt else {
        return RgbImage::from_raw(out_w as u32, out_h as u32, tmp).unwrap_or_default();
    };
    // Vertical pass, one output row at a time.
    let stride = out_w * 3;
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, orow) in out.chunks_exact_mut(stride).enumerate() {
        acc.fill(1i32 << (PRECISION_BITS - 1));
        let k = &vt.weights[yy * vt.ksize..][..vt.len[yy]];
        for (i, &kw) in k.iter().enumerate() {
            let y = vt.start[yy] + i;
            let trow = &tmp[(y - r0) * stride..][..stride];
            for (a, &v) in acc.iter_mut().zip(trow) {
                *a += v as i32 * kw;
            }
        }
        for (o, &a) in orow.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage::from_raw(out_w as u32, out_h as u32, out).unwrap_or_default()
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
