//! NEON int8 GEMM microkernel with the dot-product extension: 4 pixels × 16 channels, `sdot`
//! by lane (four `k` of one pixel against four `k` of four channels per instruction). `sdot`
//! multiplies signed bytes, so the `u8` activations are flipped to `i8` (`a − 128`) on load and
//! the accumulators start from `128·Σw` to undo it. Rust's `vdotq_laneq_s32` is not stable, so
//! the instruction is written as inline assembly.

use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

use super::Job;

/// Pixels per tile.
const MR: usize = 4;
/// Channels per panel.
const NR: usize = 16;

/// `acc += dot(b[4c..4c+4], a[4L..4L+4])` for the four int32 lanes `c`.
///
/// # Safety
/// The CPU has the dot-product extension.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot<const L: i32>(acc: int32x4_t, b: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction of the enabled extension.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[{l}]",
            acc = inout(vreg) acc,
            b = in(vreg) b,
            a = in(vreg) a,
            l = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Computes rows × panels of `job` in tiles of [`MR`] pixels.
///
/// # Safety
/// NEON with dot product available; the block is inside the job's output and no other thread
/// writes it.
pub(crate) unsafe fn run(job: &Job<'_>, rows: Range<usize>, panels: Range<usize>) {
    for p in panels {
        let mut i = rows.start;
        while i < rows.end {
            let r = MR.min(rows.end - i);
            // SAFETY: the caller's contract; rows i..i+r and panel p are in the block.
            unsafe {
                match r {
                    1 => tile::<1>(job, i, p),
                    2 => tile::<2>(job, i, p),
                    3 => tile::<3>(job, i, p),
                    _ => tile::<4>(job, i, p),
                }
            }
            i += r;
        }
    }
}

/// `R` pixels from `i` × panel `p`.
///
/// # Safety
/// As for [`run`]; `i + R <= m`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile<const R: usize>(job: &Job<'_>, i: usize, p: usize) {
    let kp = job.w.kp;
    let flip = vdupq_n_u8(0x80);
    // SAFETY: (whole body) panel p holds kp/4 groups of NR·4 bytes; the activation rows are
    // readable for kp bytes (checked by `gemm`); partial groups of 16 go through a copy.
    unsafe {
        let b = job.w.bytes.as_ptr().add(p * kp * NR);
        let bias = job.w.colsum128.as_ptr().add(p * NR);
        let start: [int32x4_t; 4] = std::array::from_fn(|v| vld1q_s32(bias.add(4 * v)));
        let mut acc = [start; R];
        let load_a = |r: usize, k: usize, len: usize| {
            let src = job.lhs.as_ptr().add((i + r) * job.lda + k);
            let bytes = if len == 16 {
                vld1q_u8(src)
            } else {
                let mut tmp = [0x80u8; 16];
                std::ptr::copy_nonoverlapping(src, tmp.as_mut_ptr(), len);
                vld1q_u8(tmp.as_ptr())
            };
            vreinterpretq_s8_u8(veorq_u8(bytes, flip))
        };
        let mut k = 0;
        while k < kp {
            let len = (kp - k).min(16);
            let a: [int8x16_t; R] = std::array::from_fn(|r| load_a(r, k, len));
            let quads = len / 4;
            macro_rules! quad {
                ($l:literal) => {
                    if $l < quads {
                        let bq = b.add((k / 4 + $l) * 4 * NR);
                        let bv: [int8x16_t; 4] = std::array::from_fn(|v| vld1q_s8(bq.add(16 * v)));
                        for (acc, a) in acc.iter_mut().zip(&a) {
                            for (acc, bv) in acc.iter_mut().zip(&bv) {
                                *acc = sdot::<$l>(*acc, *bv, *a);
                            }
                        }
                    }
                };
            }
            quad!(0);
            quad!(1);
            quad!(2);
            quad!(3);
            k += len;
        }
        for (r, acc) in acc.iter().enumerate() {
            let mut sums = [0i32; NR];
            for (v, acc) in acc.iter().enumerate() {
                vst1q_s32(sums.as_mut_ptr().add(4 * v), *acc);
            }
            job.store_row(i + r, p, &sums);
        }
    }
}
