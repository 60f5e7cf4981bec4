//! The AVX2+FMA microkernel: 6 pixels × 16 channels, 12 ymm accumulators.

use std::arch::x86_64::*;

use super::{Job, Tile, by_rows};

/// Drives the AVX2 microkernel over a job.
///
/// # Safety
/// AVX2 and FMA must be available; the job's `dst` as in `run_panels`.
pub(super) unsafe fn run(job: &Job<'_>) {
    // SAFETY: the caller's contract; every tile is inside the job.
    job.for_each_tile(6, |t, rows| unsafe { step256(job, t, rows) });
}

/// One AVX2 microkernel call and, after the last depth block, the epilogue.
///
/// # Safety
/// AVX2+FMA; `t` and `rows` inside the job.
#[target_feature(enable = "avx2,fma")]
unsafe fn step256(job: &Job<'_>, t: &Tile, rows: usize) {
    let cols = job.cols(t.p);
    let m0 = lane_mask8(cols);
    let m1 = lane_mask8(cols.saturating_sub(8));
    // SAFETY: the caller's contract.
    unsafe {
        if cols > 8 {
            by_rows!(rows, tile256::<_, 2>(job, t, m0, m1); 1 2 3 4 5 6);
        } else {
            by_rows!(rows, tile256::<_, 1>(job, t, m0, m1); 1 2 3 4 5 6);
        }
        if t.k0 + t.kc == job.w.k {
            job.finish::<true>(t, rows);
        }
    }
}

/// Mask of the first `n` (≤ 8) lanes, as `maskload`/`maskstore` want it.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_mask8(n: usize) -> __m256i {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes)
}

/// `R` pixels × 16 channels over one depth block (see [`tile512`]).
///
/// # Safety
/// AVX2+FMA; rows `t.i..t.i + R` < m, panel `t.p` and depth block inside the job.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const R: usize, const W: usize>(
    job: &Job<'_>,
    t: &Tile,
    m0: __m256i,
    m1: __m256i,
) {
    let (n, k) = (job.w.n, job.w.k);
    let masks = [m0, m1];
    // SAFETY: (whole body) as in `tile512`, with 16-wide panels of `W` vectors of 8.
    unsafe {
        let c = job.dst.add(t.i * n + t.p * 16);
        let mut b = job.w.data.as_ptr().add(t.p * k * 16 + t.k0 * W * 8);
        let mut acc = [[_mm256_setzero_ps(); W]; R];
        if t.k0 == 0 {
            let bias = job.w.bias.as_ptr().add(t.p * 16);
            let bv: [__m256; W] = std::array::from_fn(|v| _mm256_loadu_ps(bias.add(8 * v)));
            acc.iter_mut().for_each(|r| *r = bv);
        } else {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_maskload_ps(c.add(r * n + 8 * v), masks[v]);
                }
            }
        }
        let l = t.lhs;
        for seg in 0..l.segs {
            let a = l.a.add(seg * l.seg_stride);
            for kk in 0..l.seg_len {
                let bv: [__m256; W] =
                    std::array::from_fn(|v| _mm256_load_ps(b.add((kk * W + v) * 8)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*a.add(r * l.lda + kk));
                    for (acc, bv) in acc.iter_mut().zip(&bv) {
                        *acc = _mm256_fmadd_ps(av, *bv, *acc);
                    }
                }
            }
            b = b.add(l.seg_len * W * 8);
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                _mm256_maskstore_ps(c.add(r * n + 8 * v), masks[v], *acc);
            }
        }
    }
}
