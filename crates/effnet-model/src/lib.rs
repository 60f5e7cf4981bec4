//! # effnet-model
//!
//! The EfficientNet family (V1-B0, Lite0, V2-S/M/L/XL, V2-B0..B3) as burn modules built from
//! data ([`EfficientNetConfig`], TOML), numerically identical to torchvision and timm, with
//! weight import from their PyTorch checkpoints and effnet's own `.bpk` files.
//!
//! ```no_run
//! use burn::prelude::*;
//! use effnet_model::EfficientNetConfig;
//!
//! let device = Device::flex();
//! let model = EfficientNetConfig::preset("efficientnetv2_s").unwrap().init(&device);
//! let logits = model.forward(Tensor::zeros([1, 3, 224, 224], &device));
//! assert_eq!(logits.dims(), [1, 1000]);
//! ```

#![warn(missing_docs)]

pub mod blocks;
pub mod budget;
pub mod config;
pub mod device;
pub mod error;
pub mod model;
pub mod native;
pub mod precision;
pub mod preprocess;
pub mod presets;
pub mod weights;

pub use blocks::{
    Block, BlockLayers, ConvBnAct, DepthwiseSeparable, DropPath, EdgeResidual, InvertedResidual,
    LayerKeys, SqueezeExcite,
};
pub use budget::{Workload, check_fits, check_training_input, memory_budget};
pub use config::{Activation, BlockKind, EfficientNetConfig, PaddingMode, Rounding, StageConfig};
pub use device::{available_devices, parse_device};
pub use error::ModelError;
pub use model::{EfficientNet, FeatureInfo};
pub use precision::ComputePrecision;
pub use preprocess::PreprocessOverrides;
pub use presets::{PRESETS, canonical_name, preset_names};
pub use weights::{
    Imported, Interpolation, KeyLayout, Precision, Preprocess, Pretrained, import_pytorch,
    load_native, load_native_bytes, save_native, save_native_as, save_native_labeled,
};
