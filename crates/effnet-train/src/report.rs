//! The one channel through which training talks to a person: the library calls a [`Reporter`]
//! and prints nothing itself; the CLI implements it (progress bar on a terminal, timm-style log
//! lines in a pipe), tests use [`Silent`] or a recorder.
//!
//! Epochs and steps are numbered from 1 everywhere a person sees them (bar, log lines,
//! `summary.csv`, `log.jsonl`).

use std::path::Path;

use crate::checkpoint::EpochRow;

/// What a run is about, reported once before the first step.
#[derive(Debug, Clone)]
pub struct RunInfo<'a> {
    /// Run folder.
    pub run_dir: &'a Path,
    /// Model name.
    pub model: &'a str,
    /// Trainable parameters.
    pub params: usize,
    /// Classes (training split).
    pub classes: usize,
    /// One-line scan report of the training split.
    pub train_report: String,
    /// One-line scan report of the validation split.
    pub val_report: String,
    /// `(epoch, step in epoch, global step)` the run resumes from (epoch 1-based; past
    /// `epochs` when the run had already finished).
    pub resumed_at: Option<(usize, usize, u64)>,
    /// Epochs of the run (the recipe's `train.epochs`).
    pub epochs: usize,
}

/// An epoch about to run.
#[derive(Debug, Clone, Copy)]
pub struct EpochStart {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Epochs in the run.
    pub epochs: usize,
    /// Optimiser steps in this epoch.
    pub steps: usize,
    /// Steps already done (a resumed epoch).
    pub done: usize,
    /// Training image size of the stage.
    pub img_size: usize,
    /// Progressive stage number (1 = the first stage).
    pub stage: usize,
}

/// One optimiser step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Epochs in the run.
    pub epochs: usize,
    /// Step within the epoch (1-based).
    pub step: usize,
    /// Steps in the epoch.
    pub steps: usize,
    /// Steps in the whole run so far.
    pub global_step: u64,
    /// Loss of this step.
    pub loss: f64,
    /// Mean loss over this epoch's steps so far.
    pub loss_avg: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Training throughput of this epoch so far (images per second).
    pub img_per_sec: f64,
    /// Seconds this step waited for its batch from the loader.
    pub data_secs: f64,
    /// Images in the batch.
    pub batch: usize,
}

/// Evaluation progress (`done` of `total` batches of the `which` weights, "raw" or "EMA").
#[derive(Debug, Clone, Copy)]
pub struct EvalProgress<'a> {
    /// Epoch number (1-based), or 0 outside training.
    pub epoch: usize,
    /// Which weights: "raw" or "EMA".
    pub which: &'a str,
    /// Batches done.
    pub done: usize,
    /// Batches in total.
    pub total: usize,
}

/// Receives everything a person may want to see while training or evaluating. Every method has
/// an empty default, so an implementation picks what it shows.
pub trait Reporter {
    /// Before the first step.
    fn run_started(&mut self, _info: &RunInfo<'_>) {}
    /// Before each epoch's first step.
    fn epoch_started(&mut self, _e: &EpochStart) {}
    /// After each optimiser step.
    fn step(&mut self, _s: &StepInfo) {}
    /// After each evaluation batch.
    fn eval_progress(&mut self, _p: &EvalProgress<'_>) {}
    /// After an epoch's evaluation (the row written to `summary.csv`).
    fn epoch_finished(&mut self, _row: &EpochRow, _epochs: usize, _new_best: bool) {}
    /// A recoverable problem (a corrupt image skipped).
    fn warning(&mut self, _message: &str) {}
    /// A file that could not be decoded was left out (once per file and run in training).
    fn skipped(&mut self, path: &Path, reason: &str) {
        self.warning(&format!("skipped {}: {reason}", path.display()));
    }
    /// The run stopped early on request, after writing a checkpoint.
    fn stopped(&mut self, _epoch: usize, _step: usize, _global_step: u64, _run_dir: &Path) {}
}

/// A reporter that shows nothing (library use, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {}
