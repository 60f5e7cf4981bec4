//! RandAugment pixel operations on 8-bit RGB, written to give Pillow's results: lookup-table ops
//! (`ImageOps`) exactly, blends (`ImageEnhance` / `Image.blend`) with Pillow's float32 truncation,
//! and affine warps (`Image.transform` / `Image.rotate`) with Pillow's sampling conventions.

use image::RgbImage;

use crate::resize::Interpolation;

fn apply_lut(img: &mut RgbImage, lut: &[[u8; 256]; 3]) {
    for p in img.as_mut().chunks_exact_mut(3) {
        p[0] = lut[0][p[0] as usize];
        p[1] = lut[1][p[1] as usize];
        p[2] = lut[2][p[2] as usize];
    }
}

fn same_lut(f: impl Fn(usize) -> u8) -> [[u8; 256]; 3] {
    let mut t = [0u8; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = f(i);
    }
    [t; 3]
}

fn histograms(img: &RgbImage) -> [[u32; 256]; 3] {
    let mut h = [[0u32; 256]; 3];
    for p in img.as_raw().chunks_exact(3) {
        h[0][p[0] as usize] += 1;
        h[1][p[1] as usize] += 1;
        h[2][p[2] as usize] += 1;
    }
    h
}

/// `ImageOps.autocontrast` (cutoff 0): each channel mapped so its min becomes 0 and max 255.
pub fn auto_contrast(img: &mut RgbImage) {
    let hist = histograms(img);
    let mut lut = [[0u8; 256]; 3];
    for c in 0..3 {
        let lo = hist[c].iter().position(|&n| n > 0).unwrap_or(0);
        let hi = hist[c].iter().rposition(|&n| n > 0).unwrap_or(0);
        for (i, v) in lut[c].iter_mut().enumerate() {
            *v = if hi <= lo {
                i as u8
            } else {
                let scale = 255.0 / (hi - lo) as f64;
                let offset = -(lo as f64) * scale;
                // Python int() truncates toward zero; then clamp.
                ((i as f64 * scale + offset).trunc()).clamp(0.0, 255.0) as u8
            };
        }
    }
    apply_lut(img, &lut);
}

/// `ImageOps.equalize`: per-channel cumulative-histogram remap (same rule as automl's TF port).
pub fn equalize(img: &mut RgbImage) {
    let hist = histograms(img);
    let mut lut = [[0u8; 256]; 3];
    for c in 0..3 {
        let h = &hist[c];
        let nonzero: Vec<u64> = h.iter().filter(|&&n| n > 0).map(|&n| n as u64).collect();
        let step = if nonzero.len() <= 1 {
            0
        } else {
            (nonzero.iter().sum::<u64>() - nonzero[nonzero.len() - 1]) / 255
        };
        if step == 0 {
            for (i, v) in lut[c].iter_mut().enumerate() {
                *v = i as u8;
            }
            continue;
        }
        let mut n = step / 2;
        for i in 0..256 {
            lut[c][i] = (n / step).min(255) as u8;
            n += h[i] as u64;
        }
    }
    apply_lut(img, &lut);
}

/// `ImageOps.invert`: `255 - v`.
pub fn invert(img: &mut RgbImage) {
    for v in img.as_mut() {
        *v = 255 - *v;
    }
}

/// Keeps the `bits` most significant bits; `bits >= 8` is the identity and `bits <= 0` gives black
/// (automl's shift by 8; Pillow refuses 0).
pub fn posterize(img: &mut RgbImage, bits: i64) {
    if bits >= 8 {
        return;
    }
    let mask: u8 = if bits <= 0 {
        0
    } else {
        !((1u16 << (8 - bits)) - 1) as u8
    };
    for v in img.as_mut() {
        *v &= mask;
    }
}

/// `ImageOps.solarize`: values `>= threshold` become `255 - v`.
pub fn solarize(img: &mut RgbImage, threshold: i64) {
    let lut = same_lut(|i| {
        if (i as i64) < threshold {
            i as u8
        } else {
            255 - i as u8
        }
    });
    apply_lut(img, &lut);
}

/// Adds `add` to values below `threshold`, clipped to 0..255.
pub fn solarize_add(img: &mut RgbImage, add: i64, threshold: i64) {
    let lut = same_lut(|i| {
        if (i as i64) < threshold {
            (i as i64 + add).clamp(0, 255) as u8
        } else {
            i as u8
        }
    });
    apply_lut(img, &lut);
}

/// Pillow's `Image.blend(degenerate, img, factor)` in float32 with truncation (clipped when
/// extrapolating), `degenerate` given per pixel by `deg`.
#[inline]
fn blend_px(d: u8, v: u8, alpha: f32) -> u8 {
    let t = d as i32 as f32 + alpha * (v as i32 - d as i32) as f32;
    if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

fn blend_lut(d: u8, alpha: f32) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (v, slot) in t.iter_mut().enumerate() {
        *slot = blend_px(d, v as u8, alpha);
    }
    t
}

/// Pillow's RGB to L: `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`.
#[inline]
pub fn luma(p: &[u8]) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `ImageEnhance.Color`: blend with the image's grey version.
pub fn color(img: &mut RgbImage, factor: f64) {
    color_with(img, factor, luma)
}

/// automl's Color: grey from `tf.image.rgb_to_grayscale` (float weights .2989/.587/.114).
pub fn color_tf(img: &mut RgbImage, factor: f64) {
    color_with(img, factor, |p| {
        let g = (0.2989 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0;
        (g * 255.5).clamp(0.0, 255.0) as u8
    })
}

fn color_with(img: &mut RgbImage, factor: f64, grey: impl Fn(&[u8]) -> u8) {
    let a = factor as f32;
    for p in img.as_mut().chunks_exact_mut(3) {
        let g = grey(p);
        p[0] = blend_px(g, p[0], a);
        p[1] = blend_px(g, p[1], a);
        p[2] = blend_px(g, p[2], a);
    }
}

/// `ImageEnhance.Contrast`: blend with a flat grey at the rounded mean luma.
pub fn contrast(img: &mut RgbImage, factor: f64) {
    let (w, h) = img.dimensions();
    let n = (w as u64 * h as u64).max(1);
    let sum: u64 = img.as_raw().chunks_exact(3).map(|p| luma(p) as u64).sum();
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    contrast_to(img, mean, factor);
}

/// automl's Contrast: its "mean" is `sum(histogram) / 256`, i.e. pixel count / 256 clipped to 255
/// (a quirk of the TF port, kept because that is what the published models trained with).
pub fn contrast_automl(img: &mut RgbImage, factor: f64) {
    let (w, h) = img.dimensions();
    let mean = ((w as f64 * h as f64) / 256.0).clamp(0.0, 255.0) as u8;
    contrast_to(img, mean, factor);
}

fn contrast_to(img: &mut RgbImage, mean: u8, factor: f64) {
    let t = blend_lut(mean, factor as f32);
    apply_lut(img, &[t, t, t]);
}

/// `ImageEnhance.Brightness`: blend with black.
pub fn brightness(img: &mut RgbImage, factor: f64) {
    let t = blend_lut(0, factor as f32);
    apply_lut(img, &[t, t, t]);
}

/// `ImageEnhance.Sharpness`: blend with the 3x3 SMOOTH filter (weights 1, centre 5, /13); the
/// one-pixel border of the smoothed image is the original, as in Pillow.
pub fn sharpness(img: &mut RgbImage, factor: f64) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return;
    }
    let src = img.as_raw().clone();
    let a = factor as f32;
    let out = img.as_mut();
    let stride = w * 3;
    for y in 1..h - 1 {
        let r0 = &src[(y - 1) * stride..y * stride];
        let r1 = &src[y * stride..(y + 1) * stride];
        let r2 = &src[(y + 1) * stride..(y + 2) * stride];
        let o = &mut out[y * stride..(y + 1) * stride];
        for i in 3..stride - 3 {
            let s = r0[i - 3] as u32
                + r0[i] as u32
                + r0[i + 3] as u32
                + r1[i - 3] as u32
                + 5 * r1[i] as u32
                + r1[i + 3] as u32
                + r2[i - 3] as u32
                + r2[i] as u32
                + r2[i + 3] as u32;
            // Pillow: float sum of kernel/13 products, rounded to nearest.
            let smooth = ((s as f32 / 13.0) + 0.5).min(255.0) as u8;
            o[i] = blend_px(smooth, r1[i], a);
        }
    }
}

/// automl's Cutout: fills the square `[cx - pad, cx + pad) x [cy - pad, cy + pad)` (clipped).
pub fn cutout(img: &mut RgbImage, cx: i64, cy: i64, pad: i64, fill: [u8; 3]) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, x1) = ((cx - pad).max(0), (cx + pad).min(w));
    let (y0, y1) = ((cy - pad).max(0), (cy + pad).min(h));
    for y in y0..y1 {
        for x in x0..x1 {
            img.put_pixel(x as u32, y as u32, image::Rgb(fill));
        }
    }
}

/// `Image.rotate(degrees, resample, fillcolor)` about the image centre, same size (Pillow's matrix,
/// coefficients rounded to 15 decimals as Pillow does).
pub fn rotate(img: &RgbImage, degrees: f64, interp: Interpolation, fill: [u8; 3]) -> RgbImage {
    let angle = degrees.rem_euclid(360.0);
    if angle == 0.0 {
        return img.clone();
    }
    let (w, h) = (img.width() as f64, img.height() as f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let r = -angle.to_radians();
    let r15 = |v: f64| (v * 1e15).round() / 1e15;
    let (a, b, d, e) = (r15(r.cos()), r15(r.sin()), r15(-r.sin()), r15(r.cos()));
    let c = a * -cx + b * -cy + cx;
    let f = d * -cx + e * -cy + cy;
    affine(img, [a, b, c, d, e, f], interp, fill)
}

/// `Image.transform(size, AFFINE, (a, b, c, d, e, f), resample, fillcolor)`: output pixel centre
/// `(x, y)` samples the input at `(a x + b y + c, d x + e y + f)`; points outside get `fill`.
/// Neighbours beyond the edge are clamped, values truncated after clipping, as Pillow's Geometry.c.
pub fn affine(img: &RgbImage, m: [f64; 6], interp: Interpolation, fill: [u8; 3]) -> RgbImage {
    match interp {
        Interpolation::Nearest => affine_impl::<0>(img, m, fill),
        Interpolation::Bilinear => affine_impl::<1>(img, m, fill),
        Interpolation::Bicubic => affine_impl::<2>(img, m, fill),
    }
}

/// `floor` for values >= -1 without a libm call (the default x86-64 target lacks `roundsd`).
#[inline(always)]
fn floor_small(v: f64) -> isize {
    let t = v as isize;
    if (t as f64) > v { t - 1 } else { t }
}

fn affine_impl<const F: u8>(img: &RgbImage, m: [f64; 6], fill: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return img.clone();
    }
    let src = img.as_raw();
    let mut out = vec![0u8; w * h * 3];
    let (wf, hf) = (w as f64, h as f64);
    let (wm, hm) = (w as isize - 1, h as isize - 1);
    let stride = w * 3;
    for (y, orow) in out.chunks_exact_mut(stride).enumerate() {
        let yo = y as f64 + 0.5;
        let (bx, by) = (m[1] * yo + m[2], m[4] * yo + m[5]);
        if F == 1 && m[3] == 0.0 {
            // Translate / ShearX: the source row pair and dy are fixed along the row.
            bilinear_row(src, (w, h), stride, orow, m[0], bx, by, fill);
            continue;
        }
        for (x, o) in orow.chunks_exact_mut(3).enumerate() {
            let xo = x as f64 + 0.5;
            let xin = m[0] * xo + bx;
            let yin = m[3] * xo + by;
            if F == 0 {
                // Pillow's COORD: negative -> outside, else truncate.
                let inside = xin >= 0.0 && yin >= 0.0 && (xin as usize) < w && (yin as usize) < h;
                if inside {
                    let i = (yin as usize) * stride + (xin as usize) * 3;
                    o.copy_from_slice(&src[i..i + 3]);
                } else {
                    o.copy_from_slice(&fill);
                }
                continue;
            }
            if !(xin >= 0.0 && xin < wf && yin >= 0.0 && yin < hf) {
                o.copy_from_slice(&fill);
                continue;
            }
            let (xs, ys) = (xin - 0.5, yin - 0.5);
            let (xi, yi) = (floor_small(xs), floor_small(ys));
            let (dx, dy) = (xs - xi as f64, ys - yi as f64);
            let cx = |k: isize| (xi + k).clamp(0, wm) as usize * 3;
            let ry = |k: isize| (yi + k).clamp(0, hm) as usize * stride;
            if F == 1 {
                let (x0, x1) = (cx(0), cx(1));
                let (r0, r1) = (ry(0), ry(1));
                let (p00, p01) = (&src[r0 + x0..r0 + x0 + 3], &src[r0 + x1..r0 + x1 + 3]);
                let (p10, p11) = (&src[r1 + x0..r1 + x0 + 3], &src[r1 + x1..r1 + x1 + 3]);
                for c in 0..3 {
                    let (a, b) = (p00[c] as f64, p01[c] as f64);
                    let v1 = a + (b - a) * dx;
                    let (a, b) = (p10[c] as f64, p11[c] as f64);
                    let v2 = a + (b - a) * dx;
                    o[c] = trunc_u8(v1 + (v2 - v1) * dy);
                }
            } else {
                let xs = [cx(-1), cx(0), cx(1), cx(2)];
                let rows = [ry(-1), ry(0), ry(1), ry(2)];
                for c in 0..3 {
                    let mut v = [0f64; 4];
                    for (vk, &r) in v.iter_mut().zip(&rows) {
                        let p = |k: usize| src[r + xs[k] + c] as f64;
                        *vk = cubic(p(0), p(1), p(2), p(3), dx);
                    }
                    o[c] = trunc_u8(cubic(v[0], v[1], v[2], v[3], dy));
                }
            }
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).unwrap_or_default()
}

/// One output row of a bilinear affine warp whose source `y` does not depend on `x`
/// (`yin = by` for the whole row); same float operations per pixel as the general path.
#[allow(clippy::too_many_arguments)]
fn bilinear_row(
    src: &[u8],
    (w, h): (usize, usize),
    stride: usize,
    orow: &mut [u8],
    a: f64,
    bx: f64,
    yin: f64,
    fill: [u8; 3],
) {
    if !(yin >= 0.0 && yin < h as f64) {
        for o in orow.chunks_exact_mut(3) {
            o.copy_from_slice(&fill);
        }
        return;
    }
    let ys = yin - 0.5;
    let yi = floor_small(ys);
    let dy = ys - yi as f64;
    let hm = h as isize - 1;
    let row0 = &src[yi.clamp(0, hm) as usize * stride..][..stride];
    let row1 = &src[(yi + 1).clamp(0, hm) as usize * stride..][..stride];
    let (wf, wm) = (w as f64, w as isize - 1);
    for (x, o) in orow.chunks_exact_mut(3).enumerate() {
        let xin = a * (x as f64 + 0.5) + bx;
        if !(xin >= 0.0 && xin < wf) {
            o.copy_from_slice(&fill);
            continue;
        }
        let xs = xin - 0.5;
        let xi = floor_small(xs);
        let dx = xs - xi as f64;
        let x0 = xi.clamp(0, wm) as usize * 3;
        let x1 = (xi + 1).clamp(0, wm) as usize * 3;
        let (p00, p01) = (&row0[x0..x0 + 3], &row0[x1..x1 + 3]);
        let (p10, p11) = (&row1[x0..x0 + 3], &row1[x1..x1 + 3]);
        for c in 0..3 {
            let (l, r) = (p00[c] as f64, p01[c] as f64);
            let v1 = l + (r - l) * dx;
            let (l, r) = (p10[c] as f64, p11[c] as f64);
            let v2 = l + (r - l) * dx;
            o[c] = trunc_u8(v1 + (v2 - v1) * dy);
        }
    }
}

/// Pillow's transform cubic (a = -1 form of Geometry.c).
#[inline]
fn cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// Pillow's transform output: clip to 0..255, then truncate (no rounding).
#[inline]
fn trunc_u8(v: f64) -> u8 {
    if v <= 0.0 {
        0
    } else if v >= 255.0 {
        255
    } else {
        v as u8
    }
}
