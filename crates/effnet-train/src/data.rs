//! Glue between the recipe and `effnet-data`: opening the splits with training-specific checks,
//! building the per-stage transform, and turning host batches into tensors.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use effnet_data::{ImageFolder, Preprocess, TrainTransform};

use crate::config::TrainConfig;

/// The training and validation folders of a run.
pub struct Splits {
    /// Training images.
    pub train: ImageFolder,
    /// Validation images, labelled with the training class list.
    pub val: ImageFolder,
}

/// Opens `<data>/<train_dir>` and `<data>/<val_dir>`. A missing folder, a class without training
/// images, or a validation class unknown to training are errors naming the folder: a class with
/// no images can never be predicted, which silently caps accuracy.
pub fn open_splits(data: &Path, cfg: &TrainConfig) -> Result<Splits> {
    if !data.is_dir() {
        bail!(
            "data folder {} does not exist (expected {}/{{{},{}}}/<class>/<images>)",
            data.display(),
            data.display(),
            cfg.data.train_dir,
            cfg.data.val_dir
        );
    }
    let train_root = data.join(&cfg.data.train_dir);
    let train = ImageFolder::scan(&train_root)
        .with_context(|| format!("training split {}", train_root.display()))?;
    let empty: Vec<String> = train
        .class_counts()
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(c, _)| c)
        .collect();
    if !empty.is_empty() {
        bail!(
            "training split {}: class folder(s) without images: {} (remove them or add images)",
            train_root.display(),
            empty.join(", ")
        );
    }
    let val_root = data.join(&cfg.data.val_dir);
    let val_classes = effnet_data::dataset::class_dirs(&val_root)
        .with_context(|| format!("validation split {}", val_root.display()))?;
    let unknown: Vec<&String> = val_classes
        .iter()
        .filter(|c| !train.classes.contains(c))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "validation split {}: classes not in the training split: {unknown:?}",
            val_root.display()
        );
    }
    let val = ImageFolder::scan_with_classes(&val_root, &train.classes)
        .with_context(|| format!("validation split {}", val_root.display()))?;
    Ok(Splits { train, val })
}

/// The base training transform (stage values are filled in by [`TrainTransform::at_stage`]).
pub fn train_transform(cfg: &TrainConfig) -> TrainTransform {
    let d = &cfg.data;
    TrainTransform {
        size: cfg.progressive.size[1],
        scale: (d.scale[0], d.scale[1]),
        ratio: (d.ratio[0], d.ratio[1]),
        hflip: d.hflip,
        randaugment: d.randaugment.build(d.randaugment_layers),
        interpolation: d.interpolation,
        mean: d.mean,
        std: d.std,
        reprob: d.reprob,
    }
}

/// Evaluation preprocessing at `size` with the recipe's crop fraction.
pub fn eval_preprocess(cfg: &TrainConfig, size: usize) -> Preprocess {
    let d = &cfg.data;
    let mut p = Preprocess::imagenet(size, d.crop_pct, d.interpolation);
    p.mean = d.mean;
    p.std = d.std;
    p
}

/// A host batch as an NCHW tensor on `device`.
pub fn images_tensor(images: Vec<f32>, batch: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(images, [batch, 3, size, size]), device)
}
