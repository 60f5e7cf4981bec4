//! Depthwise k×k convolutions on NHWC images, with bias, activation and the squeeze-excitation
//! pool fused in. [`avx512`] has the runs of pixels that share their column loads; `scalar`
//! the portable per-pixel paths (auto-vectorised per instruction set), which every other
//! instruction set runs and AVX-512 runs at the borders.

use crate::isa::multiversion;
use crate::kernels::{Act, ConvGeom};

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod nchw;
mod scalar;

use scalar::{dw_pixel, dw_pixels};

/// Output pixels computed together where no tap hangs over the border: independent
/// accumulators, so that the FMA latency chain over the taps does not bound the speed.
const DW_PIXELS: usize = 4;

/// Output columns `lo..hi` whose taps all lie inside the image's columns.
fn interior_columns(g: &ConvGeom) -> (usize, usize) {
    let lo = g.pad_left.div_ceil(g.stride);
    let hi = match (g.w + g.pad_left).checked_sub(g.k) {
        Some(last) => (last / g.stride + 1).min(g.ow),
        None => 0,
    };
    (lo, hi.max(lo))
}

multiversion! {
    /// Depthwise k×k conv + bias + activation for output rows `oy0..oy0 + out.len()/(ow·c)`,
    /// adding each output channel's sum over the tile to `sums` (for squeeze-excitation).
    /// `weight` is `[k·k][c]`, `input` the whole `[h][w][c]` image, `out` the tile.
    pub fn depthwise(
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        act: Act,
        g: ConvGeom,
        oy0: usize,
        out: &mut [f32],
        sums: Option<&mut [f32]>,
    ) {
        let c = g.c;
        let mut sums = sums;
        let (lo, hi) = interior_columns(&g);
        for (r, orow) in out.chunks_exact_mut(g.ow * c).enumerate() {
            let oy = oy0 + r;
            let mut ox = 0;
            while ox < g.ow {
                // AVX-512: runs of pixels sharing their column loads; then (and elsewhere) 4
                // pixels, or 1, with one load per tap.
                #[cfg(target_arch = "x86_64")]
                // SAFETY: WIDE only in the AVX-512 instance; ox < ow.
                let run = if WIDE {
                    unsafe { avx512::run(input, weight, bias, act, &g, oy, ox, orow) }
                } else {
                    None
                };
                #[cfg(not(target_arch = "x86_64"))]
                let run: Option<(usize, usize)> = None;
                // Elsewhere `run` is always `None`: one path for every architecture.
                #[cfg_attr(
                    not(target_arch = "x86_64"),
                    allow(clippy::unnecessary_literal_unwrap)
                )]
                let (n, c0) = run.unwrap_or_else(|| {
                    let n = if ox >= lo && ox + DW_PIXELS <= hi { DW_PIXELS } else { 1 };
                    let c0 = if n == DW_PIXELS {
                        let opix = &mut orow[ox * c..(ox + n) * c];
                        dw_pixels::<FMA>(input, weight, bias, act, &g, oy, ox, opix)
                    } else {
                        0
                    };
                    (n, c0)
                });
                // Channels the vector paths left (c0..c), then the SE sums, for all n pixels.
                let opix = &mut orow[ox * c..(ox + n) * c];
                if c0 < c {
                    for (p, one) in opix.chunks_exact_mut(c).enumerate() {
                        dw_pixel::<FMA>(input, weight, bias, act, &g, oy, ox + p, c0, one);
                    }
                }
                if let Some(s) = sums.as_deref_mut() {
                    for one in opix.chunks_exact(c) {
                        for (s, y) in s.iter_mut().zip(one) {
                            *s += y;
                        }
                    }
                }
                ox += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::isa::Isa;
    use crate::kernels::act_reference;

    /// Naive depthwise conv on NHWC with explicit padding, for reference.
    fn naive_dw(input: &[f32], w: &[f32], b: &[f32], g: ConvGeom, act: Act) -> Vec<f32> {
        let mut out = vec![0f32; g.oh * g.ow * g.c];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for c in 0..g.c {
                    let mut acc = b[c] as f64;
                    for ky in 0..g.k {
                        for kx in 0..g.k {
                            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                continue;
                            }
                            let v = input[(iy as usize * g.w + ix as usize) * g.c + c];
                            acc += (v * w[(ky * g.k + kx) * g.c + c]) as f64;
                        }
                    }
                    out[(oy * g.ow + ox) * g.c + c] = act_reference(acc as f32, act);
                }
            }
        }
        out
    }

    #[test]
    fn depthwise_matches_naive_for_strides_kernels_and_paddings() {
        use crate::plan::Pad;
        for (k, stride, c, pad) in [
            (3, 1, 40, Pad::Same),
            (5, 2, 72, Pad::Same),
            (
                3,
                2,
                16,
                Pad::Explicit {
                    top: 1,
                    left: 1,
                    bottom: 1,
                    right: 1,
                },
            ),
            (
                5,
                1,
                33,
                Pad::Explicit {
                    top: 2,
                    left: 2,
                    bottom: 2,
                    right: 2,
                },
            ),
            (3, 1, 48, Pad::Same),
            (5, 2, 40, Pad::Same),
            (3, 2, 96, Pad::Same),
            (5, 1, 17, Pad::Same),
            // Pixel stride a multiple of 1 KiB (interior runs only).
            (3, 1, 256, Pad::Same),
            (5, 2, 256, Pad::Same),
        ] {
            for (act, (h, w)) in [
                (Act::Silu, (13, 10)),
                (Act::Relu6, (11, 29)),
                (Act::Relu, (7, 23)),
                (Act::None, (6, 7)),
            ] {
                let g = pad.geometry(h, w, c, k, stride);
                let input: Vec<f32> = (0..h * w * c)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                    .collect();
                let wt: Vec<f32> = (0..k * k * c)
                    .map(|i| ((i * 13 % 29) as f32 - 14.0) / 20.0)
                    .collect();
                let bias: Vec<f32> = (0..c).map(|i| i as f32 / c as f32 - 0.5).collect();
                let want = naive_dw(&input, &wt, &bias, g, act);
                for isa in [Some(Isa::best()), Isa::avx2(), Some(Isa::scalar())]
                    .into_iter()
                    .flatten()
                {
                    let mut out = vec![0f32; want.len()];
                    let mut sums = vec![0f32; c];
                    depthwise(
                        isa,
                        &input,
                        &wt,
                        &bias,
                        act,
                        g,
                        0,
                        &mut out,
                        Some(&mut sums),
                    );
                    let d = out
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    let what =
                        format!("k{k} s{stride} c{c} {pad:?} {act:?} {h}x{w} {}", isa.name());
                    assert!(d < 1e-4, "{what}: {d}");
                    for (ch, got) in sums.iter().enumerate() {
                        let s: f32 = want.iter().skip(ch).step_by(c).sum();
                        assert!((got - s).abs() < 1e-3 * s.abs().max(1.0), "{what}");
                    }
                }
            }
        }
    }
}
