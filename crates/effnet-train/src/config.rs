//! The training recipe as data: one TOML file ([`TrainConfig`]) holds every knob, any of which a
//! flag can override (`--set optim.lr_base=0.01`), and the resolved file saved in the run folder
//! is itself a valid recipe, so a run can always be repeated or resumed from its own folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use effnet_data::{Interpolation, RandAugment};
use effnet_model::ComputePrecision;
use serde::{Deserialize, Serialize};

use crate::precision::LossScaleConfig;

/// A whole training recipe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Experiment name: the run folder under `--output` (absent: `<model>-<date>-<time>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
}

fn default_device() -> String {
    "cpu".into()
}

/// Network choice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Preset name (`efficientnetv2_s`) or path to a model TOML (relative to the recipe file).
    pub arch: String,
    /// Start from these weights instead of random init (fine-tuning): a `.bpk` (relative to the
    /// recipe file), `bundled` (the ImageNet Lite0 of the `effnet` crate) or `hf-hub:owner/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<String>,
    /// Output classes; absent takes the number of class folders in the training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
    /// Maximum stochastic-depth rate (last block); absent keeps the model file's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_path: Option<f64>,
}

/// Which RandAugment policy the training transform applies (`data.randaugment`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(try_from = "String", into = "String")]
pub enum RandAugmentSpec {
    /// No RandAugment.
    None,
    /// Google automl's policy; its magnitude comes from the progressive schedule.
    #[default]
    Automl,
    /// A timm string such as `rand-m9-mstd0.5` (checked when parsed); the schedule replaces the
    /// magnitude.
    Timm(String),
}

impl TryFrom<String> for RandAugmentSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.trim() {
            "" | "none" => Ok(Self::None),
            "automl" => Ok(Self::Automl),
            t if t.starts_with("rand") => RandAugment::parse_timm(t)
                .map(|_| Self::Timm(t.to_string()))
                .map_err(|e| format!("data.randaugment = '{t}': {e}")),
            other => Err(format!(
                "data.randaugment = '{other}': expected none, automl or a timm 'rand-m9-...' string"
            )),
        }
    }
}

impl From<RandAugmentSpec> for String {
    fn from(s: RandAugmentSpec) -> String {
        match s {
            RandAugmentSpec::None => "none".into(),
            RandAugmentSpec::Automl => "automl".into(),
            RandAugmentSpec::Timm(t) => t,
        }
    }
}

impl RandAugmentSpec {
    /// The augmentation with `layers` ops per image (magnitude set per stage later).
    pub fn build(&self, layers: usize) -> Option<RandAugment> {
        match self {
            Self::None => None,
            Self::Automl => Some(RandAugment::automl(layers, 0.0)),
            // Validated when the recipe was parsed.
            Self::Timm(t) => RandAugment::parse_timm(t).ok(),
        }
    }
}

/// Data layout and augmentation that is not progressive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Training split folder, relative to `--data`.
    pub train_dir: String,
    /// Validation split folder, relative to `--data`.
    pub val_dir: String,
    /// Loader threads.
    pub workers: usize,
    /// Resize filter for training crops and evaluation.
    pub interpolation: Interpolation,
    /// Normalisation mean (0..1 scale).
    pub mean: [f32; 3],
    /// Normalisation std (0..1 scale).
    pub std: [f32; 3],
    /// RandomResizedCrop area range.
    pub scale: [f64; 2],
    /// RandomResizedCrop aspect-ratio range.
    pub ratio: [f64; 2],
    /// Horizontal flip probability.
    pub hflip: f64,
    /// RandAugment flavour: `automl`, a timm string such as `rand-m9-mstd0.5`, or `none`.
    pub randaugment: RandAugmentSpec,
    /// RandAugment ops per image (automl `ra_num_layers`).
    pub randaugment_layers: usize,
    /// Evaluation resolution; absent takes the model's `eval_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_size: Option<usize>,
    /// Evaluation center-crop fraction (1.0 = whole image, as EfficientNetV2 evaluates).
    pub crop_pct: f64,
    /// Evaluation batch size; absent uses the training batch size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_batch_size: Option<usize>,
    /// Probability of random erasing after normalisation (timm's `--reprob`, mode `pixel`).
    pub reprob: f64,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            train_dir: "train".into(),
            val_dir: "val".into(),
            workers: 2,
            interpolation: Interpolation::Bilinear,
            mean: effnet_data::IMAGENET_MEAN,
            std: effnet_data::IMAGENET_STD,
            scale: [0.08, 1.0],
            ratio: [0.75, 4.0 / 3.0],
            hflip: 0.5,
            randaugment: RandAugmentSpec::Automl,
            randaugment_layers: 2,
            eval_size: None,
            crop_pct: 1.0,
            eval_batch_size: None,
            reprob: 0.0,
        }
    }
}

/// Loop length and losses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Batch size (per stage sizes may override it, see [`ProgressiveSection::batch_sizes`]).
    pub batch_size: usize,
    /// Label smoothing of the targets.
    pub label_smoothing: f64,
    /// Also use CutMix with the stage's mixup alpha (automl uses one alpha for both).
    pub cutmix: bool,
    /// Probability of mixing a batch at all.
    pub mixup_prob: f64,
    /// Probability of CutMix instead of Mixup when both are on.
    pub mixup_switch_prob: f64,
    /// Global gradient-norm clipping threshold (0 = off).
    pub clip_grad: f64,
    /// Batches whose gradients are summed (averaged) before each optimiser step (timm's
    /// `--grad-accum-steps`): the effective batch is `batch_size × grad_accum_steps`.
    pub grad_accum_steps: usize,
    /// Limit the steps of every epoch (absent = whole epoch); for quick tests and smoke runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps_per_epoch: Option<usize>,
    /// Compute precision of forward and backward (`f32`, `bf16`, `f16`); weights, optimiser
    /// state, BatchNorm and the loss stay f32 (see [`effnet_model::precision`]).
    pub precision: ComputePrecision,
    /// Dynamic loss scaling, used when `precision = "f16"`.
    pub loss_scale: LossScaleConfig,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 128,
            label_smoothing: 0.0,
            cutmix: false,
            mixup_prob: 1.0,
            mixup_switch_prob: 0.5,
            clip_grad: 0.0,
            grad_accum_steps: 1,
            max_steps_per_epoch: None,
            precision: ComputePrecision::F32,
            loss_scale: LossScaleConfig::default(),
        }
    }
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
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    /// Which optimiser.
    pub name: OptimKind,
    /// Absolute peak learning rate (timm `--lr`); when set, `lr_base` is not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Learning rate for a batch of `lr_base_batch` images; scaled linearly with the batch
    /// (timm `--lr-base`).
    pub lr_base: f64,
    /// Reference batch size of `lr_base`.
    pub lr_base_batch: usize,
    /// Weight decay (L2 for RMSProp/SGD as in TF, decoupled for AdamW).
    pub weight_decay: f64,
    /// Exempt BatchNorm parameters and biases from weight decay.
    pub no_decay_bn_bias: bool,
    /// Momentum (RMSProp, SGD).
    pub momentum: f64,
    /// RMSProp mean-square decay (TF `decay`, PyTorch `alpha`).
    pub rho: f64,
    /// Epsilon (inside the square root for RMSProp-TF).
    pub eps: f64,
    /// Adam betas.
    pub betas: [f64; 2],
    /// Nesterov momentum for SGD.
    pub nesterov: bool,
}

impl Default for OptimSection {
    fn default() -> Self {
        Self {
            name: OptimKind::Rmsproptf,
            lr: None,
            lr_base: 0.016,
            lr_base_batch: 256,
            weight_decay: 0.0,
            no_decay_bn_bias: true,
            momentum: 0.9,
            rho: 0.9,
            eps: 1e-3,
            betas: [0.9, 0.999],
            nesterov: true,
        }
    }
}

impl OptimSection {
    /// Peak learning rate for a batch of `batch_size`: `lr` as is, else `lr_base` scaled
    /// linearly by `batch_size / lr_base_batch`.
    pub fn peak_lr(&self, batch_size: usize) -> f64 {
        // The same expression as `schedule::scaled_lr` (config must not import schedule).
        self.lr
            .unwrap_or(self.lr_base * batch_size as f64 / self.lr_base_batch as f64)
    }
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
#[serde(deny_unknown_fields, default)]
pub struct SchedSection {
    /// Shape.
    pub name: SchedKind,
    /// Linear warmup length in epochs.
    pub warmup_epochs: f64,
    /// LR at the start of warmup.
    pub warmup_lr: f64,
    /// Floor of the cosine.
    pub min_lr: f64,
    /// Staircase period in epochs (exponential).
    pub decay_epochs: f64,
    /// Staircase factor (exponential).
    pub decay_rate: f64,
}

impl Default for SchedSection {
    fn default() -> Self {
        Self {
            name: SchedKind::Cosine,
            warmup_epochs: 0.0,
            warmup_lr: 0.0,
            min_lr: 0.0,
            decay_epochs: 2.4,
            decay_rate: 0.97,
        }
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
#[serde(deny_unknown_fields, default)]
pub struct ProgressiveSection {
    /// Schedule formula.
    pub mode: ProgressiveMode,
    /// Number of stages.
    pub stages: usize,
    /// Training image size [min, max].
    pub size: [usize; 2],
    /// RandAugment magnitude [min, max].
    pub randaugment: [f64; 2],
    /// Mixup alpha [min, max].
    pub mixup: [f64; 2],
    /// Classifier dropout [min, max].
    pub dropout: [f64; 2],
    /// Batch size per stage (empty: `train.batch_size` throughout).
    pub batch_sizes: Vec<usize>,
}

impl Default for ProgressiveSection {
    fn default() -> Self {
        Self {
            mode: ProgressiveMode::Off,
            stages: 1,
            size: [128, 224],
            randaugment: [5.0, 15.0],
            mixup: [0.0, 0.0],
            dropout: [0.0, 0.0],
            batch_sizes: Vec::new(),
        }
    }
}

/// Weight EMA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmaSection {
    /// Keep an EMA copy of the weights and evaluate it beside the raw weights.
    pub enabled: bool,
    /// Decay per step.
    pub decay: f64,
    /// timm-style warmup: decay `min(decay, 1 - (1 + step)^-power)` so early averages forget the
    /// random init quickly.
    pub warmup: bool,
    /// Warmup power (timm uses 2/3 for long runs, 3/4 for short ones).
    pub warmup_power: f64,
}

impl Default for EmaSection {
    fn default() -> Self {
        Self {
            enabled: false,
            decay: 0.9998,
            warmup: true,
            warmup_power: 0.75,
        }
    }
}

/// Checkpoint cadence.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Also checkpoint every this many optimiser steps (absent: only at epoch ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every_steps: Option<usize>,
    /// Step checkpoints kept (the best weights are kept separately).
    pub keep_last: usize,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every_steps: None,
            keep_last: 2,
        }
    }
}

impl TrainConfig {
    /// Reads a recipe, resolves its relative paths (`model.arch`, `model.init_weights`) against
    /// the recipe's folder, applies `key=value` overrides (dotted keys, TOML literal values; paths
    /// in them are relative to the working directory) and checks it. Unknown keys and impossible
    /// values are errors naming the key and the file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read training config {}", path.display()))?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        Self::parse(&text, Some(base), overrides)
            .with_context(|| format!("in training config {}", path.display()))
    }

    /// The recipe for `arch` when none is given (`effnet train -m MODEL --data D`): timm
    /// train.py's defaults (SGD with Nesterov momentum 0.9, LR 0.1 per 256 images, weight decay
    /// 2e-5 off BatchNorm and biases, cosine schedule with 5 warmup epochs from 1e-5, label
    /// smoothing 0.1, batch 128, 300 epochs, no RandAugment, mixup or EMA) scaled by the model:
    /// its train and eval image sizes, eval crop, classifier dropout and stochastic depth. A run
    /// shorter than 50 epochs warms up for a tenth of it. `overrides` apply on top, as to a file.
    pub fn for_model(arch: &str, overrides: &[String]) -> Result<Self> {
        let model = effnet_model::EfficientNetConfig::from_name_or_file(arch)
            .map_err(|e| anyhow::anyhow!("model.arch = '{arch}': {e}"))?;
        let crop_pct = effnet_model::weights::default_preprocess(&model).crop_pct();
        let set = |key: &str| {
            overrides.iter().rev().find_map(|o| {
                let (k, v) = o.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let epochs: usize = set("train.epochs")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let warmup = if epochs >= 50 {
            5.0
        } else {
            epochs as f64 / 10.0
        };
        let text = format!(
            "[model]\narch = {arch}\ndrop_path = {drop_path:?}\n\
             [data]\nrandaugment = \"none\"\neval_size = {eval}\ncrop_pct = {crop_pct:?}\n\
             [train]\nepochs = {epochs}\nbatch_size = 128\nlabel_smoothing = 0.1\n\
             [optim]\nname = \"sgd\"\nlr_base = 0.1\nmomentum = 0.9\nweight_decay = 2e-5\n\
             nesterov = true\n\
             [sched]\nname = \"cosine\"\nwarmup_epochs = {warmup:?}\nwarmup_lr = 1e-5\n\
             min_lr = 0.0\n\
             [progressive]\nmode = \"off\"\nsize = [{train}, {train}]\n\
             dropout = [{dropout:?}, {dropout:?}]\n",
            arch = toml::Value::String(arch.to_string()),
            drop_path = model.drop_path,
            eval = model.eval_size,
            train = model.train_size,
            dropout = model.dropout,
        );
        Self::parse(&text, None, overrides).context("in the default recipe (no --config)")
    }

    /// [`load`](Self::load) from text; relative paths stay relative to the working directory.
    pub fn from_toml_with(text: &str, overrides: &[String]) -> Result<Self> {
        Self::parse(text, None, overrides)
    }

    fn parse(text: &str, base: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text).context("not valid TOML")?;
        if let Some(base) = base {
            resolve_model_paths(&mut value, base);
        }
        for ov in overrides {
            apply_override(&mut value, ov)?;
        }
        resolve_model_paths(&mut value, Path::new("."));
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
        self.model.validate()?;
        self.data.validate()?;
        self.train.validate()?;
        self.optim.validate()?;
        self.sched.validate(self.train.epochs)?;
        self.progressive.validate(self.train.epochs)?;
        self.ema.validate()?;
        self.checkpoint.validate()?;
        self.check_memory()?;
        effnet_model::parse_device(&self.device).map_err(|e| anyhow::anyhow!("device: {e}"))?;
        Ok(())
    }

    /// Bounded sizes, classes, host batch and the memory of training one image, before anything
    /// is allocated (an absurd recipe is an error, not an out-of-memory abort).
    fn check_memory(&self) -> Result<()> {
        let (d, p, t) = (&self.data, &self.progressive, &self.train);
        let batch = (p.batch_sizes.iter())
            .fold(t.batch_size.max(d.eval_batch_size.unwrap_or(0)), |a, b| {
                a.max(*b)
            });
        let size = p.size[1].max(d.eval_size.unwrap_or(0));
        let classes = self.model.num_classes.unwrap_or(0);
        effnet_model::check_training_input(&self.model.arch, classes, batch, size)
            .map_err(|e| anyhow::anyhow!("progressive.size / data.eval_size / model: {e}"))?;
        // The eval resize this crop fraction implies must stay bounded too.
        let mut pre = effnet_data::Preprocess::imagenet(size, d.crop_pct, d.interpolation);
        (pre.mean, pre.std) = (d.mean, d.std);
        pre.validate()
            .map_err(|e| anyhow::anyhow!("data.crop_pct / data.mean / data.std: {e}"))
    }
}

/// Makes a relative `model.arch` (when it is a file, not a preset name) and `model.init_weights`
/// (unless `bundled`) absolute against `base`, so a recipe works from any working directory and
/// the copy saved in the run folder still points at the same files.
fn resolve_model_paths(table: &mut toml::Table, base: &Path) {
    let Some(model) = table.get_mut("model").and_then(|m| m.as_table_mut()) else {
        return;
    };
    for key in ["arch", "init_weights"] {
        let Some(toml::Value::String(s)) = model.get(key) else {
            continue;
        };
        if let Some(abs) = resolve_path(s, key, base) {
            model.insert(key.into(), toml::Value::String(abs.display().to_string()));
        }
    }
}

/// The absolute form of a relative path value, or `None` when it is a name (preset, `bundled`,
/// `hf-hub:...`) or already absolute.
fn resolve_path(value: &str, key: &str, base: &Path) -> Option<PathBuf> {
    let is_name = match key {
        "arch" => !value.ends_with(".toml") && !value.contains('/'),
        _ => !matches!(value.parse(), Ok(effnet::WeightsSource::File(_))),
    };
    let p = Path::new(value);
    if is_name || value.is_empty() || p.is_absolute() {
        return None;
    }
    std::path::absolute(base.join(p)).ok()
}

impl ModelSection {
    fn validate(&self) -> Result<()> {
        if self.arch.trim().is_empty() {
            bail!("model.arch is empty (a preset name such as efficientnetv2_s or a model TOML)");
        }
        if let Some(d) = self.drop_path
            && !(0.0..1.0).contains(&d)
        {
            bail!("model.drop_path = {d} must be in [0, 1)");
        }
        if self.num_classes == Some(0) {
            bail!("model.num_classes must be >= 1 (leave it out to use the class folders)");
        }
        if self
            .init_weights
            .as_deref()
            .is_some_and(|w| w.trim().is_empty())
        {
            bail!("model.init_weights is empty (leave it out to start from random weights)");
        }
        Ok(())
    }
}

impl DataSection {
    fn validate(&self) -> Result<()> {
        let d = self;
        if !(0.0..=1.0).contains(&d.hflip) {
            bail!("data.hflip = {} is outside [0, 1]", d.hflip);
        }
        if !(d.scale[0] > 0.0 && d.scale[0] <= d.scale[1] && d.scale[1] <= 1.0) {
            bail!("data.scale = {:?} must be 0 < min <= max <= 1", d.scale);
        }
        if !(d.ratio[0] > 0.0 && d.ratio[0] <= d.ratio[1]) {
            bail!("data.ratio = {:?} must be 0 < min <= max", d.ratio);
        }
        if !(d.crop_pct > 0.0 && d.crop_pct <= 1.0) {
            bail!("data.crop_pct = {} must be in (0, 1]", d.crop_pct);
        }
        if !d.std.iter().all(|s| *s > 0.0 && s.is_finite()) || !d.mean.iter().all(|m| m.is_finite())
        {
            bail!(
                "data.mean/std = {:?}/{:?}: std must be positive and both finite",
                d.mean,
                d.std
            );
        }
        if d.workers == 0 {
            bail!("data.workers must be >= 1");
        }
        if d.randaugment == RandAugmentSpec::Automl
            && d.randaugment_layers > RandAugment::MAX_LAYERS
        {
            bail!(
                "data.randaugment_layers = {} is above {}",
                d.randaugment_layers,
                RandAugment::MAX_LAYERS
            );
        }
        if d.eval_size.is_some_and(|s| s < 8) {
            bail!("data.eval_size must be >= 8");
        }
        if !(0.0..=1.0).contains(&d.reprob) {
            bail!("data.reprob = {} is outside [0, 1]", d.reprob);
        }
        if d.eval_batch_size == Some(0) {
            bail!("data.eval_batch_size must be >= 1 (leave it out to use train.batch_size)");
        }
        Ok(())
    }
}

impl TrainSection {
    fn validate(&self) -> Result<()> {
        let t = self;
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
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{k} = {v} is outside [0, 1]");
            }
        }
        if !(t.clip_grad >= 0.0 && t.clip_grad.is_finite()) {
            bail!("train.clip_grad = {} must be >= 0", t.clip_grad);
        }
        t.loss_scale.validate()?;
        if t.grad_accum_steps == 0 {
            bail!("train.grad_accum_steps must be >= 1");
        }
        if t.max_steps_per_epoch == Some(0) {
            bail!("train.max_steps_per_epoch must be >= 1 (leave it out for whole epochs)");
        }
        Ok(())
    }
}

impl OptimSection {
    fn validate(&self) -> Result<()> {
        let o = self;
        if !positive(o.lr_base) {
            bail!("optim.lr_base = {} must be positive", o.lr_base);
        }
        if let Some(lr) = o.lr
            && !positive(lr)
        {
            bail!("optim.lr = {lr} must be positive");
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
        Ok(())
    }
}

impl SchedSection {
    fn validate(&self, epochs: usize) -> Result<()> {
        let s = self;
        if !(s.warmup_epochs >= 0.0 && s.warmup_epochs < epochs as f64) {
            bail!(
                "sched.warmup_epochs = {} must be in [0, train.epochs = {epochs})",
                s.warmup_epochs
            );
        }
        if !(positive(s.decay_epochs) && positive(s.decay_rate) && s.decay_rate <= 1.0) {
            bail!("sched.decay_epochs must be > 0 and sched.decay_rate in (0, 1]");
        }
        if !(s.min_lr >= 0.0 && s.warmup_lr >= 0.0) {
            bail!("sched.min_lr and sched.warmup_lr must be >= 0");
        }
        Ok(())
    }
}

impl ProgressiveSection {
    fn validate(&self, epochs: usize) -> Result<()> {
        let p = self;
        if p.stages == 0 || p.stages > epochs.min(1000) {
            bail!(
                "progressive.stages = {} must be in [1, min(train.epochs = {epochs}, 1000)]",
                p.stages
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
        Ok(())
    }
}

impl EmaSection {
    fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.decay) || !positive(self.warmup_power) {
            bail!(
                "ema.decay = {} must be in [0, 1) and ema.warmup_power > 0",
                self.decay
            );
        }
        Ok(())
    }
}

impl CheckpointSection {
    fn validate(&self) -> Result<()> {
        if self.keep_last == 0 {
            bail!("checkpoint.keep_last must be >= 1 (resuming needs one)");
        }
        if self.every_steps == Some(0) {
            bail!("checkpoint.every_steps must be >= 1 (leave it out to checkpoint at epoch ends)");
        }
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
