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
//! - [`infer`]: the [`Executor`] running a [`Plan`], and the [`Int8Executor`] running its
//!   full-integer int8 counterpart.
//! - [`quant`]: int8 quantisation — the [`quant::QuantModel`] every int8 backend lowers, and
//!   calibration of its activation ranges.
//! - [`kernels`]: the compute kernels, one folder per kind (`gemm`, `conv`, `depthwise`, `se`,
//!   `norm_act`, `int8`) and one file per instruction set inside it.
//! - [`train`]: the training kernels (forward and backward on NCHW tensors) that effnet-model's
//!   burn backend extension runs on the CPU.
//!
//! ```no_run
//! use effnet_cpu::{Executor, Layout, Plan};
//! # fn demo(plan: Plan) {
//! let exec = Executor::new(plan).unwrap();
//! let logits = exec.forward(&vec![0.0; 3 * 224 * 224], 1, 224, 224, Layout::Nchw).unwrap();
//! assert_eq!(logits.len(), exec.num_classes());
//! # }
//! ```

mod error;
pub mod infer;
mod isa;
pub mod kernels;
pub mod quant;

/// The training kernels that effnet-model's burn ops call, in one place: channels-first (NCHW)
/// f32 tensors, forward and backward, each on `threads` rayon threads with the given [`Isa`]
/// (the portable fallback runs plain loops, also in place of the `gemm` crate, so that every
/// path can be tested against it).
pub mod train {
    pub use crate::kernels::conv::nchw::{
        Conv2dShape, conv2d_backward_data, conv2d_backward_weight, conv2d_forward,
    };
    pub use crate::kernels::depthwise::nchw::{
        depthwise_backward_data, depthwise_backward_weight, depthwise_forward,
    };
    pub use crate::kernels::norm_act::{
        BnAct, batch_norm_act_backward, batch_norm_act_forward, channel_sums,
    };
    pub use crate::kernels::se::nchw::{
        gate_backward, gate_forward, plane_means, plane_means_backward,
    };
}

pub use error::CpuError;
pub use infer::int8::Int8Executor;
pub use infer::plan;
pub use infer::{Executor, LayerKind, Layout, Profile};
pub use isa::{Isa, SIMD_ENV};
pub use plan::Plan;
