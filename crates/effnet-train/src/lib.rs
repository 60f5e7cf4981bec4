//! # effnet-train
//!
//! Training and evaluation for the EfficientNet family on burn: EfficientNetV2 progressive
//! learning (image size, RandAugment, mixup and dropout ramped per stage), stochastic depth,
//! label smoothing, mixup/cutmix with soft targets, TF-style RMSProp / AdamW / SGD-Nesterov,
//! warmup + cosine or exponential LR, weight EMA, and checkpoints that resume bit-for-bit.
//!
//! A [`Trainer`] runs one run folder; progress goes to a [`Reporter`] (the library prints
//! nothing) and a [`StopHandle`] asks it to checkpoint and stop. The `effnet` CLI mounts this as
//! `effnet train` and `effnet eval`.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod ema;
pub mod evaluation;
pub mod hooks;
pub mod loss;
pub mod optim;
pub mod output;
pub mod precision;
pub mod profile;
pub mod report;
pub mod run_folder;
pub mod schedule;
pub mod step;
pub mod stop;
pub mod trainer;
pub mod warmup;

pub use checkpoint::{Checkpointer, EpochRow};
pub use config::TrainConfig;
pub use evaluation::{Evaluation, evaluate, evaluate_with};
pub use hooks::TestHooks;
pub use precision::{DynamicLossScaler, LossScaleConfig, ScaleUpdate};
pub use report::{Reporter, Silent};
pub use schedule::{ProgressiveSchedule, Stage};
pub use step::{StepOutcome, StepSettings, train_step, train_step_mixed};
pub use stop::StopHandle;
pub use trainer::{TrainOutcome, Trainer, train, train_with_hooks};
