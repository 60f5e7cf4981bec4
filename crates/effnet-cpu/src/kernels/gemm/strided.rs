//! Strided matrix products for the training convs: the `gemm` crate (its own AVX-512 / AVX2 /
//! NEON kernels, chosen at run time) for SIMD instruction sets, a plain loop for the fallback.

use crate::isa::{Isa, fmadd, multiversion};

/// A row-major-or-transposed view of a matrix: element `(i, j)` at `i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major `[rows][cols]`.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major `[rows][cols]` matrix (a `[cols][rows]` view).
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

/// `dst[m×n] (row-major) = lhs[m×k] · rhs[k×n]`, plus the old `dst` when `accumulate`, on up
/// to `threads` threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: View,
    rhs: View,
    threads: usize,
) {
    assert!(dst.len() >= m * n, "gemm: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let last = |v: &View, rows: usize, cols: usize| (rows - 1) * v.rs + (cols - 1) * v.cs;
    assert!(last(&lhs, m, k) < lhs.data.len(), "gemm: lhs too small");
    assert!(last(&rhs, k, n) < rhs.data.len(), "gemm: rhs too small");
    if isa.is_scalar() {
        gemm_plain(isa, m, n, k, dst, accumulate, lhs, rhs);
        return;
    }
    let par = if threads > 1 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element the strides address inside the slices;
    // `dst` is a distinct `&mut` borrow, so it does not alias `lhs` or `rhs`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

multiversion! {
    /// The fallback product: for each row of `dst`, rows of `rhs` scaled by `lhs` and summed
    /// (i-k-j order, so that the inner loop runs along `dst`'s row).
    fn gemm_plain(
        m: usize,
        n: usize,
        k: usize,
        dst: &mut [f32],
        accumulate: bool,
        lhs: View,
        rhs: View,
    ) {
        for i in 0..m {
            let drow = &mut dst[i * n..(i + 1) * n];
            if !accumulate {
                drow.fill(0.0);
            }
            for p in 0..k {
                let a = lhs.data[i * lhs.rs + p * lhs.cs];
                let base = p * rhs.rs;
                for (j, d) in drow.iter_mut().enumerate() {
                    *d = fmadd::<FMA>(a, rhs.data[base + j * rhs.cs], *d);
                }
            }
        }
    }
}
