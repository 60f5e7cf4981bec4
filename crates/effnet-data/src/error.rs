//! Data errors: each names the file and the reason, fit for a one-line CLI message.

use std::path::PathBuf;

/// What can go wrong reading images and datasets.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or decoded as an image.
    #[error("{}: {reason}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// Why (missing, empty, corrupt, unsupported format...).
        reason: String,
    },
    /// A dataset folder is unusable.
    #[error("{}: {reason}", path.display())]
    Dataset {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
