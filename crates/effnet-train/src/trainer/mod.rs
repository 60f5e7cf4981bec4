//! The training loop, as burn-train's learner: a [`Trainer`] owns one run folder and walks its
//! epochs (progressive stages, per-iteration LR, EMA, evaluation of raw and EMA weights,
//! checkpoints and outputs). A step is [`crate::step`], an evaluation [`crate::evaluation`]; what
//! a run is built from is `setup.rs`, one epoch `epoch.rs`, files that fail to decode
//! `failures.rs`.

mod epoch;
mod failures;
mod setup;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use effnet_data::{Preprocess, TrainTransform};
use effnet_model::EfficientNet;
use serde_json::json;

use crate::checkpoint::{self, Checkpointer, EpochRow, TrainState};
use crate::config::TrainConfig;
use crate::data::{Splits, train_transform};
use crate::ema::ModelEma;
use crate::hooks::TestHooks;
use crate::output;
use crate::report::{Reporter, RunInfo, Silent};
use crate::run_folder::{RunFolder, check_same_classes};
use crate::schedule::{ProgressiveSchedule, learning_rate};
use crate::stop::StopHandle;

pub use setup::build_model;
pub(crate) use setup::recipe_device;
use setup::{Setup, loss_scaler};

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
    /// Stopped before the last epoch (Ctrl-C or a test hook), with a checkpoint written.
    pub interrupted: bool,
}

/// Runs (or resumes, when `resume`) a training run silently until it ends; the convenience form
/// of [`Trainer`] for tests and embedders that need no progress or stop control.
pub fn train(cfg: &TrainConfig, data: &Path, run_dir: &Path, resume: bool) -> Result<TrainOutcome> {
    train_with_hooks(cfg, data, run_dir, resume, TestHooks::default())
}

/// [`train`] with faults injected (see [`TestHooks`]).
pub fn train_with_hooks(
    cfg: &TrainConfig,
    data: &Path,
    run_dir: &Path,
    resume: bool,
    hooks: TestHooks,
) -> Result<TrainOutcome> {
    let mut trainer = if resume {
        Trainer::resume(cfg, data, run_dir, Box::new(Silent))?
    } else {
        Trainer::new(cfg, data, run_dir, Box::new(Silent))?
    };
    trainer.set_test_hooks(hooks);
    trainer.run(&StopHandle::new())
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
    hooks: TestHooks,
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
        // The recipe the checkpoint was trained with, to tell when this one re-plans it.
        let previous = TrainConfig::load(&run_dir.join("config.toml"), &[]).ok();
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
        if let Some(note) = previous.and_then(|p| t.replanned(&p)) {
            t.reporter.warning(&note);
        }
        Ok(t)
    }

    /// Whether every epoch of the recipe is done (a resumed run with nothing left to train).
    pub fn is_finished(&self) -> bool {
        self.state.epoch >= self.cfg.train.epochs
    }

    /// What changes when the run resumes with a recipe whose schedule differs from the one it
    /// was trained with (more epochs, another LR or schedule): the LR and stages are re-planned
    /// over the new length, and the LR at the resume point moves.
    fn replanned(&self, previous: &TrainConfig) -> Option<String> {
        let (old, new) = (previous, &self.cfg);
        let same = old.train.epochs == new.train.epochs
            && old.train.batch_size == new.train.batch_size
            && old.train.grad_accum_steps == new.train.grad_accum_steps
            && old.optim.lr == new.optim.lr
            && old.optim.lr_base == new.optim.lr_base
            && old.sched == new.sched
            && old.progressive == new.progressive;
        if same || self.is_finished() {
            return None;
        }
        let t = self.state.epoch as f64;
        let lr = |c: &TrainConfig| {
            let batch = c.train.batch_size * c.train.grad_accum_steps;
            learning_rate(&c.sched, c.optim.peak_lr(batch), c.train.epochs, t)
        };
        let epochs = if old.train.epochs == new.train.epochs {
            String::new()
        } else {
            format!(
                " (train.epochs {} -> {})",
                old.train.epochs, new.train.epochs
            )
        };
        Some(format!(
            "the recipe's schedule differs from the one this run was trained with{epochs}: the \
             learning rate and progressive stages are re-planned over {} epochs; at the resume \
             point (epoch {}) the LR moves from {:.3e} to {:.3e}",
            new.train.epochs,
            self.state.epoch + 1,
            lr(old),
            lr(new)
        ))
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
            hooks: TestHooks::default(),
        }
    }

    /// Injects faults into this run (tests only; see [`TestHooks`]).
    pub fn set_test_hooks(&mut self, hooks: TestHooks) {
        self.hooks = hooks;
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
            epochs: self.cfg.train.epochs,
        };
        self.reporter.run_started(&info);
        // Unreadable files were set aside by the scan: one warning each, once per run start.
        for split in [&self.splits.train, &self.splits.val] {
            for (path, why) in &split.unreadable {
                (self.reporter).warning(&format!("skipped {}: {why}", path.display()));
            }
        }
        let failed = self.state.decode_failures.len();
        if failed > 0 {
            (self.reporter).warning(&format!(
                "{failed} file(s) that failed to decode earlier in this run are left out"
            ));
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
}
