//! # effnet
//!
//! EfficientNet / EfficientNetV2 inference in a few lines, on any burn device, with the bundled
//! ImageNet-1k EfficientNet-Lite0 weights or any weights imported with `effnet import`.
//!
//! ```no_run
//! use effnet::{Classifier, Device};
//!
//! let device = Device::flex(); // or effnet::parse_device("wgpu")?
//! let classifier = Classifier::bundled(&device)?;
//! let image = effnet::load_rgb("tests/data/photos/chelsea.png".as_ref())?;
//! for p in classifier.predict(&image, 5)? {
//!     println!("{} {:.1}%", p.label, 100.0 * p.prob);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Cargo features (both on by default): `bundled` compiles the 18.8 MB Lite0 weights in
//! ([`Classifier::bundled`]); `hub` downloads `hf-hub:` weights from the Hugging Face Hub.

mod bundled;
mod classifier;
mod error;
mod files;
pub mod hub;
pub mod labels;
pub mod quantize;
pub mod source;

#[cfg(feature = "bundled")]
pub use bundled::BUNDLED_WEIGHTS;
pub use bundled::{BUNDLED_SPEC, bundled_pretrained};
pub use burn::prelude::Device;
pub use classifier::{Classifier, Engine, Prediction};
pub use effnet_data::{DataError, Interpolation, Preprocess, collect_images, load_rgb};
pub use effnet_model::{
    ComputePrecision, EfficientNet, EfficientNetConfig, FeatureInfo, ModelError,
    PreprocessOverrides, Pretrained, available_devices, parse_device, preset_names,
};
pub use error::Error;
pub use labels::{
    ClassMatcher, FolderMatch, default_labels, imagenet_class_ids, imagenet_labels,
    imagenet_synsets, read_class_map, read_labels,
};
pub use source::{WeightsSource, load_pretrained};

/// Re-exports of the underlying crates for deeper use (training, custom models).
pub mod reexports {
    pub use burn;
    pub use effnet_cpu;
    pub use effnet_data;
    pub use effnet_model;
    pub use image;
}
