//! The training kernels against naive f64 references written from the definitions, on every
//! instruction set this CPU has (the portable fallback included), 1 and 2 threads, strides 1
//! and 2, symmetric and TensorFlow-"same" (asymmetric) padding, odd sizes, batch 1 and 3.

use effnet_cpu::Isa;
use effnet_cpu::kernels::Act;
use effnet_cpu::train::{self, BnAct, Conv2dShape};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-30)).sqrt()
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::scalar(), Isa::best()];
    v.extend(Isa::avx2());
    v.dedup();
    v
}

fn assert_close(what: &str, got: &[f32], want: &[f64], case: &str) {
    let e = rel_l2(got, want);
    assert!(e <= 1e-5, "{what} {case}: relative L2 error {e:e}");
}

/// (input [b, c, h, w], cout, kernel, stride, pad begin, pad end).
type Case = ([usize; 4], usize, usize, usize, [usize; 2], [usize; 2]);

fn cases(depthwise: bool) -> Vec<Case> {
    let mut v = Vec::new();
    for &(b, c, h, w) in &[(1, 3, 7, 9), (3, 5, 8, 6), (2, 18, 5, 19)] {
        for &(k, s) in &[(1, 1), (3, 1), (3, 2), (5, 2), (1, 2)] {
            let cout = if depthwise { c } else { 4 };
            let sym = (k - 1) / 2;
            v.push(([b, c, h, w], cout, k, s, [sym, sym], [sym, sym]));
            // TF "same": output ceil(n / s), extra padding at the end.
            let same = |n: usize| {
                let total = ((n.div_ceil(s) - 1) * s + k).saturating_sub(n);
                (total / 2, total - total / 2)
            };
            let (t, bo) = same(h);
            let (l, r) = same(w);
            v.push(([b, c, h, w], cout, k, s, [t, l], [bo, r]));
        }
    }
    v
}

fn shape(c: &Case) -> Conv2dShape {
    let (x, cout, k, s, pb, pe) = *c;
    Conv2dShape::new(x, cout, [k, k], [s, s], pb, pe)
}

/// Input coordinate of output `o`, tap `t` (None outside the image).
fn at(o: usize, t: usize, s: usize, pad: usize, n: usize) -> Option<usize> {
    (o * s + t).checked_sub(pad).filter(|&i| i < n)
}

/// Naive forward, dx and dw (f64) of a conv with `groups` groups.
fn reference(
    s: &Conv2dShape,
    groups: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    dy: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (cig, cog) = (s.cin / groups, s.cout / groups);
    let mut y = vec![0.0f64; s.batch * s.out_image()];
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    for n in 0..s.batch {
        for co in 0..s.cout {
            let g = co / cog;
            for oy in 0..s.oh {
                for ox in 0..s.ow {
                    let yi = ((n * s.cout + co) * s.oh + oy) * s.ow + ox;
                    let mut acc = bias.map_or(0.0, |b| b[co] as f64);
                    for cj in 0..cig {
                        let ci = g * cig + cj;
                        for ky in 0..s.kh {
                            let Some(iy) = at(oy, ky, s.stride[0], s.pad[0], s.h) else {
                                continue;
                            };
                            for kx in 0..s.kw {
                                let Some(ix) = at(ox, kx, s.stride[1], s.pad[1], s.w) else {
                                    continue;
                                };
                                let xi = ((n * s.cin + ci) * s.h + iy) * s.w + ix;
                                let wi = ((co * cig + cj) * s.kh + ky) * s.kw + kx;
                                acc += x[xi] as f64 * w[wi] as f64;
                                dx[xi] += dy[yi] as f64 * w[wi] as f64;
                                dw[wi] += dy[yi] as f64 * x[xi] as f64;
                            }
                        }
                    }
                    y[yi] = acc;
                }
            }
        }
    }
    (y, dx, dw)
}

#[test]
fn dense_conv_matches_reference() {
    for case in cases(false) {
        let s = shape(&case);
        let x = values(s.batch * s.in_image(), 1);
        let w = values(s.cout * s.patch(), 2);
        let b = values(s.cout, 3);
        let dy = values(s.batch * s.out_image(), 4);
        let (y_ref, dx_ref, dw_ref) = reference(&s, 1, &x, &w, Some(&b), &dy);
        for isa in isas() {
            for threads in [1, 2] {
                let tag = format!("{s:?} isa {} threads {threads}", isa.name());
                let mut y = vec![f32::NAN; y_ref.len()];
                train::conv2d_forward(isa, &s, &x, &w, Some(&b), &mut y, threads);
                assert_close("conv forward", &y, &y_ref, &tag);
                let mut dx = vec![f32::NAN; x.len()];
                train::conv2d_backward_data(isa, &s, &w, &dy, &mut dx, threads);
                assert_close("conv dx", &dx, &dx_ref, &tag);
                let mut dw = vec![f32::NAN; w.len()];
                train::conv2d_backward_weight(isa, &s, &x, &dy, &mut dw, threads);
                assert_close("conv dw", &dw, &dw_ref, &tag);
            }
        }
    }
}

#[test]
fn depthwise_conv_matches_reference() {
    for case in cases(true) {
        let s = shape(&case);
        let x = values(s.batch * s.in_image(), 5);
        let w = values(s.cout * s.kh * s.kw, 6);
        let b = values(s.cout, 7);
        let dy = values(s.batch * s.out_image(), 8);
        let (y_ref, dx_ref, dw_ref) = reference(&s, s.cin, &x, &w, Some(&b), &dy);
        for isa in isas() {
            for threads in [1, 2] {
                let tag = format!("{s:?} isa {} threads {threads}", isa.name());
                let mut y = vec![f32::NAN; y_ref.len()];
                train::depthwise_forward(isa, &s, &x, &w, Some(&b), &mut y, threads);
                assert_close("depthwise forward", &y, &y_ref, &tag);
                let mut dx = vec![f32::NAN; x.len()];
                train::depthwise_backward_data(isa, &s, &w, &dy, &mut dx, threads);
                assert_close("depthwise dx", &dx, &dx_ref, &tag);
                let mut dw = vec![f32::NAN; w.len()];
                train::depthwise_backward_weight(isa, &s, &x, &dy, &mut dw, threads);
                assert_close("depthwise dw", &dw, &dw_ref, &tag);
            }
        }
    }
}

fn act_ref(z: f64, act: Act) -> (f64, f64) {
    match act {
        Act::None => (z, 1.0),
        Act::Silu => {
            let s = 1.0 / (1.0 + (-z).exp());
            (z * s, s + z * s * (1.0 - s))
        }
        Act::Relu6 => (z.clamp(0.0, 6.0), f64::from((0.0..=6.0).contains(&z))),
        Act::Relu => (z.max(0.0), f64::from(z > 0.0)),
    }
}

/// Naive BN + act: (y, mean, var, dx, dgamma, dbeta).
#[allow(clippy::type_complexity)]
fn bn_reference(
    s: &BnAct,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (c, p) = (s.channels, s.plane);
    let m = (s.batch * p) as f64;
    let idx = |n: usize, ch: usize, i: usize| (n * c + ch) * p + i;
    let mut y = vec![0.0; x.len()];
    let mut dx = vec![0.0; x.len()];
    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let vals = || (0..s.batch).flat_map(move |n| (0..p).map(move |i| idx(n, ch, i)));
        let mu = vals().map(|k| x[k] as f64).sum::<f64>() / m;
        let v = vals().map(|k| (x[k] as f64 - mu).powi(2)).sum::<f64>() / m;
        let inv = 1.0 / (v + s.eps).sqrt();
        let mut g = vec![0.0; x.len()];
        for k in vals() {
            let xh = (x[k] as f64 - mu) * inv;
            let (a, d) = act_ref(xh * gamma[ch] as f64 + beta[ch] as f64, s.act);
            y[k] = a;
            g[k] = d * dy[k] as f64;
            db[ch] += g[k];
            dg[ch] += g[k] * xh;
        }
        for k in vals() {
            let xh = (x[k] as f64 - mu) * inv;
            dx[k] = gamma[ch] as f64 * inv * (g[k] - db[ch] / m - xh * dg[ch] / m);
        }
        mean[ch] = mu;
        var[ch] = v;
    }
    (y, mean, var, dx, dg, db)
}

#[test]
fn batch_norm_act_matches_reference() {
    for &(batch, channels, plane) in &[(1, 3, 7 * 9), (3, 5, 4 * 5), (2, 4, 33)] {
        for act in [Act::None, Act::Silu, Act::Relu6, Act::Relu] {
            let s = BnAct {
                batch,
                channels,
                plane,
                eps: 1e-3,
                act,
            };
            let n = batch * channels * plane;
            // An offset and scale per channel, so that the statistics matter.
            let x: Vec<f32> = values(n, 9)
                .iter()
                .enumerate()
                .map(|(i, v)| v * 3.0 + ((i / plane) % channels) as f32 - 1.0)
                .collect();
            let gamma: Vec<f32> = values(channels, 10).iter().map(|v| v + 1.5).collect();
            let beta = values(channels, 11);
            let dy = values(n, 12);
            let (y_r, mean_r, var_r, dx_r, dg_r, db_r) = bn_reference(&s, &x, &gamma, &beta, &dy);
            for isa in isas() {
                for threads in [1, 2] {
                    let tag = format!("{s:?} isa {} threads {threads}", isa.name());
                    let (mut y, mut mean, mut var) =
                        (vec![0.0; n], vec![0.0; channels], vec![0.0; channels]);
                    train::batch_norm_act_forward(
                        isa, &s, &x, &gamma, &beta, &mut y, &mut mean, &mut var, threads,
                    );
                    assert_close("bn forward", &y, &y_r, &tag);
                    assert_close("bn mean", &mean, &mean_r, &tag);
                    assert_close("bn var", &var, &var_r, &tag);
                    let (mut dx, mut dg, mut db) =
                        (vec![0.0; n], vec![0.0; channels], vec![0.0; channels]);
                    train::batch_norm_act_backward(
                        isa, &s, &x, &gamma, &beta, &mean, &var, &dy, &mut dx, &mut dg, &mut db,
                        threads,
                    );
                    assert_close("bn dx", &dx, &dx_r, &tag);
                    assert_close("bn dgamma", &dg, &dg_r, &tag);
                    assert_close("bn dbeta", &db, &db_r, &tag);
                }
            }
        }
    }
}

#[test]
fn channel_sums_match_reference() {
    let (batch, channels, plane) = (3, 5, 37);
    let dy = values(batch * channels * plane, 13);
    let want: Vec<f64> = (0..channels)
        .map(|c| {
            (0..batch)
                .flat_map(|n| (0..plane).map(move |i| (n * channels + c) * plane + i))
                .map(|k| dy[k] as f64)
                .sum()
        })
        .collect();
    for isa in isas() {
        for threads in [1, 2] {
            let mut got = vec![0.0; channels];
            train::channel_sums(isa, &dy, batch, channels, plane, &mut got, threads);
            assert_close("channel sums", &got, &want, isa.name());
        }
    }
}

#[test]
fn squeeze_excite_passes_match_reference() {
    let (planes, plane) = (7, 45);
    let x = values(planes * plane, 14);
    let g = values(planes, 15);
    let dy = values(planes * plane, 16);
    let idx = |i: usize| i * plane..(i + 1) * plane;
    let mean_r: Vec<f64> = (0..planes)
        .map(|i| x[idx(i)].iter().map(|v| *v as f64).sum::<f64>() / plane as f64)
        .collect();
    let pool_dx_r: Vec<f64> = (0..planes * plane)
        .map(|k| g[k / plane] as f64 / plane as f64)
        .collect();
    let y_r: Vec<f64> = (0..planes * plane)
        .map(|k| x[k] as f64 * g[k / plane] as f64)
        .collect();
    let dx_r: Vec<f64> = (0..planes * plane)
        .map(|k| dy[k] as f64 * g[k / plane] as f64)
        .collect();
    let dg_r: Vec<f64> = (0..planes)
        .map(|i| idx(i).map(|k| dy[k] as f64 * x[k] as f64).sum())
        .collect();
    for isa in isas() {
        for threads in [1, 2] {
            let tag = format!("isa {} threads {threads}", isa.name());
            let mut mean = vec![0.0; planes];
            train::plane_means(isa, &x, plane, &mut mean, threads);
            assert_close("plane means", &mean, &mean_r, &tag);
            let mut pool_dx = vec![0.0; planes * plane];
            train::plane_means_backward(&g, plane, &mut pool_dx, threads);
            assert_close("plane means backward", &pool_dx, &pool_dx_r, &tag);
            let mut y = vec![0.0; planes * plane];
            train::gate_forward(isa, &x, &g, plane, &mut y, threads);
            assert_close("gate forward", &y, &y_r, &tag);
            let (mut dx, mut dg) = (vec![0.0; planes * plane], vec![0.0; planes]);
            train::gate_backward(isa, &x, &g, &dy, plane, &mut dx, &mut dg, threads);
            assert_close("gate dx", &dx, &dx_r, &tag);
            assert_close("gate dg", &dg, &dg_r, &tag);
        }
    }
}
