//! One epoch of the loop: its plan (progressive stage, loader, mixup, peak LR), its steps with
//! their bookkeeping (LR, EMA, logs, step checkpoints, stop requests), the evaluation at its end
//! and the records it leaves (epoch row, best weights, checkpoint, summary, plots).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::prelude::*;
use effnet_data::loader::{batch_rng, splitmix64};
use effnet_data::{Batch, BatchIter, LoaderConfig, Mixup, smooth_one_hot};
use effnet_model::EfficientNet;
use serde_json::json;

use super::Trainer;
use super::failures::FirstSkips;
use crate::checkpoint::{self, EpochRow};
use crate::data::images_tensor;
use crate::evaluation::{Evaluation, evaluate_model, report_skipped};
use crate::loss::TopK;
use crate::output;
use crate::precision::ScaleUpdate;
use crate::report::{EpochStart, StepInfo};
use crate::schedule::{Stage, learning_rate};
use crate::step::{StepSettings, train_step_accumulated};
use crate::stop::StopHandle;

/// What one epoch uses: its progressive stage, transform, loader settings and peak LR.
pub(super) struct EpochPlan {
    pub epoch: usize,
    pub stage: Stage,
    pub steps: usize,
    lr_peak: f64,
    mixup: Mixup,
}

/// Counters of the epoch in progress.
pub(super) struct EpochStats {
    pub started: Instant,
    images: usize,
    train_secs: f64,
    lr: f64,
}

impl Trainer {
    pub(super) fn plan_epoch(&self, epoch: usize) -> Result<(EpochPlan, BatchIter)> {
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
        let train = self.without_failures(&self.splits.train, epoch);
        let batches = effnet_data::train_batches(&train, &transform, &loader, epoch as u64);
        let accum = cfg.train.grad_accum_steps;
        let mut steps = batches.num_batches() / accum;
        if let Some(max) = cfg.train.max_steps_per_epoch {
            steps = steps.min(max);
        }
        if steps == 0 {
            bail!(
                "the training split has {} images, fewer than one step of {accum} batch(es) of {}",
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
            // The batch an update sees: timm scales lr_base by batch × accumulation steps.
            lr_peak: cfg.optim.peak_lr(stage.batch_size * accum),
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
    pub(super) fn train_epoch(
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
            stage: plan.stage.index + 1,
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
        let accum = self.cfg.train.grad_accum_steps;
        let mut batches = batches.take(plan.steps * accum).skip(skip * accum);
        for i in skip..plan.steps {
            let t_data = Instant::now();
            let group: Vec<Batch> = batches.by_ref().take(accum).collect();
            if group.len() < accum {
                break;
            }
            let data_secs = t_data.elapsed().as_secs_f64();
            self.step(plan, i, group, &mut stats, t_train, data_secs)?;
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
        stop.is_requested() || self.hooks.stop_after_steps == Some(self.state.global_step)
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

    /// Optimiser step `i` of the epoch on its batches (one, or `train.grad_accum_steps`), with
    /// logging.
    fn step(
        &mut self,
        plan: &EpochPlan,
        i: usize,
        group: Vec<Batch>,
        stats: &mut EpochStats,
        t_train: Instant,
        data_secs: f64,
    ) -> Result<()> {
        for batch in &group {
            let mut reporter = FirstSkips {
                inner: self.reporter.as_mut(),
                known: &mut self.state.decode_failures,
                epoch: plan.epoch,
            };
            report_skipped(&mut reporter, batch);
        }
        let epoch = plan.epoch;
        let b: usize = group.iter().map(|g| g.labels.len()).sum();
        let lr = self.lr_at(plan, epoch as f64 + i as f64 / plan.steps as f64);
        stats.lr = lr;
        self.state.global_step += 1;
        self.state.step_in_epoch = i + 1;
        if b == 0 {
            return Ok(());
        }
        let loss = self.optimise(plan, i, group, lr)?;
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

    /// The image and soft-target tensors of the epoch's batch `i` (mixup/cutmix or smoothed
    /// one-hot).
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
    fn optimise(&mut self, plan: &EpochPlan, i: usize, group: Vec<Batch>, lr: f64) -> Result<f64> {
        let step = self.state.global_step;
        self.ad.seed(splitmix64(self.cfg.seed ^ splitmix64(step)));
        let n = group.len();
        let tensors: Vec<(Tensor<4>, Tensor<2>)> = (group.into_iter().enumerate())
            .filter(|(_, b)| !b.labels.is_empty())
            .map(|(j, b)| self.batch_tensors(plan, i * n + j, b))
            .collect();
        let hooks = self.hooks;
        let settings = StepSettings {
            lr,
            clip_grad: self.cfg.train.clip_grad,
            precision: self.cfg.train.precision,
            poison: hooks.nan_at_step == Some(step),
            inf_grad: hooks.inf_grad_at_step == Some(step),
        };
        let model = self.model.take().expect("model present between steps");
        let scaler = self.state.loss_scaler.as_mut();
        let (next, out) =
            train_step_accumulated(model, &mut self.optim, tensors, &settings, scaler);
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
    /// the recipe's precision. `epoch` (1-based) labels the progress; files that failed to
    /// decode in an earlier epoch are left out.
    pub fn evaluate(&mut self, epoch: usize) -> Result<(TopK, Option<TopK>)> {
        let cfg = &self.cfg;
        let this_epoch = epoch.saturating_sub(1);
        let val = self.without_failures(&self.splits.val, this_epoch);
        let eval = Evaluation {
            ds: &val,
            pre: &self.preprocess,
            batch_size: cfg.data.eval_batch_size.unwrap_or(cfg.train.batch_size),
            workers: cfg.data.workers,
            classes: self.splits.train.classes.len(),
        };
        let precision = cfg.train.precision;
        let raw_model = self.model().valid();
        let reporter = &mut FirstSkips {
            inner: self.reporter.as_mut(),
            known: &mut self.state.decode_failures,
            epoch: this_epoch,
        };
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
    pub(super) fn end_epoch(
        &mut self,
        plan: &EpochPlan,
        stats: EpochStats,
        raw: TopK,
        ema: Option<TopK>,
    ) -> Result<()> {
        let row = EpochRow {
            epoch: plan.epoch + 1,
            stage: plan.stage.index + 1,
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
            images: stats.images,
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
        self.report_decode_failures(plan.epoch)?;
        let dir = self.folder.path();
        output::append_log(dir, &output::epoch_record(&row, self.state.global_step))?;
        self.save_checkpoint()?;
        output::write_summary(dir, &self.state.history)?;
        output::write_plots(dir, &self.state.history)
    }
}
