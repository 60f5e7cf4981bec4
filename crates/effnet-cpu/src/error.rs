//! Errors of plan compilation and execution.

/// Why a model cannot be compiled or an input cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A tensor or input has the wrong size.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The model uses something the executor does not implement.
    #[error("unsupported by the native CPU engine: {0}")]
    Unsupported(String),
}
