//! Calibration and the int8 executor on a small random network with every kind of block:
//! the executor against the fake-quantised f32 reference on every instruction set, and int8
//! against f32.

use super::calib::{Calibrator, Site, executor_quantizes, forward_observed, to_nhwc};
use super::*;
use crate::infer::Layout;
use crate::infer::int8::Int8Executor;
use crate::isa::Isa;
use crate::kernels::test_util::values;
use crate::plan::{BlockPlan, Conv, Depthwise, Pad, Plan, SqueezeExcite};

fn conv(k: usize, stride: usize, cin: usize, cout: usize, act: Act, seed: usize) -> Conv {
    let gain = 1.5 / ((k * k * cin) as f32).sqrt();
    Conv {
        k,
        stride,
        pad: Pad::Same,
        cin,
        cout,
        weight: values(k * k * cin * cout, seed)
            .iter()
            .map(|v| v * gain)
            .collect(),
        bias: values(cout, seed + 1).iter().map(|v| v * 0.2).collect(),
        act,
    }
}

fn dw(k: usize, stride: usize, c: usize, act: Act, seed: usize) -> Depthwise {
    let gain = 1.2 / k as f32;
    Depthwise {
        k,
        stride,
        pad: Pad::Same,
        c,
        weight: values(k * k * c, seed).iter().map(|v| v * gain).collect(),
        bias: values(c, seed + 1).iter().map(|v| v * 0.2).collect(),
        act,
    }
}

fn se(c: usize, sq: usize, act: Act, seed: usize) -> SqueezeExcite {
    SqueezeExcite {
        w_reduce: values(c * sq, seed).iter().map(|v| v * 0.5).collect(),
        b_reduce: values(sq, seed + 1).iter().map(|v| v * 0.1).collect(),
        w_expand: values(sq * c, seed + 2).iter().map(|v| v * 0.5).collect(),
        b_expand: values(c, seed + 3).iter().map(|v| v * 0.1 + 1.0).collect(),
        act,
    }
}

/// Stem, a Fused-MBConv with expansion 1 and a residual (V2's first stage), a Fused-MBConv
/// with projection, an MBConv with SE and residual, a depthwise-separable block, head, classifier.
fn tiny_plan(act: Act, with_se: bool) -> Plan {
    let block = |conv, dw, se, project, skip| BlockPlan {
        conv,
        dw,
        se,
        project,
        skip,
    };
    let se_of = |c, seed| with_se.then(|| se(c, c / 4, act, seed));
    Plan {
        stem: conv(3, 2, 3, 16, act, 1),
        blocks: vec![
            block(Some(conv(3, 1, 16, 16, act, 10)), None, None, None, true),
            block(
                Some(conv(3, 2, 16, 32, act, 20)),
                None,
                None,
                Some(conv(1, 1, 32, 24, Act::None, 21)),
                false,
            ),
            block(
                Some(conv(1, 1, 24, 48, act, 30)),
                Some(dw(3, 1, 48, act, 31)),
                se_of(48, 32),
                Some(conv(1, 1, 48, 24, Act::None, 33)),
                true,
            ),
            block(
                None,
                Some(dw(5, 2, 24, act, 40)),
                se_of(24, 41),
                Some(conv(1, 1, 24, 40, Act::None, 42)),
                false,
            ),
        ],
        head: conv(1, 1, 40, 64, act, 50),
        fc_weight: values(64 * 10, 60).iter().map(|v| v * 0.3).collect(),
        fc_bias: values(10, 61).iter().map(|v| v * 0.1).collect(),
    }
}

const SIZE: usize = 24;

fn images(n: usize, seed: usize) -> Vec<f32> {
    values(n * 3 * SIZE * SIZE, seed)
}

fn calibrated(plan: &Plan, method: RangeMethod) -> QuantModel {
    let mut cal = Calibrator::new(plan.clone()).unwrap();
    cal.observe(&images(6, 100), 6, SIZE, SIZE, Layout::Nchw)
        .unwrap();
    cal.finish(method).unwrap()
}

/// The f32 forward of `q`'s dequantised weights, rounded to int8 wherever the executor rounds.
fn fake_quant(q: &QuantModel, img: &[f32]) -> Vec<f32> {
    let plan = q.dequantized_plan();
    let nhwc = to_nhwc(img, SIZE, SIZE, Layout::Nchw);
    let mut hook = |site: Site, t: &mut [f32]| {
        if let Some(p) = executor_quantizes(q, site) {
            t.iter_mut().for_each(|v| *v = p.round_trip(*v));
        }
    };
    forward_observed(Isa::scalar(), &plan, &nhwc, SIZE, SIZE, &mut hook)
}

fn isas() -> Vec<Isa> {
    [Some(Isa::best()), Isa::avx2(), Some(Isa::scalar())]
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn int8_executor_matches_fake_quantised_reference_on_every_isa() {
    for (act, with_se) in [(Act::Silu, true), (Act::Relu6, false), (Act::Relu, true)] {
        let q = calibrated(&tiny_plan(act, with_se), RangeMethod::MinMax);
        let batch = 3;
        let x = images(batch, 7);
        let per = 3 * SIZE * SIZE;
        let want: Vec<f32> = x.chunks(per).flat_map(|img| fake_quant(&q, img)).collect();
        let spread = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for isa in isas() {
            let exec = Int8Executor::with_isa(q.clone(), isa).unwrap();
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool
                    .install(|| exec.forward(&x, batch, SIZE, SIZE, Layout::Nchw))
                    .unwrap();
                let d = got
                    .iter()
                    .zip(&want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                // Same integers, same roundings: only float rounding in the SE gates (fast vs
                // exact sigmoid) and in the dequantised products differs, far below one step
                // (a single flipped rounding would show as ~1% of the spread).
                let what = format!(
                    "{act:?} se {with_se} {} ({}) t{threads}",
                    isa.name(),
                    exec.kernel().name()
                );
                assert!(d <= 1e-4 * spread, "{what}: {d} of {spread}");
            }
        }
    }
}

#[test]
fn int8_stays_close_to_f32_and_the_model_validates() {
    for method in [
        RangeMethod::MinMax,
        RangeMethod::Percentile(99.99),
        RangeMethod::Mse,
    ] {
        let plan = tiny_plan(Act::Silu, true);
        let q = calibrated(&plan, method);
        assert_eq!(q.calibration_images, 6);
        assert_eq!(q.blocks.len(), 4);
        // Residual blocks requantise after the add; others end with their last layer's tensor.
        assert_ne!(
            q.blocks[0].output,
            q.blocks[0].conv.as_ref().unwrap().output
        );
        assert_eq!(
            q.blocks[1].output,
            q.blocks[1].project.as_ref().unwrap().output
        );
        assert!(q.blocks[2].se.as_ref().unwrap().gate == QParams::SIGMOID);
        let exec = Int8Executor::new(q).unwrap();
        let f32_exec = crate::infer::Executor::new(plan).unwrap();
        let x = images(4, 9);
        let a = exec.forward(&x, 4, SIZE, SIZE, Layout::Nchw).unwrap();
        let b = f32_exec.forward(&x, 4, SIZE, SIZE, Layout::Nchw).unwrap();
        let (dot, na, nb) = a.iter().zip(&b).fold((0.0, 0.0, 0.0), |(d, x, y), (p, q)| {
            (d + p * q, x + p * p, y + q * q)
        });
        let cos = dot / (na * nb).sqrt();
        assert!(cos > 0.98, "{method}: cosine {cos}");
    }
}

#[test]
fn weights_quantise_exactly_and_mismatched_models_are_refused() {
    let plan = tiny_plan(Act::Relu6, false);
    let q = calibrated(&plan, RangeMethod::MinMax);
    // Each dequantised weight within half a step of the f32 weight.
    for (qc, c) in [(&q.stem, &plan.stem), (&q.head, &plan.head)] {
        for (i, (d, w)) in qc.dequantized_weight().iter().zip(&c.weight).enumerate() {
            assert!((d - w).abs() <= qc.weight_scale[i % c.cout] * 0.5 + 1e-7);
        }
    }
    let mut bad = q.clone();
    bad.head.input.scale *= 2.0;
    assert!(bad.validate().is_err());
    let mut bad = q;
    bad.fc.bias.pop();
    assert!(Int8Executor::new(bad).is_err());
}
