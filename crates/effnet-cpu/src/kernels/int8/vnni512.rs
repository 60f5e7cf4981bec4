//! AVX-512 VNNI int8 GEMM microkernel: 12 pixels × 32 channels in 24 zmm int32 accumulators,
//! one `vpdpbusd` (64 multiply-adds of unsigned activations by signed weights) per pixel,
//! channel vector and four `k`; the requantisation (multiply-add, activation, residual,
//! rounding, `u8` store) runs on the accumulators in registers.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{Job, MC, OutKind, OutPtr};
use crate::kernels::{LN2_HI, LN2_LO, LOG2E};

/// Pixels per tile.
const MR: usize = 12;
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
    // SAFETY (whole body): panel p holds kp/4 groups of NR·4 bytes (`PackedI8::new`); rows
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
                let mul: [__m512; W] = std::array::from_fn(|v| _mm512_loadu_ps(req.mul.as_ptr().add(c0 + 16 * v)));
                let add: [__m512; W] = std::array::from_fn(|v| _mm512_loadu_ps(req.add.as_ptr().add(c0 + 16 * v)));
                for (r, acc) in acc.iter().enumerate() {
                    let row = (i + r) * n + c0;
                    for (v, acc) in acc.iter().enumerate() {
                        let mut y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*acc), mul[v], add[v]);
                        if let Some(res) = job.residual {
                            let x = _mm_maskz_loadu_epi8(masks[v], res.x.as_ptr().add(row + 16 * v).cast());
                            let x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x));
                            y = _mm512_fmadd_ps(x, _mm512_set1_ps(res.mul), y);
                        }
                        let q = _mm512_cvtps_epi32(finish(y, req.out));
                        _mm512_mask_cvtepi32_storeu_epi8(dst.add(row + 16 * v).cast(), masks[v], q);
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

/// The activation and clamp of the epilogue (`y` from the multiply-add), ready for rounding.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn finish(y: __m512, out: OutKind) -> __m512 {
    match out {
        OutKind::Clamp { lo, hi } => {
            _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(lo)), _mm512_set1_ps(hi))
        }
        OutKind::Silu {
            inv_scale,
            zero_point,
        } => {
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), y));
            let s = _mm512_div_ps(y, _mm512_add_ps(_mm512_set1_ps(1.0), e));
            let q = _mm512_fmadd_ps(s, _mm512_set1_ps(inv_scale), _mm512_set1_ps(zero_point));
            _mm512_min_ps(_mm512_max_ps(q, _mm512_setzero_ps()), _mm512_set1_ps(255.0))
        }
    }
}

/// 16 lanes of `kernels::exp_fast` (same reduction and polynomial).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn exp(x: __m512) -> __m512 {
    const MAGIC: f32 = 12_582_912.0;
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0)), _mm512_set1_ps(88.0));
    let shifted = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _mm512_set1_ps(MAGIC));
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

/// Output pixels of one full depthwise run.
const DW_RUN: usize = 8;

/// int8 depthwise conv for output rows `oy0..oy0 + out.len()/(ow·c)` (see
/// `super::depthwise`), 32 channels × runs of 8, 4 or 1 output pixels at a time: each input
/// column the run shares is widened once (`u8` to int32 lanes) and multiplied into every pixel
/// that uses it by `vpdpbusd` with the tap's weights (int32 lanes, `i8` in the low byte), so
/// one instruction does 16 multiply-adds; columns and rows over the border are the zero point.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; `w32` is `[k·k][cp]` with `cp = c` rounded up to 32,
/// `req` padded alike; `input` is the whole `[h][w][c]` image.
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
    let cp = c.next_multiple_of(32);
    assert!(input.len() >= g.h * g.w * c && w32.len() >= g.k * g.k * cp);
    assert!(req.mul.len() >= cp && out.len().is_multiple_of(g.ow * c));
    if let Some(s) = &sums {
        assert!(s.len() >= c);
    }
    let rows = out.len() / (g.ow * c);
    let args = DwArgs {
        input,
        w32,
        req,
        g,
        pad,
    };
    for r in 0..rows {
        let oy = oy0 + r;
        let orow = &mut out[r * g.ow * c..(r + 1) * g.ow * c];
        let mut c0 = 0;
        while c0 < c {
            let masks = [lane_mask(c - c0), lane_mask((c - c0).saturating_sub(16))];
            let mut total = [_mm512_setzero_si512(); 2];
            let mut ox = 0;
            while ox < g.ow {
                let left = g.ow - ox;
                let p = if left >= DW_RUN {
                    DW_RUN
                } else if left >= 4 {
                    4
                } else {
                    1
                };
                // SAFETY: the caller's contract; pixels ox..ox+p of row oy are in the output.
                let s = unsafe { dw_dispatch(&args, oy, ox, p, c0, masks, orow) };
                total[0] = _mm512_add_epi32(total[0], s[0]);
                total[1] = _mm512_add_epi32(total[1], s[1]);
                ox += p;
            }
            if let Some(s) = sums.as_deref_mut() {
                let mut lanes = [0i32; 32];
                // SAFETY: `lanes` holds two vectors.
                unsafe {
                    _mm512_storeu_si512(lanes.as_mut_ptr().cast(), total[0]);
                    _mm512_storeu_si512(lanes.as_mut_ptr().add(16).cast(), total[1]);
                }
                let n = (c - c0).min(32);
                s[c0..c0 + n].iter_mut().zip(&lanes).for_each(|(s, l)| *s += l);
            }
            c0 += 32;
        }
    }
}

/// The operands every depthwise run shares.
struct DwArgs<'a> {
    input: &'a [u8],
    w32: &'a [i32],
    req: &'a super::Requant,
    g: &'a crate::kernels::ConvGeom,
    pad: u8,
}

/// Picks the run kernel for the geometry's kernel size and stride; returns the run's sums of
/// the `u8` outputs per channel lane.
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
    masks: [__mmask16; 2],
    orow: &mut [u8],
) -> [__m512i; 2] {
    macro_rules! pick {
        ($k:literal, $s:literal) => {
            match p {
                DW_RUN => dw_run::<$k, $s, DW_RUN>(a, oy, ox, c0, masks, orow),
                4 => dw_run::<$k, $s, 4>(a, oy, ox, c0, masks, orow),
                _ => dw_run::<$k, $s, 1>(a, oy, ox, c0, masks, orow),
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
            _ => dw_generic(a, oy, ox, p, c0, masks, orow),
        }
    }
}

/// One run of `P` output pixels × 32 channels of a `K`×`K` stride-`S` depthwise conv.
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
    masks: [__mmask16; 2],
    orow: &mut [u8],
) -> [__m512i; 2] {
    // SAFETY: the caller's contract (both calls).
    unsafe {
        let acc = dw_accumulate::<K, S, P>(a, oy, ox, c0, masks);
        dw_store(a.req, &acc, ox, a.g.c, c0, masks, orow)
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
    masks: [__mmask16; 2],
) -> [[__m512i; 2]; P] {
    let g = a.g;
    let (c, cp) = (g.c, g.c.next_multiple_of(32));
    let ix0 = (ox * S) as isize - g.pad_left as isize;
    // SAFETY: AVX-512 by the caller's contract.
    let (zp, mut acc) = unsafe {
        (
            _mm512_set1_epi32(a.pad as i32),
            [[_mm512_setzero_si512(); 2]; P],
        )
    };
    for ky in 0..K {
        let iy = (oy * S + ky) as isize - g.pad_top as isize;
        let row_in = iy >= 0 && (iy as usize) < g.h;
        // SAFETY (loop body): weights `[K·K][cp]`, tap (ky, kx), channels c0..c0+32 < cp; input
        // columns are read only inside the image, the lanes past c masked off.
        unsafe {
            let w: [[__m512i; 2]; K] = std::array::from_fn(|kx| {
                let at = a.w32.as_ptr().add((ky * K + kx) * cp + c0);
                [_mm512_loadu_si512(at.cast()), _mm512_loadu_si512(at.add(16).cast())]
            });
            let row = a.input.as_ptr().add(iy.max(0) as usize * g.w * c + c0);
            let column = |j: usize| -> [__m512i; 2] {
                let ix = ix0 + j as isize;
                if row_in && ix >= 0 && (ix as usize) < g.w {
                    let at = row.add(ix as usize * c);
                    std::array::from_fn(|v| {
                        let x = _mm_maskz_loadu_epi8(masks[v], at.add(16 * v).cast());
                        _mm512_cvtepu8_epi32(x)
                    })
                } else {
                    [zp, zp]
                }
            };
            // Every column of the run, unrolled so that which pixels and taps use it is known
            // at compile time (a loop would test it at run time, per pixel).
            macro_rules! columns {
                ($($j:literal)*) => {$(
                    if $j < (P - 1) * S + K {
                        let col = column($j);
                        apply::<K, S, P, $j>(&mut acc, &col, &w);
                    }
                )*};
            }
            columns!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18);
        }
    }
    acc
}

/// Multiplies input column `J` of a run into every output pixel `p` that uses it (tap
/// `J − p·S`).
#[inline(always)]
fn apply<const K: usize, const S: usize, const P: usize, const J: usize>(
    acc: &mut [[__m512i; 2]; P],
    col: &[__m512i; 2],
    w: &[[__m512i; 2]; K],
) {
    for (p, acc) in acc.iter_mut().enumerate() {
        let kx = J as isize - (p * S) as isize;
        if (0..K as isize).contains(&kx) {
            for v in 0..2 {
                // SAFETY: only inlined into `dw_accumulate`, which has AVX-512 VNNI enabled.
                acc[v] = unsafe { _mm512_dpbusd_epi32(acc[v], col[v], w[kx as usize][v]) };
            }
        }
    }
}

/// Requantises and stores a run's accumulators; returns their sums per channel lane.
///
/// # Safety
/// `req` padded past `c0 + 32`; pixels `ox..ox + acc.len()` inside `orow`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn dw_store(
    req: &super::Requant,
    acc: &[[__m512i; 2]],
    ox: usize,
    c: usize,
    c0: usize,
    masks: [__mmask16; 2],
    orow: &mut [u8],
) -> [__m512i; 2] {
    let mut total = [_mm512_setzero_si512(); 2];
    // SAFETY: as the caller promised.
    unsafe {
        let mul = [0, 1].map(|v| _mm512_loadu_ps(req.mul.as_ptr().add(c0 + 16 * v)));
        let add = [0, 1].map(|v| _mm512_loadu_ps(req.add.as_ptr().add(c0 + 16 * v)));
        for (p, acc) in acc.iter().enumerate() {
            let dst = orow.as_mut_ptr().add((ox + p) * c + c0);
            for v in 0..2 {
                let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[v]), mul[v], add[v]);
                let q = _mm512_cvtps_epi32(finish(y, req.out));
                _mm512_mask_cvtepi32_storeu_epi8(dst.add(16 * v).cast(), masks[v], q);
                total[v] = _mm512_add_epi32(total[v], q);
            }
        }
    }
    total
}

/// Other kernel sizes and strides: the same, one pixel at a time, the tap loop not unrolled.
///
/// # Safety
/// As for [`dw_dispatch`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn dw_generic(
    a: &DwArgs<'_>,
    oy: usize,
    ox: usize,
    p: usize,
    c0: usize,
    masks: [__mmask16; 2],
    orow: &mut [u8],
) -> [__m512i; 2] {
    let g = a.g;
    let (c, cp) = (g.c, g.c.next_multiple_of(32));
    let zp = _mm512_set1_epi32(a.pad as i32);
    let mut total = [_mm512_setzero_si512(); 2];
    for px in ox..ox + p {
        let mut acc = [[_mm512_setzero_si512(); 2]; 1];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                let ix = (px * g.stride + kx) as isize - g.pad_left as isize;
                let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w;
                // SAFETY: as in `dw_run`.
                unsafe {
                    let at = a.w32.as_ptr().add((ky * g.k + kx) * cp + c0);
                    for v in 0..2 {
                        let x = if inside {
                            let src = a.input.as_ptr().add((iy as usize * g.w + ix as usize) * c + c0);
                            _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(masks[v], src.add(16 * v).cast()))
                        } else {
                            zp
                        };
                        let w = _mm512_loadu_si512(at.add(16 * v).cast());
                        acc[0][v] = _mm512_dpbusd_epi32(acc[0][v], x, w);
                    }
                }
            }
        }
        // SAFETY: as the caller promised.
        let s = unsafe { dw_store(a.req, &acc, px, c, c0, masks, orow) };
        total[0] = _mm512_add_epi32(total[0], s[0]);
        total[1] = _mm512_add_epi32(total[1], s[1]);
    }
    total
}
