//! The fused loops against the per-value references, on every instruction set, 1 and 2
//! threads, with tensors longer than a chunk.

use super::*;

fn isas() -> Vec<Isa> {
    [Some(Isa::best()), Isa::avx2(), Some(Isa::scalar())]
        .into_iter()
        .flatten()
        .collect()
}

/// Deterministic values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Lengths of the test tensors: odd, one longer than two chunks (split over threads).
const LENS: [usize; 4] = [1, 37, 1000, 2 * CHUNK + 13];

/// `got` within 2e-6 relative plus 1e-6 of the tensor's largest value (f32 rounding of the
/// operands: an update that nearly cancels a weight keeps the weight's absolute error).
fn assert_close(what: &str, got: &[f32], want: impl Iterator<Item = f64>) {
    let want: Vec<f64> = want.collect();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = 2e-6 * w.abs() + 1e-6 * scale;
        assert!((*g as f64 - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

/// Runs `steps` on every ISA and thread count and checks that all give the same bits.
fn same_everywhere(run: impl Fn(Isa, usize) -> Vec<Vec<f32>> + Sync) -> Vec<Vec<f32>> {
    let first = run(Isa::scalar(), 1);
    for isa in isas() {
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| run(isa, threads));
            assert!(
                got == first,
                "{} with {threads} threads differs",
                isa.name()
            );
        }
    }
    first
}

#[test]
fn adamw_matches_reference_over_steps_with_decay_and_clipping() {
    let (b1, b2, eps, lr, wd) = (0.9f32, 0.999f32, 1e-8f32, 3e-3, 0.05f32);
    let params: Vec<Vec<f32>> = LENS.iter().map(|&n| values(n, n as u64, 1.0)).collect();
    let grads: Vec<Vec<Vec<f32>>> = (0..3)
        .map(|t| LENS.iter().map(|&n| values(n, 100 + t, 0.1)).collect())
        .collect();
    let scales = [None, Some(0.5f32), None];
    let out = same_everywhere(|isa, threads| {
        let mut p = params.clone();
        let mut m: Vec<Vec<f32>> = LENS.iter().map(|&n| vec![0.0; n]).collect();
        let mut v = m.clone();
        for (t, (g, gs)) in grads.iter().zip(scales).enumerate() {
            let segs = (p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())))
                .enumerate()
                .map(|(i, ((p, g), (m, v)))| {
                    // The second tensor is in the no-decay group.
                    let wd = if i == 1 { 0.0 } else { wd };
                    let mut step = AdamWStep::new(b1, b2, eps, lr, wd, t as u32 + 1);
                    step.grad_scale = gs;
                    AdamWSegment {
                        param: p,
                        grad: g,
                        m,
                        v,
                        step,
                    }
                })
                .collect();
            adamw(isa, segs, threads);
        }
        [p, m, v].concat()
    });
    for (i, &n) in LENS.iter().enumerate() {
        let wd = if i == 1 { 0.0 } else { wd as f64 };
        let mut r: Vec<reference::AdamW> = params[i]
            .iter()
            .map(|&p| reference::AdamW {
                p: p as f64,
                m: 0.0,
                v: 0.0,
            })
            .collect();
        for (t, (g, gs)) in grads.iter().zip(scales).enumerate() {
            for (r, g) in r.iter_mut().zip(&g[i]) {
                let g = *g as f64 * gs.unwrap_or(1.0) as f64;
                r.step(g, lr, b1 as f64, b2 as f64, eps as f64, wd, t as i32 + 1);
            }
        }
        assert_close(&format!("adamw p {n}"), &out[i], r.iter().map(|r| r.p));
        assert_close(&format!("adamw m {n}"), &out[4 + i], r.iter().map(|r| r.m));
        assert_close(&format!("adamw v {n}"), &out[8 + i], r.iter().map(|r| r.v));
    }
}

#[test]
fn rmsprop_tf_matches_reference_over_steps() {
    let (rho, mu, eps, lr, wd) = (0.9, 0.9, 1e-3, 0.016, 1e-5);
    let params: Vec<Vec<f32>> = LENS.iter().map(|&n| values(n, n as u64, 1.0)).collect();
    let grads: Vec<Vec<Vec<f32>>> = (0..3)
        .map(|t| LENS.iter().map(|&n| values(n, 200 + t, 0.5)).collect())
        .collect();
    let out = same_everywhere(|isa, threads| {
        let mut p = params.clone();
        let mut ms: Vec<Vec<f32>> = LENS.iter().map(|&n| vec![1.0; n]).collect();
        let mut mom: Vec<Vec<f32>> = LENS.iter().map(|&n| vec![0.0; n]).collect();
        for g in &grads {
            let segs = (p.iter_mut().zip(g).zip(ms.iter_mut().zip(mom.iter_mut())))
                .map(|((p, g), (ms, mom))| RmsPropTfSegment {
                    param: p,
                    grad: g,
                    ms,
                    mom,
                    step: RmsPropTfStep::new(rho, mu, eps, wd, lr),
                })
                .collect();
            rmsprop_tf(isa, segs, threads);
        }
        [p, ms, mom].concat()
    });
    for (i, &n) in LENS.iter().enumerate() {
        let mut r: Vec<reference::RmsPropTf> = params[i]
            .iter()
            .map(|&p| reference::RmsPropTf::new(p as f64))
            .collect();
        for g in &grads {
            for (r, g) in r.iter_mut().zip(&g[i]) {
                r.step(*g as f64, lr, rho, mu, eps, wd);
            }
        }
        assert_close(&format!("rmsprop p {n}"), &out[i], r.iter().map(|r| r.p));
        assert_close(
            &format!("rmsprop ms {n}"),
            &out[4 + i],
            r.iter().map(|r| r.ms),
        );
        assert_close(
            &format!("rmsprop mom {n}"),
            &out[8 + i],
            r.iter().map(|r| r.mom),
        );
    }
}

#[test]
fn sgd_matches_reference_plain_momentum_nesterov_and_dampening() {
    for (mu, damp, nesterov, wd) in [
        (0.0, 0.0, false, 0.0),
        (0.9, 0.0, false, 1e-4),
        (0.9, 0.0, true, 1e-4),
        (0.8, 0.1, false, 0.0),
    ] {
        let lr = 0.1;
        let params: Vec<Vec<f32>> = LENS.iter().map(|&n| values(n, n as u64, 1.0)).collect();
        let grads: Vec<Vec<Vec<f32>>> = (0..3)
            .map(|t| LENS.iter().map(|&n| values(n, 300 + t, 0.5)).collect())
            .collect();
        let out = same_everywhere(|isa, threads| {
            let mut p = params.clone();
            let vlen = |n: usize| if mu > 0.0 { n } else { 0 };
            let mut vel: Vec<Vec<f32>> = LENS.iter().map(|&n| vec![0.0; vlen(n)]).collect();
            for (t, g) in grads.iter().enumerate() {
                let step = SgdStep {
                    lr: lr as f32,
                    weight_decay: (wd > 0.0).then_some(wd as f32),
                    momentum: (mu > 0.0).then_some(mu as f32),
                    one_minus_dampening: (1.0 - damp) as f32,
                    nesterov,
                    first: t == 0,
                    grad_scale: None,
                };
                let segs = (p.iter_mut().zip(g).zip(vel.iter_mut()))
                    .map(|((p, g), v)| SgdSegment {
                        param: p,
                        grad: g,
                        velocity: v,
                        step,
                    })
                    .collect();
                sgd(isa, segs, threads);
            }
            p
        });
        for (i, &n) in LENS.iter().enumerate() {
            let mut r: Vec<reference::Sgd> = params[i]
                .iter()
                .map(|&p| reference::Sgd {
                    p: p as f64,
                    v: None,
                })
                .collect();
            for g in &grads {
                for (r, g) in r.iter_mut().zip(&g[i]) {
                    r.step(*g as f64, lr, mu, damp, nesterov, wd);
                }
            }
            let what = format!("sgd mu{mu} d{damp} n{nesterov} {n}");
            assert_close(&what, &out[i], r.iter().map(|r| r.p));
        }
    }
}

#[test]
fn ema_moves_by_one_minus_decay() {
    let decay = 0.9998;
    let ema0: Vec<Vec<f32>> = LENS.iter().map(|&n| values(n, n as u64, 1.0)).collect();
    let cur: Vec<Vec<f32>> = LENS.iter().map(|&n| values(n, 7 + n as u64, 1.0)).collect();
    let out = same_everywhere(|isa, threads| {
        let mut e = ema0.clone();
        let segs = e
            .iter_mut()
            .zip(&cur)
            .map(|(ema, current)| EmaSegment { ema, current })
            .collect();
        ema(isa, segs, decay, threads);
        e
    });
    for i in 0..LENS.len() {
        let want = ema0[i]
            .iter()
            .zip(&cur[i])
            .map(|(e, c)| decay * *e as f64 + (1.0 - decay) * *c as f64);
        assert_close("ema", &out[i], want);
    }
}

#[test]
fn sum_squares_is_the_squared_norm_whatever_the_threads() {
    let xs: Vec<Vec<f32>> = LENS.iter().map(|&n| values(n, n as u64, 3.0)).collect();
    let slices: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
    let want: f64 = xs.iter().flatten().map(|&x| (x as f64) * (x as f64)).sum();
    let one = sum_squares(&slices, 1);
    assert!((one - want).abs() <= 1e-12 * want, "{one} vs {want}");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    assert_eq!(pool.install(|| sum_squares(&slices, 2)), one);
}
