//! `--precision int8 --calib DIR`: calibration of a model's activation ranges on a folder of
//! images, shared by every int8 export (`.bpk`, `.tflite`, QDQ `.onnx`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use effnet::quantize::{QuantModel, Quantizer, RangeMethod, WeightScales, calibration_files};
use effnet_model::Pretrained;

/// Weight scales of an int8 export.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum WeightScalesArg {
    /// One scale per output channel (TFLite's and ONNX Runtime's default).
    Channel,
    /// One scale per weight tensor (to measure what per-channel scales buy).
    Tensor,
}

/// The calibration options of `--precision int8`.
#[derive(Args, Clone, Debug)]
pub struct CalibArgs {
    /// Calibration images for `--precision int8`: a folder (walked recursively), preprocessed
    /// as the model expects; a few hundred typical images are plenty.
    #[arg(long, value_name = "DIR")]
    pub calib: Option<PathBuf>,
    /// At most this many calibration images, spread evenly over the sorted folder.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub calib_images: usize,
    /// How activation ranges are chosen: mse (the clip with the least expected squared error),
    /// minmax, percentile (99.999) or percentile:P.
    #[arg(long, default_value = "mse", value_name = "METHOD")]
    pub calib_method: String,
    /// int8 weight scales: per output channel (default) or per tensor.
    #[arg(long, value_enum, default_value_t = WeightScalesArg::Channel)]
    pub weight_scales: WeightScalesArg,
}

/// Calibrates `pre` as the arguments ask, with a progress line on a terminal.
pub fn calibrate(a: &CalibArgs, pre: &Pretrained) -> anyhow::Result<QuantModel> {
    let Some(dir) = &a.calib else {
        bail!("--precision int8 needs --calib DIR (a folder of typical input images)");
    };
    let method: RangeMethod = a
        .calib_method
        .parse()
        .map_err(|e| anyhow::anyhow!("--calib-method: {e}"))?;
    if a.calib_images == 0 {
        bail!("--calib-images must be at least 1");
    }
    let scales = match a.weight_scales {
        WeightScalesArg::Channel => WeightScales::PerChannel,
        WeightScalesArg::Tensor => WeightScales::PerTensor,
    };
    let files = calibration_files(dir, a.calib_images)?;
    let mut q = Quantizer::new(pre, scales)?;
    let bar = progress(files.len());
    q.observe_files(&files, |done, _| bar.set_position(done as u64))
        .with_context(|| format!("calibrating on {}", dir.display()))?;
    bar.finish_and_clear();
    let model = q.finish(method)?;
    eprintln!(
        "calibrated on {} images of {} ({method}, weight scales per {})",
        files.len(),
        dir.display(),
        match a.weight_scales {
            WeightScalesArg::Channel => "channel",
            WeightScalesArg::Tensor => "tensor",
        }
    );
    Ok(model)
}

/// A progress bar on a terminal, nothing in a pipe.
fn progress(n: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} images")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
