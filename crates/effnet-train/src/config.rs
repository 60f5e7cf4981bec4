//! The training recipe as data: one TOML file ([`TrainConfig`]) holds every knob, any of which a
//! flag can override (`--set optim.lr_base=0.01`), and the resolved file saved in the run folder
//! is itself a valid recipe, so a run can always be repeated or resumed from its own folder.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// A whole training recipe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Experiment name: the run folder under `--output` (empty: `<model>-<date>-<time>`).
    #[serde(default)]
    pub name: String,
    /// Base seed for initialisation, data order, augmentation, mixup and stochastic depth.
    #[serde(default)]
    pub seed: u64,
    /// Device name for [`effnet_model::parse_device`] (`cpu`, `wgpu`, `cuda:0`).
    #[serde(default = "default_device")]
    pub device: String,
    /// Which network and how it starts.
    pub model: ModelSection,
    /// Where the images are and how they are prepared.
    #[serde(default)]
    pub data: DataSection,
    /// Loop length, batch size, losses.
    pub train: TrainSection,
    /// Optimiser.
    pub optim: OptimSection,
    /// Learning-rate schedule.
    #[serde(default)]
    pub sched: SchedSection,
    /// Progressive learning (image size and regularisation per stage).
    #[serde(default)]
    pub progressive: ProgressiveSection,
    /// Weight EMA.
    #[serde(default)]
    pub ema: EmaSection,
    /// Checkpoint cadence and retention.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Hooks for tests: simulate a kill or a divergence at a given step.
    #[serde(default)]
    pub testing: TestingSection,
}

fn default_device() -> String {
    "cpu".into()
}

/// Network choice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Preset name (`efficientnetv2_s`) or path to a model TOML.
    pub arch: String,
    /// Start from these native weights (`.bpk`) instead of random init (fine-tuning).
    #[serde(default)]
    pub init_weights: String,
    /// Output classes; 0 takes the number of class folders in the training set.
    #[serde(default)]
    pub num_classes: usize,
    /// Maximum stochastic-depth rate (last block); negative keeps the model file's value.
    #[serde(default = "neg_one")]
    pub drop_path: f64,
}

fn neg_one() -> f64 {
    -1.0
}

/// Data layout and augmentation that is not progressive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training split folder, relative to `--data`.
    #[serde(default = "default_train_dir")]
    pub train_dir: String,
    /// Validation split folder, relative to `--data`.
    #[serde(default = "default_val_dir")]
    pub val_dir: String,
    /// Loader threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Resize filter for training crops and evaluation (`bilinear`, `bicubic`, ...).
    #[serde(default = "default_interp")]
    pub interpolation: String,
    /// Normalisation mean (0..1 scale).
    #[serde(default = "imagenet_mean")]
    pub mean: [f32; 3],
    /// Normalisation std (0..1 scale).
    #[serde(default = "imagenet_std")]
    pub std: [f32; 3],
    /// RandomResizedCrop area range.
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    /// RandomResizedCrop aspect-ratio range.
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
    /// Horizontal flip probability.
    #[serde(default = "half")]
    pub hflip: f64,
    /// RandAugment flavour: `automl` (magnitude from the progressive schedule), a timm string
    /// such as `rand-m9-mstd0.5` (its magnitude is replaced by the schedule's), or `none`.
    #[serde(default = "default_ra")]
    pub randaugment: String,
    /// RandAugment ops per image (automl `ra_num_layers`).
    #[serde(default = "two")]
    pub randaugment_layers: usize,
    /// Evaluation resolution; 0 takes the model's `eval_size`.
    #[serde(default)]
    pub eval_size: usize,
    /// Evaluation center-crop fraction (1.0 = whole image, as EfficientNetV2 evaluates).
    #[serde(default = "one")]
    pub crop_pct: f64,
    /// Evaluation batch size; 0 uses the training batch size.
    #[serde(default)]
    pub eval_batch_size: usize,
}

fn default_train_dir() -> String {
    "train".into()
}
fn default_val_dir() -> String {
    "val".into()
}
fn default_workers() -> usize {
    2
}
fn default_interp() -> String {
    "bilinear".into()
}
fn imagenet_mean() -> [f32; 3] {
    effnet_data::IMAGENET_MEAN
}
fn imagenet_std() -> [f32; 3] {
    effnet_data::IMAGENET_STD
}
fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn default_ratio() -> [f64; 2] {
    [0.75, 4.0 / 3.0]
}
fn half() -> f64 {
    0.5
}
fn default_ra() -> String {
    "automl".into()
}
fn two() -> usize {
    2
}
fn one() -> f64 {
    1.0
}

impl Default for DataSection {
    fn default() -> Self {
        toml::from_str("").expect("DataSection defaults")
    }
}

/// Loop length and losses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Batch size (per stage sizes may override it, see [`ProgressiveSection::batch_sizes`]).
    pub batch_size: usize,
    /// Label smoothing of the targets.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Also use CutMix with the stage's mixup alpha (automl uses one alpha for both).
    #[serde(default)]
    pub cutmix: bool,
    /// Probability of mixing a batch at all.
    #[serde(default = "one")]
    pub mixup_prob: f64,
    /// Probability of CutMix instead of Mixup when both are on.
    #[serde(default = "half")]
    pub mixup_switch_prob: f64,
    /// Global gradient-norm clipping threshold (0 = off).
    #[serde(default)]
    pub clip_grad: f64,
    /// Limit the steps of every epoch (0 = whole epoch); for quick tests and smoke runs.
    #[serde(default)]
    pub max_steps_per_epoch: usize,
}

/// Which optimiser.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// RMSProp with TensorFlow 1 semantics (automl recipe).
    Rmsproptf,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with Nesterov momentum, no dampening.
    Sgd,
}

/// Optimiser hyper-parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Which optimiser.
    pub name: OptimKind,
    /// Learning rate for a batch of `lr_base_batch` images; scaled linearly with the batch.
    pub lr_base: f64,
    /// Reference batch size of `lr_base`.
    #[serde(default = "default_lr_batch")]
    pub lr_base_batch: usize,
    /// Weight decay (L2 for RMSProp/SGD as in TF, decoupled for AdamW).
    #[serde(default)]
    pub weight_decay: f64,
    /// Exempt BatchNorm parameters and biases from weight decay.
    #[serde(default = "yes")]
    pub no_decay_bn_bias: bool,
    /// Momentum (RMSProp, SGD).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// RMSProp mean-square decay (TF `decay`, PyTorch `alpha`).
    #[serde(default = "default_momentum")]
    pub rho: f64,
    /// Epsilon (inside the square root for RMSProp-TF).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Adam betas.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Nesterov momentum for SGD.
    #[serde(default = "yes")]
    pub nesterov: bool,
}

fn default_lr_batch() -> usize {
    256
}
fn yes() -> bool {
    true
}
fn default_momentum() -> f64 {
    0.9
}
fn default_eps() -> f64 {
    1e-3
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}

/// Learning-rate schedule kind.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SchedKind {
    /// Linear warmup then cosine to `min_lr`.
    #[default]
    Cosine,
    /// Linear warmup then `decay_rate` every `decay_epochs` (staircase), as automl.
    Exponential,
    /// Linear warmup then constant.
    Constant,
}

/// Learning-rate schedule, stepped every iteration on the fractional epoch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedSection {
    /// Shape.
    #[serde(default)]
    pub name: SchedKind,
    /// Linear warmup length in epochs.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// LR at the start of warmup.
    #[serde(default)]
    pub warmup_lr: f64,
    /// Floor of the cosine.
    #[serde(default)]
    pub min_lr: f64,
    /// Staircase period in epochs (exponential).
    #[serde(default = "default_decay_epochs")]
    pub decay_epochs: f64,
    /// Staircase factor (exponential).
    #[serde(default = "default_decay_rate")]
    pub decay_rate: f64,
}

fn default_decay_epochs() -> f64 {
    2.4
}
fn default_decay_rate() -> f64 {
    0.97
}

impl Default for SchedSection {
    fn default() -> Self {
        toml::from_str("").expect("SchedSection defaults")
    }
}

/// How the progressive stages are computed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProgressiveMode {
    /// One stage at the maximum of every range.
    #[default]
    Off,
    /// Paper Algorithm 1: every quantity linear from min (stage 0) to max (last stage).
    Paper,
    /// Google's released code: size `int(min + (max-min)(i+1)/N)`, RandAugment
    /// `linspace(min, max, N)`, mixup `linspace(0, max, N)`, dropout constant at max.
    Automl,
}

/// Progressive learning ranges (EfficientNetV2 Table 6).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProgressiveSection {
    /// Schedule formula.
    #[serde(default)]
    pub mode: ProgressiveMode,
    /// Number of stages.
    #[serde(default = "one_usize")]
    pub stages: usize,
    /// Training image size [min, max].
    #[serde(default = "default_sizes")]
    pub size: [usize; 2],
    /// RandAugment magnitude [min, max].
    #[serde(default = "default_ra_range")]
    pub randaugment: [f64; 2],
    /// Mixup alpha [min, max].
    #[serde(default)]
    pub mixup: [f64; 2],
    /// Classifier dropout [min, max].
    #[serde(default)]
    pub dropout: [f64; 2],
    /// Batch size per stage (empty: `train.batch_size` throughout).
    #[serde(default)]
    pub batch_sizes: Vec<usize>,
}

fn one_usize() -> usize {
    1
}
fn default_sizes() -> [usize; 2] {
    [128, 224]
}
fn default_ra_range() -> [f64; 2] {
    [5.0, 15.0]
}

impl Default for ProgressiveSection {
    fn default() -> Self {
        toml::from_str("").expect("ProgressiveSection defaults")
    }
}

/// Weight EMA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmaSection {
    /// Keep an EMA copy of the weights and evaluate it beside the raw weights.
    #[serde(default)]
    pub enabled: bool,
    /// Decay per step.
    #[serde(default = "default_ema_decay")]
    pub decay: f64,
    /// timm-style warmup: decay `min(decay, 1 - (1 + step)^-power)` so early averages forget the
    /// random init quickly.
    #[serde(default = "yes")]
    pub warmup: bool,
    /// Warmup power (timm uses 2/3 for long runs, 3/4 for short ones).
    #[serde(default = "default_ema_power")]
    pub warmup_power: f64,
}

fn default_ema_decay() -> f64 {
    0.9998
}
fn default_ema_power() -> f64 {
    0.75
}

impl Default for EmaSection {
    fn default() -> Self {
        toml::from_str("").expect("EmaSection defaults")
    }
}

/// Checkpoint cadence.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Also checkpoint every this many optimiser steps (0: only at epoch ends).
    #[serde(default)]
    pub every_steps: usize,
    /// Step checkpoints kept (the best weights are kept separately).
    #[serde(default = "default_keep")]
    pub keep_last: usize,
}

fn default_keep() -> usize {
    2
}

impl Default for CheckpointSection {
    fn default() -> Self {
        toml::from_str("").expect("CheckpointSection defaults")
    }
}

/// Test hooks. Zero disables each.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TestingSection {
    /// Stop like Ctrl-C (checkpoint, exit) after this many global steps.
    #[serde(default)]
    pub stop_after_steps: usize,
    /// Replace the loss by NaN at this global step (1-based), to exercise divergence handling.
    #[serde(default)]
    pub nan_at_step: usize,
}

impl TrainConfig {
    /// Reads a recipe, applies `key=value` overrides (dotted keys, TOML literal values) and checks
    /// it. Unknown keys and impossible values are errors naming the key and the file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read training config {}", path.display()))?;
        Self::from_toml_with(&text, overrides)
            .with_context(|| format!("in training config {}", path.display()))
    }

    /// [`load`](Self::load) from text.
    pub fn from_toml_with(text: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text).context("not valid TOML")?;
        for ov in overrides {
            apply_override(&mut value, ov)?;
        }
        let cfg: TrainConfig = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))
            .context("invalid training config")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises the resolved recipe (saved as `config.toml` in every run folder).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot serialise the training config")
    }

    /// Rejects values that cannot train, with the offending key in the message.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs == 0 {
            bail!("train.epochs must be >= 1");
        }
        if t.batch_size == 0 {
            bail!("train.batch_size must be >= 1");
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            bail!(
                "train.label_smoothing = {} is outside [0, 1)",
                t.label_smoothing
            );
        }
        for (k, v) in [
            ("train.mixup_prob", t.mixup_prob),
            ("train.mixup_switch_prob", t.mixup_switch_prob),
            ("data.hflip", self.data.hflip),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{k} = {v} is outside [0, 1]");
            }
        }
        if !(t.clip_grad >= 0.0 && t.clip_grad.is_finite()) {
            bail!("train.clip_grad = {} must be >= 0", t.clip_grad);
        }
        let o = &self.optim;
        if !(o.lr_base > 0.0 && o.lr_base.is_finite()) {
            bail!("optim.lr_base = {} must be positive", o.lr_base);
        }
        if o.lr_base_batch == 0 {
            bail!("optim.lr_base_batch must be >= 1");
        }
        if !(o.weight_decay >= 0.0 && o.weight_decay.is_finite()) {
            bail!("optim.weight_decay = {} must be >= 0", o.weight_decay);
        }
        for (k, v) in [("optim.momentum", o.momentum), ("optim.rho", o.rho)] {
            if !(0.0..1.0).contains(&v) {
                bail!("{k} = {v} is outside [0, 1)");
            }
        }
        if !positive(o.eps) {
            bail!("optim.eps = {} must be positive", o.eps);
        }
        if !o.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            bail!("optim.betas = {:?} must be in [0, 1)", o.betas);
        }
        let s = &self.sched;
        if !(s.warmup_epochs >= 0.0 && s.warmup_epochs < t.epochs as f64) {
            bail!(
                "sched.warmup_epochs = {} must be in [0, train.epochs = {})",
                s.warmup_epochs,
                t.epochs
            );
        }
        if !(positive(s.decay_epochs) && positive(s.decay_rate) && s.decay_rate <= 1.0) {
            bail!("sched.decay_epochs must be > 0 and sched.decay_rate in (0, 1]");
        }
        if s.min_lr < 0.0 || s.warmup_lr < 0.0 {
            bail!("sched.min_lr and sched.warmup_lr must be >= 0");
        }
        let p = &self.progressive;
        if p.stages == 0 || p.stages > t.epochs.min(1000) {
            bail!(
                "progressive.stages = {} must be in [1, min(train.epochs = {}, 1000)]",
                p.stages,
                t.epochs
            );
        }
        if p.size[0] < 8 || p.size[0] > p.size[1] {
            bail!(
                "progressive.size = {:?} must be [min, max] with 8 <= min <= max",
                p.size
            );
        }
        for (k, r) in [
            ("progressive.randaugment", p.randaugment),
            ("progressive.mixup", p.mixup),
        ] {
            if !(r[0] >= 0.0 && r[0] <= r[1]) {
                bail!("{k} = {r:?} must be [min, max] with 0 <= min <= max");
            }
        }
        if !(p.dropout[0] >= 0.0 && p.dropout[0] <= p.dropout[1] && p.dropout[1] < 1.0) {
            bail!(
                "progressive.dropout = {:?} must be [min, max] in [0, 1)",
                p.dropout
            );
        }
        if !p.batch_sizes.is_empty()
            && (p.batch_sizes.len() != p.stages || p.batch_sizes.contains(&0))
        {
            bail!(
                "progressive.batch_sizes has {} entries (all >= 1 needed) but there are {} stages",
                p.batch_sizes.len(),
                p.stages
            );
        }
        if !(0.0..1.0).contains(&self.ema.decay) || !positive(self.ema.warmup_power) {
            bail!(
                "ema.decay = {} must be in [0, 1) and ema.warmup_power > 0",
                self.ema.decay
            );
        }
        if self.checkpoint.keep_last == 0 {
            bail!("checkpoint.keep_last must be >= 1 (resuming needs one)");
        }
        let d = &self.data;
        if !(d.scale[0] > 0.0 && d.scale[0] <= d.scale[1] && d.scale[1] <= 1.0) {
            bail!("data.scale = {:?} must be 0 < min <= max <= 1", d.scale);
        }
        if !(d.ratio[0] > 0.0 && d.ratio[0] <= d.ratio[1]) {
            bail!("data.ratio = {:?} must be 0 < min <= max", d.ratio);
        }
        if !(d.crop_pct > 0.0 && d.crop_pct <= 1.0) {
            bail!("data.crop_pct = {} must be in (0, 1]", d.crop_pct);
        }
        if d.std.iter().any(|s| *s <= 0.0) {
            bail!("data.std = {:?} must be positive", d.std);
        }
        // Bounded sizes, classes, host batch and the memory of training one image.
        let batch =
            (p.batch_sizes.iter()).fold(t.batch_size.max(d.eval_batch_size), |a, b| a.max(*b));
        let (m, size) = (&self.model, p.size[1].max(d.eval_size));
        effnet_model::check_training_input(&m.arch, m.num_classes, batch, size)
            .map_err(|e| anyhow::anyhow!("progressive.size / data.eval_size / model: {e}"))?;
        let mut pre = effnet_data::Preprocess::imagenet(size, d.crop_pct, Default::default());
        (pre.mean, pre.std) = (d.mean, d.std);
        pre.validate()
            .map_err(|e| anyhow::anyhow!("data.crop_pct / data.mean / data.std: {e}"))?;
        if d.workers == 0 {
            bail!("data.workers must be >= 1");
        }
        crate::data::parse_interpolation(&d.interpolation)?;
        crate::data::parse_randaugment(&d.randaugment, d.randaugment_layers)?;
        if self.model.drop_path >= 1.0 {
            bail!("model.drop_path = {} must be < 1", self.model.drop_path);
        }
        effnet_model::parse_device(&self.device).map_err(|e| anyhow::anyhow!("device: {e}"))?;
        Ok(())
    }
}

/// Strictly positive and finite (NaN fails too).
fn positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

/// Sets `a.b.c = value` in a TOML table; `value` is a TOML literal, or a bare string.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .with_context(|| format!("override '{assignment}' is not key=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("override '{assignment}' has an empty key");
    }
    let raw = raw.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .with_context(|| format!("override '{key}': '{p}' is not a section"))?;
    }
    // Keep floats floats: `--set optim.lr_base=1` must not become an integer where a float is due.
    let last = parts[parts.len() - 1];
    let value = match (cur.get(last), value) {
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (_, v) => v,
    };
    cur.insert(last.to_string(), value);
    Ok(())
}
