//! Cache warm-up: runs every shape a recipe will use once, so that GPU kernels are compiled and
//! autotuned into the on-disk cache (see [`effnet_model::device`]) before the real run starts.
//!
//! A run's shapes are few because the trainer keeps them constant: every training batch of a
//! progressive stage has the stage's batch size (the loader drops the last partial batch), and
//! evaluation pads its last batch to the full eval batch size on GPU devices.

use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_model::{ComputePrecision, EfficientNetConfig};

use crate::config::TrainConfig;
use crate::optim::build_optimizer;
use crate::precision::DynamicLossScaler;
use crate::schedule::ProgressiveSchedule;
use crate::step::{StepSettings, train_step_mixed};
use crate::trainer::{build_model, recipe_device};

/// What one warm-up item runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmKind {
    /// Forward, loss, backward and optimiser step on the autodiff device.
    Train,
    /// Evaluation forward of the unfolded model (what the trainer's validation runs).
    Eval,
    /// Inference forward of the BatchNorm-folded model (what `effnet infer`/`eval` run).
    Infer,
}

/// One shape to warm up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmShape {
    /// Which pass.
    pub kind: WarmKind,
    /// Images per batch.
    pub batch: usize,
    /// Square image side.
    pub size: usize,
}

/// Every distinct shape a run of `cfg` uses: one training shape per progressive stage (size and
/// batch), the validation forward at the eval size and batch, and the folded inference forward.
pub fn warmup_shapes(cfg: &TrainConfig, eval_size: usize) -> Vec<WarmShape> {
    let schedule =
        ProgressiveSchedule::new(&cfg.progressive, cfg.train.epochs, cfg.train.batch_size);
    let mut shapes: Vec<WarmShape> = Vec::new();
    for stage in &schedule.stages {
        let s = WarmShape {
            kind: WarmKind::Train,
            batch: stage.batch_size,
            size: stage.image_size,
        };
        if !shapes.contains(&s) {
            shapes.push(s);
        }
    }
    let batch = cfg.data.eval_batch_size.unwrap_or(cfg.train.batch_size);
    for kind in [WarmKind::Eval, WarmKind::Infer] {
        shapes.push(WarmShape {
            kind,
            batch,
            size: eval_size,
        });
    }
    shapes
}

/// Runs `shape` once (twice for training, so the optimiser's steady-state kernels are seen
/// too) with the recipe's model, device, optimiser and precision, on random data; returns the
/// seconds it took.
pub fn warm_up(cfg: &TrainConfig, model_cfg: &EfficientNetConfig, shape: WarmShape) -> Result<f64> {
    let device = recipe_device(cfg)?;
    let precision = cfg.train.precision;
    let started = Instant::now();
    let dims = [shape.batch, 3, shape.size, shape.size];
    match shape.kind {
        WarmKind::Train => {
            let ad = device.autodiff();
            let mut model = model_cfg.init(&ad).train();
            let mut optim = build_optimizer(&cfg.optim)?;
            let settings = StepSettings {
                lr: 1e-4,
                clip_grad: cfg.train.clip_grad,
                precision,
                ..Default::default()
            };
            let f16 = precision == ComputePrecision::F16;
            let mut scaler = f16.then(|| DynamicLossScaler::new(cfg.train.loss_scale.clone()));
            for _ in 0..2 {
                let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &ad);
                let classes = model_cfg.num_classes;
                let y = Tensor::<2>::ones([shape.batch, classes], &ad).div_scalar(classes as f64);
                (model, _) = train_step_mixed(model, &mut optim, x, y, &settings, scaler.as_mut());
            }
        }
        WarmKind::Eval | WarmKind::Infer => {
            let mut model = model_cfg.init(&device);
            if shape.kind == WarmKind::Infer {
                model = model.fold_batchnorm();
            }
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let _ = model.forward_inference_with(x, precision).into_data();
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The network description a run of `cfg` with `num_classes` classes trains (the recipe's
/// architecture, or that of its `init_weights`), and its eval size.
pub fn warmup_model(cfg: &TrainConfig, num_classes: usize) -> Result<(EfficientNetConfig, usize)> {
    let (_, model_cfg) = build_model(cfg, num_classes, &Device::flex())?;
    let eval_size = cfg.data.eval_size.unwrap_or(model_cfg.eval_size);
    Ok((model_cfg, eval_size))
}
