//! Where a training step spends its time: forward and backward per layer kind (stem, fused
//! k×k conv, 1×1 expand / project, depthwise, SE, BatchNorm + activation, residual, head,
//! classifier + loss), plus the optimiser step and the EMA update ([`profile_training`]).
//!
//! Each layer of the network runs on its own, on its real input shape, through the same helpers
//! the blocks call ([`effnet_model::ops`]), and is timed forward and backward (median of
//! `reps` after a warm-up; the device is synchronised before every clock stops, so GPU queues
//! are drained). Whole steps are timed too, so the split can be checked against the real
//! thing. `EFFNET_PLAIN_OPS=1` times burn's plain composition instead of effnet's ops.
//!
//! On a busy machine wall time measures the neighbours too: `EFFNET_PROFILE_CLOCK=cpu` (Unix)
//! times with the process's CPU time (all threads) instead, which other processes do not
//! inflate (it then reads as core-milliseconds).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_model::blocks::{Block, DropPath};
use effnet_model::{
    Activation, ComputePrecision, EfficientNet, EfficientNetConfig, SqueezeExcite, ops,
};

use crate::config::{OptimKind, OptimSection};
use crate::ema::ModelEma;
use crate::loss::soft_target_cross_entropy;
use crate::optim::{OptimImpl, build_optimizer};

/// The layer kinds of the split, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerKind {
    /// The stem's k×k stride-2 conv.
    Stem,
    /// The k×k conv of a Fused-MBConv (expansion or single conv).
    FusedConv,
    /// The 1×1 expansion conv of an MBConv.
    Expand,
    /// Depthwise convs.
    Depthwise,
    /// Squeeze-and-excitation (pool, two 1×1 convs, gate).
    Se,
    /// 1×1 projection convs.
    Project,
    /// The head's 1×1 conv.
    Head,
    /// BatchNorm followed by the activation.
    BnAct,
    /// BatchNorm of a projection (no activation).
    Bn,
    /// Residual addition with stochastic depth.
    Residual,
    /// Global pool, dropout, classifier and the loss.
    Classifier,
    /// Blocks of the rarer kinds (CondConv, GroupNorm/LayerNorm/EvoNorm, blur pool, global
    /// context, space-to-depth), timed whole.
    OtherBlock,
}

impl LayerKind {
    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            LayerKind::Stem => "stem conv",
            LayerKind::FusedConv => "fused-MBConv kxk conv",
            LayerKind::Expand => "1x1 expand conv",
            LayerKind::Depthwise => "depthwise conv",
            LayerKind::Se => "squeeze-excite",
            LayerKind::Project => "1x1 project conv",
            LayerKind::Head => "head 1x1 conv",
            LayerKind::BnAct => "BN + activation",
            LayerKind::Bn => "BN (no activation)",
            LayerKind::Residual => "residual + drop path",
            LayerKind::Classifier => "pool + classifier + loss",
            LayerKind::OtherBlock => "other blocks (whole)",
        }
    }
}

/// Seconds spent by one layer kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerTime {
    /// Layers of this kind.
    pub layers: usize,
    /// Forward seconds (sum over the layers of each layer's median).
    pub forward: f64,
    /// Backward seconds.
    pub backward: f64,
}

/// The split of one training step (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct TrainProfile {
    /// What was profiled, e.g. `efficientnetv2_b0 train b16 r128`.
    pub title: String,
    /// Per layer kind.
    pub layers: BTreeMap<LayerKind, LayerTime>,
    /// Median whole-step forward + loss seconds.
    pub step_forward: f64,
    /// Median whole-step backward seconds.
    pub step_backward: f64,
    /// Median optimiser-step seconds (AdamW).
    pub optimizer: f64,
    /// Median EMA-update seconds.
    pub ema: f64,
    /// Images per step.
    pub batch: usize,
}

impl TrainProfile {
    /// Seconds of one whole step (forward, backward, optimiser, EMA).
    pub fn step(&self) -> f64 {
        self.step_forward + self.step_backward + self.optimizer + self.ema
    }

    /// The split as a markdown table, with the whole-step figures above it.
    pub fn to_markdown(&self) -> String {
        let ms = |s: f64| 1e3 * s;
        let mut out = String::new();
        let step = self.step();
        let _ = writeln!(
            out,
            "{}: whole step {:.1} ms ({:.1} img/s) = forward+loss {:.1} + backward {:.1} + \
             AdamW {:.1} + EMA {:.1}\n",
            self.title,
            ms(step),
            self.batch as f64 / step,
            ms(self.step_forward),
            ms(self.step_backward),
            ms(self.optimizer),
            ms(self.ema)
        );
        let _ = writeln!(
            out,
            "| layer kind | layers | forward ms | backward ms | total ms | share |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        let (sf, sb) = self
            .layers
            .values()
            .fold((0.0, 0.0), |a, t| (a.0 + t.forward, a.1 + t.backward));
        let total = sf + sb + self.optimizer + self.ema;
        let mut line = |label: &str, n: String, f: f64, b: f64| {
            let _ = writeln!(
                out,
                "| {label} | {n} | {:.1} | {:.1} | {:.1} | {:.0}% |",
                ms(f),
                ms(b),
                ms(f + b),
                100.0 * (f + b) / total
            );
        };
        for (kind, t) in &self.layers {
            line(kind.label(), t.layers.to_string(), t.forward, t.backward);
        }
        line("AdamW step", "-".into(), self.optimizer, 0.0);
        line("EMA update", "-".into(), self.ema, 0.0);
        let _ = writeln!(
            out,
            "| **sum** | | {:.1} | {:.1} | {:.1} | |",
            ms(sf),
            ms(sb),
            ms(total)
        );
        out
    }
}

/// Profiles training of `cfg` at `batch`×`size`² on `device` (`reps` timed repetitions of every
/// layer and of the whole step, after one warm-up).
pub fn profile_training(
    cfg: &EfficientNetConfig,
    device: &Device,
    batch: usize,
    size: usize,
    reps: usize,
    precision: ComputePrecision,
) -> Result<TrainProfile> {
    let ad = device.clone().autodiff();
    let mut model = cfg.init(&ad);
    let x = Tensor::<4>::random([batch, 3, size, size], Distribution::Normal(0.0, 1.0), &ad)
        .cast(precision.float_dtype());
    let y = one_hot_labels(batch, cfg.num_classes, &ad);
    let mut optim = build_optimizer(
        &OptimSection {
            name: OptimKind::Adamw,
            lr_base: 1e-3,
            lr_base_batch: 256,
            weight_decay: 0.01,
            no_decay_bn_bias: true,
            momentum: 0.9,
            rho: 0.9,
            eps: 1e-8,
            betas: [0.9, 0.999],
            nesterov: true,
            lr: None,
        },
        &ad,
        OptimImpl::Auto,
    )?;
    let mut ema = ModelEma::new(model.valid(), 0.9998, true, 0.75);
    let sync = || {
        let _ = ad.sync();
    };
    let mut times: [Vec<f64>; 4] = Default::default();
    for rep in 0..=reps {
        let t = Clock::now();
        let logits = model.forward(x.clone()).cast(burn::tensor::FloatDType::F32);
        let loss = soft_target_cross_entropy(logits, y.clone());
        sync();
        let f = t.elapsed();
        let t = Clock::now();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        sync();
        let b = t.elapsed();
        let t = Clock::now();
        model = optim.step(1e-3, model, grads, 0.0);
        sync();
        let o = t.elapsed();
        let t = Clock::now();
        ema.update(&model.valid());
        let _ = device.sync();
        let e = t.elapsed();
        if rep > 0 {
            for (v, s) in times.iter_mut().zip([f, b, o, e]) {
                v.push(s);
            }
        }
    }
    let [f, b, o, e] = times.map(median);
    let mut split = Split {
        reps,
        device: ad.clone(),
        layers: BTreeMap::new(),
    };
    split.network(&model, x, &y);
    let plain = if ops::plain_forced() {
        ", plain burn ops"
    } else {
        ""
    };
    let clock = if cpu_clock_wanted() { ", CPU time" } else { "" };
    Ok(TrainProfile {
        title: format!(
            "{} train b{batch} r{size} {precision}{plain}{clock}",
            cfg.name
        ),
        layers: split.layers,
        step_forward: f,
        step_backward: b,
        optimizer: o,
        ema: e,
        batch,
    })
}

/// A clock reading in seconds: wall time, or the process's CPU time (all threads) when
/// `EFFNET_PROFILE_CLOCK=cpu`.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    cpu: Option<f64>,
}

fn cpu_clock_wanted() -> bool {
    std::env::var("EFFNET_PROFILE_CLOCK").is_ok_and(|v| v.eq_ignore_ascii_case("cpu"))
}

#[cfg(unix)]
fn process_cpu_seconds() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

#[cfg(not(unix))]
fn process_cpu_seconds() -> Option<f64> {
    None
}

impl Clock {
    fn now() -> Self {
        Self {
            start: Instant::now(),
            cpu: if cpu_clock_wanted() {
                process_cpu_seconds()
            } else {
                None
            },
        }
    }

    /// Seconds since [`Clock::now`], on the same clock.
    fn elapsed(&self) -> f64 {
        match (self.cpu, process_cpu_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => self.start.elapsed().as_secs_f64(),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One-hot soft targets spread over the classes.
fn one_hot_labels(batch: usize, classes: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..batch * classes)
        .map(|k| f32::from(k % classes == (k / classes) % classes))
        .collect();
    Tensor::<2>::from_data(TensorData::new(v, [batch, classes]), device)
}

/// The per-layer walk.
struct Split {
    reps: usize,
    device: Device,
    layers: BTreeMap<LayerKind, LayerTime>,
}

impl Split {
    /// Times `f` on `x` (which takes part in the backward when `grad_x`) and returns its output,
    /// detached, as the next layer's input.
    fn op(
        &mut self,
        kind: LayerKind,
        x: &Tensor<4>,
        grad_x: bool,
        f: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
        let mut out = None;
        for rep in 0..=self.reps {
            let xi = if grad_x {
                x.clone().detach().require_grad()
            } else {
                x.clone().detach()
            };
            let _ = self.device.sync();
            let t = Clock::now();
            let y = f(xi);
            let _ = self.device.sync();
            let tf = t.elapsed();
            let t = Clock::now();
            drop(y.backward());
            let _ = self.device.sync();
            let tb = t.elapsed();
            if rep > 0 {
                fwd.push(tf);
                bwd.push(tb);
            }
            out = Some(y.detach());
        }
        let row = self.layers.entry(kind).or_default();
        row.layers += 1;
        row.forward += median(fwd);
        row.backward += median(bwd);
        out.expect("at least one repetition")
    }

    /// Conv (timed as `kind`), then its BatchNorm with or without activation.
    fn conv_bn(
        &mut self,
        kind: LayerKind,
        conv: &Conv2d,
        bn: &Option<BatchNorm>,
        act: Option<Activation>,
        x: &Tensor<4>,
        grad_x: bool,
    ) -> Tensor<4> {
        let y = self.op(kind, x, grad_x, |x| ops::conv2d(conv, x));
        let Some(bn) = bn else { return y };
        let kind = if act.is_some() {
            LayerKind::BnAct
        } else {
            LayerKind::Bn
        };
        self.op(kind, &y, true, |y| ops::batch_norm_act(bn, act, y))
    }

    fn se(&mut self, se: &Option<SqueezeExcite>, x: Tensor<4>) -> Tensor<4> {
        match se {
            Some(se) => self.op(LayerKind::Se, &x, true, |x| se.forward(x)),
            None => x,
        }
    }

    fn residual(&mut self, y: Tensor<4>, skip: &Tensor<4>, dp: &DropPath, on: bool) -> Tensor<4> {
        if !on {
            return y;
        }
        self.op(LayerKind::Residual, &y, true, |y| {
            dp.forward(y) + skip.clone().detach().require_grad()
        })
    }

    fn block(&mut self, block: &Block, x: Tensor<4>) -> Tensor<4> {
        use LayerKind::*;
        match block {
            Block::ConvBnAct(b) => {
                let y = self.conv_bn(FusedConv, &b.conv, &b.bn1, Some(b.act), &x, true);
                self.residual(y, &x, &b.drop_path, b.has_skip)
            }
            Block::EdgeResidual(b) => {
                let y = self.conv_bn(FusedConv, &b.conv_exp, &b.bn1, Some(b.act), &x, true);
                let y = self.se(&b.se, y);
                let y = self.conv_bn(Project, &b.conv_pwl, &b.bn2, None, &y, true);
                self.residual(y, &x, &b.drop_path, b.has_skip)
            }
            Block::DepthwiseSeparable(b) if b.conv_s2d.is_none() => {
                let y = self.conv_bn(Depthwise, &b.conv_dw, &b.bn1, Some(b.act), &x, true);
                let y = self.se(&b.se, y);
                let y = self.conv_bn(Project, &b.conv_pw, &b.bn2, None, &y, true);
                self.residual(y, &x, &b.drop_path, b.has_skip)
            }
            Block::InvertedResidual(b) if b.aa.is_none() && b.gc.is_none() => {
                let y = self.conv_bn(Expand, &b.conv_pw, &b.bn1, Some(b.act), &x, true);
                let y = self.conv_bn(Depthwise, &b.conv_dw, &b.bn2, Some(b.act), &y, true);
                let y = self.se(&b.se, y);
                let y = self.conv_bn(Project, &b.conv_pwl, &b.bn3, None, &y, true);
                self.residual(y, &x, &b.drop_path, b.has_skip)
            }
            other => self.op(OtherBlock, &x, true, |x| other.forward(x)),
        }
    }

    /// Runs every layer of `model` on `x` and soft targets `y`.
    fn network(&mut self, model: &EfficientNet, x: Tensor<4>, y: &Tensor<2>) {
        let act = Some(model.act);
        let mut h = self.conv_bn(
            LayerKind::Stem,
            &model.conv_stem,
            &model.bn1,
            act,
            &x,
            false,
        );
        for block in model.blocks.iter().flatten() {
            h = self.block(block, h);
        }
        let h = self.conv_bn(LayerKind::Head, &model.conv_head, &model.bn2, act, &h, true);
        self.op(LayerKind::Classifier, &h, true, |h| {
            let logits = model
                .forward_head(h, false)
                .cast(burn::tensor::FloatDType::F32);
            soft_target_cross_entropy(logits, y.clone()).reshape([1, 1, 1, 1])
        });
    }
}
