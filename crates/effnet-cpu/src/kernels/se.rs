//! Squeeze-excitation: the gates from the pooled channel means, and the gate applied to the
//! projection weights (or to the activations, where smaller).

pub mod nchw;

use crate::isa::{fmadd, multiversion};
use crate::kernels::{Act, act_one, sigmoid_fast};

multiversion! {
    /// Squeeze-excitation gates from a channel mean: `sigmoid(We·act(Wr·mean + br) + be)`.
    /// `w_reduce` is `[c][squeeze]`, `w_expand` `[squeeze][c]`; `hidden` is scratch.
    pub fn se_gates(
        mean: &[f32],
        w_reduce: &[f32],
        b_reduce: &[f32],
        w_expand: &[f32],
        b_expand: &[f32],
        act: Act,
        hidden: &mut [f32],
        gates: &mut [f32],
    ) {
        let sq = b_reduce.len();
        hidden.copy_from_slice(b_reduce);
        for (m, wrow) in mean.iter().zip(w_reduce.chunks_exact(sq)) {
            for (h, w) in hidden.iter_mut().zip(wrow) {
                *h = fmadd::<FMA>(*m, *w, *h);
            }
        }
        for h in hidden.iter_mut() {
            *h = act_one::<FMA>(*h, act);
        }
        gates.copy_from_slice(b_expand);
        let c = b_expand.len();
        for (h, wrow) in hidden.iter().zip(w_expand.chunks_exact(c)) {
            for (g, w) in gates.iter_mut().zip(wrow) {
                *g = fmadd::<FMA>(*h, *w, *g);
            }
        }
        for g in gates.iter_mut() {
            *g = sigmoid_fast::<FMA>(*g);
        }
    }
}

multiversion! {
    /// Scales row `i` of the `[rows][n]` matrix `src` by `scale[i]` into `dst` (the SE gate
    /// folded into the projection weights, so the gated activation is never materialised).
    pub fn scale_rows(dst: &mut [f32], src: &[f32], scale: &[f32], n: usize) {
        for ((d, s), g) in dst.chunks_exact_mut(n).zip(src.chunks_exact(n)).zip(scale) {
            for (d, s) in d.iter_mut().zip(s) {
                *d = s * g;
            }
        }
    }
}

multiversion! {
    /// Multiplies every `scale.len()`-wide row of `rows` by `scale` (the SE gate applied to the
    /// activations where they are smaller than the projection weights).
    pub fn scale_columns(rows: &mut [f32], scale: &[f32]) {
        for row in rows.chunks_exact_mut(scale.len()) {
            for (v, g) in row.iter_mut().zip(scale) {
                *v *= g;
            }
        }
    }
}
