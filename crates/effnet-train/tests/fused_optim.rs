//! The fused CPU optimiser (one pass over all parameters) against burn's per-tensor optimisers
//! it replaces: the same weights after several steps (relative 1e-6) for AdamW, TF-RMSProp and
//! SGD-Nesterov with weight decay, the no-decay group and clipping; the same state in the same
//! checkpoint format, so a run resumes on either; and a clear error for a state of another
//! optimiser.

use effnet_testutil as common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use effnet_model::{EfficientNet, EfficientNetConfig};
use effnet_train::config::{OptimKind, OptimSection};
use effnet_train::optim::{OptimImpl, TrainOptimizer, build_optimizer};

fn section(name: OptimKind) -> OptimSection {
    OptimSection {
        name,
        lr_base: 0.1,
        lr_base_batch: 256,
        weight_decay: 0.05,
        no_decay_bn_bias: true,
        momentum: 0.9,
        rho: 0.9,
        eps: 1e-3,
        betas: [0.9, 0.999],
        nesterov: true,
        lr: None,
    }
}

struct Values(Vec<(String, Vec<f32>)>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val().inner().into_data().try_to_vec::<f32>().unwrap();
        self.0.push((format!("{}", self.0.len()), v));
    }
}

fn values(m: &EfficientNet) -> Vec<(String, Vec<f32>)> {
    let mut v = Values(Vec::new());
    m.visit(&mut v);
    v.0
}

/// Largest relative difference between the parameters of two models (relative to max(|x|, 1)).
fn max_rel_diff(a: &EfficientNet, b: &EfficientNet) -> f32 {
    let (va, vb) = (values(a), values(b));
    assert_eq!(va.len(), vb.len());
    let mut worst = 0f32;
    for ((_, x), (_, y)) in va.iter().zip(&vb) {
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs() / p.abs().max(1.0));
        }
    }
    worst
}

/// `steps` training steps of the tiny model from the same start with `optim`; gradients of a
/// squared-logit loss on fixed inputs. Returns the model.
fn run(
    optim: &mut TrainOptimizer,
    model: EfficientNet,
    steps: usize,
    clip: f64,
    seed: u64,
) -> EfficientNet {
    let ad = Device::flex().autodiff();
    let mut model = model;
    for i in 0..steps {
        let x = input(seed + i as u64, &ad);
        let loss = model.forward(x).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = 0.01 * (i + 1) as f64;
        model = optim.step(lr, model, grads, clip);
    }
    model
}

fn input(seed: u64, device: &Device) -> Tensor<4> {
    let n = 2 * 3 * 32 * 32;
    let v: Vec<f32> = (0..n)
        .map(|i| (((i as u64 * 7919 + seed * 104_729) % 1999) as f32 - 999.0) / 500.0)
        .collect();
    Tensor::from_data(TensorData::new(v, [2, 3, 32, 32]), device)
}

/// The tiny model without dropout and stochastic depth, so that both optimisers see the same
/// gradients as long as their weights agree.
fn tiny() -> EfficientNet {
    let mut cfg = EfficientNetConfig::from_name_or_file(&common::tiny_model()).unwrap();
    cfg.dropout = 0.0;
    cfg.drop_path = 0.0;
    let dev = Device::flex();
    dev.seed(3);
    cfg.init(&dev).train()
}

fn optimizers(kind: OptimKind) -> (TrainOptimizer, TrainOptimizer) {
    let dev = Device::flex().autodiff();
    let cfg = section(kind);
    let fused = build_optimizer(&cfg, &dev, OptimImpl::Auto).unwrap();
    let burn = build_optimizer(&cfg, &dev, OptimImpl::Burn).unwrap();
    assert!(fused.is_fused() && !burn.is_fused());
    (fused, burn)
}

#[test]
fn fused_steps_equal_burn_steps_for_every_optimiser_with_decay_groups() {
    for kind in [OptimKind::Adamw, OptimKind::Rmsproptf, OptimKind::Sgd] {
        let (mut fused, mut burn) = optimizers(kind);
        let start = tiny();
        let a = run(&mut fused, start.clone(), 4, 0.0, 1);
        let b = run(&mut burn, start.clone(), 4, 0.0, 1);
        let d = max_rel_diff(&a, &b);
        assert!(d <= 1e-6, "{kind:?}: max relative difference {d:e}");
        // The steps moved the weights (the comparison is not of two unchanged models).
        assert!(max_rel_diff(&a, &start) > 1e-4, "{kind:?}: no update");
    }
}

/// With clipping the gradients are scaled by `clip / norm`, and the fused norm is summed in f64
/// where burn's sums each tensor in f32: the factors differ in the 7th digit. One step agrees to
/// 1e-6; over four, AdamW's normalisation of near-zero gradients carries that digit to a few
/// 1e-6 (RMSProp and SGD stay at 1e-7), so the four-step bound is 1e-5.
#[test]
fn fused_clipping_equals_burn_clipping() {
    for kind in [OptimKind::Adamw, OptimKind::Rmsproptf, OptimKind::Sgd] {
        for (steps, tol) in [(1, 1e-6), (4, 1e-5)] {
            let (mut fused, mut burn) = optimizers(kind);
            let start = tiny();
            let a = run(&mut fused, start.clone(), steps, 0.5, 1);
            let b = run(&mut burn, start.clone(), steps, 0.5, 1);
            let d = max_rel_diff(&a, &b);
            assert!(
                d <= tol,
                "{kind:?} {steps} steps: max relative difference {d:e}"
            );
            // Clipping changed the result (the norm is above 0.5 here).
            let mut unclipped = optimizers(kind).0;
            let c = run(&mut unclipped, start, steps, 0.0, 1);
            assert!(
                max_rel_diff(&a, &c) > 1e-5,
                "{kind:?}: clipping did nothing"
            );
        }
    }
}

#[test]
fn state_saved_by_either_implementation_resumes_on_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in [OptimKind::Adamw, OptimKind::Rmsproptf, OptimKind::Sgd] {
        let (mut fused, mut burn) = optimizers(kind);
        let start = tiny();
        let a = run(&mut fused, start.clone(), 2, 0.0, 5);
        let b = run(&mut burn, start, 2, 0.0, 5);
        let (pf, pb) = (tmp.path().join("fused.bpk"), tmp.path().join("burn.bpk"));
        fused.save(&pf).unwrap();
        burn.save(&pb).unwrap();
        // Cross-load: each continues from the other's state.
        let (f2, b2) = optimizers(kind);
        let mut fused_from_burn = f2.load(&pb).unwrap();
        let mut burn_from_fused = b2.load(&pf).unwrap();
        let a3 = run(&mut fused_from_burn, b.clone(), 2, 0.0, 9);
        let b3 = run(&mut burn_from_fused, a.clone(), 2, 0.0, 9);
        let straight = run(&mut fused, a, 2, 0.0, 9);
        for (what, m) in [("fused <- burn", &a3), ("burn <- fused", &b3)] {
            let d = max_rel_diff(m, &straight);
            assert!(d <= 1e-6, "{kind:?} {what}: {d:e}");
        }
    }
}

#[test]
fn state_of_another_optimiser_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut rms, _) = optimizers(OptimKind::Rmsproptf);
    let _ = run(&mut rms, tiny(), 1, 0.0, 2);
    let path = tmp.path().join("rms.bpk");
    rms.save(&path).unwrap();
    let (adamw, _) = optimizers(OptimKind::Adamw);
    let err = adamw
        .load(&path)
        .err()
        .expect("an RMSProp state is not an AdamW state");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("another optimiser") && msg.contains("adamw"),
        "{msg}"
    );
}
