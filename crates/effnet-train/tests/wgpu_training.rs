//! Training on a CubeCL backend without a GPU: two optimiser steps of small EfficientNetV2- and
//! Lite-style networks on wgpu (CI: Mesa's software Vulkan, lavapipe, picked by
//! `CUBECL_WGPU_DEFAULT_DEVICE=Cpu` in scripts/test.sh), compared with the CPU (burn's flex
//! backend) on the same weights and inputs.
//!
//! The CUDA build runs the same code on a GPU: the trainer's step ([`train_step_mixed`]: forward
//! in the compute precision, soft-target cross entropy, backward, optimiser update), burn's
//! autodiff over CubeCL's fused kernels, the Cube path of effnet's training ops
//! ([`effnet_model::ops`]: in f32 the blocks call them, so any op they use is covered here; half
//! precision runs burn's plain modules), and the weight EMA. In f32 the wgpu run with the ops
//! is also compared with one with burn's plain modules on the same device
//! ([`ops::with_plain_ops`]). What is compared, per network and precision:
//!
//! * the loss of the first forward and the gradient of every parameter (before any update);
//! * the losses of both steps and the updates: every parameter and BatchNorm running statistic
//!   after the second step (the optimiser state of step one feeds step two), and the EMA
//!   weights, minus the starting weights.
//!
//! Each set of tensors is compared as one vector (relative L2 error) and tensor by tensor
//! (worst `max|wgpu - cpu|` over the tensor's scale, see [`Errors`]). f32 tolerances are about
//! ten times the largest error measured on lavapipe (Mesa 22.3.6) over ten starting weights;
//! f16 runs only where the adapter has `SHADER_F16` (checked at run time, otherwise the test
//! says why it skips; wgpu has no bf16) and is held to a multiple of the CPU's own f16 error.
//! Dropout and stochastic depth are off: their random masks come from each device's own RNG
//! (crates/effnet-cli/tests/wgpu_cli.rs trains with them on).
#![cfg(feature = "wgpu")]

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use effnet_model::{ComputePrecision, EfficientNet, EfficientNetConfig, ops, parse_device};
use effnet_train::config::{OptimKind, OptimSection};
use effnet_train::ema::{ModelEma, copy_weights};
use effnet_train::loss::soft_target_cross_entropy;
use effnet_train::optim::{OptimImpl, build_optimizer};
use effnet_train::{DynamicLossScaler, LossScaleConfig, StepSettings, train_step_mixed};

/// f16 on wgpu against the f32 reference: the loss (relative; f16 has an 11-bit significand), and
/// for gradients and updates at most this many times the error of the CPU's own f16 run. f16
/// rounding alone moves the tiny Lite's gradients by about 10 % on either backend, so a fixed
/// bound would say little about the device. Measured over seeds 0-9: wgpu's error is 0.9-1.3
/// times the CPU's on the Lite and 1.8-2.2 times on the V2 (whose SiLU and sigmoid wgpu
/// evaluates in f16), against f32 losses within 2.5e-3.
const F16_LOSS: f64 = 1e-2;
const F16_VS_CPU: f64 = 4.0;

/// Seed of the starting weights (the CPU's RNG); `EFFNET_TEST_SEED=N` picks another (the
/// tolerances come from seeds 0-9).
const SEED: u64 = 17;
const BATCH: usize = 4;
const SIZE: usize = 32;
const CLASSES: usize = 10;
const STEPS: usize = 2;
/// f16 steps use the trainer's loss scaler, at a scale that cannot overflow on step one.
const F16_SCALE: f64 = 1024.0;

/// A reduced EfficientNetV2: Fused-MBConv with and without expansion, MBConv with SE, SiLU, a
/// stride-1 width change, V2 rounding and symmetric padding.
const TINY_V2: &str = r#"
name = "v2_wgpu_test"
stem_channels = 8
head_channels = 64
activation = "silu"
dropout = 0.0
drop_path = 0.0
num_classes = 10
train_size = 32
eval_size = 32
[[stages]]
block = "fused"
repeats = 1
kernel = 3
stride = 1
expand = 1
in_channels = 8
out_channels = 8
[[stages]]
block = "fused"
repeats = 2
kernel = 3
stride = 2
expand = 4
in_channels = 8
out_channels = 16
[[stages]]
block = "mbconv"
repeats = 2
kernel = 3
stride = 2
expand = 4
in_channels = 16
out_channels = 24
se_ratio = 0.25
[[stages]]
block = "mbconv"
repeats = 1
kernel = 3
stride = 1
expand = 4
in_channels = 24
out_channels = 32
se_ratio = 0.25
"#;

/// A reduced EfficientNet-Lite: ReLU6, no SE, TF "SAME" padding (asymmetric at stride 2),
/// 5×5 depthwise, a depthwise-separable first block, V1 rounding, fixed stem and head.
const TINY_LITE: &str = r#"
name = "lite_wgpu_test"
stem_channels = 8
head_channels = 64
activation = "relu6"
padding = "same"
rounding = "v1"
fix_stem_head = true
dropout = 0.0
drop_path = 0.0
num_classes = 10
train_size = 32
eval_size = 32
[[stages]]
block = "mbconv"
repeats = 1
kernel = 3
stride = 1
expand = 1
in_channels = 8
out_channels = 8
[[stages]]
block = "mbconv"
repeats = 2
kernel = 5
stride = 2
expand = 6
in_channels = 8
out_channels = 16
[[stages]]
block = "mbconv"
repeats = 1
kernel = 3
stride = 2
expand = 6
in_channels = 16
out_channels = 24
"#;

/// Every named float tensor of a model, or of its gradients.
type Named = Vec<(String, Vec<f32>)>;

/// What one device computed.
struct Outcome {
    /// Loss of the gradient pass.
    loss: f64,
    /// Unscaled gradients of the first forward, by parameter.
    grads: Named,
    /// Losses of the optimiser steps.
    step_losses: Vec<f64>,
    /// Parameters and running statistics after the steps.
    after: Named,
    /// EMA weights after the steps.
    ema: Named,
}

/// Collects float tensors with their module paths: the parameters themselves, or (with
/// `grads`) their gradients divided by `scale`.
struct Collect<'a> {
    path: Vec<String>,
    grads: Option<(&'a GradientsParams, f64)>,
    out: Named,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = match self.grads {
            Some((g, scale)) => match g.get::<D>(param.id) {
                Some(t) => t.div_scalar(scale),
                None => return,
            },
            None => param.val(),
        };
        let v = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        self.out.push((self.path.join("."), v));
    }
}

fn collect(model: &EfficientNet, grads: Option<(&GradientsParams, f64)>) -> Named {
    let mut c = Collect {
        path: Vec::new(),
        grads,
        out: Vec::new(),
    };
    model.visit(&mut c);
    c.out
}

/// Deterministic inputs (a fixed pseudo-random image batch) and label-smoothed one-hot targets,
/// as the trainer builds them.
fn batch() -> (TensorData, TensorData) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let x: Vec<f32> = (0..BATCH * 3 * SIZE * SIZE)
        .map(|_| 4.0 * next() - 2.0)
        .collect();
    let (on, off) = (0.9 + 0.1 / CLASSES as f32, 0.1 / CLASSES as f32);
    let y: Vec<f32> = (0..BATCH * CLASSES)
        .map(|i| {
            if i % CLASSES == (3 * (i / CLASSES) + 1) % CLASSES {
                on
            } else {
                off
            }
        })
        .collect();
    (
        TensorData::new(x, [BATCH, 3, SIZE, SIZE]),
        TensorData::new(y, [BATCH, CLASSES]),
    )
}

/// Runs the gradient pass and the optimiser steps of `start` on `device` in `precision`,
/// building the training model as the trainer does (fresh init on the device, weights copied
/// in, `.train()` onto the autodiff device).
fn run(
    cfg: &EfficientNetConfig,
    start: &EfficientNet,
    optim_cfg: &OptimSection,
    device: &Device,
    precision: ComputePrecision,
) -> Outcome {
    let (xd, yd) = batch();
    let ad = device.clone().autodiff();
    let fresh = || copy_weights(cfg.init(device), start).train();
    let x = || Tensor::<4>::from_data(xd.clone(), &ad);
    let y = || Tensor::<2>::from_data(yd.clone(), &ad);
    let f16 = precision == ComputePrecision::F16;
    let scale = if f16 { F16_SCALE } else { 1.0 };

    // The trainer's loss, its backward, the gradients as the optimiser receives them.
    let model = fresh();
    let loss = soft_target_cross_entropy(model.forward_with(x(), precision), y());
    let loss_val = loss.clone().into_scalar::<f32>() as f64;
    let grads = GradientsParams::from_grads(loss.mul_scalar(scale).backward(), &model);
    let grads = collect(&model, Some((&grads, scale)));

    // The trainer's steps, with the weight EMA after each one.
    let mut model = fresh();
    let mut optim = build_optimizer(optim_cfg, &ad, OptimImpl::Auto).expect("optimiser");
    let mut scaler = f16.then(|| {
        DynamicLossScaler::new(LossScaleConfig {
            init_scale: F16_SCALE,
            ..Default::default()
        })
    });
    let mut ema = ModelEma::new(model.valid(), 0.5, false, 0.0);
    let settings = StepSettings {
        lr: optim_cfg.peak_lr(BATCH),
        clip_grad: 0.0,
        precision,
        ..Default::default()
    };
    let mut step_losses = Vec::new();
    for _ in 0..STEPS {
        let out;
        (model, out) = train_step_mixed(model, &mut optim, x(), y(), &settings, scaler.as_mut());
        assert!(
            !out.skipped && out.loss.is_finite(),
            "step skipped: {out:?}"
        );
        step_losses.push(out.loss);
        ema.update(&model.valid());
    }
    Outcome {
        loss: loss_val,
        grads,
        step_losses,
        after: collect(&model, None),
        ema: collect(&ema.model, None),
    }
}

/// Largest magnitude in `v`.
fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |m, x| m.max(x.abs() as f64))
}

/// `b - a`, tensor by tensor (what the optimiser steps changed).
fn delta(a: &Named, b: &Named) -> Named {
    a.iter()
        .zip(b)
        .map(|((n, va), (_, vb))| (n.clone(), vb.iter().zip(va).map(|(y, x)| y - x).collect()))
        .collect()
}

/// How far a set of tensors is from the reference set.
struct Errors {
    /// The worst tensor: `max|b - a|` over its scale, `max|a|` or a thousandth of the largest
    /// value of all tensors in `a`, whichever is larger. The floor matters for tensors that are
    /// zero in exact arithmetic and hold only rounding noise (1e-9 where other gradients are
    /// 1e-2): the beta of a BatchNorm whose output goes through a 1×1 conv into another
    /// BatchNorm, which removes any constant shift.
    worst: f64,
    /// Its name.
    worst_name: String,
    /// All tensors as one vector: `|b - a|₂ / |a|₂`.
    l2: f64,
}

fn errors(a: &Named, b: &Named) -> Errors {
    assert_eq!(a.len(), b.len(), "different tensors");
    let floor = 1e-3 * a.iter().fold(0f64, |m, (_, v)| m.max(max_abs(v)));
    let (mut worst, mut worst_name) = (0f64, String::new());
    let (mut d2, mut a2) = (0f64, 0f64);
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        let mut diff = 0f64;
        for (x, y) in va.iter().zip(vb) {
            let (x, y) = (*x as f64, *y as f64);
            diff = diff.max((x - y).abs());
            d2 += (x - y) * (x - y);
            a2 += x * x;
        }
        assert!(diff.is_finite(), "{na}: non-finite values");
        let err = diff / max_abs(va).max(floor).max(f64::MIN_POSITIVE);
        if err >= worst {
            (worst, worst_name) = (err, na.clone());
        }
    }
    Errors {
        worst,
        worst_name,
        l2: (d2 / a2.max(f64::MIN_POSITIVE)).sqrt(),
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(1e-12)
}

/// What separates a run from the reference run.
struct Report {
    /// Worst relative loss error (gradient pass and every step).
    loss: f64,
    /// Gradients of the first forward.
    grad: Errors,
    /// Updates: weights and running statistics after the steps, minus the starting weights.
    update: Errors,
    /// EMA updates: the EMA weights after the steps, minus the starting weights.
    ema: Errors,
}

/// Compares `run` with `reference` (both started from `start`) and prints the figures.
fn report(label: &str, start: &Named, reference: &Outcome, run: &Outcome) -> Report {
    let loss = std::iter::once((reference.loss, run.loss))
        .chain(
            reference
                .step_losses
                .iter()
                .copied()
                .zip(run.step_losses.iter().copied()),
        )
        .map(|(a, b)| rel(a, b))
        .fold(0f64, f64::max);
    let r = Report {
        loss,
        grad: errors(&reference.grads, &run.grads),
        update: errors(&delta(start, &reference.after), &delta(start, &run.after)),
        ema: errors(&delta(start, &reference.ema), &delta(start, &run.ema)),
    };
    let show = |e: &Errors| {
        format!(
            "{:.2e} over all, worst {:.2e} ({})",
            e.l2, e.worst, e.worst_name
        )
    };
    eprintln!(
        "{label}: loss {:.6} vs {:.6} (rel. error {:.2e}); gradients {}; updates after {STEPS} \
         steps {}; EMA {}",
        reference.loss,
        run.loss,
        r.loss,
        show(&r.grad),
        show(&r.update),
        show(&r.ema)
    );
    // The comparison is not vacuous: there are gradients, and the steps moved the weights.
    assert!(
        reference.grads.len() > 10,
        "{label}: gradients were collected"
    );
    let moved = delta(start, &reference.after)
        .iter()
        .fold(0f64, |m, (_, v)| m.max(max_abs(v)));
    assert!(
        moved > 1e-4,
        "{label}: the optimiser barely moved the weights ({moved:.2e})"
    );
    r
}

/// f32 tolerances of one network: the loss (relative), then (worst tensor, all tensors) for
/// gradients and updates, see [`Errors`].
struct Tolerance {
    loss: f64,
    grad: (f64, f64),
    update: (f64, f64),
}

fn assert_within(label: &str, r: &Report, tol: &Tolerance) {
    assert!(
        r.loss <= tol.loss,
        "{label}: loss differs by {:.2e}",
        r.loss
    );
    for (what, e, (worst, l2)) in [
        ("gradients", &r.grad, tol.grad),
        ("updates", &r.update, tol.update),
        ("EMA updates", &r.ema, tol.update),
    ] {
        assert!(
            e.worst <= worst && e.l2 <= l2,
            "{label}: {what} differ by {:.2e} over all, {:.2e} in {} (tolerances {l2:.0e}, {worst:.0e})",
            e.l2,
            e.worst,
            e.worst_name
        );
    }
}

/// Runs the network on the CPU and on wgpu from the same weights and compares: f32 against
/// `tol`, wgpu with effnet's ops against wgpu with burn's plain modules within `tol` too; f16
/// (where the adapter has it) against the CPU's own f16 run, both measured from the f32
/// reference.
fn check(name: &str, toml: &str, optim: OptimSection, tol: Tolerance) {
    let cfg = EfficientNetConfig::from_toml(toml).expect("test model");
    let cpu = Device::flex();
    let gpu = parse_device("wgpu").expect("wgpu is compiled in");
    let seed = std::env::var("EFFNET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    cpu.seed(seed);
    let start = cfg.init(&cpu);
    let initial = collect(&start, None);
    let reference = run(&cfg, &start, &optim, &cpu, ComputePrecision::F32);
    let t = std::time::Instant::now();
    // effnet's ops explicitly (whatever EFFNET_PLAIN_OPS says): the path under test.
    let f32_gpu = ops::with_plain_ops(false, || {
        run(&cfg, &start, &optim, &gpu, ComputePrecision::F32)
    });
    eprintln!(
        "{name}: wgpu f32 {:.1} s (shader compilation included)",
        t.elapsed().as_secs_f64()
    );
    let label = format!("{name} f32, wgpu vs cpu");
    assert_within(
        &label,
        &report(&label, &initial, &reference, &f32_gpu),
        &tol,
    );

    // The ops' Cube path (one autodiff node per op, handwritten backward over burn's
    // composition) against burn's own autodiff of the plain modules, on the same device.
    let t = std::time::Instant::now();
    let plain_gpu = ops::with_plain_ops(true, || {
        run(&cfg, &start, &optim, &gpu, ComputePrecision::F32)
    });
    eprintln!(
        "{name}: wgpu f32, plain modules {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let label = format!("{name} f32 on wgpu, effnet ops vs burn's plain modules");
    assert_within(
        &label,
        &report(&label, &initial, &plain_gpu, &f32_gpu),
        &tol,
    );

    if !ComputePrecision::F16.supported_on(&gpu) {
        eprintln!("{name} f16: skipped: this wgpu adapter has no SHADER_F16");
        return;
    }
    let t = std::time::Instant::now();
    let f16_gpu = run(&cfg, &start, &optim, &gpu, ComputePrecision::F16);
    eprintln!("{name}: wgpu f16 {:.1} s", t.elapsed().as_secs_f64());
    let f16_cpu = run(&cfg, &start, &optim, &cpu, ComputePrecision::F16);
    let label = format!("{name} f16 wgpu vs f32 cpu");
    let gpu_err = report(&label, &initial, &reference, &f16_gpu);
    let cpu_err = report(
        &format!("{name} f16 cpu vs f32 cpu"),
        &initial,
        &reference,
        &f16_cpu,
    );
    assert!(
        gpu_err.loss <= F16_LOSS,
        "{label}: loss differs by {:.2e}",
        gpu_err.loss
    );
    for (what, g, c) in [
        ("gradients", &gpu_err.grad, &cpu_err.grad),
        ("updates", &gpu_err.update, &cpu_err.update),
        ("EMA updates", &gpu_err.ema, &cpu_err.ema),
    ] {
        assert!(
            g.l2 <= F16_VS_CPU * c.l2,
            "{label}: {what} differ by {:.2e} over all, more than {F16_VS_CPU} times the CPU's \
             f16 error ({:.2e})",
            g.l2,
            c.l2
        );
    }
}

/// The V2 recipe's optimiser (TF RMSProp, BN and biases without weight decay). Tolerances: ten
/// times the largest error measured on lavapipe over seeds 0-9.
#[test]
fn tiny_v2_trains_on_wgpu_as_on_the_cpu() {
    let optim = OptimSection {
        name: OptimKind::Rmsproptf,
        lr: Some(0.01),
        weight_decay: 1e-5,
        ..Default::default()
    };
    let tol = Tolerance {
        loss: 1e-5,
        grad: (1e-3, 2e-5),
        update: (5e-3, 5e-6),
    };
    check("tiny V2", TINY_V2, optim, tol);
}

/// AdamW, as the Lite fine-tuning recipe, with eps 1e-3 instead of 1e-8: Adam's first step is
/// `lr * g / (|g| + eps)`, which for a near-zero gradient turns a 1e-9 difference into a whole
/// `lr`-sized step of either sign; a larger eps keeps the update a smooth function of the
/// gradient. It still divides gradient errors by eps, so single update tensors differ more
/// than with RMSProp (worst 1.9e-2 measured, over all 1.4e-5). Tolerances: ten times the
/// largest error measured on lavapipe over seeds 0-9.
#[test]
fn tiny_lite_trains_on_wgpu_as_on_the_cpu() {
    let optim = OptimSection {
        name: OptimKind::Adamw,
        lr: Some(1e-3),
        weight_decay: 0.05,
        eps: 1e-3,
        ..Default::default()
    };
    let tol = Tolerance {
        loss: 1e-5,
        grad: (2e-3, 1e-5),
        update: (0.2, 2e-4),
    };
    check("tiny Lite", TINY_LITE, optim, tol);
}
