//! AVX2 int8 GEMM microkernel for x86-64 without AVX-512 VNNI: 6 pixels × 16 channels. The
//! activations of a row block are widened to 16 bits once and the weights were packed as 16-bit
//! pairs, so that `vpmaddwd` multiplies and adds two `k` per lane exactly (`vpmaddubsw` on the
//! bytes would saturate its 16-bit sums of two `u8·i8` products).

use std::arch::x86_64::*;
use std::ops::Range;

use super::{Job, OutKind, OutPtr};

/// Pixels per tile.
const MR: usize = 6;
/// Channels per panel.
const NR: usize = 16;

/// Calls `$kernel::<R>` for the `R = $rows` given at run time.
macro_rules! by_rows {
    ($rows:expr, $kernel:ident $args:tt; $($r:literal)*) => {
        match $rows {
            $($r => $kernel::<$r> $args,)*
            _ => unreachable!(),
        }
    };
}

/// Computes rows × panels of `job`: for each block of [`MR`] rows, widens them to 16 bits and
/// runs every panel over them.
///
/// # Safety
/// AVX2 and FMA available; the block is inside the job's output and no other thread writes it.
pub(crate) unsafe fn run(job: &Job<'_>, rows: Range<usize>, panels: Range<usize>) {
    let kp = job.w.kp;
    let mut wide = vec![0i16; MR * kp];
    let mut i = rows.start;
    while i < rows.end {
        let r = MR.min(rows.end - i);
        for (rr, dst) in wide.chunks_exact_mut(kp).take(r).enumerate() {
            let src = &job.lhs[(i + rr) * job.lda..][..kp];
            dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s as i16);
        }
        for p in panels.clone() {
            // SAFETY: the caller's contract; rows i..i+r and panel p are in the block.
            unsafe { by_rows!(r, tile(job, &wide, i, p); 1 2 3 4 5 6) };
        }
        i += r;
    }
}

/// `R` pixels from `i` (widened in `a`, `kp` apart) × panel `p`.
///
/// # Safety
/// As for [`run`]; `i + R <= m`; `a` holds `R·kp` values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(job: &Job<'_>, a: &[i16], i: usize, p: usize) {
    let kp = job.w.kp;
    assert!(a.len() >= R * kp);
    // SAFETY: (whole body) panel p holds kp/2 groups of NR pairs of i16 (`PackedI8::new`),
    // `a` was asserted; the output is written through `store`, inside the block.
    unsafe {
        let acc = accumulate::<R>(a.as_ptr(), kp, job.w.pairs.as_ptr().add(p * kp * NR));
        for (r, acc) in acc.iter().enumerate() {
            store(job, i + r, p, acc);
        }
    }
}

/// The sums of `R` widened rows (`kp` apart from `a`) with a panel of 16-bit pairs (`b`),
/// returned by value so that they stay in registers through the loop.
///
/// # Safety
/// AVX2; `R·kp` values from `a`, `kp/2` groups of `2·NR` from `b`.
#[inline(always)]
unsafe fn accumulate<const R: usize>(a: *const i16, kp: usize, b: *const i16) -> [[__m256i; 2]; R] {
    // SAFETY: the caller's contract.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for k2 in 0..kp / 2 {
            let b0 = _mm256_loadu_si256(b.add(k2 * 2 * NR).cast());
            let b1 = _mm256_loadu_si256(b.add(k2 * 2 * NR + 16).cast());
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = std::ptr::read_unaligned(a.add(r * kp + 2 * k2).cast::<i32>());
                let av = _mm256_set1_epi32(pair);
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, b0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, b1));
            }
        }
        acc
    }
}

/// Writes one finished row of a tile: raw, or requantised with the vector epilogue (the scalar
/// one for SiLU).
///
/// # Safety
/// As for [`tile`], for row `i`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(job: &Job<'_>, i: usize, p: usize, acc: &[__m256i; 2]) {
    let cols = job.cols(p);
    let mut sums = [0i32; NR];
    // SAFETY: `sums` holds two vectors.
    unsafe {
        _mm256_storeu_si256(sums.as_mut_ptr().cast(), acc[0]);
        _mm256_storeu_si256(sums.as_mut_ptr().add(8).cast(), acc[1]);
    }
    let (OutPtr::U8(dst), Some(req)) = (job.out, job.req) else {
        // SAFETY: the caller's contract.
        return unsafe { job.store_row(i, p, &sums) };
    };
    let OutKind::Clamp { lo, hi } = req.out else {
        // SAFETY: the caller's contract.
        return unsafe { job.store_row(i, p, &sums) };
    };
    let n = job.w.n;
    let (row, c0) = (i * n + p * NR, p * NR);
    let mut bytes = [0u8; NR];
    for (v, acc) in acc.iter().enumerate() {
        // SAFETY: mul/add are padded to whole panels; the residual row is read through a
        // bounds-checked copy of its valid columns.
        unsafe {
            let m = _mm256_loadu_ps(req.mul.as_ptr().add(c0 + 8 * v));
            let a = _mm256_loadu_ps(req.add.as_ptr().add(c0 + 8 * v));
            let mut y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*acc), m, a);
            if let Some(res) = job.residual {
                let mut x = [0u8; 8];
                let lanes = cols.saturating_sub(8 * v).min(8);
                if lanes > 0 {
                    x[..lanes].copy_from_slice(&res.x[row + 8 * v..][..lanes]);
                }
                let x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(x.as_ptr().cast()));
                y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(x), _mm256_set1_ps(res.mul), y);
            }
            let y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
            let q = _mm256_cvtps_epi32(y);
            // 8 int32 in 0..=255 -> 8 bytes.
            let w = _mm256_packus_epi32(q, q);
            let b = _mm256_packus_epi16(w, w);
            let lo4 = _mm256_castsi256_si128(b);
            let hi4 = _mm256_extracti128_si256::<1>(b);
            let v8 = _mm_unpacklo_epi32(lo4, hi4);
            _mm_storel_epi64(bytes.as_mut_ptr().add(8 * v).cast(), v8);
        }
    }
    // SAFETY: row i, columns c0..c0+cols are inside the output and owned by this worker.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(row), cols) };
}
