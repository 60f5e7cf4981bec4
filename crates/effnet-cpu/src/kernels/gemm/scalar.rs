//! The portable fallback's matrix product: a plain loop (also the reference in tests).

use crate::isa::{fmadd, multiversion};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;

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
