//! What a run is built from before its first step: the recipe's device, the data splits, the
//! model (fresh or from `model.init_weights`), the eval preprocessing and the optimiser. All of
//! it is checked before the run folder is created, so a bad recipe or data set leaves nothing.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use effnet_data::Preprocess;
use effnet_model::{ComputePrecision, EfficientNet, EfficientNetConfig, parse_device};

use crate::config::TrainConfig;
use crate::data::{Splits, eval_preprocess, open_splits};
use crate::ema::copy_weights;
use crate::optim::build_optimizer;
use crate::precision::DynamicLossScaler;

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
    let pre = effnet::load_pretrained(&init.parse()?, None, device)
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

/// The loss scaler an f16 run needs: the checkpoint's when resuming one, else a fresh one;
/// none for f32 and bf16 (bf16 has f32's exponent range).
pub(super) fn loss_scaler(
    cfg: &TrainConfig,
    saved: Option<DynamicLossScaler>,
) -> Option<DynamicLossScaler> {
    (cfg.train.precision == ComputePrecision::F16)
        .then(|| saved.unwrap_or_else(|| DynamicLossScaler::new(cfg.train.loss_scale.clone())))
}

/// What is fixed for a whole run once the recipe, the data and the model are known; built before
/// anything is written, so a bad recipe or data set leaves no run folder behind.
pub(super) struct Setup {
    pub device: Device,
    pub splits: Splits,
    pub model: EfficientNet,
    pub model_cfg: EfficientNetConfig,
    pub preprocess: Preprocess,
    pub optim: ModuleOptimizer,
}

impl Setup {
    pub fn new(cfg: &TrainConfig, data: &Path) -> Result<Self> {
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
