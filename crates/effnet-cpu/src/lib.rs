//! # effnet-cpu
//!
//! A dedicated CPU inference executor for BN-folded EfficientNets, the counterpart of what
//! ONNX Runtime's MLAS does for these networks: channels-last activations, dense convs as
//! GEMM tiles on weights packed once when the executor is built (own AVX-512 / AVX2 microkernels;
//! the `gemm` crate on NEON) with bias + activation (+ residual) fused into each tile,
//! direct SIMD depthwise convs with the squeeze-excitation pool fused in, the SE gate folded
//! into the projection weights (or the activations, where smaller), preallocated buffers reused between calls, and rayon threads
//! over the batch or over spatial tiles. The kernels are compiled for AVX-512, AVX2+FMA, NEON
//! and a portable fallback, chosen at run time ([`Isa`]; `EFFNET_CPU_SIMD=scalar` forces
//! the fallback, `EFFNET_CPU_SIMD=avx2` the AVX2 kernels on an AVX-512 CPU).
//!
//! The crate knows nothing of burn: a [`Plan`] is plain weight arrays (effnet-model's
//! `native` module compiles a burn model into one).
//!
//! - [`infer`]: the [`Executor`] running a [`Plan`].
//! - [`kernels`]: the compute kernels, one folder per kind (`gemm`, `conv`, `depthwise`, `se`)
//!   and one file per instruction set inside it.
//!
//! ```no_run
//! use effnet_cpu::{Executor, Layout, Plan};
//! # fn demo(plan: Plan) {
//! let exec = Executor::new(plan).unwrap();
//! let logits = exec.forward(&vec![0.0; 3 * 224 * 224], 1, 224, 224, Layout::Nchw).unwrap();
//! assert_eq!(logits.len(), exec.num_classes());
//! # }
//! ```

#![warn(missing_docs)]

mod error;
pub mod infer;
mod isa;
pub mod kernels;

pub use error::CpuError;
pub use infer::plan;
pub use infer::{Executor, LayerKind, Layout, Profile};
pub use isa::{Isa, SIMD_ENV};
pub use plan::Plan;
