//! A cooperative stop request (like burn-train's `TrainingInterrupter`): whoever owns the process
//! (the CLI's signal handler, a GUI, a test) keeps a clone and calls [`StopHandle::request_stop`];
//! the trainer checks it after every step, writes a checkpoint and returns. The library installs
//! no signal handler itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared flag asking a running [`Trainer`](crate::Trainer) to checkpoint and stop.
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// A handle nobody has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the trainer to stop after the current step (idempotent, callable from any thread or
    /// a signal-handling thread).
    pub fn request_stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
