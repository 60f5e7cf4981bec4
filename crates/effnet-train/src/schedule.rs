//! Progressive learning (EfficientNetV2 §4.2, Algorithm 1) and learning-rate schedules, both as
//! pure functions of the position in training, so a resumed run recomputes them exactly.

use crate::config::{ProgressiveMode, ProgressiveSection, SchedKind, SchedSection};

/// Settings of one progressive stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Stage index.
    pub index: usize,
    /// First epoch of the stage.
    pub start_epoch: usize,
    /// One past the last epoch of the stage.
    pub end_epoch: usize,
    /// Training image size.
    pub image_size: usize,
    /// RandAugment magnitude.
    pub randaugment: f64,
    /// Mixup (and CutMix) alpha.
    pub mixup: f64,
    /// Classifier dropout.
    pub dropout: f64,
    /// Batch size.
    pub batch_size: usize,
}

/// The stages of a run: which image size and regularisation apply at each epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressiveSchedule {
    /// Stages in order; they tile `0..epochs`.
    pub stages: Vec<Stage>,
}

fn lerp(range: [f64; 2], i: usize, n: usize) -> f64 {
    if n <= 1 {
        range[1]
    } else {
        range[0] + (range[1] - range[0]) * i as f64 / (n - 1) as f64
    }
}

impl ProgressiveSchedule {
    /// Splits `epochs` into the configured stages (earlier stages get the shorter share when
    /// epochs do not divide evenly, like automl's `int(ratio * total_steps)` boundaries).
    pub fn new(cfg: &ProgressiveSection, epochs: usize, batch_size: usize) -> Self {
        let n = match cfg.mode {
            ProgressiveMode::Off => 1,
            _ => cfg.stages.max(1),
        };
        let size = [cfg.size[0] as f64, cfg.size[1] as f64];
        let stages = (0..n)
            .map(|i| {
                let start_epoch = epochs * i / n;
                let end_epoch = epochs * (i + 1) / n;
                let (image_size, randaugment, mixup, dropout) = match cfg.mode {
                    ProgressiveMode::Off => (
                        cfg.size[1],
                        cfg.randaugment[1],
                        cfg.mixup[1],
                        cfg.dropout[1],
                    ),
                    ProgressiveMode::Paper => (
                        lerp(size, i, n).round() as usize,
                        lerp(cfg.randaugment, i, n),
                        lerp(cfg.mixup, i, n),
                        lerp(cfg.dropout, i, n),
                    ),
                    ProgressiveMode::Automl => (
                        (size[0] + (size[1] - size[0]) * (i + 1) as f64 / n as f64) as usize,
                        lerp(cfg.randaugment, i, n),
                        lerp([0.0, cfg.mixup[1]], i, n),
                        cfg.dropout[1],
                    ),
                };
                Stage {
                    index: i,
                    start_epoch,
                    end_epoch,
                    image_size,
                    randaugment,
                    mixup,
                    dropout,
                    batch_size: cfg.batch_sizes.get(i).copied().unwrap_or(batch_size),
                }
            })
            .collect();
        Self { stages }
    }

    /// The stage that contains `epoch` (the last one past the end).
    pub fn stage_at(&self, epoch: usize) -> &Stage {
        self.stages
            .iter()
            .find(|s| epoch >= s.start_epoch && epoch < s.end_epoch)
            .unwrap_or_else(|| self.stages.last().expect("at least one stage"))
    }
}

/// Learning rate at fractional epoch `t` for a peak `lr` (already scaled by batch size).
pub fn learning_rate(cfg: &SchedSection, lr: f64, epochs: usize, t: f64) -> f64 {
    let w = cfg.warmup_epochs;
    if t < w {
        return cfg.warmup_lr + (lr - cfg.warmup_lr) * t / w;
    }
    match cfg.name {
        SchedKind::Constant => lr,
        SchedKind::Cosine => {
            let span = (epochs as f64 - w).max(f64::EPSILON);
            let p = ((t - w) / span).clamp(0.0, 1.0);
            cfg.min_lr + 0.5 * (lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
        }
        // automl decays on the global step from the start; warmup only masks the beginning.
        SchedKind::Exponential => lr * cfg.decay_rate.powf((t / cfg.decay_epochs).floor()),
    }
}

/// Linear LR scaling rule: `lr_base * batch / lr_base_batch`.
pub fn scaled_lr(lr_base: f64, batch: usize, lr_base_batch: usize) -> f64 {
    lr_base * batch as f64 / lr_base_batch as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(mode: ProgressiveMode) -> ProgressiveSection {
        ProgressiveSection {
            mode,
            stages: 4,
            size: [128, 300],
            randaugment: [5.0, 10.0],
            mixup: [0.0, 0.0],
            dropout: [0.1, 0.3],
            batch_sizes: vec![],
        }
    }

    #[test]
    fn automl_mode_matches_released_code() {
        let s = ProgressiveSchedule::new(&prog(ProgressiveMode::Automl), 350, 4096);
        let sizes: Vec<usize> = s.stages.iter().map(|s| s.image_size).collect();
        assert_eq!(sizes, vec![171, 214, 257, 300]);
        let ra: Vec<f64> = s.stages.iter().map(|s| s.randaugment).collect();
        for (a, b) in ra.iter().zip([5.0, 6.6667, 8.3333, 10.0]) {
            assert!((a - b).abs() < 1e-3, "{ra:?}");
        }
        assert!(s.stages.iter().all(|s| s.dropout == 0.3));
        assert_eq!(s.stages[0].start_epoch, 0);
        assert_eq!(s.stages[3].end_epoch, 350);
        assert_eq!(s.stage_at(86).index, 0);
        assert_eq!(s.stage_at(87).index, 1);
    }

    #[test]
    fn paper_mode_is_linear_min_to_max() {
        let s = ProgressiveSchedule::new(&prog(ProgressiveMode::Paper), 8, 32);
        assert_eq!(s.stages[0].image_size, 128);
        assert_eq!(s.stages[3].image_size, 300);
        assert!((s.stages[0].dropout - 0.1).abs() < 1e-12);
        assert!((s.stages[1].dropout - (0.1 + 0.2 / 3.0)).abs() < 1e-12);
        assert!((s.stages[3].dropout - 0.3).abs() < 1e-12);
        assert_eq!(s.stage_at(7).index, 3);
    }

    #[test]
    fn lr_warmup_cosine_and_staircase() {
        let mut c = SchedSection {
            name: SchedKind::Cosine,
            warmup_epochs: 5.0,
            warmup_lr: 0.0,
            min_lr: 0.0,
            decay_epochs: 2.4,
            decay_rate: 0.97,
        };
        assert_eq!(learning_rate(&c, 1.0, 105, 0.0), 0.0);
        assert!((learning_rate(&c, 1.0, 105, 2.5) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 105, 5.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 105, 55.0) - 0.5).abs() < 1e-12);
        assert!(learning_rate(&c, 1.0, 105, 105.0).abs() < 1e-12);
        c.name = SchedKind::Exponential;
        assert!((learning_rate(&c, 1.0, 350, 7.19) - 0.97f64.powi(2)).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 350, 7.3) - 0.97f64.powi(3)).abs() < 1e-12);
        assert!((scaled_lr(0.016, 4096, 256) - 0.256).abs() < 1e-12);
    }
}
