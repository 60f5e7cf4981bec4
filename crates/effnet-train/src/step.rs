//! One optimisation step, as burn-train's `TrainStep`: forward in the compute precision,
//! soft-target cross entropy, backward, (f16) loss scaling with its inf/NaN check, gradient
//! clipping, and the optimiser update ([`apply_update`], the one place the optimiser is called).
//! The loop ([`crate::trainer`]) decides what to step on and what to do with the outcome.

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use effnet_model::{ComputePrecision, EfficientNet};

use crate::loss::soft_target_cross_entropy;
use crate::optim::clip_grad_norm;
use crate::precision::{DynamicLossScaler, ScaleUpdate, unscale_and_check};

/// How one step of [`train_step_mixed`] runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepSettings {
    /// Learning rate.
    pub lr: f64,
    /// Global gradient-norm clipping threshold (0 = off).
    pub clip_grad: f64,
    /// Compute precision of forward and backward.
    pub precision: ComputePrecision,
    /// Test hook: force a NaN loss.
    pub poison: bool,
    /// Test hook: make the gradients infinite (the loss stays finite).
    pub inf_grad: bool,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// The (unscaled) loss; non-finite means nothing was updated.
    pub loss: f64,
    /// The weights were not updated (non-finite loss or gradients).
    pub skipped: bool,
    /// The loss scaler's verdict, when one is in use.
    pub scale: Option<ScaleUpdate>,
}

/// One f32 optimisation step: forward, soft-target cross entropy, backward, optional global-norm
/// clipping, optimiser update. Returns the updated model and the loss; a non-finite loss leaves
/// the weights untouched (`poison` forces a NaN loss, for the divergence test hook).
pub fn train_step(
    model: EfficientNet,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<2>,
    lr: f64,
    clip_grad: f64,
    poison: bool,
) -> (EfficientNet, f64) {
    let settings = StepSettings {
        lr,
        clip_grad,
        poison,
        ..Default::default()
    };
    let (model, out) = train_step_mixed(model, optim, x, y, &settings, None);
    (model, out.loss)
}

/// One optimisation step in `settings.precision` (see [`effnet_model::precision`]): the loss is
/// computed from f32 logits; with a `scaler` (f16) it is multiplied by the scale before the
/// backward pass, the gradients are unscaled, and a step with inf/NaN gradients is skipped
/// (weights and optimiser state untouched) while the scaler backs off.
pub fn train_step_mixed(
    model: EfficientNet,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<2>,
    settings: &StepSettings,
    scaler: Option<&mut DynamicLossScaler>,
) -> (EfficientNet, StepOutcome) {
    train_step_accumulated(model, optim, vec![(x, y)], settings, scaler)
}

/// [`train_step_mixed`] over several batches (timm's `--grad-accum-steps`): each batch's loss
/// is divided by their number and its gradients added up, then one update is made. The
/// reported loss is the batches' mean.
pub fn train_step_accumulated(
    model: EfficientNet,
    optim: &mut ModuleOptimizer,
    batches: Vec<(Tensor<4>, Tensor<2>)>,
    settings: &StepSettings,
    scaler: Option<&mut DynamicLossScaler>,
) -> (EfficientNet, StepOutcome) {
    let n = batches.len().max(1) as f64;
    let scale = scaler.as_ref().map_or(1.0, |s| s.scale);
    let mut accumulator = GradientsAccumulator::new();
    let mut loss_sum = 0.0;
    for (i, (x, y)) in batches.into_iter().enumerate() {
        let mut loss = soft_target_cross_entropy(model.forward_with(x, settings.precision), y);
        if settings.poison {
            loss = loss.mul_scalar(f64::NAN);
        }
        let loss_val = loss.clone().into_scalar::<f32>() as f64;
        if !loss_val.is_finite() {
            let outcome = StepOutcome {
                loss: loss_val,
                skipped: true,
                scale: None,
            };
            return (model, outcome);
        }
        loss_sum += loss_val;
        if settings.inf_grad && i == 0 {
            loss = loss.mul_scalar(f64::INFINITY);
        }
        let grads = GradientsParams::from_grads(loss.mul_scalar(scale / n).backward(), &model);
        accumulator.accumulate(&model, grads);
    }
    let mut grads = accumulator.grads();
    // Only a scaled (f16) step, or the test hook, checks the gradients (as PyTorch's AMP).
    let check = scaler.is_some() || settings.inf_grad;
    let finite = !check || unscale_and_check(&model, &mut grads, scale);
    let verdict = scaler.map(|s| s.update(finite));
    let outcome = |skipped| StepOutcome {
        loss: loss_sum / n,
        skipped,
        scale: verdict,
    };
    if !finite {
        return (model, outcome(true));
    }
    if settings.clip_grad > 0.0 {
        clip_grad_norm(&model, &mut grads, settings.clip_grad);
    }
    let model = apply_update(optim, settings.lr, model, grads);
    (model, outcome(false))
}

/// The optimiser update of one step: the only call into the optimiser, so that a fused
/// implementation replaces it here and nowhere else.
fn apply_update(
    optim: &mut ModuleOptimizer,
    lr: f64,
    model: EfficientNet,
    grads: GradientsParams,
) -> EfficientNet {
    optim.step(lr, model, grads)
}
