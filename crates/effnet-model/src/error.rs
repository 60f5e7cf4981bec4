//! Errors of the model crate: every variant names the file or tensor at fault.

use std::path::PathBuf;

/// What can go wrong building a model or moving weights in and out of it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model description is malformed or impossible.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A run would exceed a size bound or the memory budget (see [`crate::budget`]).
    #[error("{0}")]
    TooLarge(String),
    /// No preset has this name (or the architecture has no such pretrained tag).
    #[error("unknown model '{name}' ({known})")]
    UnknownPreset {
        /// The requested name.
        name: String,
        /// What is known instead: the closest names, or the architecture's tags.
        known: String,
    },
    /// A weights file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A weights file does not fit the model: names every missing, unexpected or mis-shaped tensor.
    #[error("{}: weights do not match model '{model}': {details}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The model name.
        model: String,
        /// Missing / unexpected / mis-shaped tensors.
        details: String,
    },
    /// Writing a weights file failed.
    #[error("{}: cannot write weights: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A weights tensor holds a NaN or an infinity.
    #[error("{}: tensor '{tensor}' is not finite: {what}", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the file.
        tensor: String,
        /// What was found where.
        what: String,
    },
    /// A forward pass produced NaN or infinite outputs (weights or inputs out of range).
    #[error("{0}")]
    NonFiniteOutput(String),
    /// A preprocessing setting is impossible (a zero size, a crop fraction above 1, ...).
    #[error("invalid preprocessing: {0}")]
    Preprocess(String),
}
