//! effnet's training ops ([`effnet_model::ops`]) against burn's plain composition
//! ([`ops::with_plain_ops`]) on the CPU backend: every op's forward and gradients on random
//! inputs (relative L2 ≤ 1e-5) over strides 1 and 2, symmetric and TensorFlow-"same" padding,
//! odd sizes, batch 1 and 3, 1 and 2 threads (convs, BatchNorm + activation, squeeze-excitation's
//! pool and gate); and a whole reduced EfficientNetV2 and Lite:
//! loss and every parameter's gradient (relative ≤ 1e-4), and the BatchNorm running statistics.
//!
//! The instruction set is the CPU's best (`EFFNET_CPU_SIMD=scalar` / `=avx2` run the same tests
//! on the other kernel paths; effnet-cpu's own tests cover every path in one run).

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use effnet_model::{Activation, EfficientNet, EfficientNetConfig, ops};

const TINY_V2: &str = include_str!("../../effnet-train/tests/data/effnetv2_tiny.toml");

/// A reduced EfficientNet-Lite: ReLU6, no SE, MBConv with and without expansion, 3×3 and 5×5
/// depthwise convs, TensorFlow "same" padding.
const TINY_LITE: &str = r#"
name = "lite_tiny"
stem_channels = 16
head_channels = 128
activation = "relu6"
bn_eps = 1e-3
padding = "same"
num_classes = 7
[[stages]]
block = "mbconv"
repeats = 1
kernel = 3
stride = 1
expand = 1
in_channels = 16
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

/// Deterministic values in [-1, 1) (not the device RNG, which parallel tests share).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = ((i as f32 + 1.0) * (0.618_034 + seed as f32 * 0.1)).fract();
            (v * 2.0 - 1.0) * (1.0 + (i as f32 * 0.013 + seed as f32).sin() * 0.25)
        })
        .collect()
}

fn tensor<const D: usize>(dims: [usize; D], seed: u32, device: &Device) -> Tensor<D> {
    let n = dims.iter().product();
    Tensor::from_data(TensorData::new(values(n, seed), dims), device)
}

fn flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

fn rel_l2(reference: &[f32], got: &[f32]) -> f64 {
    assert_eq!(reference.len(), got.len());
    let d: f64 = reference
        .iter()
        .zip(got)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let n: f64 = reference.iter().map(|a| (*a as f64).powi(2)).sum();
    (d / n.max(1e-30)).sqrt()
}

fn check(what: &str, reference: Vec<f32>, got: Vec<f32>, tol: f64) {
    let e = rel_l2(&reference, &got);
    assert!(e <= tol, "{what}: relative L2 error {e:e} > {tol:e}");
}

/// Runs `f` on a rayon pool of `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool")
        .install(f)
}

/// Output, input gradient and parameter gradients of one conv, through the ops or the plain
/// path; the loss weighs the output with fixed values so that the output gradient is not flat.
fn conv_run(layer: &Conv2d, x: &Tensor<4>, plain: bool) -> Vec<Vec<f32>> {
    ops::with_plain_ops(plain, || {
        let x = x.clone().require_grad();
        let y = ops::conv2d(layer, x.clone());
        let weights = tensor(y.dims(), 9, &y.device());
        let g = (y.clone() * weights).sum().backward();
        let mut out = vec![flat(y), flat(x.grad(&g).expect("dx"))];
        out.push(flat(layer.weight.grad(&g).expect("dw")));
        if let Some(b) = &layer.bias {
            out.push(flat(b.grad(&g).expect("db")));
        }
        out
    })
}

#[test]
fn conv_ops_match_burn() {
    let device = Device::flex().autodiff();
    let mut n = 0;
    for (batch, h, w) in [(1, 7, 9), (3, 8, 6)] {
        for (cin, cout, groups) in [(3, 5, 1), (6, 6, 6)] {
            for (k, s) in [(1, 1), (3, 1), (3, 2), (5, 2)] {
                for same in [false, true] {
                    let padding = if same {
                        PaddingConfig2d::Same
                    } else {
                        PaddingConfig2d::Explicit(
                            (k - 1) / 2,
                            (k - 1) / 2,
                            (k - 1) / 2,
                            (k - 1) / 2,
                        )
                    };
                    let layer = Conv2dConfig::new([cin, cout], [k, k])
                        .with_stride([s, s])
                        .with_groups(groups)
                        .with_padding(padding)
                        .with_bias(n % 2 == 0)
                        .with_initializer(Initializer::Uniform {
                            min: -0.5,
                            max: 0.5,
                        })
                        .init(&device);
                    let x = tensor([batch, cin, h, w], n, &device);
                    let reference = conv_run(&layer, &x, true);
                    for threads in [1, 2] {
                        let got = on_threads(threads, || conv_run(&layer, &x, false));
                        let case = format!(
                            "b{batch} {cin}->{cout} g{groups} k{k} s{s} same={same} {h}x{w} t{threads}"
                        );
                        for (i, (r, g)) in reference.iter().zip(got).enumerate() {
                            let what = ["y", "dx", "dw", "db"][i];
                            check(&format!("{what} {case}"), r.clone(), g, 1e-5);
                        }
                    }
                    n += 1;
                }
            }
        }
    }
}

#[test]
fn batch_norm_act_ops_match_burn() {
    let device = Device::flex().autodiff();
    for (i, act) in [
        None,
        Some(Activation::Silu),
        Some(Activation::Relu6),
        Some(Activation::Relu),
    ]
    .into_iter()
    .enumerate()
    {
        for dims in [[1, 4, 7, 9], [3, 5, 4, 3]] {
            let run = |plain: bool| {
                let mut bn = BatchNormConfig::new(dims[1])
                    .with_epsilon(1e-3)
                    .init(&device);
                bn.gamma = Param::from_tensor(tensor([dims[1]], 3, &device).add_scalar(1.5));
                bn.beta = Param::from_tensor(tensor([dims[1]], 4, &device));
                ops::with_plain_ops(plain, || {
                    let x = tensor(dims, 5 + i as u32, &device)
                        .mul_scalar(3.0)
                        .add_scalar(0.7)
                        .require_grad();
                    let y = ops::batch_norm_act(&bn, act, x.clone());
                    let weights = tensor(dims, 6, &device);
                    let g = (y.clone() * weights).sum().backward();
                    vec![
                        flat(y),
                        flat(x.grad(&g).expect("dx")),
                        flat(bn.gamma.grad(&g).expect("dgamma")),
                        flat(bn.beta.grad(&g).expect("dbeta")),
                        flat(bn.running_mean.value_sync()),
                        flat(bn.running_var.value_sync()),
                    ]
                })
            };
            let reference = run(true);
            for threads in [1, 2] {
                let got = on_threads(threads, || run(false));
                for (k, (r, g)) in reference.iter().zip(got).enumerate() {
                    let what = ["y", "dx", "dgamma", "dbeta", "running mean", "running var"][k];
                    check(
                        &format!("{what} {act:?} {dims:?} t{threads}"),
                        r.clone(),
                        g,
                        1e-5,
                    );
                }
            }
        }
    }
}

#[test]
fn squeeze_excite_ops_match_burn() {
    let device = Device::flex().autodiff();
    for dims in [[1, 4, 7, 9], [3, 5, 4, 3]] {
        let [n, c, _, _] = dims;
        let run = |plain: bool| {
            ops::with_plain_ops(plain, || {
                let x = tensor(dims, 7, &device).require_grad();
                let gate = tensor([n, c, 1, 1], 8, &device).require_grad();
                let y = ops::channel_gate(x.clone(), gate.clone());
                let pooled = ops::global_avg_pool(y.clone());
                let loss = (y.clone() * tensor(dims, 9, &device)).sum()
                    + (pooled.clone() * tensor([n, c, 1, 1], 10, &device)).sum();
                let g = loss.backward();
                vec![
                    flat(y),
                    flat(pooled),
                    flat(x.grad(&g).expect("dx")),
                    flat(gate.grad(&g).expect("dgate")),
                ]
            })
        };
        let reference = run(true);
        for threads in [1, 2] {
            let got = on_threads(threads, || run(false));
            for (k, (r, g)) in reference.iter().zip(got).enumerate() {
                let what = ["gated", "pooled", "dx", "dgate"][k];
                check(&format!("{what} {dims:?} t{threads}"), r.clone(), g, 1e-5);
            }
        }
    }
}

/// Every float parameter's gradient, in visiting order.
struct Grads<'a>(&'a burn::tensor::Gradients, Vec<(String, Vec<f32>)>);

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.grad(self.0) {
            let n = self.1.len();
            self.1.push((format!("#{n} {:?}", g.dims()), flat(g)));
        }
    }
}

/// Every parameter's gradient, named by its position and shape.
type NamedGrads = Vec<(String, Vec<f32>)>;

/// Loss, every parameter gradient, and the batch mean the stem's BatchNorm folded into its
/// running mean, of one step.
fn model_run(model: &EfficientNet, x: &Tensor<4>, plain: bool) -> (f32, NamedGrads, Vec<f32>) {
    let bn = model.bn1.as_ref().expect("stem BatchNorm");
    let before = bn.running_mean.value_sync();
    ops::with_plain_ops(plain, || {
        let logits = model.forward(x.clone());
        let loss = logits.clone().powf_scalar(2.0).mean() + logits.mean();
        let g = loss.backward();
        let mut grads = Grads(&g, Vec::new());
        model.visit(&mut grads);
        // running = (1 − m)·before + m·batch_mean
        let m = bn.momentum;
        let batch_mean = (bn.running_mean.value_sync() - before.mul_scalar(1.0 - m)).div_scalar(m);
        (flat(loss)[0], grads.1, flat(batch_mean))
    })
}

fn whole_model_matches(toml: &str, size: usize) {
    let device = Device::flex().autodiff();
    let mut cfg = EfficientNetConfig::from_toml(toml).expect("config");
    (cfg.drop_path, cfg.dropout) = (0.0, 0.0);
    let model = cfg.init(&device);
    let x = tensor([2, 3, size, size], 11, &device);
    let (l_ref, g_ref, rm_ref) = model_run(&model, &x, true);
    let (l, g, rm) = model_run(&model, &x, false);
    let e = ((l - l_ref) / l_ref).abs();
    assert!(e <= 1e-4, "{}: loss {l} vs {l_ref}", cfg.name);
    assert_eq!(
        g.len(),
        g_ref.len(),
        "{}: same parameters have gradients",
        cfg.name
    );
    assert!(g.len() > 20, "{}: {} gradients", cfg.name, g.len());
    // Some gradients are exact zeros up to rounding (a projection BatchNorm's beta when the
    // next layer is a 1×1 conv followed by BatchNorm, whose gradient has zero mean): their
    // error is measured against a thousandth of the whole gradient's norm instead.
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let total = g_ref
        .iter()
        .map(|(_, r)| norm(r).powi(2))
        .sum::<f64>()
        .sqrt();
    let bad: Vec<String> = g_ref
        .into_iter()
        .zip(g)
        .filter_map(|((name, r), (_, v))| {
            let diff: Vec<f32> = r.iter().zip(&v).map(|(a, b)| a - b).collect();
            let scale = norm(&r).max(1e-3 * total);
            let e = norm(&diff) / scale;
            (e > 1e-4).then(|| format!("{name}: {e:.2e} (|grad| {:.2e})", norm(&r)))
        })
        .collect();
    assert!(bad.is_empty(), "{}: gradients differ: {bad:?}", cfg.name);
    check(&format!("{} batch mean", cfg.name), rm_ref, rm, 1e-4);
}

#[test]
fn whole_reduced_v2_matches_burn() {
    whole_model_matches(TINY_V2, 32);
}

#[test]
fn whole_reduced_lite_matches_burn() {
    whole_model_matches(TINY_LITE, 29);
}
