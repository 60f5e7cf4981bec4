//! The training loop: progressive stages, mixup/cutmix with soft targets, stochastic depth and
//! dropout, EMA, per-iteration LR, evaluation of raw and EMA weights, checkpoints and outputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use effnet_data::loader::batch_rng;
use effnet_data::{
    Batch, BatchIter, ImageFolder, LoaderConfig, Mixup, Preprocess, TrainTransform, eval_batches,
    smooth_one_hot,
};
use effnet_model::{ComputePrecision, EfficientNet, EfficientNetConfig, load_native, parse_device};
use serde_json::json;

use crate::checkpoint::{self, Checkpointer, EpochRow, TrainState};
use crate::config::{BUNDLED_WEIGHTS, TrainConfig};
use crate::data::{Splits, eval_preprocess, images_tensor, open_splits, train_transform};
use crate::ema::{ModelEma, copy_weights};
use crate::loss::{TopK, soft_target_cross_entropy};
use crate::optim::{build_optimizer, clip_grad_norm};
use crate::output;
use crate::precision::{DynamicLossScaler, ScaleUpdate, unscale_and_check};
use crate::report::{EpochStart, EvalProgress, Reporter, RunInfo, Silent, StepInfo};
use crate::run_folder::{RunFolder, check_same_classes};
use crate::schedule::{ProgressiveSchedule, Stage, learning_rate};
use crate::stop::StopHandle;

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Run folder.
    pub run_dir: PathBuf,
    /// Finished epochs.
    pub history: Vec<EpochRow>,
    /// Best validation top-1 (raw or EMA).
    pub best_top1: f64,
    /// Whether the best weights are the EMA ones.
    pub best_is_ema: bool,
    /// Optimiser steps done.
    pub global_step: u64,
    /// Stopped before the last epoch (Ctrl-C or the test hook), with a checkpoint written.
    pub interrupted: bool,
}

/// SplitMix64, to derive independent per-step seeds from the run seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the network the recipe asks for, on the plain device, with `num_classes` outputs.
pub fn build_model(
    cfg: &TrainConfig,
    num_classes: usize,
    device: &Device,
) -> Result<(EfficientNet, EfficientNetConfig)> {
    let m = &cfg.model;
    let Some(init) = m.init_weights.as_deref() else {
        let mut mc = EfficientNetConfig::from_name_or_file(&m.arch)
            .map_err(|e| anyhow::anyhow!("model.arch = '{}': {e}", m.arch))?;
        mc.num_classes = num_classes;
        if let Some(d) = m.drop_path {
            mc.drop_path = d;
        }
        mc.validate()
            .map_err(|e| anyhow::anyhow!("model.arch = '{}': {e}", m.arch))?;
        return Ok((mc.init(device), mc));
    };
    let pre = if init == BUNDLED_WEIGHTS {
        effnet_model::load_native_bytes(
            Path::new("<bundled efficientnet_lite0>"),
            effnet::BUNDLED_WEIGHTS.to_vec(),
            device,
        )
    } else {
        load_native(Path::new(init), device)
    }
    .with_context(|| format!("model.init_weights = {init}"))?;
    let mut mc = pre.config.clone();
    // Rebuild with this recipe's stochastic depth (a per-block constant), then copy the weights.
    if let Some(d) = m.drop_path {
        mc.drop_path = d;
    }
    let mut model = copy_weights(mc.init(device), &pre.model);
    if mc.num_classes != num_classes {
        model = model.reset_classifier(num_classes);
        // The model's head init is torchvision's U(±1/sqrt(classes)), sized for 1000 classes; for
        // a handful of classes on pretrained features it starts with logits in the tens. Use
        // U(±1/sqrt(features)) (PyTorch's Linear default, as timm's reset_classifier) instead.
        let [features, classes] = model.classifier.weight.dims();
        let scale = (classes as f64 / features as f64).sqrt();
        model.classifier.weight = model.classifier.weight.map(|w| w.mul_scalar(scale));
        mc.num_classes = num_classes;
    }
    Ok((model, mc))
}

/// Top-1/top-5 and loss of `model` (inference copy) on `ds`, in f32.
/// `epoch` and `which` only label the progress sent to `reporter`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &EfficientNet,
    ds: &ImageFolder,
    pre: &Preprocess,
    batch_size: usize,
    workers: usize,
    device: &Device,
    reporter: &mut dyn Reporter,
    tag: (usize, &str),
) -> Result<TopK> {
    let eval = Evaluation {
        ds,
        pre,
        batch_size,
        workers,
        classes: model.num_classes(),
    };
    let precision = ComputePrecision::F32;
    evaluate_model(model, precision, &eval, device, reporter, tag)
}

/// [`evaluate`] of a burn model computing in `precision`.
fn evaluate_model(
    model: &EfficientNet,
    precision: ComputePrecision,
    eval: &Evaluation,
    device: &Device,
    reporter: &mut dyn Reporter,
    tag: (usize, &str),
) -> Result<TopK> {
    // On GPUs a short last batch would be a new shape (new kernels, new autotune runs): it is
    // padded with zeros to the full batch and the padding's logits are dropped.
    let pad_to = (*device != Device::flex()).then_some(eval.batch_size);
    let classes = eval.classes;
    let logits = &mut |mut images: Vec<f32>, b: usize, size: usize| -> Result<Vec<f32>> {
        let rows = pad_to.map_or(b, |n| n.max(b));
        images.resize(rows * 3 * size * size, 0.0);
        let x = images_tensor(images, rows, size, device);
        let mut v = (model.forward_inference_with(x, precision).into_data())
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
        v.truncate(b * classes);
        Ok(v)
    };
    evaluate_with(eval, logits, reporter, tag)
}

/// What one evaluation pass reads: a labelled folder, its preprocessing and loader settings.
pub struct Evaluation<'a> {
    /// The labelled images.
    pub ds: &'a ImageFolder,
    /// Eval preprocessing (resize, crop, normalise).
    pub pre: &'a Preprocess,
    /// Images per forward.
    pub batch_size: usize,
    /// Loader threads.
    pub workers: usize,
    /// Number of model outputs (labels must be below it).
    pub classes: usize,
}

/// [`evaluate`] with any forward: `logits(images [B,3,S,S], B, S)` returns `[B * classes]`
/// values, so an inference engine other than burn (e.g. effnet's CPU executor) can be measured
/// with the same loader and metrics.
pub fn evaluate_with(
    eval: &Evaluation,
    logits: &mut dyn FnMut(Vec<f32>, usize, usize) -> Result<Vec<f32>>,
    reporter: &mut dyn Reporter,
    (epoch, which): (usize, &str),
) -> Result<TopK> {
    let classes = eval.classes;
    let mut k = TopK::default();
    let total = eval.ds.len().div_ceil(eval.batch_size.max(1));
    let batches = eval_batches(eval.ds, eval.pre, eval.batch_size, eval.workers);
    for (i, batch) in batches.enumerate() {
        report_skipped(reporter, &batch);
        let progress = EvalProgress {
            epoch,
            which,
            done: i + 1,
            total,
        };
        let b = batch.labels.len();
        if b == 0 {
            continue;
        }
        if let Some(bad) = batch.labels.iter().find(|&&l| l >= classes) {
            bail!("label {bad} but the model has only {classes} classes");
        }
        let values = logits(batch.images, b, batch.size)?;
        k.add(&values, &batch.labels, classes);
        reporter.eval_progress(&progress);
    }
    Ok(k)
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
    let mut loss = soft_target_cross_entropy(model.forward_with(x, settings.precision), y);
    if settings.poison {
        loss = loss.mul_scalar(f64::NAN);
    }
    let loss_val = loss.clone().into_scalar::<f32>() as f64;
    let outcome = |scale, skipped| StepOutcome {
        loss: loss_val,
        scale,
        skipped,
    };
    if !loss_val.is_finite() {
        return (model, outcome(None, true));
    }
    let scale = scaler.as_ref().map_or(1.0, |s| s.scale);
    if settings.inf_grad {
        loss = loss.mul_scalar(f64::INFINITY);
    }
    let mut grads = GradientsParams::from_grads(loss.mul_scalar(scale).backward(), &model);
    // Only a scaled (f16) step, or the test hook, checks the gradients (as PyTorch's AMP).
    let check = scaler.is_some() || settings.inf_grad;
    let finite = !check || unscale_and_check(&model, &mut grads, scale);
    let verdict = scaler.map(|s| s.update(finite));
    if !finite {
        return (model, outcome(verdict, true));
    }
    if settings.clip_grad > 0.0 {
        clip_grad_norm(&model, &mut grads, settings.clip_grad);
    }
    (
        optim.step(settings.lr, model, grads),
        outcome(verdict, false),
    )
}

fn report_skipped(reporter: &mut dyn Reporter, batch: &Batch) {
    for (p, why) in &batch.skipped {
        reporter.warning(&format!("skipped {}: {why}", p.display()));
    }
}

/// Runs (or resumes, when `resume`) a training run silently until it ends; the convenience form
/// of [`Trainer`] for tests and embedders that need no progress or stop control.
pub fn train(cfg: &TrainConfig, data: &Path, run_dir: &Path, resume: bool) -> Result<TrainOutcome> {
    let mut trainer = if resume {
        Trainer::resume(cfg, data, run_dir, Box::new(Silent))?
    } else {
        Trainer::new(cfg, data, run_dir, Box::new(Silent))?
    };
    trainer.run(&StopHandle::new())
}

/// The loss scaler an f16 run needs: the checkpoint's when resuming one, else a fresh one;
/// none for f32 and bf16 (bf16 has f32's exponent range).
fn loss_scaler(cfg: &TrainConfig, saved: Option<DynamicLossScaler>) -> Option<DynamicLossScaler> {
    (cfg.train.precision == ComputePrecision::F16)
        .then(|| saved.unwrap_or_else(|| DynamicLossScaler::new(cfg.train.loss_scale.clone())))
}

/// The recipe's device, checked to support the recipe's compute precision.
pub(crate) fn recipe_device(cfg: &TrainConfig) -> Result<Device> {
    let device = parse_device(&cfg.device).map_err(|e| anyhow::anyhow!("device: {e}"))?;
    let precision = cfg.train.precision;
    if !precision.supported_on(&device) {
        bail!(
            "train.precision = {precision} is not supported on device {}",
            cfg.device
        );
    }
    Ok(device)
}

/// What is fixed for a whole run once the recipe, the data and the model are known; built before
/// anything is written, so a bad recipe or data set leaves no run folder behind.
struct Setup {
    device: Device,
    splits: Splits,
    model: EfficientNet,
    model_cfg: EfficientNetConfig,
    preprocess: Preprocess,
    optim: ModuleOptimizer,
}

impl Setup {
    fn new(cfg: &TrainConfig, data: &Path) -> Result<Self> {
        let device = recipe_device(cfg)?;
        let splits = open_splits(data, cfg)?;
        let n_classes = splits.train.classes.len();
        if let Some(n) = cfg.model.num_classes
            && n != n_classes
        {
            bail!("model.num_classes = {n} but the training split has {n_classes} classes");
        }
        device.seed(cfg.seed);
        let (model, model_cfg) = build_model(cfg, n_classes, &device)?;
        let eval_size = cfg.data.eval_size.unwrap_or(model_cfg.eval_size);
        let preprocess = eval_preprocess(cfg, eval_size);
        let optim = build_optimizer(&cfg.optim)?;
        Ok(Self {
            device,
            splits,
            model,
            model_cfg,
            preprocess,
            optim,
        })
    }
}

/// What one epoch uses: its progressive stage, transform, loader settings and peak LR.
struct EpochPlan {
    epoch: usize,
    stage: Stage,
    steps: usize,
    lr_peak: f64,
    mixup: Mixup,
}

/// Counters of the epoch in progress.
struct EpochStats {
    started: Instant,
    images: usize,
    train_secs: f64,
    lr: f64,
}

/// A training run: the model, its EMA and optimiser, the position ([`TrainState`]) and the run
/// folder. [`Trainer::new`] starts a run, [`Trainer::resume`] continues one from its latest
/// checkpoint, [`Trainer::run`] trains to the end or until the [`StopHandle`] fires.
pub struct Trainer {
    cfg: TrainConfig,
    device: Device,
    /// The autodiff view of `device`, seeded per step.
    ad: Device,
    splits: Splits,
    /// Training weights on the autodiff device (`None` only transiently inside a step).
    model: Option<EfficientNet>,
    ema: Option<ModelEma>,
    optim: ModuleOptimizer,
    state: TrainState,
    schedule: ProgressiveSchedule,
    base_tf: TrainTransform,
    preprocess: Preprocess,
    checkpointer: Checkpointer,
    folder: RunFolder,
    reporter: Box<dyn Reporter>,
}

impl Trainer {
    /// Starts a new run in `run_dir` (created, locked; refused if it already holds a run).
    pub fn new(
        cfg: &TrainConfig,
        data: &Path,
        run_dir: &Path,
        reporter: Box<dyn Reporter>,
    ) -> Result<Self> {
        let setup = Setup::new(cfg, data)?;
        let folder = RunFolder::create(run_dir)?;
        let model = setup.model.clone().train();
        let ema = cfg.ema.enabled.then(|| {
            ModelEma::new(
                model.valid(),
                cfg.ema.decay,
                cfg.ema.warmup,
                cfg.ema.warmup_power,
            )
        });
        let state = TrainState {
            seed: cfg.seed,
            best_top1: -1.0,
            loss_scaler: loss_scaler(cfg, None),
            ..Default::default()
        };
        output::write_summary(run_dir, &[])?;
        let mut t = Self::assemble(cfg, setup, folder, model, ema, state, reporter);
        t.start(None)?;
        Ok(t)
    }

    /// Continues the run in `run_dir` from its latest checkpoint. Refuses, before writing
    /// anything, a folder without a checkpoint or a training split whose classes differ from the
    /// run's `classes.txt`; then rebuilds `summary.csv`, the log tail and the plots from the
    /// checkpoint's history.
    pub fn resume(
        cfg: &TrainConfig,
        data: &Path,
        run_dir: &Path,
        reporter: Box<dyn Reporter>,
    ) -> Result<Self> {
        let setup = Setup::new(cfg, data)?;
        checkpoint::latest(run_dir)?;
        check_same_classes(run_dir, &setup.splits.train.classes)?;
        let folder = RunFolder::open(run_dir)?;
        let Setup {
            device,
            splits,
            model,
            model_cfg,
            preprocess,
            optim,
        } = setup;
        let mut l = checkpoint::load(run_dir, &device, optim)?;
        l.state.loss_scaler = loss_scaler(cfg, l.state.loss_scaler.take());
        let ema = match (cfg.ema.enabled, l.ema) {
            (true, Some(e)) => {
                let mut m = ModelEma::new(e, cfg.ema.decay, cfg.ema.warmup, cfg.ema.warmup_power);
                m.updates = l.state.ema_updates;
                Some(m)
            }
            (true, None) => bail!("the checkpoint has no EMA weights but ema.enabled = true"),
            _ => None,
        };
        output::rebuild(run_dir, &l.state.history, l.state.global_step)?;
        let at = (
            l.state.epoch + 1,
            l.state.step_in_epoch,
            l.state.global_step,
        );
        let setup = Setup {
            device,
            splits,
            model,
            model_cfg,
            preprocess,
            optim: l.optim,
        };
        // `train()` moves the parameters onto the autodiff device as tracked leaves.
        let model = l.model.train();
        let mut t = Self::assemble(cfg, setup, folder, model, ema, l.state, reporter);
        t.start(Some(at))?;
        Ok(t)
    }

    fn assemble(
        cfg: &TrainConfig,
        setup: Setup,
        folder: RunFolder,
        model: EfficientNet,
        ema: Option<ModelEma>,
        state: TrainState,
        reporter: Box<dyn Reporter>,
    ) -> Self {
        let checkpointer = Checkpointer::new(
            folder.path(),
            cfg.checkpoint.keep_last,
            setup.model_cfg.clone(),
            setup.preprocess.clone(),
            setup.splits.train.classes.clone(),
        );
        Self {
            schedule: ProgressiveSchedule::new(
                &cfg.progressive,
                cfg.train.epochs,
                cfg.train.batch_size,
            ),
            base_tf: train_transform(cfg),
            cfg: cfg.clone(),
            ad: setup.device.clone().autodiff(),
            device: setup.device,
            splits: setup.splits,
            model: Some(model),
            ema,
            optim: setup.optim,
            state,
            preprocess: setup.preprocess,
            checkpointer,
            folder,
            reporter,
        }
    }

    /// What every (re)start writes and reports before the first step.
    fn start(&mut self, resumed_at: Option<(usize, usize, u64)>) -> Result<()> {
        self.write_run_files()?;
        self.log_data_scan()?;
        self.report_start(resumed_at);
        Ok(())
    }

    fn write_run_files(&self) -> Result<()> {
        let dir = self.folder.path();
        checkpoint::write_atomic(&dir.join("config.toml"), self.cfg.to_toml()?.as_bytes())?;
        let mut classes = self.splits.train.classes.join("\n");
        classes.push('\n');
        checkpoint::write_atomic(&dir.join("classes.txt"), classes.as_bytes())
    }

    fn report_start(&mut self, resumed_at: Option<(usize, usize, u64)>) {
        let params = self.model().num_trainable_params();
        let info = RunInfo {
            run_dir: self.folder.path(),
            model: self.checkpointer.model_name(),
            params,
            classes: self.splits.train.classes.len(),
            train_report: self.splits.train.report(),
            val_report: self.splits.val.report(),
            resumed_at,
        };
        self.reporter.run_started(&info);
        // Unreadable files were set aside by the scan: one warning each, once per run start.
        for split in [&self.splits.train, &self.splits.val] {
            for (path, why) in &split.unreadable {
                (self.reporter).warning(&format!("skipped {}: {why}", path.display()));
            }
        }
    }

    /// The `log.jsonl` record of what the scan found (images and unreadable files per split).
    fn log_data_scan(&self) -> Result<()> {
        let (t, v) = (&self.splits.train, &self.splits.val);
        output::append_log(
            self.folder.path(),
            &json!({"kind": "data", "train_images": t.len(), "val_images": v.len(),
                    "train_unreadable": t.unreadable_count(),
                    "val_unreadable": v.unreadable_count()}),
        )
    }

    fn model(&self) -> &EfficientNet {
        self.model
            .as_ref()
            .expect("the model is only taken out inside a step")
    }

    /// Trains until the last epoch or until `stop` is requested (then after a checkpoint).
    pub fn run(&mut self, stop: &StopHandle) -> Result<TrainOutcome> {
        for epoch in self.state.epoch..self.cfg.train.epochs {
            let started = Instant::now();
            let (plan, batches) = self.plan_epoch(epoch)?;
            let Some(mut stats) = self.train_epoch(&plan, batches, stop)? else {
                return Ok(self.outcome(true));
            };
            stats.started = started;
            let (raw, ema) = self.evaluate(epoch + 1)?;
            self.end_epoch(&plan, stats, raw, ema)?;
        }
        Ok(self.outcome(false))
    }

    fn outcome(&self, interrupted: bool) -> TrainOutcome {
        TrainOutcome {
            run_dir: self.folder.path().to_path_buf(),
            history: self.state.history.clone(),
            best_top1: self.state.best_top1,
            best_is_ema: self.state.best_is_ema,
            global_step: self.state.global_step,
            interrupted,
        }
    }

    fn plan_epoch(&self, epoch: usize) -> Result<(EpochPlan, BatchIter)> {
        let cfg = &self.cfg;
        let stage = self.schedule.stage_at(epoch).clone();
        let magnitude = self.base_tf.randaugment.as_ref().map(|_| stage.randaugment);
        let transform = self.base_tf.at_stage(stage.image_size, magnitude);
        let loader = LoaderConfig {
            batch_size: stage.batch_size,
            workers: cfg.data.workers,
            shuffle: true,
            seed: cfg.seed,
            drop_last: true,
            prefetch: 2,
        };
        let batches =
            effnet_data::train_batches(&self.splits.train, &transform, &loader, epoch as u64);
        let mut steps = batches.num_batches();
        if let Some(max) = cfg.train.max_steps_per_epoch {
            steps = steps.min(max);
        }
        if steps == 0 {
            bail!(
                "the training split has {} images, fewer than one batch of {}",
                self.splits.train.len(),
                stage.batch_size
            );
        }
        let n_classes = self.splits.train.classes.len();
        let mixup = Mixup {
            mixup_alpha: stage.mixup,
            cutmix_alpha: if cfg.train.cutmix { stage.mixup } else { 0.0 },
            cutmix_minmax: None,
            prob: cfg.train.mixup_prob,
            switch_prob: cfg.train.mixup_switch_prob,
            label_smoothing: cfg.train.label_smoothing,
            num_classes: n_classes,
        };
        let plan = EpochPlan {
            epoch,
            lr_peak: cfg.optim.peak_lr(stage.batch_size),
            stage,
            steps,
            mixup,
        };
        Ok((plan, batches))
    }

    fn lr_at(&self, plan: &EpochPlan, t: f64) -> f64 {
        learning_rate(&self.cfg.sched, plan.lr_peak, self.cfg.train.epochs, t)
    }

    /// Runs the remaining steps of `plan.epoch`; `None` when stopped on request (a checkpoint is
    /// written first).
    fn train_epoch(
        &mut self,
        plan: &EpochPlan,
        batches: BatchIter,
        stop: &StopHandle,
    ) -> Result<Option<EpochStats>> {
        let epoch = plan.epoch;
        self.state.stage = plan.stage.index;
        let dropout = plan.stage.dropout;
        self.with_model(|m| m.set_dropout(dropout));
        let skip = self.state.step_in_epoch;
        self.reporter.epoch_started(&EpochStart {
            epoch: epoch + 1,
            epochs: self.cfg.train.epochs,
            steps: plan.steps,
            done: skip,
            img_size: plan.stage.image_size,
            stage: plan.stage.index,
        });
        // LR of the last step already done (what the epoch row reports if none is left).
        let done = skip.saturating_sub(1) as f64 / plan.steps as f64;
        let t_train = Instant::now();
        let mut stats = EpochStats {
            started: t_train,
            images: 0,
            train_secs: 0.0,
            lr: self.lr_at(plan, epoch as f64 + done),
        };
        let mut batches = batches.enumerate().take(plan.steps).skip(skip);
        loop {
            let t_data = Instant::now();
            let Some((i, batch)) = batches.next() else {
                break;
            };
            let data_secs = t_data.elapsed().as_secs_f64();
            self.step(plan, i, batch, &mut stats, t_train, data_secs)?;
            stats.train_secs = t_train.elapsed().as_secs_f64();
            if self.should_stop(stop) || self.checkpoint_due(i, plan.steps) {
                self.save_checkpoint()?;
            }
            if self.should_stop(stop) {
                self.reporter
                    .stopped(epoch + 1, i + 1, self.state.global_step, self.folder.path());
                return Ok(None);
            }
        }
        Ok(Some(stats))
    }

    fn should_stop(&self, stop: &StopHandle) -> bool {
        stop.is_requested() || self.cfg.testing.stop_after_steps == Some(self.state.global_step)
    }

    fn checkpoint_due(&self, i: usize, steps: usize) -> bool {
        self.cfg
            .checkpoint
            .every_steps
            .is_some_and(|n| self.state.global_step.is_multiple_of(n as u64) && i + 1 < steps)
    }

    fn with_model(&mut self, f: impl FnOnce(EfficientNet) -> EfficientNet) {
        let m = self.model.take().expect("model present between steps");
        self.model = Some(f(m));
    }

    /// One optimiser step on batch `i` of the epoch, with logging.
    fn step(
        &mut self,
        plan: &EpochPlan,
        i: usize,
        batch: Batch,
        stats: &mut EpochStats,
        t_train: Instant,
        data_secs: f64,
    ) -> Result<()> {
        report_skipped(self.reporter.as_mut(), &batch);
        let epoch = plan.epoch;
        let b = batch.labels.len();
        let lr = self.lr_at(plan, epoch as f64 + i as f64 / plan.steps as f64);
        stats.lr = lr;
        self.state.global_step += 1;
        self.state.step_in_epoch = i + 1;
        if b == 0 {
            return Ok(());
        }
        let loss = self.optimise(plan, i, batch, lr)?;
        if let Some(e) = self.ema.as_mut() {
            e.update(&self.model.as_ref().expect("model present").valid());
            self.state.ema_updates = e.updates;
        }
        self.state.epoch_loss_sum += loss;
        stats.images += b;
        let info = StepInfo {
            epoch: epoch + 1,
            epochs: self.cfg.train.epochs,
            step: i + 1,
            steps: plan.steps,
            global_step: self.state.global_step,
            loss,
            loss_avg: self.state.epoch_loss_sum / (i + 1) as f64,
            lr,
            img_per_sec: stats.images as f64 / t_train.elapsed().as_secs_f64().max(1e-9),
            data_secs,
            batch: b,
        };
        self.reporter.step(&info);
        output::append_log(
            self.folder.path(),
            &json!({"kind": "step", "step": self.state.global_step, "epoch": epoch + 1,
                    "iter": i, "steps": plan.steps, "loss": loss, "lr": lr,
                    "img_size": plan.stage.image_size, "batch": b,
                    "data_secs": data_secs}),
        )
    }

    /// The image and soft-target tensors of batch `i` (mixup/cutmix or smoothed one-hot).
    fn batch_tensors(&self, plan: &EpochPlan, i: usize, batch: Batch) -> (Tensor<4>, Tensor<2>) {
        let cfg = &self.cfg;
        let n_classes = self.splits.train.classes.len();
        let b = batch.labels.len();
        let mut images = batch.images;
        let targets = if plan.mixup.enabled() {
            let mut rng = batch_rng(cfg.seed, plan.epoch as u64, i as u64);
            plan.mixup
                .apply(&mut images, &batch.labels, batch.size, &mut rng)
        } else {
            smooth_one_hot(&batch.labels, n_classes, cfg.train.label_smoothing)
        };
        let x = images_tensor(images, b, batch.size, &self.ad);
        let y = Tensor::<2>::from_data(TensorData::new(targets, [b, n_classes]), &self.ad);
        (x, y)
    }

    /// Forward, loss, backward, update in the recipe's precision; a non-finite loss is an error
    /// naming the last good checkpoint (the weights are not updated); inf/NaN gradients of a
    /// scaled (f16) step skip the update and are reported.
    fn optimise(&mut self, plan: &EpochPlan, i: usize, batch: Batch, lr: f64) -> Result<f64> {
        let step = self.state.global_step;
        self.ad.seed(mix(self.cfg.seed ^ mix(step)));
        let (x, y) = self.batch_tensors(plan, i, batch);
        let testing = &self.cfg.testing;
        let settings = StepSettings {
            lr,
            clip_grad: self.cfg.train.clip_grad,
            precision: self.cfg.train.precision,
            poison: testing.nan_at_step == Some(step),
            inf_grad: testing.inf_grad_at_step == Some(step),
        };
        let model = self.model.take().expect("model present between steps");
        let scaler = self.state.loss_scaler.as_mut();
        let (next, out) = train_step_mixed(model, &mut self.optim, x, y, &settings, scaler);
        self.model = Some(next);
        let loss = out.loss;
        if !loss.is_finite() {
            let last = checkpoint::latest(self.folder.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "none yet".into());
            bail!(
                "loss is {loss} at epoch {} step {} (global step {step}, lr {lr:.3e}): \
                 training diverged; weights were not updated. Last good checkpoint: {last}. \
                 Lower the learning rate (optim.lr / optim.lr_base) or set train.clip_grad \
                 and resume.",
                plan.epoch + 1,
                i + 1,
            );
        }
        if out.skipped {
            self.report_gradient_skip(out.scale)?;
        }
        Ok(loss)
    }

    /// A step skipped for inf/NaN gradients: one warning and a `log.jsonl` record.
    fn report_gradient_skip(&mut self, scale: Option<ScaleUpdate>) -> Result<()> {
        let step = self.state.global_step;
        let new_scale = match scale {
            Some(ScaleUpdate::Skipped { new_scale }) => Some(new_scale),
            _ => None,
        };
        let scale_text = new_scale.map_or(String::new(), |s| format!("; loss scale now {s}"));
        (self.reporter).warning(&format!(
            "step {step} skipped: inf/NaN gradients, weights not updated{scale_text}"
        ));
        let skipped = self.state.loss_scaler.as_ref().map(|s| s.skipped_steps);
        output::append_log(
            self.folder.path(),
            &json!({"kind": "skip", "step": step, "reason": "non-finite gradients",
                    "loss_scale": new_scale, "skipped_total": skipped}),
        )
    }

    fn save_checkpoint(&self) -> Result<PathBuf> {
        let model = self.model().valid();
        let ema = self.ema.as_ref().map(|e| &e.model);
        self.checkpointer
            .save(&model, ema, &self.optim, &self.state)
    }

    /// Top-1/top-5 and loss of the raw and (when kept) EMA weights on the validation split, in
    /// the recipe's precision.
    pub fn evaluate(&mut self, epoch: usize) -> Result<(TopK, Option<TopK>)> {
        let cfg = &self.cfg;
        let eval = Evaluation {
            ds: &self.splits.val,
            pre: &self.preprocess,
            batch_size: cfg.data.eval_batch_size.unwrap_or(cfg.train.batch_size),
            workers: cfg.data.workers,
            classes: self.splits.train.classes.len(),
        };
        let precision = cfg.train.precision;
        let raw_model = self.model().valid();
        let reporter = self.reporter.as_mut();
        let device = &self.device;
        let raw = evaluate_model(
            &raw_model,
            precision,
            &eval,
            device,
            reporter,
            (epoch, "raw"),
        )?;
        let ema = match &self.ema {
            Some(e) => {
                let tag = (epoch, "EMA");
                Some(evaluate_model(
                    &e.model, precision, &eval, device, reporter, tag,
                )?)
            }
            None => None,
        };
        Ok((raw, ema))
    }

    /// Records the finished epoch: its row, best weights, log record, checkpoint, summary, plots.
    fn end_epoch(
        &mut self,
        plan: &EpochPlan,
        stats: EpochStats,
        raw: TopK,
        ema: Option<TopK>,
    ) -> Result<()> {
        let row = EpochRow {
            epoch: plan.epoch + 1,
            stage: plan.stage.index,
            img_size: plan.stage.image_size,
            train_loss: self.state.epoch_loss_sum / plan.steps as f64,
            eval_loss: raw.loss(),
            eval_top1: raw.top1_pct(),
            eval_top5: raw.top5_pct(),
            ema_top1: ema.map(|k| k.top1_pct()),
            ema_top5: ema.map(|k| k.top5_pct()),
            lr: stats.lr,
            img_per_sec: stats.images as f64 / stats.train_secs.max(1e-9),
            epoch_secs: stats.started.elapsed().as_secs_f64(),
        };
        let raw_model = self.model().valid();
        let new_best = self.checkpointer.update_best(
            &mut self.state,
            &row,
            &raw_model,
            self.ema.as_ref().map(|e| &e.model),
        )?;
        self.reporter
            .epoch_finished(&row, self.cfg.train.epochs, new_best);
        self.state.history.push(row.clone());
        self.state.epoch = plan.epoch + 1;
        self.state.step_in_epoch = 0;
        self.state.epoch_loss_sum = 0.0;
        let dir = self.folder.path();
        output::append_log(dir, &output::epoch_record(&row, self.state.global_step))?;
        self.save_checkpoint()?;
        output::write_summary(dir, &self.state.history)?;
        output::write_plots(dir, &self.state.history)
    }
}
