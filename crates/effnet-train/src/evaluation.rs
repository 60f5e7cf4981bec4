//! Evaluation, as burn-train's `ValidStep`: top-1/top-5 and loss of a model on a labelled folder,
//! with any forward (burn's, in a compute precision, or another engine's through
//! [`evaluate_with`]), so training and `effnet eval` measure the same way.

use anyhow::{Result, bail};
use burn::prelude::*;
use effnet_data::{Batch, ImageFolder, Preprocess, eval_batches};
use effnet_model::{ComputePrecision, EfficientNet};

use crate::data::images_tensor;
use crate::loss::TopK;
use crate::report::{EvalProgress, Reporter};

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
pub(crate) fn evaluate_model(
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

/// Tells the reporter about each file a batch had to skip (it failed to decode).
pub(crate) fn report_skipped(reporter: &mut dyn Reporter, batch: &Batch) {
    for (p, why) in &batch.skipped {
        reporter.skipped(p, why);
    }
}
