//! Mixed-precision training: the dynamic loss scaler for f16 and the gradient checks it needs.
//! The forward-side rules (f32 master weights, half arithmetic, f32 BatchNorm, softmax and loss)
//! live in [`effnet_model::precision`].
//!
//! f16 gradients underflow below 6e-8, so the loss is multiplied by a large scale before the
//! backward pass and the (f32) gradients are divided by it afterwards. When any gradient is inf
//! or NaN the step is skipped (the weights and the optimiser state are left as they were) and the
//! scale is multiplied by `backoff_factor`; after `growth_interval` clean steps in a row it is
//! multiplied by `growth_factor`. Same rules and defaults as PyTorch's `GradScaler`.

use anyhow::{Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Loss-scaler settings (`[train.loss_scale]` in a recipe; used with `precision = "f16"` only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LossScaleConfig {
    /// Scale of the first step.
    pub init_scale: f64,
    /// Factor applied after `growth_interval` clean steps (> 1).
    pub growth_factor: f64,
    /// Factor applied on a step with inf/NaN gradients (in (0, 1)).
    pub backoff_factor: f64,
    /// Clean steps in a row before the scale grows.
    pub growth_interval: u64,
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl LossScaleConfig {
    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<()> {
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            bail!("train.loss_scale.init_scale must be a positive number");
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            bail!("train.loss_scale.growth_factor must be > 1");
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            bail!("train.loss_scale.backoff_factor must be in (0, 1)");
        }
        if self.growth_interval == 0 {
            bail!("train.loss_scale.growth_interval must be at least 1");
        }
        Ok(())
    }
}

/// What the scaler decided about one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleUpdate {
    /// Finite gradients: the optimiser steps (`grown`: the scale was raised afterwards).
    Stepped {
        /// Whether this step completed a growth interval.
        grown: bool,
    },
    /// inf/NaN gradients: no optimiser step; the scale was lowered to `new_scale`.
    Skipped {
        /// The scale for the next step.
        new_scale: f64,
    },
}

/// Dynamic loss scaling for f16 training; its state is part of every checkpoint, so a resumed
/// run continues with the same scale.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DynamicLossScaler {
    /// Current scale.
    pub scale: f64,
    /// Clean steps since the last growth or skip.
    pub clean_steps: u64,
    /// Steps skipped for inf/NaN gradients in the whole run.
    pub skipped_steps: u64,
    /// Settings.
    pub config: LossScaleConfig,
}

impl DynamicLossScaler {
    /// A scaler at `config.init_scale`.
    pub fn new(config: LossScaleConfig) -> Self {
        Self {
            scale: config.init_scale,
            clean_steps: 0,
            skipped_steps: 0,
            config,
        }
    }

    /// Records the outcome of a step whose (unscaled) gradients were `finite` or not.
    pub fn update(&mut self, finite: bool) -> ScaleUpdate {
        if !finite {
            self.scale *= self.config.backoff_factor;
            self.clean_steps = 0;
            self.skipped_steps += 1;
            return ScaleUpdate::Skipped {
                new_scale: self.scale,
            };
        }
        self.clean_steps += 1;
        let grown = self.clean_steps >= self.config.growth_interval;
        if grown {
            self.scale *= self.config.growth_factor;
            self.clean_steps = 0;
        }
        ScaleUpdate::Stepped { grown }
    }
}

/// Divides every gradient of `model` by `scale` and reports whether all of them are finite
/// (a single inf or NaN element anywhere makes the answer `false`).
pub fn unscale_and_check<M: Module>(model: &M, grads: &mut GradientsParams, scale: f64) -> bool {
    struct Unscale<'a> {
        grads: &'a mut GradientsParams,
        inv: f64,
        sums: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Unscale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let g = g.mul_scalar(self.inv);
                // inf - inf and anything with NaN give NaN: the sum is finite iff all elements are
                // (short of an f32 overflow of the sum itself, which is as bad as an inf).
                self.sums.push(g.clone().sum());
                self.grads.register(param.id, g);
            }
        }
    }
    let mut v = Unscale {
        grads,
        inv: 1.0 / scale,
        sums: Vec::new(),
    };
    model.visit(&mut v);
    if v.sums.is_empty() {
        return true;
    }
    let total = Tensor::cat(v.sums, 0).sum().into_scalar::<f32>();
    total.is_finite()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler(interval: u64) -> DynamicLossScaler {
        DynamicLossScaler::new(LossScaleConfig {
            growth_interval: interval,
            ..Default::default()
        })
    }

    #[test]
    fn defaults_are_gradscaler_like() {
        let s = DynamicLossScaler::new(LossScaleConfig::default());
        assert_eq!(s.scale, 65536.0);
        assert_eq!(s.config.growth_interval, 2000);
        assert!(s.config.validate().is_ok());
    }

    #[test]
    fn overflow_skips_and_backs_off() {
        let mut s = scaler(3);
        assert_eq!(s.update(true), ScaleUpdate::Stepped { grown: false });
        assert_eq!(s.update(false), ScaleUpdate::Skipped { new_scale: 32768.0 });
        assert_eq!(s.clean_steps, 0, "a skip restarts the growth interval");
        assert_eq!(s.skipped_steps, 1);
        assert_eq!(s.update(false), ScaleUpdate::Skipped { new_scale: 16384.0 });
        assert_eq!(s.skipped_steps, 2);
    }

    #[test]
    fn grows_after_the_interval_of_clean_steps_only() {
        let mut s = scaler(3);
        s.update(true);
        s.update(true);
        assert_eq!(s.scale, 65536.0);
        assert_eq!(s.update(true), ScaleUpdate::Stepped { grown: true });
        assert_eq!(s.scale, 131072.0);
        // Interrupted interval: two clean, one skip, then three clean to grow again.
        s.update(true);
        s.update(true);
        s.update(false);
        assert_eq!(s.scale, 65536.0);
        s.update(true);
        s.update(true);
        assert_eq!(s.scale, 65536.0);
        s.update(true);
        assert_eq!(s.scale, 131072.0);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let bad = [
            (
                "init_scale",
                LossScaleConfig {
                    init_scale: 0.0,
                    ..Default::default()
                },
            ),
            (
                "growth_factor",
                LossScaleConfig {
                    growth_factor: 1.0,
                    ..Default::default()
                },
            ),
            (
                "backoff_factor",
                LossScaleConfig {
                    backoff_factor: 1.5,
                    ..Default::default()
                },
            ),
            (
                "growth_interval",
                LossScaleConfig {
                    growth_interval: 0,
                    ..Default::default()
                },
            ),
        ];
        for (key, cfg) in bad {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = scaler(5);
        s.update(false);
        s.update(true);
        let back: DynamicLossScaler =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
