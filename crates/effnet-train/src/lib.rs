#![warn(missing_docs)]
//! # effnet-train
//!
//! Training and evaluation for the EfficientNet family on burn: EfficientNetV2 progressive
//! learning (image size, RandAugment, mixup and dropout ramped per stage), stochastic depth,
//! label smoothing, mixup/cutmix with soft targets, TF-style RMSProp / AdamW / SGD-Nesterov,
//! warmup + cosine or exponential LR, weight EMA, and checkpoints that resume bit-for-bit.
//!
//! The CLI mounts [`TrainArgs`] and [`EvalArgs`] as `effnet train` and `effnet eval`.

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod ema;
pub mod loss;
pub mod optim;
pub mod output;
pub mod schedule;
pub mod trainer;

pub use cli::{EvalArgs, EvalResult, TrainArgs};
pub use config::TrainConfig;
pub use schedule::{ProgressiveSchedule, Stage};
pub use trainer::{TrainOutcome, evaluate, train, train_step};
