//! `effnet bench` on the native CPU executor, and the per-layer-type time split of both engines.

use std::time::Instant;

use burn::prelude::*;
use effnet::{ComputePrecision, EfficientNetConfig, Pretrained};
use effnet_cpu::quant::RangeMethod;
use effnet_cpu::quant::calib::Calibrator;
use effnet_cpu::{Executor, Int8Executor, LayerKind, Layout, Profile};
use effnet_model::Block;
use effnet_model::blocks::{activate, conv_bn};

/// The settings one run uses, after defaults.
pub struct Run {
    /// Images per step.
    pub batch: usize,
    /// Square input side.
    pub size: usize,
    /// Untimed iterations (the first is reported on its own).
    pub warmup: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Keep BatchNorm unfolded (burn engine).
    pub no_fold: bool,
    /// Print the per-layer-type time split.
    pub profile: bool,
    /// Compute precision (burn engine).
    pub precision: ComputePrecision,
}

/// The native engine being timed: f32 or int8.
pub enum NativeModel {
    /// The f32 executor.
    F32(Box<Executor>, usize),
    /// The int8 executor.
    Int8(Box<Int8Executor>, usize),
}

/// The benchmark's input: deterministic values in [-1, 1).
fn input(a: &Run) -> Vec<f32> {
    (0..a.batch * 3 * a.size * a.size)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

impl NativeModel {
    /// `loaded` weights (f32 or int8), else random weights of `cfg`; with `int8` random
    /// weights quantised with ranges observed on the benchmark's input.
    pub fn new(
        cfg: &EfficientNetConfig,
        a: &Run,
        loaded: Option<Pretrained>,
        int8: bool,
    ) -> anyhow::Result<Self> {
        let pre = match loaded {
            Some(pre) => pre,
            None => {
                let model = cfg.init(&Device::flex());
                let mut p = effnet_model::Pretrained {
                    model,
                    config: cfg.clone(),
                    preprocess: effnet_model::weights::default_preprocess(cfg),
                    source: "random".into(),
                    labels: None,
                    int8: None,
                };
                if int8 {
                    let folded = p.model.clone().fold_batchnorm();
                    let plan = effnet_model::native::plan(&folded, cfg)?;
                    let mut cal = Calibrator::new(plan)?;
                    cal.observe(&input(a), a.batch, a.size, a.size, Layout::Nchw)?;
                    p.int8 = Some(Box::new(cal.finish(RangeMethod::MinMax)?));
                }
                p
            }
        };
        let params = pre.model.num_trainable_params();
        Ok(match pre.int8 {
            Some(q) => NativeModel::Int8(Box::new(Int8Executor::new(*q)?), params),
            None => {
                let model = pre.model.fold_batchnorm();
                NativeModel::F32(
                    Box::new(effnet_model::native::executor(&model, cfg)?),
                    params,
                )
            }
        })
    }

    /// Whether this is the int8 executor.
    pub fn is_int8(&self) -> bool {
        matches!(self, NativeModel::Int8(..))
    }

    fn forward(&self, x: &[f32], a: &Run) -> Result<(), effnet_cpu::CpuError> {
        let (b, s) = (a.batch, a.size);
        match self {
            NativeModel::F32(e, _) => e.forward(x, b, s, s, Layout::Nchw).map(|_| ()),
            NativeModel::Int8(e, _) => e.forward(x, b, s, s, Layout::Nchw).map(|_| ()),
        }
    }

    fn profile(&self, x: &[f32], a: &Run) -> Result<Profile, effnet_cpu::CpuError> {
        let (b, s) = (a.batch, a.size);
        Ok(match self {
            NativeModel::F32(e, _) => e.profile(x, b, s, s, Layout::Nchw)?.1,
            NativeModel::Int8(e, _) => e.profile(x, b, s, s, Layout::Nchw)?.1,
        })
    }

    /// Times the forward on the benchmark's input: (first-iteration s, timed s, parameters).
    pub fn time(&self, a: &Run) -> anyhow::Result<(f64, Vec<f64>, usize)> {
        let x = input(a);
        if a.profile {
            let mut split = [0f64; 7];
            for _ in 0..a.iters {
                let p = self.profile(&x, a)?;
                split.iter_mut().zip(p.seconds).for_each(|(s, t)| *s += t);
            }
            match self {
                NativeModel::F32(e, _) => {
                    println!("native engine, f32, instruction set {}", e.isa().name())
                }
                NativeModel::Int8(e, _) => println!(
                    "native engine, int8, kernel {} (loops {})",
                    e.kernel().name(),
                    e.isa().name()
                ),
            }
            print_profile(&split.map(|s| s / a.iters as f64));
        }
        let t0 = Instant::now();
        self.forward(&x, a)?;
        let first = t0.elapsed().as_secs_f64();
        for _ in 1..a.warmup {
            self.forward(&x, a)?;
        }
        let mut times = Vec::with_capacity(a.iters);
        for _ in 0..a.iters {
            let t = Instant::now();
            self.forward(&x, a)?;
            times.push(t.elapsed().as_secs_f64());
        }
        let params = match self {
            NativeModel::F32(_, p) | NativeModel::Int8(_, p) => *p,
        };
        Ok((first, times, params))
    }
}

/// Prints seconds per layer kind (indexed like `LayerKind::ALL`) with their shares.
pub fn print_profile(split: &[f64; 7]) {
    let total: f64 = split.iter().sum();
    for (kind, s) in LayerKind::ALL.iter().zip(split) {
        println!(
            "  {:<16} {:>8.2} ms {:>5.1}%",
            kind.name(),
            s * 1e3,
            100.0 * s / total.max(1e-12)
        );
    }
    println!("  {:<16} {:>8.2} ms", "total", total * 1e3);
}

/// Waits for `t` (burn may queue work) and adds the time since `t0` to `kind`.
fn lap<const D: usize>(split: &mut [f64; 7], kind: LayerKind, t0: Instant, t: &Tensor<D>) {
    let _ = t.clone().flatten::<1>(0, D - 1).narrow(0, 0, 1).into_data();
    split[kind as usize] += t0.elapsed().as_secs_f64();
}

/// The same split for burn's forward (whole batch, unsplit), averaged over `iters` runs. Block
/// layers are timed one by one, so this is slightly slower than the plain forward.
pub fn profile_burn(model: &effnet::EfficientNet, x: Tensor<4>, iters: usize) -> [f64; 7] {
    let mut split = [0f64; 7];
    for _ in 0..iters {
        let t = Instant::now();
        let mut y = activate(conv_bn(&model.conv_stem, &model.bn1, x.clone()), model.act);
        lap(&mut split, LayerKind::Stem, t, &y);
        for block in model.blocks.iter().flatten() {
            y = burn_block(block, y, &mut split);
        }
        let t = Instant::now();
        let f = activate(conv_bn(&model.conv_head, &model.bn2, y), model.act);
        let logits = model.forward_head(f, false);
        lap(&mut split, LayerKind::Head, t, &logits);
    }
    split.map(|s| s / iters.max(1) as f64)
}

fn burn_block(block: &Block, x: Tensor<4>, split: &mut [f64; 7]) -> Tensor<4> {
    use LayerKind::*;
    let mut step = |kind, f: &dyn Fn() -> Tensor<4>| {
        let t = Instant::now();
        let y = f();
        lap(split, kind, t, &y);
        y
    };
    let (y, skip) = match block {
        Block::ConvBnAct(b) => {
            let y = step(FusedConv, &|| {
                activate(conv_bn(&b.conv, &b.bn1, x.clone()), b.act)
            });
            (y, b.has_skip)
        }
        Block::EdgeResidual(b) if b.se.is_none() => {
            let m = step(FusedConv, &|| {
                activate(conv_bn(&b.conv_exp, &b.bn1, x.clone()), b.act)
            });
            (
                step(Project, &|| conv_bn(&b.conv_pwl, &b.bn2, m.clone())),
                b.has_skip,
            )
        }
        Block::DepthwiseSeparable(b) if b.conv_s2d.is_none() => {
            let d = step(Depthwise, &|| {
                activate(conv_bn(&b.conv_dw, &b.bn1, x.clone()), b.act)
            });
            let d = match &b.se {
                Some(se) => step(SqueezeExcite, &|| se.forward(d.clone())),
                None => d,
            };
            (
                step(Project, &|| conv_bn(&b.conv_pw, &b.bn2, d.clone())),
                b.has_skip,
            )
        }
        Block::InvertedResidual(b) if b.aa.is_none() && b.gc.is_none() => {
            let m = step(Expand, &|| {
                activate(conv_bn(&b.conv_pw, &b.bn1, x.clone()), b.act)
            });
            let d = step(Depthwise, &|| {
                activate(conv_bn(&b.conv_dw, &b.bn2, m.clone()), b.act)
            });
            let d = match &b.se {
                Some(se) => step(SqueezeExcite, &|| se.forward(d.clone())),
                None => d,
            };
            (
                step(Project, &|| conv_bn(&b.conv_pwl, &b.bn3, d.clone())),
                b.has_skip,
            )
        }
        // Layers the per-kind split does not itemise (CondConv, GroupNorm, ...): one lap.
        other => return step(Expand, &|| other.forward(x.clone())),
    };
    if skip { y + x } else { y }
}
