//! The portable int8 GEMM microkernel: plain loops over the packed panels, the reference of the
//! SIMD ones (and what runs where none applies).

use std::ops::Range;

use super::Job;

/// Computes rows × panels of `job` one output row at a time.
///
/// # Safety
/// The block is inside the job's output and no other thread writes it.
pub(crate) unsafe fn run(job: &Job<'_>, rows: Range<usize>, panels: Range<usize>) {
    let (kp, nr) = (job.w.kp, job.w.nr);
    let mut acc = vec![0i32; nr];
    for p in panels {
        let panel = &job.w.bytes[p * kp * nr..(p + 1) * kp * nr];
        for i in rows.clone() {
            acc.fill(0);
            let a = &job.lhs[i * job.lda..i * job.lda + kp];
            for (a4, bq) in a.chunks_exact(4).zip(panel.chunks_exact(4 * nr)) {
                for (s, b4) in acc.iter_mut().zip(bq.chunks_exact(4)) {
                    *s += a4
                        .iter()
                        .zip(b4)
                        .map(|(a, b)| *a as i32 * *b as i32)
                        .sum::<i32>();
                }
            }
            // SAFETY: the caller's contract.
            unsafe { job.store_row(i, p, &acc) };
        }
    }
}
