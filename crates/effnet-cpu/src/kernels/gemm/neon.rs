//! NEON (and any instruction set without a packed microkernel): the `gemm` crate's own
//! kernels on the unpacked weights; the portable fallback runs [`super::matmul_plain`].

use crate::isa::Isa;
use crate::kernels::gemm::matmul_plain;

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, all row-major, on up to `threads` rayon threads (the
/// path for instruction sets without a packed microkernel).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    isa: Isa,
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) {
    assert!(dst.len() == m * n && lhs.len() == m * k && rhs.len() >= k * n);
    if isa.is_scalar() {
        matmul_plain(isa, dst, lhs, &rhs[..k * n], k, n);
        return;
    }
    let par = if threads > 1 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: the slices hold m×n, m×k and k×n row-major values (checked above), and the
    // strides below describe exactly those layouts; dst does not alias the inputs.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
