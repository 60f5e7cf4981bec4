//! # effnet-data
//!
//! Everything between an image file and a normalised `f32` batch: decoding with clear errors,
//! PIL-exact resampling, eval preprocessing (resize + center crop), and the training pipeline.

pub mod error;
pub mod fsutil;
pub mod image_io;
pub mod image_structure;
pub mod preprocess;
pub mod resize;

pub use error::{DataError, one_line};
pub use image_io::{
    DecodeLimits, ImageInfo, ImageWalker, MAX_PIXELS_ENV, collect_images, decode_limits,
    decode_rgb, is_image_path, load_rgb, load_rgb_with, probe_image, set_decode_limits,
};
pub use preprocess::{
    IMAGENET_MEAN, IMAGENET_STD, MAX_INPUT_SIDE, MAX_RESIZE_SIDE, Preprocess, check_mean_std,
};
pub use resize::{Interpolation, resize, resize_region};
pub mod dataset;
pub mod loader;
pub mod mixup;
pub mod randaugment;
pub mod transforms;

pub use dataset::{ImageFolder, ImageNetFolders};
pub use loader::{Batch, BatchIter, LoaderConfig, eval_batches, train_batches};
pub use mixup::{Mixup, smooth_one_hot, soft_target_cross_entropy};
pub use randaugment::RandAugment;
pub use transforms::TrainTransform;
