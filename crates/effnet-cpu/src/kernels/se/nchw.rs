//! Squeeze-and-excitation's two passes over the activation, on NCHW planes: the global average
//! pool (and its backward, a broadcast) and the channel gate `y = x·g` (and its backward,
//! `dx = dy·g` and `dg = Σ dy·x` in one pass).

use rayon::prelude::*;

use crate::isa::{Isa, fmadd, multiversion};

/// Runs `f(plane_index, plane)` over `data` cut in planes of `plane` values, on up to `threads`
/// threads.
fn planes_mut(
    data: &mut [f32],
    plane: usize,
    threads: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    if plane == 0 {
        return;
    }
    if threads <= 1 {
        data.chunks_exact_mut(plane)
            .enumerate()
            .for_each(|(i, p)| f(i, p));
    } else {
        data.par_chunks_exact_mut(plane)
            .enumerate()
            .for_each(|(i, p)| f(i, p));
    }
}

/// Mean of every plane: `x` `[planes][plane]` into `out` `[planes]`.
pub fn plane_means(isa: Isa, x: &[f32], plane: usize, out: &mut [f32], threads: usize) {
    assert_eq!(x.len(), out.len() * plane, "plane_means: sizes");
    let inv = 1.0 / plane.max(1) as f64;
    planes_mut(out, 1, threads, |i, o| {
        let mut s = 0.0;
        lane_dot(isa, &x[i * plane..(i + 1) * plane], None, &mut s);
        o[0] = (s as f64 * inv) as f32;
    });
}

/// Backward of [`plane_means`]: every value of plane `i` gets `dy[i] / plane`.
pub fn plane_means_backward(dy: &[f32], plane: usize, dx: &mut [f32], threads: usize) {
    assert_eq!(dx.len(), dy.len() * plane, "plane_means_backward: sizes");
    let inv = 1.0 / plane.max(1) as f32;
    planes_mut(dx, plane, threads, |i, p| p.fill(dy[i] * inv));
}

/// `y = x·g` with one gate per plane: `x`, `y` `[planes][plane]`, `g` `[planes]`.
pub fn gate_forward(isa: Isa, x: &[f32], g: &[f32], plane: usize, y: &mut [f32], threads: usize) {
    assert_eq!(x.len(), g.len() * plane, "gate_forward: input size");
    assert_eq!(y.len(), x.len(), "gate_forward: output size");
    planes_mut(y, plane, threads, |i, p| {
        scale(isa, &x[i * plane..(i + 1) * plane], g[i], p)
    });
}

/// Backward of [`gate_forward`]: `dx = dy·g` and `dg = Σ dy·x` per plane.
#[allow(clippy::too_many_arguments)]
pub fn gate_backward(
    isa: Isa,
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    plane: usize,
    dx: &mut [f32],
    dg: &mut [f32],
    threads: usize,
) {
    assert_eq!(x.len(), g.len() * plane, "gate_backward: input size");
    assert_eq!(dy.len(), x.len(), "gate_backward: dy size");
    assert_eq!(dx.len(), x.len(), "gate_backward: dx size");
    assert_eq!(dg.len(), g.len(), "gate_backward: dg size");
    let sums: Vec<f32> = if threads <= 1 {
        dx.chunks_exact_mut(plane.max(1))
            .enumerate()
            .map(|(i, p)| gate_plane_backward(isa, x, g, dy, plane, i, p))
            .collect()
    } else {
        dx.par_chunks_exact_mut(plane.max(1))
            .enumerate()
            .map(|(i, p)| gate_plane_backward(isa, x, g, dy, plane, i, p))
            .collect()
    };
    dg.copy_from_slice(&sums);
}

fn gate_plane_backward(
    isa: Isa,
    x: &[f32],
    g: &[f32],
    dy: &[f32],
    plane: usize,
    i: usize,
    dxp: &mut [f32],
) -> f32 {
    let r = i * plane..(i + 1) * plane;
    scale(isa, &dy[r.clone()], g[i], dxp);
    let mut s = 0.0;
    lane_dot(isa, &dy[r.clone()], Some(&x[r]), &mut s);
    s
}

multiversion! {
    /// `dst = src·k`.
    fn scale(src: &[f32], k: f32, dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s * k;
        }
    }
}

multiversion! {
    /// `Σ a·b` (or `Σ a` without `b`) in 16 lanes.
    fn lane_dot(a: &[f32], b: Option<&[f32]>, out: &mut f32) {
        let mut acc = [0.0f32; 16];
        let ac = a.chunks_exact(16);
        let ar = ac.remainder();
        match b {
            Some(b) => {
                let bc = b.chunks_exact(16);
                let br = bc.remainder();
                for (x, y) in ac.zip(bc) {
                    for l in 0..16 {
                        acc[l] = fmadd::<FMA>(x[l], y[l], acc[l]);
                    }
                }
                for (l, (x, y)) in ar.iter().zip(br).enumerate() {
                    acc[l] = fmadd::<FMA>(*x, *y, acc[l]);
                }
            }
            None => {
                for x in ac {
                    for l in 0..16 {
                        acc[l] += x[l];
                    }
                }
                for (l, x) in ar.iter().enumerate() {
                    acc[l] += x;
                }
            }
        }
        *out = acc.iter().sum();
    }
}
