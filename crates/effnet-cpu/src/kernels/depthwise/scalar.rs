//! The portable depthwise paths: one pixel, or [`DW_PIXELS`] pixels at once where no tap
//! hangs over the border; plain loops that `multiversion!` compiles per instruction set.

use super::DW_PIXELS;
use crate::isa::fmadd;
use crate::kernels::{Act, ConvGeom, act_one};

/// Channels per register block of the depthwise kernel.
const DW_BLOCK: usize = 32;
/// Channels per register block when [`DW_PIXELS`] pixels are computed together.
const DW_QUAD_BLOCK: usize = 16;

/// Channels `c0..` of output pixel (`oy`, `ox`) into `opix` (all `c` channels of that pixel),
/// with bias and activation (see [`super::depthwise`]); taps over the border are skipped.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn dw_pixel<const FMA: bool>(
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    act: Act,
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    mut c0: usize,
    opix: &mut [f32],
) {
    let c = g.c;
    assert!(input.len() >= g.h * g.w * c && weight.len() >= g.k * g.k * c);
    while c0 + DW_BLOCK <= c {
        let mut acc = [0f32; DW_BLOCK];
        acc.copy_from_slice(&bias[c0..c0 + DW_BLOCK]);
        for ky in 0..g.k {
            let Some(iy) = g.tap(oy, ky, g.pad_top, g.h) else {
                continue;
            };
            for kx in 0..g.k {
                let Some(ix) = g.tap(ox, kx, g.pad_left, g.w) else {
                    continue;
                };
                // SAFETY: iy < h and ix < w (`tap`), c0 + DW_BLOCK ≤ c, and the lengths were
                // asserted on entry.
                let (x, wt) = unsafe {
                    (
                        block_at::<DW_BLOCK>(input, (iy * g.w + ix) * c + c0),
                        block_at::<DW_BLOCK>(weight, (ky * g.k + kx) * c + c0),
                    )
                };
                for ((a, x), w) in acc.iter_mut().zip(x).zip(wt) {
                    *a = fmadd::<FMA>(*x, *w, *a);
                }
            }
        }
        for a in acc.iter_mut() {
            *a = act_one::<FMA>(*a, act);
        }
        opix[c0..c0 + DW_BLOCK].copy_from_slice(&acc);
        c0 += DW_BLOCK;
    }
    if c0 < c {
        let acc = &mut opix[c0..];
        acc.copy_from_slice(&bias[c0..]);
        for ky in 0..g.k {
            let Some(iy) = g.tap(oy, ky, g.pad_top, g.h) else {
                continue;
            };
            for kx in 0..g.k {
                let Some(ix) = g.tap(ox, kx, g.pad_left, g.w) else {
                    continue;
                };
                let x = &input[(iy * g.w + ix) * c + c0..][..c - c0];
                let wt = &weight[(ky * g.k + kx) * c + c0..][..c - c0];
                for ((a, x), w) in acc.iter_mut().zip(x).zip(wt) {
                    *a = fmadd::<FMA>(*x, *w, *a);
                }
            }
        }
        for a in acc.iter_mut() {
            *a = act_one::<FMA>(*a, act);
        }
    }
}

/// Channels `0..c - c % 16` of the [`DW_PIXELS`] output pixels from (`oy`, `ox`), none of
/// whose column taps leaves the image, into `opix` (their `DW_PIXELS × c` values). Returns the
/// first channel left to do.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn dw_pixels<const FMA: bool>(
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    act: Act,
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    opix: &mut [f32],
) -> usize {
    const B: usize = DW_QUAD_BLOCK;
    let c = g.c;
    let ix0 = ox * g.stride - g.pad_left;
    assert!(weight.len() >= g.k * g.k * c);
    // Distance from the first pixel's first tap to the last pixel's last tap, in floats.
    let span = ((DW_PIXELS - 1) * g.stride + g.k - 1) * c;
    let mut c0 = 0;
    while c0 + B <= c {
        let b: &[f32; B] = bias[c0..c0 + B].try_into().unwrap();
        let mut acc = [*b; DW_PIXELS];
        for ky in 0..g.k {
            let Some(iy) = g.tap(oy, ky, g.pad_top, g.h) else {
                continue;
            };
            let row = (iy * g.w + ix0) * c + c0;
            assert!(row + span + B <= input.len());
            for kx in 0..g.k {
                // SAFETY: c0 + B ≤ c and (ky, kx) < (k, k), so inside the asserted weights;
                // every input block lies between `row` and `row + span + B`, asserted above.
                let wt = unsafe { block_at::<B>(weight, (ky * g.k + kx) * c + c0) };
                for (p, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: see above.
                    let x = unsafe { block_at::<B>(input, row + (p * g.stride + kx) * c) };
                    for j in 0..B {
                        acc[j] = fmadd::<FMA>(x[j], wt[j], acc[j]);
                    }
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            let dst = &mut opix[p * c + c0..][..B];
            for (d, a) in dst.iter_mut().zip(acc) {
                *d = act_one::<FMA>(*a, act);
            }
        }
        c0 += B;
    }
    c0
}

/// The `B` values of `v` from `at`, without a bounds check (the innermost loads of
/// [`dw_pixels`], whose checks would otherwise outnumber its FMAs).
///
/// # Safety
/// `at + B <= v.len()`.
#[inline(always)]
unsafe fn block_at<const B: usize>(v: &[f32], at: usize) -> &[f32; B] {
    debug_assert!(at + B <= v.len());
    // SAFETY: in bounds by the caller's contract; the cast keeps the element type.
    unsafe { &*(v.as_ptr().add(at) as *const [f32; B]) }
}
