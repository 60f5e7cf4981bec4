//! Training-mode BatchNorm (batch statistics, biased variance) followed by an activation, on
//! NCHW tensors, forward and backward, one channel at a time: a channel's planes (`batch·h·w`
//! values) are read from memory once and then from cache.
//!
//! Forward: mean, then variance about it (two passes, f64 totals), then
//! `y = act((x − μ)·γ/σ + β)`. Backward, with `g = dy·act'(z)` for the pre-activation `z`:
//! `dβ = Σg`, `dγ = Σg·x̂`, `dx = γ/σ·(g − dβ/M − x̂·dγ/M)` (`x̂ = (x − μ)/σ`, `M = batch·h·w`).

use rayon::prelude::*;

use crate::isa::{Isa, fmadd, multiversion};
use crate::kernels::{Act, act_one, sigmoid_fast};

/// Shape and settings of one BatchNorm + activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnAct {
    /// Images in the batch.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Values per plane (`h·w`).
    pub plane: usize,
    /// Added to the variance.
    pub eps: f64,
    /// Activation after the affine transform.
    pub act: Act,
}

impl BnAct {
    fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Values per channel (`M`).
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }

    /// `1/σ` from a biased variance.
    fn inv_std(&self, var: f32) -> f32 {
        (1.0 / (var as f64 + self.eps).sqrt()) as f32
    }

    /// Range of channel `c`'s plane of image `n`.
    fn plane_range(&self, n: usize, c: usize) -> std::ops::Range<usize> {
        let start = (n * self.channels + c) * self.plane;
        start..start + self.plane
    }
}

/// A pointer that rayon tasks may share because each writes a disjoint set of planes.
#[derive(Clone, Copy)]
struct Planes(*mut f32);
// SAFETY: the per-channel tasks below each write only the planes of their own channel.
unsafe impl Send for Planes {}
// SAFETY: as above.
unsafe impl Sync for Planes {}

impl Planes {
    /// The plane `range` of the buffer.
    ///
    /// # Safety
    /// `range` must lie inside the buffer and no other live slice may overlap it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn plane(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(range.start), range.len()) }
    }
}

/// Training forward: writes `y`, the batch `mean` and the biased variance `var` (what the
/// running statistics are updated with).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_act_forward(
    isa: Isa,
    s: &BnAct,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    var: &mut [f32],
    threads: usize,
) {
    assert_eq!(x.len(), s.len(), "batch_norm_act_forward: input size");
    assert_eq!(y.len(), s.len(), "batch_norm_act_forward: output size");
    for v in [gamma.len(), beta.len(), mean.len(), var.len()] {
        assert_eq!(v, s.channels, "batch_norm_act_forward: per-channel size");
    }
    let out = Planes(y.as_mut_ptr());
    let stats: Vec<(f32, f32)> = (0..s.channels)
        .into_par_iter()
        .with_min_len(if threads <= 1 { s.channels.max(1) } else { 1 })
        .map(|c| {
            let (mut sum, mut sq) = (0.0f64, 0.0f64);
            for n in 0..s.batch {
                sum += lane_sum(isa, &x[s.plane_range(n, c)]) as f64;
            }
            let m = (sum / s.count()) as f32;
            for n in 0..s.batch {
                sq += centred_squares(isa, &x[s.plane_range(n, c)], m) as f64;
            }
            let v = (sq / s.count()) as f32;
            let scale = gamma[c] * s.inv_std(v);
            for n in 0..s.batch {
                let r = s.plane_range(n, c);
                // SAFETY: the planes of channel `c` are written by this task only, and lie
                // inside `y` (same size as `x`, checked above).
                let dst = unsafe { out.plane(r.clone()) };
                affine_act(isa, &x[r], dst, m, scale, beta[c], s.act);
            }
            (m, v)
        })
        .collect();
    for (c, (m, v)) in stats.into_iter().enumerate() {
        mean[c] = m;
        var[c] = v;
    }
}

/// Training backward: `dx`, `dgamma` and `dbeta` from `dy` and the forward's inputs and batch
/// statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_act_backward(
    isa: Isa,
    s: &BnAct,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    threads: usize,
) {
    assert_eq!(x.len(), s.len(), "batch_norm_act_backward: input size");
    assert_eq!(dy.len(), s.len(), "batch_norm_act_backward: dy size");
    assert_eq!(dx.len(), s.len(), "batch_norm_act_backward: dx size");
    for v in [gamma.len(), beta.len(), mean.len(), var.len()] {
        assert_eq!(v, s.channels, "batch_norm_act_backward: per-channel size");
    }
    let out = Planes(dx.as_mut_ptr());
    let sums: Vec<(f32, f32)> = (0..s.channels)
        .into_par_iter()
        .with_min_len(if threads <= 1 { s.channels.max(1) } else { 1 })
        .map(|c| {
            let inv = s.inv_std(var[c]);
            let scale = gamma[c] * inv;
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for n in 0..s.batch {
                let r = s.plane_range(n, c);
                // SAFETY: the planes of channel `c` are written by this task only, and lie
                // inside `dx` (same size as `x`, checked above).
                let g = unsafe { out.plane(r.clone()) };
                let (a, b) = act_grad(
                    isa,
                    &x[r.clone()],
                    &dy[r],
                    g,
                    mean[c],
                    scale,
                    beta[c],
                    s.act,
                );
                sg += a as f64;
                sgx += b as f64;
            }
            // Σg·x̂ = Σg·(x − μ)/σ.
            let sgxh = sgx * inv as f64;
            let k_g = (sg / s.count()) as f32;
            let k_x = (sgxh / s.count()) as f32 * inv;
            for n in 0..s.batch {
                let r = s.plane_range(n, c);
                // SAFETY: as above.
                let g = unsafe { out.plane(r.clone()) };
                input_grad(isa, &x[r], g, mean[c], scale, k_g, k_x);
            }
            (sgxh as f32, sg as f32)
        })
        .collect();
    for (c, (dg, db)) in sums.into_iter().enumerate() {
        dgamma[c] = dg;
        dbeta[c] = db;
    }
}

/// Per-channel sums of `dy` `[batch][channels][plane]` (a conv bias's gradient) into `out`.
pub fn channel_sums(
    isa: Isa,
    dy: &[f32],
    batch: usize,
    channels: usize,
    plane: usize,
    out: &mut [f32],
    threads: usize,
) {
    assert_eq!(
        dy.len(),
        batch * channels * plane,
        "channel_sums: input size"
    );
    assert_eq!(out.len(), channels, "channel_sums: output size");
    let sums: Vec<f32> = (0..channels)
        .into_par_iter()
        .with_min_len(if threads <= 1 { channels.max(1) } else { 1 })
        .map(|c| {
            (0..batch)
                .map(|n| {
                    let start = (n * channels + c) * plane;
                    lane_sum(isa, &dy[start..start + plane]) as f64
                })
                .sum::<f64>() as f32
        })
        .collect();
    out.copy_from_slice(&sums);
}

multiversion! {
    /// `Σ xs` in 16 lanes.
    fn lane_sum_into(xs: &[f32], out: &mut f32) {
        let mut acc = [0.0f32; 16];
        let chunks = xs.chunks_exact(16);
        let rest = chunks.remainder();
        for ch in chunks {
            for l in 0..16 {
                acc[l] += ch[l];
            }
        }
        for (l, v) in rest.iter().enumerate() {
            acc[l] += v;
        }
        *out = acc.iter().sum();
    }
}

fn lane_sum(isa: Isa, xs: &[f32]) -> f32 {
    let mut out = 0.0;
    lane_sum_into(isa, xs, &mut out);
    out
}

multiversion! {
    /// `Σ (x − m)²` in 16 lanes.
    fn centred_squares_into(xs: &[f32], m: f32, out: &mut f32) {
        let mut acc = [0.0f32; 16];
        let chunks = xs.chunks_exact(16);
        let rest = chunks.remainder();
        for ch in chunks {
            for l in 0..16 {
                let d = ch[l] - m;
                acc[l] = fmadd::<FMA>(d, d, acc[l]);
            }
        }
        for (l, v) in rest.iter().enumerate() {
            let d = v - m;
            acc[l] = fmadd::<FMA>(d, d, acc[l]);
        }
        *out = acc.iter().sum();
    }
}

fn centred_squares(isa: Isa, xs: &[f32], m: f32) -> f32 {
    let mut out = 0.0;
    centred_squares_into(isa, xs, m, &mut out);
    out
}

multiversion! {
    /// `dst = act((x − m)·scale + shift)`, the activation hoisted out of the loop.
    fn affine_act(x: &[f32], dst: &mut [f32], m: f32, scale: f32, shift: f32, act: Act) {
        macro_rules! run {
            ($a:expr) => {
                for (d, v) in dst.iter_mut().zip(x) {
                    *d = act_one::<FMA>(fmadd::<FMA>(*v - m, scale, shift), $a);
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
}

/// `act'(z)·dy` for one value (the derivatives burn's composition takes: SiLU through the
/// sigmoid, ReLU6 as a clamp that passes 0 and 6, ReLU zero at 0).
#[inline(always)]
fn act_backward<const FMA: bool>(z: f32, dy: f32, act: Act) -> f32 {
    match act {
        Act::None => dy,
        Act::Silu => {
            let s = sigmoid_fast::<FMA>(z);
            dy * fmadd::<FMA>(z * s, 1.0 - s, s)
        }
        Act::Relu6 => {
            if (0.0..=6.0).contains(&z) {
                dy
            } else {
                0.0
            }
        }
        Act::Relu => {
            if z > 0.0 {
                dy
            } else {
                0.0
            }
        }
    }
}

multiversion! {
    /// `g = dy·act'((x − m)·scale + shift)` into `g`; returns `(Σg, Σg·(x − m))` through `sums`.
    fn act_grad_into(
        x: &[f32],
        dy: &[f32],
        g: &mut [f32],
        m: f32,
        scale: f32,
        shift: f32,
        act: Act,
        sums: &mut (f32, f32),
    ) {
        let mut a = [0.0f32; 16];
        let mut b = [0.0f32; 16];
        macro_rules! run {
            ($act:expr) => {{
                let mut gc = g.chunks_exact_mut(16);
                let (mut xc, mut dc) = (x.chunks_exact(16), dy.chunks_exact(16));
                for ((gs, xs), ds) in (&mut gc).zip(&mut xc).zip(&mut dc) {
                    for l in 0..16 {
                        let d = xs[l] - m;
                        let v = act_backward::<FMA>(fmadd::<FMA>(d, scale, shift), ds[l], $act);
                        gs[l] = v;
                        a[l] += v;
                        b[l] = fmadd::<FMA>(v, d, b[l]);
                    }
                }
                let rest = gc.into_remainder().iter_mut().zip(xc.remainder()).zip(dc.remainder());
                for (l, ((gv, xv), dv)) in rest.enumerate() {
                    let d = *xv - m;
                    let v = act_backward::<FMA>(fmadd::<FMA>(d, scale, shift), *dv, $act);
                    *gv = v;
                    a[l] += v;
                    b[l] = fmadd::<FMA>(v, d, b[l]);
                }
            }};
        }
        match act {
            Act::None => run!(Act::None),
            Act::Silu => run!(Act::Silu),
            Act::Relu6 => run!(Act::Relu6),
            Act::Relu => run!(Act::Relu),
        }
        *sums = (a.iter().sum(), b.iter().sum());
    }
}

#[allow(clippy::too_many_arguments)]
fn act_grad(
    isa: Isa,
    x: &[f32],
    dy: &[f32],
    g: &mut [f32],
    m: f32,
    scale: f32,
    shift: f32,
    act: Act,
) -> (f32, f32) {
    let mut sums = (0.0, 0.0);
    act_grad_into(isa, x, dy, g, m, scale, shift, act, &mut sums);
    sums
}

multiversion! {
    /// In place: `g ← scale·(g − k_g − (x − m)·k_x)`.
    fn input_grad(x: &[f32], g: &mut [f32], m: f32, scale: f32, k_g: f32, k_x: f32) {
        for (gv, xv) in g.iter_mut().zip(x) {
            let d = *xv - m;
            *gv = scale * (*gv - k_g - d * k_x);
        }
    }
}
