//! The AVX-512 microkernel: 12 pixels × 32 channels, 24 zmm accumulators.

use std::arch::x86_64::*;

use super::{Job, Tile, by_rows};
use crate::kernels::Act;

/// Drives the AVX-512 microkernel over a job.
///
/// # Safety
/// AVX-512F must be available; the job's `dst` as in `run_panels`.
pub(super) unsafe fn run(job: &Job<'_>) {
    // SAFETY: the caller's contract; every tile is inside the job.
    job.for_each_tile(12, |t, rows| unsafe { step512(job, t, rows) });
}

/// One AVX-512 microkernel call and, after the last depth block, the epilogue.
///
/// # Safety
/// AVX-512F; `t` and `rows` inside the job.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn step512(job: &Job<'_>, t: &Tile, rows: usize) {
    let cols = job.cols(t.p);
    let m0 = lane_mask16(cols);
    let m1 = lane_mask16(cols.saturating_sub(16));
    // SAFETY: the caller's contract.
    unsafe {
        match super::width(t.p, job.w.n, 32) {
            32 => {
                by_rows!(rows, tile512::<_, 2, false>(job, t, m0, m1); 1 2 3 4 5 6 7 8 9 10 11 12)
            }
            24 => {
                by_rows!(rows, tile512::<_, 2, true>(job, t, m0, m1); 1 2 3 4 5 6 7 8 9 10 11 12)
            }
            _ => {
                by_rows!(rows, tile512::<_, 1, false>(job, t, m0, m1); 1 2 3 4 5 6 7 8 9 10 11 12)
            }
        }
        // ReLU/ReLU6/identity and the residual were applied in registers by the tile.
        if t.k0 + t.kc == job.w.k && job.epi.act == Act::Silu {
            job.finish::<true>(t, rows);
        }
    }
}

/// Mask of the first `n` (≤ 16) lanes.
#[inline(always)]
fn lane_mask16(n: usize) -> __mmask16 {
    if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
}

/// `R` pixels × 32 channels over one depth block: starts from the bias on the first block,
/// from the stored partial sums otherwise; stores the valid lanes (`m0`, `m1`). `W` zmm
/// per row, the last of them used as a ymm with `HALF` (24-wide panels).
///
/// # Safety
/// AVX-512F; rows `t.i..t.i + R` < m, panel `t.p` and depth block inside the job.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile512<const R: usize, const W: usize, const HALF: bool>(
    job: &Job<'_>,
    t: &Tile,
    m0: __mmask16,
    m1: __mmask16,
) {
    let (n, k) = (job.w.n, job.w.k);
    let masks = [m0, m1];
    // SAFETY: (whole body) `dst` rows t.i..t.i+R of m and columns p·32.. are inside the
    // m×n output or masked off; `lhs` rows t.i..t.i+R hold k0+kc ≤ k values each at lda
    // apart (checked by `gemm_packed`); panel p starts at p·k·32 floats from a 64-byte
    // aligned start and is `W`·16 wide (`width`); the bias has 32 per panel; the
    // residual has the output's m×n shape (checked by `gemm_packed`), read masked alike.
    unsafe {
        let c = job.dst.add(t.i * n + t.p * 32);
        // Floats per packed row, and whether vector `v` is the half one.
        let wp = W * 16 - if HALF { 8 } else { 0 };
        let half = |v: usize| HALF && v == W - 1;
        let mut b = job.w.data.as_ptr().add(t.p * k * 32 + t.k0 * wp);
        let mut acc = [[_mm512_setzero_ps(); W]; R];
        if t.k0 == 0 {
            let bias = job.w.bias.as_ptr().add(t.p * 32);
            let bv: [__m512; W] = std::array::from_fn(|v| _mm512_loadu_ps(bias.add(16 * v)));
            acc.iter_mut().for_each(|r| *r = bv);
        } else {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_maskz_loadu_ps(masks[v], c.add(r * n + 16 * v));
                }
            }
        }
        let l = t.lhs;
        for seg in 0..l.segs {
            let a = l.a.add(seg * l.seg_stride);
            for kk in 0..l.seg_len {
                let bv: [__m512; W] = std::array::from_fn(|v| {
                    let at = b.add(kk * wp + 16 * v);
                    match (HALF, half(v)) {
                        (false, _) => _mm512_load_ps(at),
                        (true, false) => _mm512_loadu_ps(at),
                        (true, true) => _mm512_castps256_ps512(_mm256_load_ps(at)),
                    }
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(r * l.lda + kk));
                    for (v, (acc, bv)) in acc.iter_mut().zip(&bv).enumerate() {
                        *acc = if half(v) {
                            let (x, y, z) = (
                                _mm512_castps512_ps256(av),
                                _mm512_castps512_ps256(*bv),
                                _mm512_castps512_ps256(*acc),
                            );
                            _mm512_castps256_ps512(_mm256_fmadd_ps(x, y, z))
                        } else {
                            _mm512_fmadd_ps(av, *bv, *acc)
                        };
                    }
                }
            }
            b = b.add(l.seg_len * wp);
        }
        if t.k0 + t.kc == k && job.epi.act != Act::Silu {
            // Last depth block: clamp and add the residual before the only store (SiLU
            // is left to `finish`: its polynomial would crowd out the accumulators).
            let (lo, hi) = match job.epi.act {
                Act::Relu => (0.0, f32::INFINITY),
                Act::Relu6 => (0.0, 6.0),
                _ => (f32::NEG_INFINITY, f32::INFINITY),
            };
            if job.epi.act != Act::None {
                let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
                for acc in acc.iter_mut() {
                    for acc in acc.iter_mut() {
                        *acc = _mm512_min_ps(_mm512_max_ps(*acc, lo), hi);
                    }
                }
            }
            if let Some(res) = job.epi.residual {
                let res = res.as_ptr().add(t.i * n + t.p * 32);
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        let x = _mm512_maskz_loadu_ps(masks[v], res.add(r * n + 16 * v));
                        *acc = _mm512_add_ps(*acc, x);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(c.add(r * n + 16 * v), masks[v], *acc);
            }
        }
    }
}
