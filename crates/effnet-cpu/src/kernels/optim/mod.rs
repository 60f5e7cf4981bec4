//! Optimiser and EMA updates as one threaded pass over all parameters at once: every parameter
//! tensor is a [`Segment`] of slices (weights, gradient, state), the segments are cut into
//! chunks of [`CHUNK`] values and the chunks spread over rayon threads, each chunk updated by
//! one loop that reads every operand once.
//!
//! The element formulas are those of burn's (PyTorch-matching) optimisers in the same f32
//! operation order, without fused multiply-adds, so the results are the same as the per-tensor
//! path's: [`adamw`] (burn's `AdamW`), [`rmsprop_tf`] (TensorFlow-1 RMSProp as timm's
//! `RMSpropTF`), [`sgd`] (momentum, dampening, Nesterov as PyTorch), [`ema`] (the averaged
//! weights). The loops are memory bound (4-7 streams per value); `multiversion!` compiles them
//! for AVX-512, AVX2, NEON and the portable fallback, and LLVM vectorises each (square roots
//! and divisions included), so there is no hand-written intrinsic path. [`sum_squares`] is the
//! global gradient norm of clipping, in f64.
//!
//! [`reference`] has plain per-value versions of each update for tests.

use rayon::prelude::*;

use crate::isa::{Isa, multiversion};

pub mod reference;

/// Values per chunk: a chunk is one task on a thread (large enough that the task costs
/// nothing next to its loop, small enough that two threads get even shares).
pub const CHUNK: usize = 1 << 15;

/// One parameter tensor's operands of an update: equal-length slices that can be cut at the
/// same offset.
pub trait Segment: Send + Sized {
    /// Number of values.
    fn len(&self) -> usize;
    /// Whether there are no values.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first `mid` values and the rest.
    fn split_at(self, mid: usize) -> (Self, Self);
}

/// Cuts `segments` into chunks of at most [`CHUNK`] values and runs `f` on each, on up to
/// `threads` rayon threads (in the current pool).
pub fn for_each_chunk<S: Segment>(segments: Vec<S>, threads: usize, f: impl Fn(S) + Sync + Send) {
    let mut chunks = Vec::new();
    for mut s in segments {
        while s.len() > CHUNK {
            let (head, tail) = s.split_at(CHUNK);
            chunks.push(head);
            s = tail;
        }
        if !s.is_empty() {
            chunks.push(s);
        }
    }
    if threads > 1 && chunks.len() > 1 {
        chunks.into_par_iter().for_each(f);
    } else {
        chunks.into_iter().for_each(f);
    }
}

/// Splits `v` at `mid` (helper of the [`Segment`] impls).
fn cut(v: &mut [f32], mid: usize) -> (&mut [f32], &mut [f32]) {
    v.split_at_mut(mid)
}

/// Per-tensor constants of one AdamW step, as burn's `AdamW` computes them for step `time`
/// (1 for the first): f32 values, the decay factor from f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// β₁.
    pub beta_1: f32,
    /// β₂.
    pub beta_2: f32,
    /// 1 − β₁.
    pub one_minus_beta_1: f32,
    /// 1 − β₂.
    pub one_minus_beta_2: f32,
    /// Bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ.
    pub correction_1: f32,
    /// See `correction_1`.
    pub correction_2: f32,
    /// ε added to the root.
    pub eps: f32,
    /// Learning rate.
    pub lr: f32,
    /// 1 − lr·weight decay (decoupled decay); `None` without decay.
    pub decay: Option<f32>,
    /// Factor applied to the gradient first (clipping); `None` for 1.
    pub grad_scale: Option<f32>,
}

impl AdamWStep {
    /// The constants of step `time` (≥ 1) with learning rate `lr` and decoupled weight decay
    /// `weight_decay`, computed as burn computes them.
    pub fn new(beta_1: f32, beta_2: f32, eps: f32, lr: f64, weight_decay: f32, time: u32) -> Self {
        let t = time.min(i32::MAX as u32) as i32;
        let decay_rate = lr * weight_decay as f64;
        Self {
            beta_1,
            beta_2,
            one_minus_beta_1: 1.0 - beta_1,
            one_minus_beta_2: 1.0 - beta_2,
            correction_1: 1.0 - beta_1.powi(t),
            correction_2: 1.0 - beta_2.powi(t),
            eps,
            lr: lr as f32,
            decay: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            grad_scale: None,
        }
    }
}

/// One tensor's AdamW operands: weights, gradient, first and second moments.
#[derive(Debug)]
pub struct AdamWSegment<'a> {
    /// Weights, updated in place.
    pub param: &'a mut [f32],
    /// Gradient.
    pub grad: &'a [f32],
    /// First moment (zeros before the first step).
    pub m: &'a mut [f32],
    /// Second moment (zeros before the first step).
    pub v: &'a mut [f32],
    /// The step's constants.
    pub step: AdamWStep,
}

impl Segment for AdamWSegment<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (p0, p1) = cut(self.param, mid);
        let (g0, g1) = self.grad.split_at(mid);
        let (m0, m1) = cut(self.m, mid);
        let (v0, v1) = cut(self.v, mid);
        let s = self.step;
        (
            AdamWSegment {
                param: p0,
                grad: g0,
                m: m0,
                v: v0,
                step: s,
            },
            AdamWSegment {
                param: p1,
                grad: g1,
                m: m1,
                v: v1,
                step: s,
            },
        )
    }
}

multiversion! {
    /// AdamW on one chunk (see [`adamw`]).
    fn adamw_chunk(s: AdamWSegment<'_>) {
        let k = s.step;
        assert!(s.grad.len() == s.param.len() && s.m.len() == s.param.len());
        assert_eq!(s.v.len(), s.param.len());
        let gs = k.grad_scale.unwrap_or(1.0);
        let scaled = k.grad_scale.is_some();
        let decay = k.decay.unwrap_or(1.0);
        let decayed = k.decay.is_some();
        let ops = s.param.iter_mut().zip(s.grad).zip(s.m.iter_mut().zip(s.v.iter_mut()));
        for ((p, g), (m, v)) in ops {
            let g = if scaled { *g * gs } else { *g };
            *m = *m * k.beta_1 + g * k.one_minus_beta_1;
            *v = *v * k.beta_2 + (g * g) * k.one_minus_beta_2;
            let m_hat = *m / k.correction_1;
            let v_hat = *v / k.correction_2;
            let delta = m_hat / (v_hat.sqrt() + k.eps);
            let w = if decayed { *p * decay } else { *p };
            *p = w - delta * k.lr;
        }
    }
}

/// One AdamW step over all `segments` on up to `threads` threads:
/// `m = β₁m + (1−β₁)g`, `v = β₂v + (1−β₂)g²`, `p = p(1 − lr·λ) − lr·(m/c₁)/(√(v/c₂) + ε)`.
pub fn adamw(isa: Isa, segments: Vec<AdamWSegment<'_>>, threads: usize) {
    for_each_chunk(segments, threads, |s| adamw_chunk(isa, s));
}

/// Per-tensor constants of one TF-RMSProp step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropTfStep {
    /// Mean-square decay ρ.
    pub rho: f32,
    /// 1 − ρ (from f64, as burn's scalar ops get it).
    pub one_minus_rho: f32,
    /// Momentum.
    pub momentum: f32,
    /// ε under the root.
    pub eps: f32,
    /// Learning rate.
    pub lr: f32,
    /// L2 weight decay added to the gradient; `None` without.
    pub weight_decay: Option<f32>,
    /// Factor applied to the gradient first (clipping); `None` for 1.
    pub grad_scale: Option<f32>,
}

impl RmsPropTfStep {
    /// The constants for `lr` from the f64 settings.
    pub fn new(rho: f64, momentum: f64, eps: f64, weight_decay: f64, lr: f64) -> Self {
        Self {
            rho: rho as f32,
            one_minus_rho: (1.0 - rho) as f32,
            momentum: momentum as f32,
            eps: eps as f32,
            lr: lr as f32,
            weight_decay: (weight_decay > 0.0).then_some(weight_decay as f32),
            grad_scale: None,
        }
    }
}

/// One tensor's TF-RMSProp operands.
#[derive(Debug)]
pub struct RmsPropTfSegment<'a> {
    /// Weights, updated in place.
    pub param: &'a mut [f32],
    /// Gradient.
    pub grad: &'a [f32],
    /// Mean square (ones before the first step).
    pub ms: &'a mut [f32],
    /// Momentum buffer, learning rate included (zeros before the first step).
    pub mom: &'a mut [f32],
    /// The step's constants.
    pub step: RmsPropTfStep,
}

impl Segment for RmsPropTfSegment<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (p0, p1) = cut(self.param, mid);
        let (g0, g1) = self.grad.split_at(mid);
        let (a0, a1) = cut(self.ms, mid);
        let (b0, b1) = cut(self.mom, mid);
        let s = self.step;
        (
            RmsPropTfSegment {
                param: p0,
                grad: g0,
                ms: a0,
                mom: b0,
                step: s,
            },
            RmsPropTfSegment {
                param: p1,
                grad: g1,
                ms: a1,
                mom: b1,
                step: s,
            },
        )
    }
}

multiversion! {
    /// TF-RMSProp on one chunk (see [`rmsprop_tf`]).
    fn rmsprop_tf_chunk(s: RmsPropTfSegment<'_>) {
        let k = s.step;
        assert!(s.grad.len() == s.param.len() && s.ms.len() == s.param.len());
        assert_eq!(s.mom.len(), s.param.len());
        let gs = k.grad_scale.unwrap_or(1.0);
        let scaled = k.grad_scale.is_some();
        let wd = k.weight_decay.unwrap_or(0.0);
        let decayed = k.weight_decay.is_some();
        let ops = s.param.iter_mut().zip(s.grad).zip(s.ms.iter_mut().zip(s.mom.iter_mut()));
        for ((p, g), (ms, mom)) in ops {
            let g = if scaled { *g * gs } else { *g };
            let g = if decayed { g + *p * wd } else { g };
            *ms = *ms * k.rho + (g * g) * k.one_minus_rho;
            let update = (g / (*ms + k.eps).sqrt()) * k.lr;
            *mom = *mom * k.momentum + update;
            *p -= *mom;
        }
    }
}

/// One TF-RMSProp step (`tf.compat.v1.train.RMSPropOptimizer`, timm's `RMSpropTF`) over all
/// `segments`: `g += λp`, `ms = ρ·ms + (1−ρ)g²`, `mom = μ·mom + lr·g/√(ms + ε)`, `p −= mom`.
pub fn rmsprop_tf(isa: Isa, segments: Vec<RmsPropTfSegment<'_>>, threads: usize) {
    for_each_chunk(segments, threads, |s| rmsprop_tf_chunk(isa, s));
}

/// Per-tensor constants of one SGD step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// L2 weight decay added to the gradient; `None` without.
    pub weight_decay: Option<f32>,
    /// Momentum μ; `None` for plain SGD.
    pub momentum: Option<f32>,
    /// 1 − dampening (from f64).
    pub one_minus_dampening: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The velocity is not yet initialised: it becomes the gradient (PyTorch's first step).
    pub first: bool,
    /// Factor applied to the gradient first (clipping); `None` for 1.
    pub grad_scale: Option<f32>,
}

/// One tensor's SGD operands.
#[derive(Debug)]
pub struct SgdSegment<'a> {
    /// Weights, updated in place.
    pub param: &'a mut [f32],
    /// Gradient.
    pub grad: &'a [f32],
    /// Velocity (empty without momentum).
    pub velocity: &'a mut [f32],
    /// The step's constants.
    pub step: SgdStep,
}

impl Segment for SgdSegment<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (p0, p1) = cut(self.param, mid);
        let (g0, g1) = self.grad.split_at(mid);
        let vmid = mid.min(self.velocity.len());
        let (v0, v1) = cut(self.velocity, vmid);
        let s = self.step;
        (
            SgdSegment {
                param: p0,
                grad: g0,
                velocity: v0,
                step: s,
            },
            SgdSegment {
                param: p1,
                grad: g1,
                velocity: v1,
                step: s,
            },
        )
    }
}

multiversion! {
    /// SGD on one chunk (see [`sgd`]).
    fn sgd_chunk(s: SgdSegment<'_>) {
        let k = s.step;
        assert_eq!(s.grad.len(), s.param.len());
        let gs = k.grad_scale.unwrap_or(1.0);
        let scaled = k.grad_scale.is_some();
        let wd = k.weight_decay.unwrap_or(0.0);
        let decayed = k.weight_decay.is_some();
        let grad = |p: f32, g: f32| {
            let g = if scaled { g * gs } else { g };
            if decayed { p * wd + g } else { g }
        };
        match k.momentum {
            None => {
                for (p, g) in s.param.iter_mut().zip(s.grad) {
                    *p -= grad(*p, *g) * k.lr;
                }
            }
            Some(mu) => {
                assert_eq!(s.velocity.len(), s.param.len());
                let ops = s.param.iter_mut().zip(s.grad).zip(s.velocity.iter_mut());
                for ((p, g), v) in ops {
                    let g = grad(*p, *g);
                    *v = if k.first { g } else { g * k.one_minus_dampening + *v * mu };
                    let d = if k.nesterov { *v * mu + g } else { *v };
                    *p -= d * k.lr;
                }
            }
        }
    }
}

/// One SGD step over all `segments`: `g += λp`; with momentum `v = μv + (1−τ)g` (`v = g` on the
/// first step) and `g = v` (Nesterov: `g += μv`); `p −= lr·g`.
pub fn sgd(isa: Isa, segments: Vec<SgdSegment<'_>>, threads: usize) {
    for_each_chunk(segments, threads, |s| sgd_chunk(isa, s));
}

/// One tensor's EMA operands.
#[derive(Debug)]
pub struct EmaSegment<'a> {
    /// The averaged weights, updated in place.
    pub ema: &'a mut [f32],
    /// The current weights.
    pub current: &'a [f32],
}

impl Segment for EmaSegment<'_> {
    fn len(&self) -> usize {
        self.ema.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (e0, e1) = cut(self.ema, mid);
        let (c0, c1) = self.current.split_at(mid);
        (
            EmaSegment {
                ema: e0,
                current: c0,
            },
            EmaSegment {
                ema: e1,
                current: c1,
            },
        )
    }
}

multiversion! {
    /// `ema = d·ema + (1−d)·current` on one chunk.
    fn ema_chunk(s: EmaSegment<'_>, decay: f32, one_minus_decay: f32) {
        assert_eq!(s.ema.len(), s.current.len());
        for (e, c) in s.ema.iter_mut().zip(s.current) {
            *e = *e * decay + *c * one_minus_decay;
        }
    }
}

/// `ema = d·ema + (1−d)·current` over all `segments` (`d` and `1 − d` rounded to f32 from f64,
/// as burn's scalar operations round them).
pub fn ema(isa: Isa, segments: Vec<EmaSegment<'_>>, decay: f64, threads: usize) {
    let (d, rest) = (decay as f32, (1.0 - decay) as f32);
    for_each_chunk(segments, threads, |s| ema_chunk(isa, s, d, rest));
}

/// Sum of squares of all values of all `slices` (the squared global gradient norm of
/// clipping), in f64, on up to `threads` threads. Chunks are summed separately and their sums
/// added in order, so the result does not depend on the threads.
pub fn sum_squares(slices: &[&[f32]], threads: usize) -> f64 {
    let chunks: Vec<&[f32]> = slices.iter().flat_map(|s| s.chunks(CHUNK)).collect();
    let sum = |c: &&[f32]| {
        // Eight running sums: the additions of one lane do not wait for the others'.
        let mut acc = [0f64; 8];
        let mut it = c.chunks_exact(8);
        for v in &mut it {
            for (a, x) in acc.iter_mut().zip(v) {
                *a += (*x as f64) * (*x as f64);
            }
        }
        let tail: f64 = it
            .remainder()
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum();
        acc.iter().sum::<f64>() + tail
    };
    let sums: Vec<f64> = if threads > 1 && chunks.len() > 1 {
        chunks.par_iter().map(sum).collect()
    } else {
        chunks.iter().map(sum).collect()
    };
    sums.iter().sum()
}

#[cfg(test)]
mod tests;
