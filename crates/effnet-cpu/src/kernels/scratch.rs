//! Scratch buffers for the training kernels (im2col matrices, transposed copies), kept per
//! thread and reused from one call to the next: a fresh multi-megabyte allocation per layer
//! costs page faults and zeroing that show in a training step's profile.

use std::cell::RefCell;

thread_local! {
    /// Free buffers of this thread (a stack: nested users each get their own).
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` values whose contents are unspecified (left over from an
/// earlier use, or zero): `f` must write every value it reads.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    POOL.with(|p| p.borrow_mut().push(buf));
    out
}
