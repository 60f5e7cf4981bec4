//! Full-integer int8 from trained weights: calibration of every activation's range over
//! images preprocessed as the model expects, then the int8 `.bpk` that
//! `effnet infer/eval/bench --weights` run on effnet's int8 CPU executor.
//!
//! ```no_run
//! use effnet::quantize::{CalibrationOptions, calibrate_dir, save_int8};
//! let pre = effnet::bundled_pretrained(&effnet::Device::flex())?;
//! let q = calibrate_dir(&pre, "calib/".as_ref(), &CalibrationOptions::default(), |_, _| {})?;
//! save_int8("lite0-int8.bpk".as_ref(), &q, &pre)?;
//! # Ok::<(), effnet::Error>(())
//! ```

use std::path::{Path, PathBuf};

use effnet_cpu::Layout;
use effnet_cpu::quant::calib::Calibrator;
pub use effnet_cpu::quant::{QParams, QuantModel, RangeMethod, WeightScales};
use effnet_data::{Preprocess, collect_images, load_rgb};
use effnet_model::Pretrained;
use image::RgbImage;
use rayon::prelude::*;

use crate::Error;

/// How to calibrate.
#[derive(Clone, Debug)]
pub struct CalibrationOptions {
    /// How each activation's range is chosen from what was observed.
    pub method: RangeMethod,
    /// Most images used (spread evenly over the sorted folder, so that every class folder of an
    /// ImageNet-style tree contributes).
    pub max_images: usize,
    /// Weight scales per output channel (default) or per tensor.
    pub weight_scales: WeightScales,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        Self {
            method: RangeMethod::Mse,
            max_images: 200,
            weight_scales: WeightScales::PerChannel,
        }
    }
}

/// Images per calibration step (decoded and preprocessed in parallel).
const CHUNK: usize = 8;

/// Observes a model's activations over images, then makes its [`QuantModel`].
pub struct Quantizer {
    preprocess: Preprocess,
    cal: Calibrator,
}

fn usage(e: impl std::fmt::Display) -> Error {
    Error::Usage(e.to_string())
}

impl Quantizer {
    /// Prepares to calibrate `pre` (BatchNorm folded here) with its own preprocessing.
    pub fn new(pre: &Pretrained, weight_scales: WeightScales) -> Result<Self, Error> {
        let folded = pre.model.clone().fold_batchnorm();
        let plan = effnet_model::native::plan(&folded, &pre.config)
            .map_err(|e| usage(format!("int8 needs the native CPU engine: {e}")))?;
        let cal = Calibrator::new(plan)
            .map_err(usage)?
            .weight_scales(weight_scales);
        Ok(Self {
            preprocess: pre.preprocess.clone(),
            cal,
        })
    }

    /// Images observed so far.
    pub fn images(&self) -> usize {
        self.cal.images()
    }

    /// Observes decoded images.
    pub fn observe(&mut self, images: &[RgbImage]) -> Result<(), Error> {
        let crop = self.preprocess.crop;
        let per = 3 * crop * crop;
        for chunk in images.chunks(CHUNK) {
            let mut buf = vec![0f32; chunk.len() * per];
            buf.par_chunks_mut(per)
                .zip(chunk.par_iter())
                .for_each(|(out, img)| self.preprocess.apply_into(img, out));
            self.cal
                .observe(&buf, chunk.len(), crop, crop, Layout::Nchw)
                .map_err(usage)?;
        }
        Ok(())
    }

    /// Observes the image files (a file that cannot be decoded is an error naming it);
    /// `progress(done, total)` after each step.
    pub fn observe_files(
        &mut self,
        files: &[PathBuf],
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(), Error> {
        for (i, chunk) in files.chunks(CHUNK).enumerate() {
            let images = chunk
                .par_iter()
                .map(|p| load_rgb(p))
                .collect::<Result<Vec<_>, _>>()?;
            self.observe(&images)?;
            progress((i * CHUNK + chunk.len()).min(files.len()), files.len());
        }
        Ok(())
    }

    /// The int8 model with activation ranges chosen by `method` (callable for several methods
    /// after one calibration pass).
    pub fn finish(&self, method: RangeMethod) -> Result<QuantModel, Error> {
        self.cal
            .finish(method)
            .map_err(|e| usage(format!("calibration: {e}")))
    }
}

/// The images of `dir` calibration uses: up to `max` spread evenly over the sorted list.
pub fn calibration_files(dir: &Path, max: usize) -> Result<Vec<PathBuf>, Error> {
    if !dir.is_dir() {
        return Err(usage(format!(
            "{}: not a folder of calibration images",
            dir.display()
        )));
    }
    let (mut files, _) = collect_images(&[dir.to_path_buf()]);
    files.sort();
    if files.is_empty() {
        return Err(usage(format!(
            "{}: no images to calibrate on",
            dir.display()
        )));
    }
    let max = max.max(1);
    if files.len() > max {
        let n = files.len();
        files = (0..max).map(|i| files[i * n / max].clone()).collect();
    }
    Ok(files)
}

/// Calibrates `pre` on the images of `dir` (see [`Quantizer`]).
pub fn calibrate_dir(
    pre: &Pretrained,
    dir: &Path,
    options: &CalibrationOptions,
    progress: impl FnMut(usize, usize),
) -> Result<QuantModel, Error> {
    let files = calibration_files(dir, options.max_images)?;
    let mut q = Quantizer::new(pre, options.weight_scales)?;
    q.observe_files(&files, progress)?;
    q.finish(options.method)
}

/// Writes `q` as an int8 `.bpk` with `pre`'s description, preprocessing and class names.
pub fn save_int8(path: &Path, q: &QuantModel, pre: &Pretrained) -> Result<(), Error> {
    let source = format!(
        "{} | int8, {} calibration on {} images",
        pre.source, q.method, q.calibration_images
    );
    effnet_model::int8::save_int8(
        path,
        q,
        &pre.config,
        &pre.preprocess,
        &source,
        pre.labels.as_deref(),
    )?;
    Ok(())
}
