//! The layer operations a block is made of, in one place: convolution, BatchNorm +
//! activation, and squeeze-excitation's pool and gate, for training and inference.
//!
//! Blocks call these helpers rather than burn's modules, so that one model code runs on every
//! backend. For f32 on the CPU (Flex) and CubeCL devices the helpers call effnet's training
//! ops, a burn backend extension ([`TrainOps`]): effnet-cpu's kernels on Flex, burn's own
//! composition on CubeCL, each a single autodiff node with a handwritten backward. Half-precision
//! tensors, and everything when [`PLAIN_OPS_ENV`] is set (or inside [`with_plain_ops`]), take
//! burn's plain modules, exactly as before the ops existed.

mod autodiff;
mod backend;
mod flex;

pub use backend::{FusedAct, TrainOps};

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::config::Activation;
use crate::precision;
use burn::tensor::activation::{relu, silu};

/// Applies the configured activation.
pub fn activate(x: Tensor<4>, act: Activation) -> Tensor<4> {
    match act {
        Activation::Silu => silu(x),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::Relu => relu(x),
    }
}

/// Whether `x` takes effnet's ops: f32, on a backend that implements them, not forced plain.
fn use_ops(x: &Tensor<4>) -> bool {
    if plain_forced() || FloatDType::from(x.dtype()) != FloatDType::F32 {
        return false;
    }
    match x.device().inner().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        DispatchDevice::Cube(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// A conv layer's forward (weights cast to the input's float type, see [`crate::precision`]).
pub fn conv2d(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !use_ops(&x) {
        return precision::conv(layer, x);
    }
    let options = precision::conv_options(layer, x.dims());
    let y = <Dispatch as TrainOps>::effnet_conv2d(
        x.into_dispatch(),
        layer.weight.val().into_dispatch(),
        options,
    );
    let y: Tensor<4> = Tensor::from_dispatch(y);
    match &layer.bias {
        Some(b) => {
            let [c] = b.dims();
            y + b.val().reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// Global average pool `[N, C, H, W]` → `[N, C, 1, 1]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<4> {
    if !use_ops(&x) {
        return x.mean_dim(3).mean_dim(2);
    }
    Tensor::from_dispatch(<Dispatch as TrainOps>::effnet_global_avg_pool(
        x.into_dispatch(),
    ))
}

/// `x` `[N, C, H, W]` scaled per channel by `gate` `[N, C, 1, 1]`.
pub fn channel_gate(x: Tensor<4>, gate: Tensor<4>) -> Tensor<4> {
    if !use_ops(&x) || FloatDType::from(gate.dtype()) != FloatDType::F32 {
        return x * gate;
    }
    Tensor::from_dispatch(<Dispatch as TrainOps>::effnet_channel_gate(
        x.into_dispatch(),
        gate.into_dispatch(),
    ))
}

/// BatchNorm (batch statistics and a running-statistics update when training: an autodiff
/// device and the layer's training flag on; running statistics otherwise; computed in f32)
/// followed by `act` when there is one.
pub fn batch_norm_act(layer: &BatchNorm, act: Option<Activation>, x: Tensor<4>) -> Tensor<4> {
    let training = x.device().is_autodiff() && layer.training.is_enabled();
    if !training || !use_ops(&x) {
        let y = precision::batch_norm(layer, x);
        return match act {
            Some(act) => activate(y, act),
            None => y,
        };
    }
    let act = match act {
        None => FusedAct::Identity,
        Some(Activation::Silu) => FusedAct::Silu,
        Some(Activation::Relu6) => FusedAct::Relu6,
        Some(Activation::Relu) => FusedAct::Relu,
    };
    let (y, mean, var) = <Dispatch as TrainOps>::effnet_batch_norm_act(
        x.into_dispatch(),
        layer.gamma.val().into_dispatch(),
        layer.beta.val().into_dispatch(),
        layer.epsilon,
        act,
    );
    update_running_stats(
        layer,
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    );
    Tensor::from_dispatch(y)
}

/// `running = (1 − momentum)·running + momentum·batch`, as burn's `BatchNorm` updates them.
fn update_running_stats(layer: &BatchNorm, mean: Tensor<1>, var: Tensor<1>) {
    let device = mean.device();
    let m = layer.momentum;
    let running_mean = layer.running_mean.value_sync().to_device(&device);
    let running_var = layer.running_var.value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - m)
        .add(mean.detach().mul_scalar(m));
    let running_var = running_var
        .mul_scalar(1.0 - m)
        .add(var.detach().mul_scalar(m));
    layer.running_mean.update(running_mean.detach());
    layer.running_var.update(running_var.detach());
}

/// Environment variable that makes every helper run burn's plain composition
/// (`EFFNET_PLAIN_OPS=1`), e.g. to compare effnet's ops with it.
pub const PLAIN_OPS_ENV: &str = "EFFNET_PLAIN_OPS";

thread_local! {
    static PLAIN_OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether the helpers run burn's plain composition on this thread: set by
/// [`with_plain_ops`], else by [`PLAIN_OPS_ENV`].
pub fn plain_forced() -> bool {
    static ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    PLAIN_OVERRIDE.with(|o| o.get()).unwrap_or_else(|| {
        *ENV.get_or_init(|| std::env::var(PLAIN_OPS_ENV).is_ok_and(|v| !v.is_empty() && v != "0"))
    })
}

/// Runs `f` with the plain composition forced on (`plain = true`) or off on this thread,
/// whatever [`PLAIN_OPS_ENV`] says; for tests and comparisons in one process.
pub fn with_plain_ops<R>(plain: bool, f: impl FnOnce() -> R) -> R {
    let before = PLAIN_OVERRIDE.with(|o| o.replace(Some(plain)));
    let out = f();
    PLAIN_OVERRIDE.with(|o| o.set(before));
    out
}

/// CubeCL devices (wgpu, CUDA) run the default bodies: burn's own composition.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl TrainOps for burn::backend::Cube {}
