//! [`Error`]: everything the facade can report, each naming the file or spec at fault.

use std::path::PathBuf;

use effnet_data::DataError;
use effnet_model::ModelError;

/// What can go wrong loading weights, labels or images through the facade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Building a model or reading/writing weights failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Reading or decoding an image failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A label file could not be used.
    #[error("{}: {reason}", path.display())]
    Labels {
        /// The label file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Native weights are for another architecture than the one asked for.
    #[error("{}: weights are for model '{found}', not '{wanted}'", weights.display())]
    WrongModel {
        /// The weights file.
        weights: PathBuf,
        /// The architecture stored in it.
        found: String,
        /// The architecture asked for.
        wanted: String,
    },
    /// The request cannot be served as given (e.g. PyTorch weights without an architecture).
    #[error("{0}")]
    Usage(String),
    /// The forward pass failed (e.g. the native CPU executor refused an input).
    #[error("inference failed: {0}")]
    Inference(String),
    /// Downloading from the Hugging Face Hub failed.
    #[error("{spec}: {reason}")]
    Hub {
        /// The `hf-hub:` spec.
        spec: String,
        /// Why.
        reason: String,
    },
}
