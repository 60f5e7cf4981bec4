//! # effnet-model
//!
//! The EfficientNet family (every architecture timm lists as `*efficientnet*` or `tinynet*`,
//! torchvision's EfficientNetV2) as burn modules built from data ([`EfficientNetConfig`], TOML),
//! numerically identical to timm and torchvision, with weight import from their PyTorch
//! checkpoints and effnet's own `.bpk` files.
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

pub mod arch;
pub mod blocks;
pub mod budget;
pub mod config;
pub mod device;
pub mod error;
pub mod fixtures;
pub mod int8;
pub mod model;
pub mod native;
pub mod ops;
pub mod precision;
pub mod preprocess;
pub mod presets;
pub mod pretrained;
pub mod weights;

pub use arch::BlockSpec;
pub use blocks::{
    Block, BlockLayers, BlurPool, CondConv2d, CondConvResidual, ConvBnAct, DepthwiseSeparable,
    DropPath, EdgeResidual, GlobalContext, InvertedResidual, LayerKeys, NormAct, NormActBlock,
    SqueezeExcite,
};
pub use budget::{Workload, check_fits, check_training_input, memory_budget};
pub use config::{
    Activation, Attention, BlockKind, DepthTrunc, EfficientNetConfig, NormKind, PaddingMode,
    Rounding, StageConfig,
};
pub use device::{available_devices, parse_device};
pub use error::ModelError;
pub use model::{EfficientNet, FeatureInfo};
pub use precision::ComputePrecision;
pub use preprocess::PreprocessOverrides;
pub use presets::{
    EFFNET_ARCHITECTURES, ModelName, PRESETS, PretrainedTag, TIMM_ARCHITECTURES,
    TORCHVISION_ARCHITECTURES, closest_names, default_tag, preset_names, pretrained_tags,
    resolve_name, wildcard_match,
};
pub use weights::{
    Imported, Interpolation, KeyLayout, Preprocess, Pretrained, StoragePrecision, check_finite,
    check_model_finite, import_pytorch, import_state_dict, load_native, load_native_bytes,
    save_native, save_native_as, save_native_labeled, timm_state_dict_shapes,
};
