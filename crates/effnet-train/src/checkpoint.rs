//! Resumable checkpoints. Each one is a folder (`checkpoints/ckpt-<step>/`) with the model, the
//! EMA model, the optimiser state and `state.json` (epoch, step, stage, EMA counter, best metric,
//! history). It is written under a temporary name and renamed into place, and `latest.json` is
//! replaced the same way only afterwards: a crash or a full disk at any point leaves the previous
//! checkpoint complete and still referenced.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use effnet_model::{
    EfficientNet, EfficientNetConfig, Preprocess, load_native, save_native_labeled,
};
use serde::{Deserialize, Serialize};

use crate::precision::DynamicLossScaler;

/// One row of `summary.csv` (one finished epoch).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EpochRow {
    /// Epoch number (1 = the first epoch, as in the progress bar and the logs).
    pub epoch: usize,
    /// Progressive stage number (1 = the first stage, as everywhere a person reads it).
    pub stage: usize,
    /// Training image size.
    pub img_size: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Validation loss of the raw weights.
    pub eval_loss: f64,
    /// Validation top-1 (%) of the raw weights.
    pub eval_top1: f64,
    /// Validation top-5 (%) of the raw weights.
    pub eval_top5: f64,
    /// Validation top-1 (%) of the EMA weights.
    pub ema_top1: Option<f64>,
    /// Validation top-5 (%) of the EMA weights.
    pub ema_top5: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Training throughput.
    pub img_per_sec: f64,
    /// Seconds spent in the epoch (training and evaluation).
    pub epoch_secs: f64,
    /// Training images used in the epoch (files that failed to decode are not counted).
    #[serde(default)]
    pub images: usize,
}

/// Everything besides tensors needed to continue a run exactly where it stopped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TrainState {
    /// Epoch in progress (or the next one when `step_in_epoch` is 0).
    pub epoch: usize,
    /// Optimiser steps already done in that epoch.
    pub step_in_epoch: usize,
    /// Optimiser steps done in the whole run. Every random stream (data order and augmentation,
    /// mixup, stochastic depth, dropout) is derived from `(seed, epoch, step)`, so this position
    /// *is* the RNG state.
    pub global_step: u64,
    /// Progressive stage in progress (0-based index into the schedule).
    pub stage: usize,
    /// Base seed of the run.
    pub seed: u64,
    /// EMA updates done (drives the EMA warmup).
    pub ema_updates: u64,
    /// Running sum of the training loss in the current epoch (to report a correct mean).
    pub epoch_loss_sum: f64,
    /// Best validation top-1 so far (raw or EMA); negative before the first evaluation.
    pub best_top1: f64,
    /// Epoch of the best top-1.
    pub best_epoch: Option<usize>,
    /// Whether the best weights are the EMA ones.
    pub best_is_ema: bool,
    /// Finished epochs.
    pub history: Vec<EpochRow>,
    /// Loss-scaler state of an f16 run (absent otherwise, and in checkpoints of older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<DynamicLossScaler>,
    /// Files that passed the scan but failed to decode, each with the epoch (0-based) it failed
    /// in: dropped from every later epoch, so a resumed run sees the same data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_failures: Vec<(PathBuf, usize)>,
}

/// A checkpoint read back from disk.
pub struct Loaded {
    /// Training weights (on the requested device).
    pub model: EfficientNet,
    /// EMA weights, if the run keeps them.
    pub ema: Option<EfficientNet>,
    /// Optimiser with its state.
    pub optim: ModuleOptimizer,
    /// Position and history.
    pub state: TrainState,
    /// Folder it came from.
    pub dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Latest {
    checkpoint: String,
    global_step: u64,
}

/// Writes `bytes` to `path` atomically and durably ([`effnet_data::fsutil::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    effnet_data::fsutil::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {} (disk full or read-only?)", path.display()))
}

/// Everything a checkpoint contains, borrowed from the trainer.
pub struct Snapshot<'a> {
    /// Inference copy of the training weights.
    pub model: &'a EfficientNet,
    /// EMA weights.
    pub ema: Option<&'a EfficientNet>,
    /// Optimiser.
    pub optim: &'a ModuleOptimizer,
    /// Position.
    pub state: &'a TrainState,
    /// Model description stored with the weights.
    pub config: &'a EfficientNetConfig,
    /// Preprocessing stored with the weights.
    pub preprocess: &'a Preprocess,
    /// Class names stored with the weights (so `effnet infer --weights` prints them).
    pub classes: &'a [String],
}

/// Writes a checkpoint of `snap` into `run/checkpoints/ckpt-<step>` and points `latest.json` at
/// it; then deletes all but the newest `keep_last` checkpoints.
pub fn save(run: &Path, snap: &Snapshot<'_>, keep_last: usize) -> Result<PathBuf> {
    let root = run.join("checkpoints");
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let name = format!("ckpt-{:08}", snap.state.global_step);
    let dir = root.join(&name);
    let tmp = root.join(format!("{name}.tmp"));
    if tmp.is_dir() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
    } else if tmp.exists() {
        fs::remove_file(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
    }
    fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let source = format!("effnet train checkpoint, step {}", snap.state.global_step);
    let labels = Some(snap.classes);
    save_native_labeled(
        &tmp.join("model.bpk"),
        snap.model,
        snap.config,
        snap.preprocess,
        &source,
        labels,
    )
    .context("saving model weights")?;
    if let Some(ema) = snap.ema {
        save_native_labeled(
            &tmp.join("ema.bpk"),
            ema,
            snap.config,
            snap.preprocess,
            &source,
            labels,
        )
        .context("saving EMA weights")?;
    }
    snap.optim
        .save(tmp.join("optim.bpk"))
        .map_err(|e| anyhow::anyhow!("saving optimiser state in {}: {e:?}", tmp.display()))?;
    write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(snap.state)?.as_bytes(),
    )?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    effnet_data::fsutil::commit(&tmp, &dir)
        .with_context(|| format!("cannot move {} into place", dir.display()))?;
    let latest = Latest {
        checkpoint: format!("checkpoints/{name}"),
        global_step: snap.state.global_step,
    };
    write_atomic(
        &run.join("latest.json"),
        serde_json::to_string_pretty(&latest)?.as_bytes(),
    )
    .context(
        "checkpoint written but latest.json not updated; the previous checkpoint stays current",
    )?;
    prune(&root, &name, keep_last);
    Ok(dir)
}

fn prune(root: &Path, current: &str, keep_last: usize) {
    let Ok(rd) = fs::read_dir(root) else { return };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt-") && !n.ends_with(".tmp"))
        .collect();
    names.sort();
    let n = names.len();
    for old in names.into_iter().take(n.saturating_sub(keep_last)) {
        if old != current {
            let _ = fs::remove_dir_all(root.join(old));
        }
    }
}

/// The checkpoint folder `latest.json` of `run` points at.
pub fn latest(run: &Path) -> Result<PathBuf> {
    let p = run.join("latest.json");
    let text = fs::read_to_string(&p).with_context(|| {
        format!(
            "{} has no checkpoint to resume from ({} missing)",
            run.display(),
            p.display()
        )
    })?;
    let l: Latest =
        serde_json::from_str(&text).with_context(|| format!("corrupt {}", p.display()))?;
    let dir = run.join(&l.checkpoint);
    if !dir.join("state.json").is_file() {
        bail!(
            "{} points at {}, which is incomplete",
            p.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// Loads the latest checkpoint of `run` onto the inference `device` (call `Module::train` to
/// train it); `optim` is a freshly built optimiser of
/// the same recipe whose state gets replaced.
pub fn load(run: &Path, device: &Device, optim: ModuleOptimizer) -> Result<Loaded> {
    let dir = latest(run)?;
    let state_path = dir.join("state.json");
    let state: TrainState = serde_json::from_str(
        &fs::read_to_string(&state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?,
    )
    .with_context(|| format!("corrupt {}", state_path.display()))?;
    let model = load_native(&dir.join("model.bpk"), device)
        .with_context(|| format!("loading checkpoint weights from {}", dir.display()))?
        .model;
    let ema_path = dir.join("ema.bpk");
    let ema = if ema_path.is_file() {
        Some(
            load_native(&ema_path, device)
                .with_context(|| format!("loading EMA weights from {}", dir.display()))?
                .model,
        )
    } else {
        None
    };
    let optim = optim
        .load(dir.join("optim.bpk"))
        .map_err(|e| anyhow::anyhow!("loading optimiser state from {}: {e:?}", dir.display()))?;
    Ok(Loaded {
        model,
        ema,
        optim,
        state,
        dir,
    })
}

/// Owns everything the run folder keeps of the weights (like timm's `CheckpointSaver`): resumable
/// checkpoints with pruning, and `best.bpk`, replaced whenever an epoch beats the best top-1.
pub struct Checkpointer {
    run_dir: PathBuf,
    keep_last: usize,
    config: EfficientNetConfig,
    preprocess: Preprocess,
    classes: Vec<String>,
}

impl Checkpointer {
    /// Saves into `run_dir`, keeping `keep_last` checkpoints; every weights file carries `config`,
    /// `preprocess` and the class names.
    pub fn new(
        run_dir: &Path,
        keep_last: usize,
        config: EfficientNetConfig,
        preprocess: Preprocess,
        classes: Vec<String>,
    ) -> Self {
        Self {
            run_dir: run_dir.to_path_buf(),
            keep_last,
            config,
            preprocess,
            classes,
        }
    }

    /// Name of the model the weights are saved as.
    pub fn model_name(&self) -> &str {
        &self.config.name
    }

    /// Writes a resumable checkpoint (inference copies of the weights) and prunes old ones.
    pub fn save(
        &self,
        model: &EfficientNet,
        ema: Option<&EfficientNet>,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf> {
        let snap = Snapshot {
            model,
            ema,
            optim,
            state,
            config: &self.config,
            preprocess: &self.preprocess,
            classes: &self.classes,
        };
        save(&self.run_dir, &snap, self.keep_last)
            .with_context(|| format!("writing a checkpoint in {}", self.run_dir.display()))
    }

    /// Records `row` in the best-metric bookkeeping of `state` and rewrites `best.bpk` when it
    /// beats the best top-1 so far (the EMA weights win ties they strictly beat raw on). Returns
    /// whether it did.
    pub fn update_best(
        &self,
        state: &mut TrainState,
        row: &EpochRow,
        raw: &EfficientNet,
        ema: Option<&EfficientNet>,
    ) -> Result<bool> {
        let (top1, is_ema, weights) = match (row.ema_top1, ema) {
            (Some(e), Some(m)) if e > row.eval_top1 => (e, true, m),
            _ => (row.eval_top1, false, raw),
        };
        if top1 <= state.best_top1 {
            return Ok(false);
        }
        state.best_top1 = top1;
        state.best_epoch = Some(row.epoch);
        state.best_is_ema = is_ema;
        let source = format!(
            "effnet train: best {} weights, epoch {}, top-1 {top1:.2}",
            if is_ema { "EMA" } else { "raw" },
            row.epoch
        );
        save_native_labeled(
            &self.run_dir.join("best.bpk"),
            weights,
            &self.config,
            &self.preprocess,
            &source,
            Some(&self.classes),
        )
        .context("writing best.bpk")?;
        Ok(true)
    }
}
