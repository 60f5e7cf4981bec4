//! Errors of the exporters: each names the option or file at fault.

use std::path::PathBuf;

/// What can go wrong exporting a model.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An export option is out of range.
    #[error("{0}")]
    Option(String),
    /// The model holds something the exporter cannot express.
    #[error("cannot export: {0}")]
    Unsupported(String),
    /// Writing the output failed.
    #[error("{}: cannot write: {reason}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
