//! The executor's compute kernels on channels-last (NHWC) rows. Each is compiled once per
//! instruction set by [`multiversion`]; the loops run over channels so that they vectorise.

use crate::isa::{Isa, fmadd, multiversion};

/// Non-linearities of the family (after a conv's bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Identity (projection convs).
    None,
    /// x·sigmoid(x).
    Silu,
    /// min(max(x, 0), 6).
    Relu6,
    /// max(x, 0).
    Relu,
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2^23: adding and subtracting it rounds an f32 of magnitude < 2^22 to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x to ~2 ulp for x in [-87, 88] (clamped outside): Cody-Waite reduction to
/// r in [-ln2/2, ln2/2], degree-6 Taylor polynomial, exponent by bit arithmetic. Branch-free,
/// so loops over it vectorise.
#[inline(always)]
#[allow(clippy::manual_clamp)] // max/min: vectorises, NaN-tolerant
pub(crate) fn exp_fast<const FMA: bool>(x: f32) -> f32 {
    let x = x.max(-87.0).min(88.0);
    let shifted = x * LOG2E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    // The integer n sits in the low mantissa bits of `shifted` (no float-to-int conversion,
    // whose saturating semantics would not vectorise).
    let ni = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let r = fmadd::<FMA>(n, -LN2_HI, x);
    let r = fmadd::<FMA>(n, -LN2_LO, r);
    let mut p = 1.0 / 720.0;
    p = fmadd::<FMA>(p, r, 1.0 / 120.0);
    p = fmadd::<FMA>(p, r, 1.0 / 24.0);
    p = fmadd::<FMA>(p, r, 1.0 / 6.0);
    p = fmadd::<FMA>(p, r, 0.5);
    p = fmadd::<FMA>(p, r, 1.0);
    p = fmadd::<FMA>(p, r, 1.0);
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}

/// Logistic sigmoid built on [`exp_fast`].
#[inline(always)]
pub(crate) fn sigmoid_fast<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp_fast::<FMA>(-x))
}

/// Applies `act` to one value.
#[inline(always)]
#[allow(clippy::manual_clamp)] // max/min: vectorises, NaN-tolerant
pub(crate) fn act_one<const FMA: bool>(x: f32, act: Act) -> f32 {
    match act {
        Act::None => x,
        Act::Silu => x / (1.0 + exp_fast::<FMA>(-x)),
        Act::Relu6 => x.max(0.0).min(6.0),
        Act::Relu => x.max(0.0),
    }
}

/// Loops `f` over `row` with the activation match hoisted out of the loop.
#[inline(always)]
fn with_act<const FMA: bool>(act: Act, row: &mut [f32], bias: &[f32], res: Option<&[f32]>) {
    macro_rules! run {
        ($a:expr) => {
            match res {
                Some(res) => {
                    for ((y, b), r) in row.iter_mut().zip(bias).zip(res) {
                        *y = act_one::<FMA>(*y + b, $a) + r;
                    }
                }
                None => {
                    for (y, b) in row.iter_mut().zip(bias) {
                        *y = act_one::<FMA>(*y + b, $a);
                    }
                }
            }
        };
    }
    match act {
        Act::None => run!(Act::None),
        Act::Silu => run!(Act::Silu),
        Act::Relu6 => run!(Act::Relu6),
        Act::Relu => run!(Act::Relu),
    }
}

/// `row = act(row) [+ residual]`: the epilogue of a packed GEMM tile (its bias is already in).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) fn act_residual<const FMA: bool>(row: &mut [f32], act: Act, res: Option<&[f32]>) {
    macro_rules! run {
        ($a:expr) => {
            match res {
                Some(res) => {
                    for (y, r) in row.iter_mut().zip(res) {
                        *y = act_one::<FMA>(*y, $a) + r;
                    }
                }
                None => row.iter_mut().for_each(|y| *y = act_one::<FMA>(*y, $a)),
            }
        };
    }
    match act {
        Act::None => {
            if let Some(res) = res {
                row.iter_mut().zip(res).for_each(|(y, r)| *y += r);
            }
        }
        Act::Silu => run!(Act::Silu),
        Act::Relu6 => run!(Act::Relu6),
        Act::Relu => run!(Act::Relu),
    }
}

multiversion! {
    /// GEMM epilogue on `rows` (row-major, `bias.len()` columns): `y = act(y + bias) [+ residual]`.
    pub fn bias_act(rows: &mut [f32], bias: &[f32], act: Act, residual: Option<&[f32]>) {
        let n = bias.len();
        match residual {
            Some(res) => {
                for (row, r) in rows.chunks_exact_mut(n).zip(res.chunks_exact(n)) {
                    with_act::<FMA>(act, row, bias, Some(r));
                }
            }
            None => {
                for row in rows.chunks_exact_mut(n) {
                    with_act::<FMA>(act, row, bias, None);
                }
            }
        }
    }
}

multiversion! {
    /// Plain row-major matrix product `dst[m×n] = lhs[m×k] · rhs[k×n]`: the portable fallback
    /// for the `gemm` crate and its reference in tests.
    pub fn matmul_plain(dst: &mut [f32], lhs: &[f32], rhs: &[f32], k: usize, n: usize) {
        for (drow, lrow) in dst.chunks_exact_mut(n).zip(lhs.chunks_exact(k)) {
            drow.fill(0.0);
            for (a, rrow) in lrow.iter().zip(rhs.chunks_exact(n)) {
                for (d, r) in drow.iter_mut().zip(rrow) {
                    *d = fmadd::<FMA>(*a, *r, *d);
                }
            }
        }
    }
}

/// Geometry of one depthwise (or im2col) convolution on an NHWC image.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (input = output for depthwise).
    pub c: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Padding before the first row.
    pub pad_top: usize,
    /// Padding before the first column.
    pub pad_left: usize,
}

impl ConvGeom {
    /// Input coordinate of output `o` and tap `t` along one axis, if inside the image.
    #[inline(always)]
    fn tap(&self, o: usize, t: usize, pad: usize, size: usize) -> Option<usize> {
        (o * self.stride + t).checked_sub(pad).filter(|&i| i < size)
    }
}

/// Channels per register block of the depthwise kernel.
const DW_BLOCK: usize = 32;
/// Channels per register block when [`DW_PIXELS`] pixels are computed together.
const DW_QUAD_BLOCK: usize = 16;
/// Output pixels computed together where no tap hangs over the border: independent
/// accumulators, so that the FMA latency chain over the taps does not bound the speed.
const DW_PIXELS: usize = 4;

/// Channels `c0..` of output pixel (`oy`, `ox`) into `opix` (all `c` channels of that pixel),
/// with bias and activation (see [`depthwise`]); taps over the border are skipped.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dw_pixel<const FMA: bool>(
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
fn dw_pixels<const FMA: bool>(
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

/// Most output pixels of one AVX-512 depthwise run (at stride 1; 7 at stride 2, and 7 so
/// that the 7-wide last stage is one run per row).
#[cfg(target_arch = "x86_64")]
const DW_RUN: usize = 8;

#[cfg(target_arch = "x86_64")]
mod dw512 {
    //! AVX-512 depthwise runs: per kernel row, each input column that the run's output pixels
    //! share is loaded once and applied to every pixel that uses it, with the row's weights in
    //! registers (far fewer loads per FMA than one load per tap and pixel).

    use std::arch::x86_64::*;

    use super::{Act, ConvGeom, DW_RUN, act_one};

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
            c0 = unsafe {
                run_one::<K, S, P, COLS, BORDER>(input, weight, bias, act, g, oy, ox, opix)
            };
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
                let run = if WIDE {
                    // SAFETY: WIDE only in the AVX-512 instance; ox < ow.
                    unsafe { dw512::run(input, weight, bias, act, &g, oy, ox, orow) }
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

/// `dst.copy_from_slice(src)` for the few dozen channels of one im2col segment, in fixed
/// 8-float moves instead of a `memcpy` call per segment.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[f32; 8] = s.try_into().unwrap();
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

multiversion! {
    /// im2col for output rows `oy0..oy0 + rows`: each output pixel becomes one row of
    /// `k·k·c` values ordered (ky, kx, channel), zeros where the kernel hangs over the border.
    pub fn im2col(input: &[f32], g: ConvGeom, oy0: usize, rows: usize, col: &mut [f32]) {
        let c = g.c;
        let kc = g.k * c;
        let mut dst = col.chunks_exact_mut(g.k * kc);
        for oy in oy0..oy0 + rows {
            for ox in 0..g.ow {
                let Some(row) = dst.next() else { return };
                for ky in 0..g.k {
                    let seg = &mut row[ky * kc..(ky + 1) * kc];
                    let Some(iy) = g.tap(oy, ky, g.pad_top, g.h) else {
                        seg.fill(0.0);
                        continue;
                    };
                    for kx in 0..g.k {
                        let px = &mut seg[kx * c..(kx + 1) * c];
                        match g.tap(ox, kx, g.pad_left, g.w) {
                            Some(ix) => copy_short(px, &input[(iy * g.w + ix) * c..][..c]),
                            None => px.fill(0.0),
                        }
                    }
                }
            }
        }
    }
}

multiversion! {
    /// Squeeze-excitation gates from a channel mean: `sigmoid(We·act(Wr·mean + br) + be)`.
    /// `w_reduce` is `[c][squeeze]`, `w_expand` `[squeeze][c]`; `hidden` is scratch.
    pub fn se_gates(
        mean: &[f32],
        w_reduce: &[f32],
        b_reduce: &[f32],
        w_expand: &[f32],
        b_expand: &[f32],
        act: Act,
        hidden: &mut [f32],
        gates: &mut [f32],
    ) {
        let sq = b_reduce.len();
        hidden.copy_from_slice(b_reduce);
        for (m, wrow) in mean.iter().zip(w_reduce.chunks_exact(sq)) {
            for (h, w) in hidden.iter_mut().zip(wrow) {
                *h = fmadd::<FMA>(*m, *w, *h);
            }
        }
        for h in hidden.iter_mut() {
            *h = act_one::<FMA>(*h, act);
        }
        gates.copy_from_slice(b_expand);
        let c = b_expand.len();
        for (h, wrow) in hidden.iter().zip(w_expand.chunks_exact(c)) {
            for (g, w) in gates.iter_mut().zip(wrow) {
                *g = fmadd::<FMA>(*h, *w, *g);
            }
        }
        for g in gates.iter_mut() {
            *g = sigmoid_fast::<FMA>(*g);
        }
    }
}

multiversion! {
    /// Scales row `i` of the `[rows][n]` matrix `src` by `scale[i]` into `dst` (the SE gate
    /// folded into the projection weights, so the gated activation is never materialised).
    pub fn scale_rows(dst: &mut [f32], src: &[f32], scale: &[f32], n: usize) {
        for ((d, s), g) in dst.chunks_exact_mut(n).zip(src.chunks_exact(n)).zip(scale) {
            for (d, s) in d.iter_mut().zip(s) {
                *d = s * g;
            }
        }
    }
}

multiversion! {
    /// Multiplies every `scale.len()`-wide row of `rows` by `scale` (the SE gate applied to the
    /// activations where they are smaller than the projection weights).
    pub fn scale_columns(rows: &mut [f32], scale: &[f32]) {
        for row in rows.chunks_exact_mut(scale.len()) {
            for (v, g) in row.iter_mut().zip(scale) {
                *v *= g;
            }
        }
    }
}

multiversion! {
    /// Adds every `c`-wide row of `rows` into `sums`.
    pub fn column_sums(rows: &[f32], sums: &mut [f32]) {
        let c = sums.len();
        for row in rows.chunks_exact(c) {
            for (s, y) in sums.iter_mut().zip(row) {
                *s += y;
            }
        }
    }
}

multiversion! {
    /// `out = bias + x · w` for one row `x` and a row-major `[x.len()][out.len()]` matrix.
    pub fn vec_mat(x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32]) {
        let n = out.len();
        out.copy_from_slice(bias);
        for (a, wrow) in x.iter().zip(w.chunks_exact(n)) {
            for (o, w) in out.iter_mut().zip(wrow) {
                *o = fmadd::<FMA>(*a, *w, *o);
            }
        }
    }
}

/// Scalar reference activations for tests (exact `exp`).
pub fn act_reference(x: f32, act: Act) -> f32 {
    match act {
        Act::None => x,
        Act::Silu => x / (1.0 + (-x).exp()),
        Act::Relu6 => x.clamp(0.0, 6.0),
        Act::Relu => x.max(0.0),
    }
}

/// Runs [`bias_act`] with zero bias on a copy of `xs` (for testing the fast activations).
pub fn act_slice(isa: Isa, xs: &[f32], act: Act) -> Vec<f32> {
    let mut out = xs.to_vec();
    let bias = vec![0.0; out.len().max(1)];
    if !out.is_empty() {
        bias_act(isa, &mut out, &bias[..xs.len()], act, None);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<f32> {
        (0..4001)
            .map(|i| (i as f32 - 2000.0) * 0.01 + 0.003)
            .collect()
    }

    #[test]
    fn fast_activations_match_exact_ones() {
        for isa in [Some(Isa::best()), Isa::avx2(), Some(Isa::scalar())]
            .into_iter()
            .flatten()
        {
            for act in [Act::Silu, Act::Relu6, Act::Relu, Act::None] {
                let xs = inputs();
                for (x, y) in xs.iter().zip(act_slice(isa, &xs, act)) {
                    let want = act_reference(*x, act);
                    let tol = 2e-6 * want.abs().max(1.0);
                    assert!((y - want).abs() <= tol, "{act:?} {x}: {y} vs {want}");
                }
            }
        }
        // Far outside the polynomial's range: finite, saturating.
        let big = act_slice(Isa::best(), &[-1000.0, 1000.0, -90.0], Act::Silu);
        assert_eq!(big[1], 1000.0);
        assert!(big[0].abs() < 1e-30 && big[2].abs() < 1e-30);
    }

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

    #[test]
    fn plain_matmul_matches_definition() {
        let (m, k, n) = (5, 7, 9);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.1 - 1.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 0.5 - i as f32 * 0.03).collect();
        for isa in [Some(Isa::best()), Isa::avx2(), Some(Isa::scalar())]
            .into_iter()
            .flatten()
        {
            let mut d = vec![f32::NAN; m * n];
            matmul_plain(isa, &mut d, &a, &b, k, n);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                    assert!((d[i * n + j] - want).abs() < 1e-4);
                }
            }
        }
    }
}
