//! Memory bounds checked before anything is allocated: an absurd `--size`, batch or model
//! dimension must be a clear error, not an allocation failure that aborts the process.
//!
//! [`check_fits`] is the one place that estimates what a model run needs (parameters, optimizer
//! state, activations) and compares it with [`memory_budget`]; the CLI (`infer`, `bench`) and the
//! training config validation call it.

use crate::config::EfficientNetConfig;
use crate::error::ModelError;

pub use effnet_data::{MAX_INPUT_SIDE, MAX_RESIZE_SIDE};

/// Environment variable overriding [`memory_budget`], in bytes or with a K/M/G/T suffix (`48G`).
pub const MEMORY_ENV: &str = "EFFNET_MAX_MEMORY";

/// Largest number of output classes a model may declare.
pub const MAX_CLASSES: usize = 1 << 20;
/// Largest channel count (before or after width scaling) a model may declare.
pub const MAX_CHANNELS: usize = 1 << 16;
/// Largest number of blocks in one stage (after depth scaling).
pub const MAX_REPEATS: usize = 1024;
/// Largest number of stages.
pub const MAX_STAGES: usize = 64;
/// Largest spatial kernel.
pub const MAX_KERNEL: usize = 31;
/// Largest stride.
pub const MAX_STRIDE: usize = 8;
/// Largest expansion ratio.
pub const MAX_EXPAND: usize = 64;
/// Largest width or depth multiplier.
pub const MAX_MULTIPLIER: f64 = 64.0;

/// What a run does with the model, which decides what stays in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Forward passes only: parameters plus the largest live activations.
    Inference,
    /// Forward and backward: parameters, gradients, two optimizer moments and every activation.
    Training,
}

/// Bytes this process may plan to use: `EFFNET_MAX_MEMORY` when set, else the machine's total
/// memory (`/proc/meminfo`), else 16 GiB.
pub fn memory_budget() -> u64 {
    if let Some(b) = std::env::var(MEMORY_ENV).ok().and_then(|t| parse_bytes(&t)) {
        return b;
    }
    total_memory().unwrap_or(16 << 30)
}

fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Parses a byte count such as `17179869184`, `16G` or `512M`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text
        .trim()
        .trim_end_matches(['b', 'B'])
        .trim_end_matches(['i']);
    let (num, scale) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&t[..i], 1 << 20),
        (i, 'g' | 'G') => (&t[..i], 1 << 30),
        (i, 't' | 'T') => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    let value: f64 = num.trim().parse().ok()?;
    let bytes = value * scale as f64;
    (1.0..1e19).contains(&bytes).then_some(bytes as u64)
}

/// Human-readable byte count for error messages.
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.1} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", b / 1e6)
    }
}

/// Checks the declared dimensions of a model against fixed bounds (machine independent), so that
/// later arithmetic cannot overflow and layer construction cannot request absurd sizes.
pub fn check_dimensions(cfg: &EfficientNetConfig) -> Result<(), String> {
    let over = |what: &str, v: String, max: String| Err(format!("{what} = {v} is above {max}"));
    if cfg.num_classes > MAX_CLASSES {
        return over(
            "num_classes",
            cfg.num_classes.to_string(),
            MAX_CLASSES.to_string(),
        );
    }
    if cfg.stages.len() > MAX_STAGES {
        return over(
            "the stage count",
            cfg.stages.len().to_string(),
            MAX_STAGES.to_string(),
        );
    }
    if !(cfg.width_mult <= MAX_MULTIPLIER && cfg.depth_mult <= MAX_MULTIPLIER) {
        return Err(format!(
            "width_mult {} and depth_mult {} must be at most {MAX_MULTIPLIER}",
            cfg.width_mult, cfg.depth_mult
        ));
    }
    for (name, size) in [("train_size", cfg.train_size), ("eval_size", cfg.eval_size)] {
        if !(1..=MAX_INPUT_SIDE).contains(&size) {
            return Err(format!("{name} = {size} is outside 1..={MAX_INPUT_SIDE}"));
        }
    }
    for (name, c) in [
        ("stem_channels", cfg.stem_channels),
        ("head_channels", cfg.head_channels),
    ] {
        if c == 0 || c > MAX_CHANNELS {
            return Err(format!("{name} = {c} is outside 1..={MAX_CHANNELS}"));
        }
    }
    for (i, s) in cfg.stages.iter().enumerate() {
        let checks = [
            ("repeats", s.repeats, MAX_REPEATS),
            ("kernel", s.kernel, MAX_KERNEL),
            ("stride", s.stride, MAX_STRIDE),
            ("expand", s.expand, MAX_EXPAND),
            ("in_channels", s.in_channels, MAX_CHANNELS),
            ("out_channels", s.out_channels, MAX_CHANNELS),
        ];
        for (name, v, max) in checks {
            if v > max {
                return over(
                    &format!("stage {i}: {name}"),
                    v.to_string(),
                    max.to_string(),
                );
            }
        }
    }
    // Scaled widths and depths: rounding multiplies by at most MAX_MULTIPLIER.
    let scaled = [cfg.stem_out(), cfg.head_out()];
    for (i, s) in cfg.resolved_blocks().iter().enumerate() {
        let widest = s.iter().map(|b| b.mid_channels.max(b.out_channels)).max();
        if s.len() > MAX_REPEATS || widest.unwrap_or(0) > 4 * MAX_CHANNELS {
            return Err(format!(
                "stage {i}: {} blocks of up to {} channels after scaling, above {MAX_REPEATS} \
                 blocks or {} channels",
                s.len(),
                widest.unwrap_or(0),
                4 * MAX_CHANNELS
            ));
        }
    }
    if scaled.iter().any(|&c| c > MAX_CHANNELS) {
        return Err(format!(
            "stem/head widths {scaled:?} after scaling are above {MAX_CHANNELS} channels"
        ));
    }
    Ok(())
}

/// Number of parameters the model will have (convolutions, norms, attention, classifier),
/// computed from the config without building it. Assumes [`check_dimensions`] passed.
pub fn estimate_params(cfg: &EfficientNetConfig) -> u64 {
    cfg.num_params() as u64
}

/// Bytes of activations for `batch` images of `size × size`: the largest block's live tensors for
/// inference, the sum over all layers (what autodiff keeps for the backward pass) for training.
pub fn estimate_activation_bytes(
    cfg: &EfficientNetConfig,
    batch: usize,
    size: usize,
    workload: Workload,
) -> u64 {
    let mut side = (size as u64).div_ceil(2);
    let stem = side * side * cfg.stem_out() as u64;
    let mut peak = 3 * (size as u64).pow(2) + stem;
    let mut sum = stem * 3;
    for b in cfg.resolved_blocks().iter().flatten() {
        let (cin, hid, cout) = (
            b.in_channels as u64,
            b.mid_channels as u64,
            b.out_channels as u64,
        );
        let in_plane = side * side;
        let stride = if b.space_to_depth { 2 } else { b.stride as u64 };
        side = side.div_ceil(stride);
        let plane = side * side;
        let block = in_plane * (cin + hid) + plane * (hid + cout);
        peak = peak.max(block);
        // Conv output, BatchNorm output and activation output are each kept for backward.
        sum += in_plane * cin + 3 * (in_plane + plane) * hid + 2 * plane * cout;
    }
    let elements = match workload {
        Workload::Inference => peak,
        Workload::Training => sum,
    };
    elements.saturating_mul(batch as u64).saturating_mul(4)
}

/// Estimated bytes of a run: parameters (×4 for training: weights, gradients, two optimizer
/// moments) plus activations.
pub fn estimate_bytes(
    cfg: &EfficientNetConfig,
    batch: usize,
    size: usize,
    workload: Workload,
) -> u64 {
    let copies = match workload {
        Workload::Inference => 1,
        Workload::Training => 4,
    };
    let params = estimate_params(cfg).saturating_mul(4 * copies);
    params.saturating_add(estimate_activation_bytes(cfg, batch, size, workload))
}

/// The one check before running a model: bounds the input size and the model's dimensions, then
/// estimates the memory of `batch` images of `size × size` and refuses a run that cannot fit in
/// [`memory_budget`], with the estimate and the budget in the message.
pub fn check_fits(
    cfg: &EfficientNetConfig,
    batch: usize,
    size: usize,
    workload: Workload,
) -> Result<(), ModelError> {
    let err = |m: String| Err(ModelError::TooLarge(format!("model '{}': {m}", cfg.name)));
    if !(1..=MAX_INPUT_SIDE).contains(&size) {
        return err(format!(
            "image size {size} is outside 1..={MAX_INPUT_SIDE} pixels"
        ));
    }
    if batch == 0 {
        return err("batch size must be at least 1".into());
    }
    check_dimensions(cfg).map_err(|m| ModelError::Config(format!("model '{}': {m}", cfg.name)))?;
    let need = estimate_bytes(cfg, batch, size, workload);
    let budget = memory_budget();
    if need > budget {
        let what = match workload {
            Workload::Inference => "inference",
            Workload::Training => "training",
        };
        return err(format!(
            "{what} on batches of {batch} at {size}x{size} needs about {} of memory, more than \
             the {} available (set {MEMORY_ENV} to change the budget)",
            format_bytes(need),
            format_bytes(budget)
        ));
    }
    Ok(())
}

/// The training recipe's check: `num_classes` and the image side bounded, one host batch of
/// `batch` images of `size × size` (what the loader fills whatever the device) within
/// [`memory_budget`], and [`check_fits`] for training one image on the model given by preset name
/// or TOML path (`model.arch`; `num_classes` overrides the model's when non-zero). Recipes name
/// their batch for the accelerator they target, so the model estimate is per image; a model that
/// cannot be resolved is left to the code that loads it, which reports it better.
pub fn check_training_input(
    arch: &str,
    num_classes: usize,
    batch: usize,
    size: usize,
) -> Result<(), ModelError> {
    let err = |m: String| Err(ModelError::TooLarge(m));
    if num_classes > MAX_CLASSES {
        return err(format!(
            "num_classes = {num_classes} is above {MAX_CLASSES}"
        ));
    }
    if !(1..=MAX_INPUT_SIDE).contains(&size) {
        return err(format!(
            "image size {size} is outside 1..={MAX_INPUT_SIDE} pixels"
        ));
    }
    let host = (batch as u64)
        .saturating_mul(3 * size as u64 * size as u64)
        .saturating_mul(4);
    let budget = memory_budget();
    if host > budget {
        return err(format!(
            "one batch of {batch} images at {size}x{size} needs {} of memory, more than the {} \
             available (set {MEMORY_ENV} to change the budget)",
            format_bytes(host),
            format_bytes(budget)
        ));
    }
    let Ok(mut cfg) = EfficientNetConfig::from_name_or_file(arch) else {
        return Ok(());
    };
    if num_classes > 0 {
        cfg.num_classes = num_classes;
    }
    check_fits(&cfg, 1, size, Workload::Training)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::*;

    #[test]
    fn parameter_estimate_matches_the_built_model() {
        let device = Device::flex();
        for name in ["efficientnet_b0", "efficientnetv2_s", "efficientnet_lite0"] {
            let cfg = EfficientNetConfig::preset(name).unwrap();
            let built = cfg.init(&device).num_trainable_params() as f64;
            let est = estimate_params(&cfg) as f64;
            assert!(
                (est / built - 1.0).abs() < 0.02,
                "{name}: estimated {est}, built {built}"
            );
        }
    }

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("16G"), Some(16 << 30));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1G"), None);
    }
}
