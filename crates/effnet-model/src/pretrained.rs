//! What a loaded weights file is ([`Pretrained`]) and the metadata keys of effnet's native
//! `.bpk` files, shared by the f32/f16 format ([`crate::weights`]) and the int8 one
//! ([`crate::int8`]).

use effnet_data::Preprocess;

use crate::config::EfficientNetConfig;
use crate::model::EfficientNet;

/// Metadata keys of effnet's native files.
pub(crate) const META_CONFIG: &str = "effnet.model";
pub(crate) const META_PREPROCESS: &str = "effnet.preprocess";
pub(crate) const META_SOURCE: &str = "effnet.source";
pub(crate) const META_LABELS: &str = "effnet.labels";
pub(crate) const META_PRECISION: &str = "effnet.precision";

/// A model with everything needed to use it: description, preprocessing and provenance.
pub struct Pretrained {
    /// The network.
    pub model: EfficientNet,
    /// Its description.
    pub config: EfficientNetConfig,
    /// How to prepare inputs for it.
    pub preprocess: Preprocess,
    /// Free-text provenance (source file, licence).
    pub source: String,
    /// Class names, when the file carries them (models trained by effnet do).
    pub labels: Option<Vec<String>>,
    /// The int8 model of an int8 `.bpk` (see [`crate::int8`]); `model` then holds its weights
    /// dequantised. `None` for f32/f16 weights.
    pub int8: Option<Box<effnet_cpu::quant::QuantModel>>,
}

impl std::fmt::Debug for Pretrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pretrained")
            .field("model", &self.config.name)
            .field("classes", &self.config.num_classes)
            .field("preprocess", &self.preprocess)
            .finish()
    }
}
