//! AVX-512 depthwise runs: per kernel row, each input column that the run's output pixels
//! share is loaded once and applied to every pixel that uses it, with the row's weights in
//! registers (far fewer loads per FMA than one load per tap and pixel).

use std::arch::x86_64::*;

use crate::kernels::{Act, ConvGeom, act_one};

/// Most output pixels of one AVX-512 depthwise run (at stride 1; 7 at stride 2, and 7 so
/// that the 7-wide last stage is one run per row).
const DW_RUN: usize = 8;

/// 16 lanes of `act` as `act_one`, except SiLU (left as is, applied after the store).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn act16(x: __m512, act: Act) -> __m512 {
    match act {
        Act::Relu => _mm512_max_ps(x, _mm512_setzero_ps()),
        Act::Relu6 => _mm512_min_ps(_mm512_max_ps(x, _mm512_setzero_ps()), _mm512_set1_ps(6.0)),
        _ => x,
    }
}

/// Channels `0..c - c % 16` of `runs` runs of `P` output pixels from (`oy`, `ox`) of a
/// `K`×`K` stride-`S` depthwise conv into `opix` (their `runs × P × c` values), with bias
/// and `act` (several runs per call: the call's overhead is not small next to a run of
/// few channels). Returns the first channel left to do. With `BORDER`, column taps outside the image read
/// zeros (masked loads), so that border pixels and small images take this path too;
/// without, all column taps must be inside (plain loads, no mask registers).
///
/// # Safety
/// AVX-512F; `g.k == K`, `g.stride == S`; pixels `ox..ox + runs·P` inside the output row.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn run_k<
    const K: usize,
    const S: usize,
    const P: usize,
    const COLS: usize,
    const BORDER: bool,
>(
    runs: usize,
    (input, weight, bias, act, g, oy, ox, opix): Args<'_>,
) -> usize {
    let mut c0 = 0;
    for r in 0..runs {
        let (ox, opix) = (ox + r * P, &mut opix[r * P * g.c..]);
        // SAFETY: the caller's contract, for this run.
        c0 = unsafe { run_one::<K, S, P, COLS, BORDER>(input, weight, bias, act, g, oy, ox, opix) };
    }
    c0
}

/// The operands of [`run_k`]: input, weights, bias, activation, geometry, output row,
/// first output column, output pixels from there.
type Args<'a> = (
    &'a [f32],
    &'a [f32],
    &'a [f32],
    Act,
    &'a ConvGeom,
    usize,
    usize,
    &'a mut [f32],
);

/// One run of [`run_k`].
///
/// # Safety
/// As for [`run_k`] with one run.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn run_one<
    const K: usize,
    const S: usize,
    const P: usize,
    const COLS: usize,
    const BORDER: bool,
>(
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    act: Act,
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    opix: &mut [f32],
) -> usize {
    let c = g.c;
    let ix0 = (ox * S) as isize - g.pad_left as isize;
    assert!(COLS == (P - 1) * S + K && ox + P <= g.ow);
    assert!(weight.len() >= K * K * c && bias.len() >= c && opix.len() >= P * c);
    assert!(input.len() >= g.h * g.w * c);
    assert!(BORDER || (ix0 >= 0 && ix0 as usize + COLS <= g.w));
    // All lanes of the columns inside the image, none of those outside.
    let inside: [__mmask16; COLS] = std::array::from_fn(|j| {
        let ix = ix0 + j as isize;
        if ix >= 0 && (ix as usize) < g.w {
            0xffff
        } else {
            0
        }
    });
    let mut c0 = 0;
    while c0 + 16 <= c {
        // SAFETY: (block) c0 + 16 ≤ c; weights and bias asserted above; the input loads
        // that are not masked off read column ix0 + j < w of row iy < h, inside the
        // asserted image (masked-off lanes are not accessed, and their addresses are only
        // formed with wrapping arithmetic); the stores inside `opix` (asserted).
        unsafe {
            let b = _mm512_loadu_ps(bias.as_ptr().add(c0));
            let mut acc = [b; P];
            for ky in 0..K {
                let Some(iy) = g.tap(oy, ky, g.pad_top, g.h) else {
                    continue;
                };
                let row = (iy * g.w * c + c0) as isize + ix0 * c as isize;
                let wp = weight.as_ptr().add(ky * K * c + c0);
                let mut wt = [_mm512_setzero_ps(); K];
                for kx in 0..K {
                    wt[kx] = _mm512_loadu_ps(wp.add(kx * c));
                }
                let ip = input.as_ptr().wrapping_offset(row);
                let mut xs = [_mm512_setzero_ps(); COLS];
                for j in 0..COLS {
                    xs[j] = if BORDER {
                        _mm512_maskz_loadu_ps(inside[j], ip.wrapping_add(j * c))
                    } else {
                        _mm512_loadu_ps(ip.wrapping_add(j * c))
                    };
                }
                for p in 0..P {
                    for kx in 0..K {
                        acc[p] = _mm512_fmadd_ps(xs[p * S + kx], wt[kx], acc[p]);
                    }
                }
            }
            let op = opix.as_mut_ptr().add(c0);
            for p in 0..P {
                _mm512_storeu_ps(op.add(p * c), act16(acc[p], act));
            }
            if act == Act::Silu {
                for p in 0..P {
                    let v = std::slice::from_raw_parts_mut(op.add(p * c), 16);
                    v.iter_mut().for_each(|y| *y = act_one::<true>(*y, act));
                }
            }
        }
        c0 += 16;
    }
    c0
}

/// Runs of the longest `P` of the `ps` (longest first) that the output row has left from
/// `ox`, for kernel `K` and stride `S`: as many interior runs (plain loads) as have all
/// of their column taps inside the image (`$g`), else one run with masked loads, or
/// `None` with `$lean` (see [`LEAN_CHANNELS`]).
macro_rules! pick {
    ($left:expr, $g:expr, $ox:expr, $lean:expr, $k:literal, $s:literal, $args:tt; $($p:literal)*) => {{
        // Columns of the image and its left padding that runs from `ox` may reach.
        let (ix0, end) = ($ox * $s, $g.w + $g.pad_left);
        $(if $left >= $p && ix0 >= $g.pad_left && ix0 + ($p - 1) * $s + $k <= end {
            const COLS: usize = ($p - 1) * $s + $k;
            let runs = ((end - ix0 - COLS) / ($p * $s) + 1).min($left / $p);
            let c0 = run_k::<$k, $s, $p, COLS, false>(runs, $args);
            (runs * $p, c0)
        } else if $left >= $p && !$lean {
            ($p, run_k::<$k, $s, $p, { ($p - 1) * $s + $k }, true>(1, $args))
        } else)* {
            return None
        }
    }};
}

/// Channel counts that are a multiple of this make the pixel stride a multiple of 1 KiB:
/// the column loads of a run fall into few L1 sets and evict each other, the more the
/// more columns a run has in flight (7×7×1536 runs at a third of the speed of
/// 7×7×1520). There, only interior runs; border pixels take the one-pixel path.
const LEAN_CHANNELS: usize = 256;

/// A run for `g`'s kernel size and stride when there is one (3×3 and 5×5, stride 1 or 2):
/// `Some((pixels, first channel left))`, the pixels from `ox` written into `orow` (the
/// output row). Runs of 8, 7, 4, 2 or 1 pixels at stride 1 and of 7, 4, 2 or 1 at stride 2
/// (all 16 channel blocks of a run before the next: its column loads serve every pixel).
///
/// # Safety
/// AVX-512F; `ox < g.ow`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run(
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    act: Act,
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    orow: &mut [f32],
) -> Option<(usize, usize)> {
    const { assert!(DW_RUN == 8) };
    let left = g.ow - ox;
    let lean = g.c.is_multiple_of(LEAN_CHANNELS);
    let opix = &mut orow[ox * g.c..];
    // SAFETY: the caller's contract, K and S as matched, P ≤ left.
    unsafe {
        Some(match (g.k, g.stride) {
            (3, 1) => {
                pick!(left, g, ox, lean, 3, 1, (input, weight, bias, act, g, oy, ox, opix); 8 7 4 2 1)
            }
            (5, 1) => {
                pick!(left, g, ox, lean, 5, 1, (input, weight, bias, act, g, oy, ox, opix); 8 7 4 2 1)
            }
            (3, 2) => {
                pick!(left, g, ox, lean, 3, 2, (input, weight, bias, act, g, oy, ox, opix); 7 4 2 1)
            }
            (5, 2) => {
                pick!(left, g, ox, lean, 5, 2, (input, weight, bias, act, g, oy, ox, opix); 7 4 2 1)
            }
            _ => return None,
        })
    }
}
