//! The executor's compute kernels on channels-last (NHWC) rows. Each is compiled once per
//! instruction set by [`multiversion`]; the loops run over channels so that they vectorise.
//!
//! One folder or file per kind of kernel ([`gemm`], [`conv`], [`depthwise`], [`se`],
//! [`norm_act`]), one file per instruction set inside it; this module has what they share:
//! activations, the fast `exp`/sigmoid, bias + activation epilogues, conv geometry.
//!
//! Training (effnet-model's burn ops) runs on burn's channels-first tensors: its kernels are the
//! `nchw` files beside the inference ones (`conv/nchw.rs`, `depthwise/nchw.rs`, `se/nchw.rs`,
//! with [`gemm::strided`] under the dense convs) and [`norm_act`], forward and backward side by
//! side; [`crate::train`] lists them.

use crate::isa::{Isa, fmadd, multiversion};

pub mod conv;
pub mod depthwise;
pub mod gemm;
pub mod int8;
pub mod norm_act;
pub mod se;
#[cfg(test)]
pub(crate) mod test_util;

pub use conv::im2col;
pub use depthwise::depthwise;
pub use gemm::matmul_plain;
pub use se::{scale_columns, scale_rows, se_gates};

/// Non-linearities of the family (after a conv's bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Identity (projection convs).
    None,
    /// x·sigmoid(x).
    Silu,
    /// min(max(x, 0), 6).
    Relu6,
    /// max(x, 0).
    Relu,
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2^23: adding and subtracting it rounds an f32 of magnitude < 2^22 to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x to ~2 ulp for x in [-87, 88] (clamped outside): Cody-Waite reduction to
/// r in [-ln2/2, ln2/2], degree-6 Taylor polynomial, exponent by bit arithmetic. Branch-free,
/// so loops over it vectorise.
#[inline(always)]
#[allow(clippy::manual_clamp)] // max/min: vectorises, NaN-tolerant
pub(crate) fn exp_fast<const FMA: bool>(x: f32) -> f32 {
    let x = x.max(-87.0).min(88.0);
    let shifted = x * LOG2E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    // The integer n sits in the low mantissa bits of `shifted` (no float-to-int conversion,
    // whose saturating semantics would not vectorise).
    let ni = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let r = fmadd::<FMA>(n, -LN2_HI, x);
    let r = fmadd::<FMA>(n, -LN2_LO, r);
    let mut p = 1.0 / 720.0;
    p = fmadd::<FMA>(p, r, 1.0 / 120.0);
    p = fmadd::<FMA>(p, r, 1.0 / 24.0);
    p = fmadd::<FMA>(p, r, 1.0 / 6.0);
    p = fmadd::<FMA>(p, r, 0.5);
    p = fmadd::<FMA>(p, r, 1.0);
    p = fmadd::<FMA>(p, r, 1.0);
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}

/// Logistic sigmoid built on [`exp_fast`].
#[inline(always)]
pub(crate) fn sigmoid_fast<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp_fast::<FMA>(-x))
}

/// Applies `act` to one value.
#[inline(always)]
#[allow(clippy::manual_clamp)] // max/min: vectorises, NaN-tolerant
pub(crate) fn act_one<const FMA: bool>(x: f32, act: Act) -> f32 {
    match act {
        Act::None => x,
        Act::Silu => x / (1.0 + exp_fast::<FMA>(-x)),
        Act::Relu6 => x.max(0.0).min(6.0),
        Act::Relu => x.max(0.0),
    }
}

/// Loops `f` over `row` with the activation match hoisted out of the loop.
#[inline(always)]
fn with_act<const FMA: bool>(act: Act, row: &mut [f32], bias: &[f32], res: Option<&[f32]>) {
    macro_rules! run {
        ($a:expr) => {
            match res {
                Some(res) => {
                    for ((y, b), r) in row.iter_mut().zip(bias).zip(res) {
                        *y = act_one::<FMA>(*y + b, $a) + r;
                    }
                }
                None => {
                    for (y, b) in row.iter_mut().zip(bias) {
                        *y = act_one::<FMA>(*y + b, $a);
                    }
                }
            }
        };
    }
    match act {
        Act::None => run!(Act::None),
        Act::Silu => run!(Act::Silu),
        Act::Relu6 => run!(Act::Relu6),
        Act::Relu => run!(Act::Relu),
    }
}

/// `row = act(row) [+ residual]`: the epilogue of a packed GEMM tile (its bias is already in).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) fn act_residual<const FMA: bool>(row: &mut [f32], act: Act, res: Option<&[f32]>) {
    macro_rules! run {
        ($a:expr) => {
            match res {
                Some(res) => {
                    for (y, r) in row.iter_mut().zip(res) {
                        *y = act_one::<FMA>(*y, $a) + r;
                    }
                }
                None => row.iter_mut().for_each(|y| *y = act_one::<FMA>(*y, $a)),
            }
        };
    }
    match act {
        Act::None => {
            if let Some(res) = res {
                row.iter_mut().zip(res).for_each(|(y, r)| *y += r);
            }
        }
        Act::Silu => run!(Act::Silu),
        Act::Relu6 => run!(Act::Relu6),
        Act::Relu => run!(Act::Relu),
    }
}

multiversion! {
    /// GEMM epilogue on `rows` (row-major, `bias.len()` columns): `y = act(y + bias) [+ residual]`.
    pub fn bias_act(rows: &mut [f32], bias: &[f32], act: Act, residual: Option<&[f32]>) {
        let n = bias.len();
        match residual {
            Some(res) => {
                for (row, r) in rows.chunks_exact_mut(n).zip(res.chunks_exact(n)) {
                    with_act::<FMA>(act, row, bias, Some(r));
                }
            }
            None => {
                for row in rows.chunks_exact_mut(n) {
                    with_act::<FMA>(act, row, bias, None);
                }
            }
        }
    }
}

/// Geometry of one depthwise (or im2col) convolution on an NHWC image.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (input = output for depthwise).
    pub c: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Padding before the first row.
    pub pad_top: usize,
    /// Padding before the first column.
    pub pad_left: usize,
}

impl ConvGeom {
    /// Input coordinate of output `o` and tap `t` along one axis, if inside the image.
    #[inline(always)]
    fn tap(&self, o: usize, t: usize, pad: usize, size: usize) -> Option<usize> {
        (o * self.stride + t).checked_sub(pad).filter(|&i| i < size)
    }
}

multiversion! {
    /// Adds every `c`-wide row of `rows` into `sums`.
    pub fn column_sums(rows: &[f32], sums: &mut [f32]) {
        let c = sums.len();
        for row in rows.chunks_exact(c) {
            for (s, y) in sums.iter_mut().zip(row) {
                *s += y;
            }
        }
    }
}

multiversion! {
    /// `out = bias + x · w` for one row `x` and a row-major `[x.len()][out.len()]` matrix.
    pub fn vec_mat(x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32]) {
        let n = out.len();
        out.copy_from_slice(bias);
        for (a, wrow) in x.iter().zip(w.chunks_exact(n)) {
            for (o, w) in out.iter_mut().zip(wrow) {
                *o = fmadd::<FMA>(*a, *w, *o);
            }
        }
    }
}

/// Scalar reference activations for tests (exact `exp`).
pub fn act_reference(x: f32, act: Act) -> f32 {
    match act {
        Act::None => x,
        Act::Silu => x / (1.0 + (-x).exp()),
        Act::Relu6 => x.clamp(0.0, 6.0),
        Act::Relu => x.max(0.0),
    }
}

/// Runs [`bias_act`] with zero bias on a copy of `xs` (for testing the fast activations).
pub fn act_slice(isa: Isa, xs: &[f32], act: Act) -> Vec<f32> {
    let mut out = xs.to_vec();
    let bias = vec![0.0; out.len().max(1)];
    if !out.is_empty() {
        bias_act(isa, &mut out, &bias[..xs.len()], act, None);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<f32> {
        (0..4001)
            .map(|i| (i as f32 - 2000.0) * 0.01 + 0.003)
            .collect()
    }

    #[test]
    fn fast_activations_match_exact_ones() {
        for isa in [Some(Isa::best()), Isa::avx2(), Some(Isa::scalar())]
            .into_iter()
            .flatten()
        {
            for act in [Act::Silu, Act::Relu6, Act::Relu, Act::None] {
                let xs = inputs();
                for (x, y) in xs.iter().zip(act_slice(isa, &xs, act)) {
                    let want = act_reference(*x, act);
                    let tol = 2e-6 * want.abs().max(1.0);
                    assert!((y - want).abs() <= tol, "{act:?} {x}: {y} vs {want}");
                }
            }
        }
        // Far outside the polynomial's range: finite, saturating.
        let big = act_slice(Isa::best(), &[-1000.0, 1000.0, -90.0], Act::Silu);
        assert_eq!(big[1], 1000.0);
        assert!(big[0].abs() < 1e-30 && big[2].abs() < 1e-30);
    }
}
