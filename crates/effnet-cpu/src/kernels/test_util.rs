//! Inputs and naive references shared by the kernels' tests.

use crate::kernels::{Act, act_reference};

/// Naive `act(lhs · w + bias) (+ res)` in f64 (`lhs` rows `lda` apart, `w` row-major `[k][n]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_reference(
    lhs: &[f32],
    lda: usize,
    w: &[f32],
    bias: &[f32],
    m: usize,
    k: usize,
    act: Act,
    res: Option<&[f32]>,
) -> Vec<f32> {
    let n = bias.len();
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = bias[j] as f64;
            for t in 0..k {
                s += lhs[i * lda + t] as f64 * w[t * n + j] as f64;
            }
            let y = act_reference(s as f32, act);
            out[i * n + j] = y + res.map_or(0.0, |r| r[i * n + j]);
        }
    }
    out
}

/// Deterministic test values in about [-1.43, 1.43), varied by `seed`.
pub(crate) fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1999) as f32 - 999.0) / 700.0)
        .collect()
}
