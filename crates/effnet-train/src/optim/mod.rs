//! Optimisers: AdamW and SGD (configured to match PyTorch), and a TensorFlow-1 RMSProp written
//! here because burn's is PyTorch-style and the automl recipe depends on the TF form.
//!
//! Two implementations of each, with the same results and the same saved state
//! ([`TrainOptimizer`]): on the CPU (flex) device one threaded pass over all parameters at once
//! ([`fused`], effnet-cpu's kernels); elsewhere burn's per-tensor optimisers inside its
//! [`ModuleOptimizer`] (a few tensor operations per parameter).

use std::path::Path;

use anyhow::{Result, anyhow};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamWConfig, GradientsParams, LearningRate, ModuleOptimizer, Optimizer, RecordState, SgdConfig,
    StateSink, StateSource,
};
use burn::prelude::*;

use crate::config::{OptimKind, OptimSection};

pub(crate) mod flex;
pub mod fused;

pub use fused::{FusedOptimizer, Rule};

/// RMSProp as in `tf.compat.v1.train.RMSPropOptimizer` (and timm's `RMSpropTF`):
///
/// ```text
/// g    += weight_decay * p                      (L2, as automl adds it to the loss)
/// ms    = rho * ms + (1 - rho) * g^2            (ms starts at 1, not 0)
/// mom   = momentum * mom + lr * g / sqrt(ms + eps)
/// p    -= mom
/// ```
///
/// The differences from PyTorch's form (eps inside the root, `ms` initialised to one, the LR
/// inside the momentum buffer) matter: with eps 1e-3 and ms from zero the first steps explode.
#[derive(Clone, Debug)]
pub struct RmsPropTf {
    /// Mean-square decay.
    pub rho: f64,
    /// Momentum.
    pub momentum: f64,
    /// Epsilon added under the square root.
    pub eps: f64,
    /// L2 weight decay coefficient added to the gradient.
    pub weight_decay: f64,
}

/// Per-parameter RMSProp-TF state.
#[derive(Clone)]
pub struct RmsPropTfState<const D: usize> {
    /// Running mean of squared gradients.
    pub ms: Tensor<D>,
    /// Momentum buffer (already multiplied by the learning rate).
    pub mom: Tensor<D>,
}

impl<const D: usize> RecordState for RmsPropTfState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "ms", self.ms.to_data());
        out.push_tensor(prefix, "mom", self.mom.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let ms = src.take_tensor(prefix, "ms")?;
        let mom = src.take_tensor(prefix, "mom")?;
        Some(Self {
            ms: Tensor::from_data(ms, device),
            mom: Tensor::from_data(mom, device),
        })
    }
}

impl Optimizer for RmsPropTf {
    type State<const D: usize> = RmsPropTfState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        mut grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if self.weight_decay > 0.0 {
            grad = grad + tensor.clone().mul_scalar(self.weight_decay);
        }
        let (ms, mom) = match state {
            Some(s) => (s.ms, s.mom),
            None => (tensor.ones_like(), tensor.zeros_like()),
        };
        let ms = ms.mul_scalar(self.rho) + grad.clone().square().mul_scalar(1.0 - self.rho);
        let update = grad
            .div(ms.clone().add_scalar(self.eps).sqrt())
            .mul_scalar(lr);
        let mom = mom.mul_scalar(self.momentum) + update;
        (tensor - mom.clone(), Some(RmsPropTfState { ms, mom }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        RmsPropTfState {
            ms: state.ms.to_device(device),
            mom: state.mom.to_device(device),
        }
    }
}

/// Parameters that never get weight decay: BatchNorm scale/shift and every bias (automl excludes
/// `.*(bias|gamma|beta).*`; timm excludes 1-D parameters, the same set for EfficientNet).
pub const NO_DECAY_REGEX: &str = r"(^|\.)(bias|gamma|beta)$";

fn rmsprop(cfg: &OptimSection, weight_decay: f64) -> RmsPropTf {
    RmsPropTf {
        rho: cfg.rho,
        momentum: cfg.momentum,
        eps: cfg.eps,
        weight_decay,
    }
}

fn adamw(cfg: &OptimSection, weight_decay: f64) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(cfg.betas[0] as f32)
        .with_beta_2(cfg.betas[1] as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(weight_decay as f32)
}

fn sgd(cfg: &OptimSection, weight_decay: f64) -> SgdConfig {
    SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(cfg.momentum)
                // burn defaults dampening to 0.1; PyTorch (and every recipe) uses 0.
                .with_dampening(0.0)
                .with_nesterov(cfg.nesterov),
        ))
        .with_weight_decay(
            (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
        )
}

/// The parameters exempt from weight decay ([`NO_DECAY_REGEX`]).
fn no_decay_group() -> Result<ParamGroup> {
    ParamGroup::from_regex(NO_DECAY_REGEX).map_err(|e| anyhow!("bad no-decay pattern: {e:?}"))
}

fn with_no_decay<O: Optimizer>(main: O, no_decay: O, split: bool) -> Result<ModuleOptimizer> {
    let optim = ModuleOptimizer::from(main);
    if !split {
        return Ok(optim);
    }
    Ok(optim.with_group(no_decay_group()?, no_decay, None))
}

/// burn's per-tensor form of the configured optimiser, with a decay-free group for BN
/// parameters and biases.
pub fn build_burn_optimizer(cfg: &OptimSection) -> Result<ModuleOptimizer> {
    let wd = cfg.weight_decay;
    let split = cfg.no_decay_bn_bias && wd > 0.0;
    match cfg.name {
        OptimKind::Rmsproptf => with_no_decay(rmsprop(cfg, wd), rmsprop(cfg, 0.0), split),
        OptimKind::Adamw => with_no_decay(adamw(cfg, wd).build(), adamw(cfg, 0.0).build(), split),
        OptimKind::Sgd => with_no_decay(sgd(cfg, wd).build(), sgd(cfg, 0.0).build(), split),
    }
}

/// Environment variable that makes the optimiser step and the EMA update run burn's per-tensor
/// operations on the CPU too (`EFFNET_PLAIN_OPTIM=1`): the "before" of benchmarks and profiles,
/// as `EFFNET_PLAIN_OPS` is for the layers.
pub const PLAIN_OPTIM_ENV: &str = "EFFNET_PLAIN_OPTIM";

/// Whether [`PLAIN_OPTIM_ENV`] asks for burn's per-tensor updates.
pub fn plain_optim_requested() -> bool {
    std::env::var(PLAIN_OPTIM_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Which code runs the optimiser step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimImpl {
    /// The fused loops over all parameters ([`fused`]) on the CPU (flex) device, burn's
    /// per-tensor optimisers elsewhere or with [`PLAIN_OPTIM_ENV`] set.
    Auto,
    /// burn's per-tensor optimisers on every device (the reference the fused loops are tested
    /// against).
    Burn,
}

/// The run's optimiser: effnet's fused loops on the CPU (flex) device, burn's `ModuleOptimizer`
/// elsewhere. Both keep the same state in the same checkpoint format, so a run resumes on
/// either.
#[derive(Clone)]
pub enum TrainOptimizer {
    /// One threaded pass over all parameters (CPU).
    Fused(FusedOptimizer),
    /// burn's per-tensor optimisers (any device).
    Burn(ModuleOptimizer),
}

impl TrainOptimizer {
    /// One update of `model` with `grads` at `lr`; with `clip > 0` the gradients are first
    /// scaled to a global L2 norm of at most `clip` (timm's `clip_grad_norm`).
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        model: M,
        mut grads: GradientsParams,
        clip: f64,
    ) -> M {
        match self {
            TrainOptimizer::Fused(f) => match f.step(lr, model, grads, clip) {
                Ok((model, _norm)) => model,
                Err(_) => panic!(
                    "the fused optimiser runs on the CPU (flex) device only; build the optimiser \
                     for the model's device"
                ),
            },
            TrainOptimizer::Burn(o) => {
                if clip > 0.0 {
                    clip_grad_norm(&model, &mut grads, clip);
                }
                o.step(lr, model, grads)
            }
        }
    }

    /// Whether this is the fused implementation.
    pub fn is_fused(&self) -> bool {
        matches!(self, TrainOptimizer::Fused(_))
    }

    /// Writes the state (burn's optimiser record format) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            TrainOptimizer::Fused(f) => f.save(path),
            TrainOptimizer::Burn(o) => o
                .save(path)
                .map_err(|e| anyhow!("writing the optimiser state {}: {e:?}", path.display())),
        }
    }

    /// Replaces the state with the one saved at `path` (by either implementation).
    pub fn load(self, path: &Path) -> Result<Self> {
        Ok(match self {
            TrainOptimizer::Fused(f) => TrainOptimizer::Fused(f.load(path)?),
            TrainOptimizer::Burn(o) => {
                TrainOptimizer::Burn(o.load(path).map_err(|e| {
                    anyhow!("reading the optimiser state {}: {e:?}", path.display())
                })?)
            }
        })
    }
}

/// The fused rule of a recipe's optimiser section.
fn fused_rule(cfg: &OptimSection) -> Rule {
    match cfg.name {
        OptimKind::Adamw => Rule::AdamW {
            beta_1: cfg.betas[0] as f32,
            beta_2: cfg.betas[1] as f32,
            eps: cfg.eps as f32,
            weight_decay: cfg.weight_decay as f32,
        },
        OptimKind::Rmsproptf => Rule::RmsPropTf {
            rho: cfg.rho,
            momentum: cfg.momentum,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        },
        OptimKind::Sgd => Rule::Sgd {
            momentum: cfg.momentum,
            dampening: 0.0,
            nesterov: cfg.nesterov,
            weight_decay: cfg.weight_decay as f32,
        },
    }
}

/// Builds the configured optimiser for a model on `device` (see [`TrainOptimizer`]), with a
/// decay-free group for BN parameters and biases.
pub fn build_optimizer(
    cfg: &OptimSection,
    device: &Device,
    imp: OptimImpl,
) -> Result<TrainOptimizer> {
    if imp == OptimImpl::Auto && !plain_optim_requested() && flex::is_flex(device) {
        let no_decay = if cfg.no_decay_bn_bias && cfg.weight_decay > 0.0 {
            Some(no_decay_group()?)
        } else {
            None
        };
        return Ok(TrainOptimizer::Fused(FusedOptimizer::new(
            fused_rule(cfg),
            no_decay,
        )));
    }
    build_burn_optimizer(cfg).map(TrainOptimizer::Burn)
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (timm `clip_grad_norm`);
/// returns the norm before clipping.
pub fn clip_grad_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut n = Norm { grads, sum: None };
    model.visit(&mut n);
    let Some(sum) = n.sum else {
        return 0.0;
    };
    let norm = (sum.into_scalar::<f32>() as f64).sqrt();
    if norm > max_norm && norm.is_finite() {
        let mut s = Scale {
            grads,
            factor: max_norm / (norm + 1e-6),
        };
        model.visit(&mut s);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: timm 1.0.31 `RMSpropTF([p], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9,
    /// weight_decay=0.01)` (TF1 semantics, lr in momentum), p0 = [1, -2, 0.5], three steps with
    /// gradients [0.1, -0.3, 2], [0.5, 0.2, -1], [0, 0, 0].
    #[test]
    fn rmsprop_tf_matches_timm_rmsproptf() {
        let dev = Device::flex();
        let opt = RmsPropTf {
            rho: 0.9,
            momentum: 0.9,
            eps: 1e-3,
            weight_decay: 0.01,
        };
        let want = [
            [0.9884192, -1.9664778, 0.3243526],
            [0.9223001, -1.9561805, 0.2546428],
            [0.8617311, -1.9446408, 0.1916661],
        ];
        let grads = [[0.1, -0.3, 2.0], [0.5, 0.2, -1.0], [0.0, 0.0, 0.0]];
        let mut p = Tensor::<1>::from_floats([1.0, -2.0, 0.5], &dev);
        let mut state = None;
        for (g, w) in grads.iter().zip(want) {
            let (np, ns) = opt.step(0.1, p, Tensor::from_floats(*g, &dev), state);
            p = np;
            state = ns;
            let got: Vec<f32> = p.clone().into_data().try_to_vec::<f32>().unwrap();
            for (a, b) in got.iter().zip(w) {
                assert!((a - b).abs() < 1e-5, "{got:?} vs {w:?}");
            }
        }
        // The state survives a flatten/unflatten round trip (what checkpoints store).
        let st = state.unwrap();
        let mut sink = StateSink::default();
        st.state_flatten("7", &mut sink);
        let mut src = StateSource::default();
        for (n, d) in sink.tensors {
            src.insert_tensor(n, d);
        }
        let back = RmsPropTfState::<1>::state_unflatten("7", &mut src, &dev).unwrap();
        let a: Vec<f32> = st.ms.into_data().try_to_vec::<f32>().unwrap();
        let b: Vec<f32> = back.ms.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn no_decay_pattern_selects_bn_and_biases_only() {
        let re = burn::module::ParamGroup::from_regex(NO_DECAY_REGEX).unwrap();
        let id = burn::module::ParamId::new();
        for p in [
            "bn1.gamma",
            "blocks.0.1.bn2.beta",
            "classifier.bias",
            "blocks.3.0.se.conv_reduce.bias",
        ] {
            assert!(re.matches(&id, Some(p)), "{p}");
        }
        for p in [
            "conv_stem.weight",
            "classifier.weight",
            "blocks.1.0.conv_exp.weight",
            "bn1.running_mean",
        ] {
            assert!(!re.matches(&id, Some(p)), "{p}");
        }
    }
}
