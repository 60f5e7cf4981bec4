//! AVX-512 VNNI int8 GEMM microkernel: 12 pixels × 32 channels in 24 zmm int32 accumulators,
//! one `vpdpbusd` (64 multiply-adds of unsigned activations by signed weights) per pixel,
//! channel vector and four `k`; the requantisation (multiply-add, activation, residual,
//! rounding, `u8` store) runs on the accumulators in registers.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{Job, OutKind, OutPtr};
use crate::kernels::{LN2_HI, LN2_LO, LOG2E};

/// Pixels per tile.
const MR: usize = 12;
/// Pixels per block of the activations kept in L2 while every panel passes over them.
const MC: usize = 144;
/// Channels per panel.
const NR: usize = 32;

/// Calls `$kernel::<R, W>` for the `R = $rows` given at run time.
macro_rules! by_rows {
    ($rows:expr, $w:literal, $kernel:ident $args:tt; $($r:literal)*) => {
        match $rows {
            $($r => $kernel::<$r, $w> $args,)*
            _ => unreachable!(),
        }
    };
}

/// Computes rows × panels of `job` in tiles of [`MR`] pixels, rows blocked by [`MC`] so that
/// the activations stay in L2 while the panels pass.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; the block is inside the job's output and no other thread
/// writes it.
pub(crate) unsafe fn run(job: &Job<'_>, rows: Range<usize>, panels: Range<usize>) {
    let mut i0 = rows.start;
    while i0 < rows.end {
        let mc = MC.min(rows.end - i0);
        for p in panels.clone() {
            let wide = job.cols(p) > 16;
            let mut i = i0;
            while i < i0 + mc {
                let r = MR.min(i0 + mc - i);
                // SAFETY: the caller's contract; rows i..i+r and panel p are in the block.
                unsafe {
                    if wide {
                        by_rows!(r, 2, tile(job, i, p); 1 2 3 4 5 6 7 8 9 10 11 12);
                    } else {
                        by_rows!(r, 1, tile(job, i, p); 1 2 3 4 5 6 7 8 9 10 11 12);
                    }
                }
                i += r;
            }
        }
        i0 += mc;
    }
}

/// Mask of the first `n` (≤ 16) lanes.
#[inline(always)]
fn lane_mask(n: usize) -> __mmask16 {
    if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
}

/// `R` pixels from `i` × the `W·16` first channels of panel `p`.
///
/// # Safety
/// As for [`run`]; `i + R <= m`; `W == 2` only when the panel has more than 16 valid columns.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn tile<const R: usize, const W: usize>(job: &Job<'_>, i: usize, p: usize) {
    let kp = job.w.kp;
    let cols = job.cols(p);
    let masks = [lane_mask(cols), lane_mask(cols.saturating_sub(16))];
    // SAFETY: (whole body) panel p holds kp/4 groups of NR·4 bytes (`PackedI8::new`); rows
    // i..i+R of the activations are readable for kp bytes each (checked by `gemm`); the output
    // and residual are m×n with row i+r at (i+r)·n, columns p·NR.. masked to the valid ones.
    unsafe {
        let b = job.w.bytes.as_ptr().add(p * kp * NR);
        let a = job.lhs.as_ptr().add(i * job.lda);
        let acc = accumulate::<R, W>(a, job.lda, b, kp / 4);
        let n = job.w.n;
        let c0 = p * NR;
        match job.out {
            OutPtr::I32(dst) => {
                for (r, acc) in acc.iter().enumerate() {
                    for (v, acc) in acc.iter().enumerate() {
                        let at = dst.add((i + r) * n + c0 + 16 * v);
                        _mm512_mask_storeu_epi32(at.cast(), masks[v], *acc);
                    }
                }
            }
            OutPtr::U8(dst) => {
                let req = job.req.expect("u8 output has an epilogue");
                let mul: [__m512; W] =
                    std::array::from_fn(|v| _mm512_loadu_ps(req.mul.as_ptr().add(c0 + 16 * v)));
                let add: [__m512; W] =
                    std::array::from_fn(|v| _mm512_loadu_ps(req.add.as_ptr().add(c0 + 16 * v)));
                for (r, acc) in acc.iter().enumerate() {
                    let row = (i + r) * n + c0;
                    for (v, acc) in acc.iter().enumerate() {
                        let mut y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*acc), mul[v], add[v]);
                        if let Some(res) = job.residual {
                            let x = _mm_maskz_loadu_epi8(
                                masks[v],
                                res.x.as_ptr().add(row + 16 * v).cast(),
                            );
                            let x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x));
                            y = _mm512_fmadd_ps(x, _mm512_set1_ps(res.mul), y);
                        }
                        // Unsigned saturation does the clamp to 255.
                        let q = _mm512_cvtps_epi32(finish(y, req.out));
                        _mm512_mask_cvtusepi32_storeu_epi8(
                            dst.add(row + 16 * v).cast(),
                            masks[v],
                            q,
                        );
                    }
                }
            }
        }
    }
}

/// The sums of `R` rows of activations (`lda` apart, from `a`) with a panel's first `W·16`
/// channels (`b`) over `quads` groups of four `k`. Returned by value, so that the accumulators
/// stay in registers: the epilogue indexes them at run time, which would otherwise keep them
/// in memory through the loop.
///
/// # Safety
/// AVX-512 VNNI; `R` rows of `4·quads` bytes from `a`, `quads` groups of 128 bytes from `b`.
#[inline(always)]
unsafe fn accumulate<const R: usize, const W: usize>(
    a: *const u8,
    lda: usize,
    b: *const i8,
    quads: usize,
) -> [[__m512i; W]; R] {
    // SAFETY: the caller's contract.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); W]; R];
        for q in 0..quads {
            let bq = b.add(q * 4 * NR);
            let bv: [__m512i; W] =
                std::array::from_fn(|v| _mm512_loadu_si512(bq.add(64 * v).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let quad = std::ptr::read_unaligned(a.add(r * lda + 4 * q).cast::<i32>());
                let av = _mm512_set1_epi32(quad);
                for (acc, bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm512_dpbusd_epi32(*acc, av, *bv);
                }
            }
        }
        acc
    }
}

/// The activation and clamp of the epilogue (`y` from the multiply-add), ready for rounding:
/// at least `lo` (0 or more), at most `hi` where that is below 255 (above, the stores'
/// unsigned saturation clamps).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn finish(y: __m512, out: OutKind) -> __m512 {
    match out {
        OutKind::Clamp { lo, hi } => {
            let y = _mm512_max_ps(y, _mm512_set1_ps(lo));
            if hi < 255.0 {
                _mm512_min_ps(y, _mm512_set1_ps(hi))
            } else {
                y
            }
        }
        OutKind::Silu {
            inv_scale,
            zero_point,
        } => {
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), y));
            // y / (1 + e) by a reciprocal estimate and one Newton step (as exact as the
            // division for this, in a fraction of its time).
            let d = _mm512_add_ps(_mm512_set1_ps(1.0), e);
            let r = _mm512_rcp14_ps(d);
            let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)));
            let s = _mm512_mul_ps(y, r);
            let q = _mm512_fmadd_ps(s, _mm512_set1_ps(inv_scale), _mm512_set1_ps(zero_point));
            _mm512_max_ps(q, _mm512_setzero_ps())
        }
    }
}

/// 16 lanes of `kernels::exp_fast` (same reduction and polynomial).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn exp(x: __m512) -> __m512 {
    const MAGIC: f32 = 12_582_912.0;
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.0),
    );
    let shifted = _mm512_add_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        _mm512_set1_ps(MAGIC),
    );
    let n = _mm512_sub_ps(shifted, _mm512_set1_ps(MAGIC));
    let ni = _mm512_sub_epi32(
        _mm512_castps_si512(shifted),
        _mm512_set1_epi32(MAGIC.to_bits() as i32),
    );
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        ni,
        _mm512_set1_epi32(127),
    )));
    _mm512_mul_ps(p, scale)
}

/// Channels per depthwise block: one zmm of `u8` activations.
pub(crate) const DW_CHANNELS: usize = 64;

/// Depthwise weights widened for [`depthwise`]: per tap and block of 64 channels, four zmm
/// `W_b` (b = 0..4) whose lane `j` holds channel `4j + b`'s weight in byte `b`, zeros in the
/// other bytes. `vpdpbusd(acc_b, x, W_b)` on 64 activations as they lie in memory then adds
/// `x[4j + b]·w[4j + b]` to lane `j` of `acc_b`: 16 multiply-adds per instruction, no widening
/// of the activations.
pub(crate) fn widen_dw_weights(weight: &[i8], taps: usize, c: usize) -> Vec<i32> {
    let cp = c.next_multiple_of(DW_CHANNELS);
    let mut out = vec![0i32; taps * cp];
    for t in 0..taps {
        for c0 in (0..cp).step_by(DW_CHANNELS) {
            let block = &mut out[t * cp + c0..][..DW_CHANNELS];
            for ch in c0..(c0 + DW_CHANNELS).min(c) {
                let (j, b) = ((ch - c0) / 4, (ch - c0) % 4);
                let w = weight[t * c + ch] as u8 as u32;
                block[b * 16 + j] = (w << (8 * b)) as i32;
            }
        }
    }
    out
}

/// Output pixels of one full depthwise run.
const DW_RUN: usize = 4;

/// The operands every depthwise run shares.
struct DwArgs<'a> {
    input: &'a [u8],
    w32: &'a [i32],
    g: &'a crate::kernels::ConvGeom,
    pad: u8,
    /// `mul`/`add` of the epilogue in the accumulators' channel order (lane `j` of vector `b`
    /// is channel `4j + b` of its block).
    mul: &'a [f32],
    add: &'a [f32],
    out: OutKind,
}

/// int8 depthwise conv for output rows `oy0..oy0 + out.len()/(ow·c)` (see
/// `super::depthwise`), 64 channels × runs of up to 4 output pixels at a time, each input
/// column loaded once per run and applied to every pixel that uses it; columns and rows over
/// the border read the zero point.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; `w32` from [`widen_dw_weights`]; `req` padded to 32
/// channels as `Requant::new` does; `input` is the whole `[h][w][c]` image.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn depthwise(
    input: &[u8],
    w32: &[i32],
    req: &super::Requant,
    g: &crate::kernels::ConvGeom,
    oy0: usize,
    pad: u8,
    out: &mut [u8],
    mut sums: Option<&mut [i32]>,
) {
    let c = g.c;
    let cp = c.next_multiple_of(DW_CHANNELS);
    assert!(input.len() >= g.h * g.w * c && w32.len() >= g.k * g.k * cp);
    assert!(req.mul.len() >= c && out.len().is_multiple_of(g.ow * c));
    if let Some(s) = &sums {
        assert!(s.len() >= c);
    }
    // The epilogue's per-channel factors in accumulator order (zeros past c).
    let (mut mul, mut add) = (vec![0f32; cp], vec![0f32; cp]);
    for ch in 0..c {
        let (c0, r) = (ch / DW_CHANNELS * DW_CHANNELS, ch % DW_CHANNELS);
        let at = c0 + (r % 4) * 16 + r / 4;
        mul[at] = req.mul[ch];
        add[at] = req.add[ch];
    }
    let args = DwArgs {
        input,
        w32,
        g,
        pad,
        mul: &mul,
        add: &add,
        out: req.out,
    };
    let rows = out.len() / (g.ow * c);
    let mut lanes = [0i32; DW_CHANNELS];
    for r in 0..rows {
        let oy = oy0 + r;
        let orow = &mut out[r * g.ow * c..(r + 1) * g.ow * c];
        for c0 in (0..c).step_by(DW_CHANNELS) {
            let n = (c - c0).min(DW_CHANNELS);
            let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            let mut total = [_mm512_setzero_si512(); 4];
            let mut ox = 0;
            while ox < g.ow {
                let p = (g.ow - ox).min(DW_RUN);
                // SAFETY: the caller's contract; pixels ox..ox+p of row oy are in the output.
                let s = unsafe { dw_dispatch(&args, oy, ox, p, c0, mask, orow) };
                for (t, s) in total.iter_mut().zip(s) {
                    *t = _mm512_add_epi32(*t, s);
                }
                ox += p;
            }
            if let Some(s) = sums.as_deref_mut() {
                for (b, t) in total.iter().enumerate() {
                    // SAFETY: `lanes` holds four vectors.
                    unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().add(16 * b).cast(), *t) };
                }
                for (k, s) in s[c0..c0 + n].iter_mut().enumerate() {
                    *s += lanes[(k % 4) * 16 + k / 4];
                }
            }
        }
    }
}

/// Picks the run kernel for the geometry's kernel size and stride; returns the run's sums of
/// the `u8` outputs per accumulator lane.
///
/// # Safety
/// As for [`depthwise`]; pixels `ox..ox + p` inside the output row `oy`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn dw_dispatch(
    a: &DwArgs<'_>,
    oy: usize,
    ox: usize,
    p: usize,
    c0: usize,
    mask: __mmask64,
    orow: &mut [u8],
) -> [__m512i; 4] {
    macro_rules! pick {
        ($k:literal, $s:literal) => {
            match p {
                DW_RUN => dw_run::<$k, $s, DW_RUN>(a, oy, ox, c0, mask, orow),
                3 => dw_run::<$k, $s, 3>(a, oy, ox, c0, mask, orow),
                2 => dw_run::<$k, $s, 2>(a, oy, ox, c0, mask, orow),
                _ => dw_run::<$k, $s, 1>(a, oy, ox, c0, mask, orow),
            }
        };
    }
    // SAFETY: the caller's contract.
    unsafe {
        match (a.g.k, a.g.stride) {
            (3, 1) => pick!(3, 1),
            (3, 2) => pick!(3, 2),
            (5, 1) => pick!(5, 1),
            (5, 2) => pick!(5, 2),
            _ => {
                let mut total = [_mm512_setzero_si512(); 4];
                for px in ox..ox + p {
                    let s = dw_any(a, oy, px, c0, mask, orow);
                    for (t, s) in total.iter_mut().zip(s) {
                        *t = _mm512_add_epi32(*t, s);
                    }
                }
                total
            }
        }
    }
}

/// One run of `P` output pixels × 64 channels of a `K`×`K` stride-`S` depthwise conv.
///
/// # Safety
/// As for [`dw_dispatch`] with `p == P`, `g.k == K`, `g.stride == S`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn dw_run<const K: usize, const S: usize, const P: usize>(
    a: &DwArgs<'_>,
    oy: usize,
    ox: usize,
    c0: usize,
    mask: __mmask64,
    orow: &mut [u8],
) -> [__m512i; 4] {
    // SAFETY: the caller's contract (both calls).
    unsafe {
        let acc = dw_accumulate::<K, S, P>(a, oy, ox, c0, mask);
        dw_store(a, &acc, ox, c0, mask, orow)
    }
}

/// The int32 sums of one run (see [`dw_run`]), returned by value so that they stay in
/// registers (the store indexes them at run time).
///
/// # Safety
/// As for [`dw_run`].
#[inline(always)]
unsafe fn dw_accumulate<const K: usize, const S: usize, const P: usize>(
    a: &DwArgs<'_>,
    oy: usize,
    ox: usize,
    c0: usize,
    mask: __mmask64,
) -> [[__m512i; 4]; P] {
    let g = a.g;
    let (c, cp) = (g.c, g.c.next_multiple_of(DW_CHANNELS));
    let ix0 = (ox * S) as isize - g.pad_left as isize;
    // SAFETY: AVX-512 by the caller's contract.
    let (zp, mut acc) = unsafe {
        (
            _mm512_set1_epi8(a.pad as i8),
            [[_mm512_setzero_si512(); 4]; P],
        )
    };
    for ky in 0..K {
        let iy = (oy * S + ky) as isize - g.pad_top as isize;
        let row_in = iy >= 0 && (iy as usize) < g.h;
        let row = iy.max(0) as usize * g.w * c + c0;
        // Weights of this kernel row: `[K][4]` vectors from here, 64 dwords per tap.
        let w = a.w32[ky * K * cp + c0..].as_ptr();
        // SAFETY: (loop body) input columns are read only inside the image, the lanes past c
        // masked off; taps (ky, 0..K) of block c0 are inside the widened weights.
        unsafe {
            let column = |j: usize| -> __m512i {
                let ix = ix0 + j as isize;
                if row_in && ix >= 0 && (ix as usize) < g.w {
                    let at = a.input.as_ptr().add(row + ix as usize * c);
                    _mm512_maskz_loadu_epi8(mask, at.cast())
                } else {
                    zp
                }
            };
            // Every column of the run, unrolled so that which pixels and taps use it is known
            // at compile time.
            macro_rules! columns {
                ($($j:literal)*) => {$(
                    if $j < (P - 1) * S + K {
                        let x = column($j);
                        apply::<K, S, P, $j>(&mut acc, x, w, cp);
                    }
                )*};
            }
            columns!(0 1 2 3 4 5 6 7 8 9 10);
        }
    }
    acc
}

/// Multiplies input column `J` of a run into every output pixel `p` that uses it (tap
/// `J − p·S`), four `vpdpbusd` per pixel (one per byte of the dword lanes).
///
/// # Safety
/// `w` points at the kernel row's widened weights (`K` taps, `cp` dwords apart).
#[inline(always)]
unsafe fn apply<const K: usize, const S: usize, const P: usize, const J: usize>(
    acc: &mut [[__m512i; 4]; P],
    x: __m512i,
    w: *const i32,
    cp: usize,
) {
    for (p, acc) in acc.iter_mut().enumerate() {
        let kx = J as isize - (p * S) as isize;
        if (0..K as isize).contains(&kx) {
            for (b, acc) in acc.iter_mut().enumerate() {
                // SAFETY: the caller's contract; only inlined into functions with AVX-512 VNNI.
                unsafe {
                    let wb = _mm512_loadu_si512(w.add(kx as usize * cp + 16 * b).cast());
                    *acc = _mm512_dpbusd_epi32(*acc, x, wb);
                }
            }
        }
    }
}

/// Requantises a run's accumulators, interleaves the four byte positions back into channel
/// order and stores 64 `u8` per pixel; returns their sums per accumulator lane.
///
/// # Safety
/// Pixels `ox..ox + acc.len()` inside `orow`; the epilogue arrays cover block `c0`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn dw_store(
    a: &DwArgs<'_>,
    acc: &[[__m512i; 4]],
    ox: usize,
    c0: usize,
    mask: __mmask64,
    orow: &mut [u8],
) -> [__m512i; 4] {
    let c = a.g.c;
    let mut total = [_mm512_setzero_si512(); 4];
    // SAFETY: as the caller promised.
    unsafe {
        let mul: [__m512; 4] =
            std::array::from_fn(|b| _mm512_loadu_ps(a.mul.as_ptr().add(c0 + 16 * b)));
        let add: [__m512; 4] =
            std::array::from_fn(|b| _mm512_loadu_ps(a.add.as_ptr().add(c0 + 16 * b)));
        for (p, acc) in acc.iter().enumerate() {
            let mut bytes = _mm512_setzero_si512();
            for b in 0..4 {
                let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[b]), mul[b], add[b]);
                let q = _mm512_cvtps_epi32(finish(y, a.out));
                let q = _mm512_min_epi32(q, _mm512_set1_epi32(255));
                total[b] = _mm512_add_epi32(total[b], q);
                bytes =
                    _mm512_or_si512(bytes, _mm512_sllv_epi32(q, _mm512_set1_epi32(8 * b as i32)));
            }
            let dst = orow.as_mut_ptr().add((ox + p) * c + c0);
            _mm512_mask_storeu_epi8(dst.cast(), mask, bytes);
        }
    }
    total
}

/// Other kernel sizes and strides: one pixel, the taps in a loop.
///
/// # Safety
/// As for [`dw_dispatch`], pixel `px`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn dw_any(
    a: &DwArgs<'_>,
    oy: usize,
    px: usize,
    c0: usize,
    mask: __mmask64,
    orow: &mut [u8],
) -> [__m512i; 4] {
    let g = a.g;
    let (c, cp) = (g.c, g.c.next_multiple_of(DW_CHANNELS));
    let zp = _mm512_set1_epi8(a.pad as i8);
    let mut acc = [[_mm512_setzero_si512(); 4]; 1];
    for ky in 0..g.k {
        for kx in 0..g.k {
            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
            let ix = (px * g.stride + kx) as isize - g.pad_left as isize;
            let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w;
            // SAFETY: as in `dw_accumulate`.
            unsafe {
                let x = if inside {
                    let at = a
                        .input
                        .as_ptr()
                        .add((iy as usize * g.w + ix as usize) * c + c0);
                    _mm512_maskz_loadu_epi8(mask, at.cast())
                } else {
                    zp
                };
                let w = a.w32.as_ptr().add((ky * g.k + kx) * cp + c0);
                for (b, acc) in acc[0].iter_mut().enumerate() {
                    let wb = _mm512_loadu_si512(w.add(16 * b).cast());
                    *acc = _mm512_dpbusd_epi32(*acc, x, wb);
                }
            }
        }
    }
    // SAFETY: as the caller promised.
    unsafe { dw_store(a, &acc, px, c0, mask, orow) }
}
