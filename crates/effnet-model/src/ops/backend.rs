//! The backend extension: effnet's training ops as a burn backend trait ([`TrainOps`]).
//!
//! Every method has a default body that composes burn's own backend operations: that is the
//! implementation for CubeCL devices (wgpu, CUDA) and the fallback of the Flex one for what its
//! kernels do not cover (half types, dilation, grouped convs that are not depthwise). Flex
//! overrides them with effnet-cpu's kernels (`flex.rs`), and `Autodiff` with a handwritten
//! backward that calls the inner backend's backward methods (`autodiff.rs`).

use burn::backend::TensorMetadata;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, backend_extension, get_or_init_device_settings};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Scalar, Shape};

/// The activation fused after a training BatchNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FusedAct {
    /// None (a projection's BatchNorm).
    Identity,
    /// `x·sigmoid(x)`.
    Silu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `max(x, 0)`.
    Relu,
}

/// effnet's training ops (see the module doc). Tensors are NCHW.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait TrainOps: Backend {
    /// 2-D convolution without bias, as [`ModuleOps::conv2d`](burn::backend::ops::ModuleOps::conv2d)
    /// (a bias is added by the caller: only squeeze-excitation's 1×1 convs on pooled maps have one).
    fn effnet_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// Gradient of [`effnet_conv2d`](Self::effnet_conv2d) with respect to its input.
    fn effnet_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`effnet_conv2d`](Self::effnet_conv2d) with respect to its weight.
    fn effnet_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// Global average pool: `[N, C, H, W]` to `[N, C, 1, 1]` (squeeze-excitation, the head).
    fn effnet_global_avg_pool(x: FloatTensor<Self>) -> FloatTensor<Self> {
        global_avg_pool_composed::<Self>(x)
    }

    /// Gradient of [`effnet_global_avg_pool`](Self::effnet_global_avg_pool): `output_grad`
    /// `[N, C, 1, 1]` spread over `h × w`.
    fn effnet_global_avg_pool_backward(
        output_grad: FloatTensor<Self>,
        h: usize,
        w: usize,
    ) -> FloatTensor<Self> {
        global_avg_pool_backward_composed::<Self>(output_grad, h, w)
    }

    /// Channel gate: `x` `[N, C, H, W]` times `gate` `[N, C, 1, 1]` (squeeze-excitation).
    fn effnet_channel_gate(x: FloatTensor<Self>, gate: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_mul(x, gate)
    }

    /// Gradients of [`effnet_channel_gate`](Self::effnet_channel_gate): `(dx, dgate)`.
    fn effnet_channel_gate_backward(
        x: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        channel_gate_backward_composed::<Self>(x, gate, output_grad)
    }

    /// Training BatchNorm (batch statistics) followed by `act`: `(output, batch mean, biased
    /// batch variance)`, as [`ModuleOps::batch_norm_train`](burn::backend::ops::ModuleOps::batch_norm_train).
    fn effnet_batch_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: FusedAct,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        batch_norm_act_composed::<Self>(x, gamma, beta, epsilon, act)
    }

    /// Gradients of [`effnet_batch_norm_act`](Self::effnet_batch_norm_act) with respect to
    /// `x`, `gamma` and `beta`, from the forward's inputs, its batch statistics and the output
    /// gradient.
    #[allow(clippy::too_many_arguments)]
    fn effnet_batch_norm_act_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
        act: FusedAct,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        batch_norm_act_backward_composed::<Self>(
            x,
            gamma,
            beta,
            mean,
            variance,
            output_grad,
            epsilon,
            act,
        )
    }
}

/// `act(x)` composed of backend operations (the same ones `effnet_model::ops::activate` uses).
pub(crate) fn activation<B: Backend>(x: FloatTensor<B>, act: FusedAct) -> FloatTensor<B> {
    match act {
        FusedAct::Identity => x,
        FusedAct::Silu => B::float_mul(x.clone(), B::sigmoid(x)),
        FusedAct::Relu6 => B::float_clamp(x, Scalar::Float(0.0), Scalar::Float(6.0)),
        FusedAct::Relu => B::relu(x),
    }
}

/// `grad·act'(z)`, with the derivatives burn's autodiff takes through [`activation`]: SiLU
/// through the sigmoid, ReLU6 as a clamp (gradient kept at 0 and 6), ReLU zero at 0.
pub(crate) fn activation_backward<B: Backend>(
    z: FloatTensor<B>,
    grad: FloatTensor<B>,
    act: FusedAct,
) -> FloatTensor<B> {
    let bool_dtype = get_or_init_device_settings::<B>(&z.device()).bool_dtype;
    match act {
        FusedAct::Identity => grad,
        FusedAct::Silu => {
            // s + z·s·(1 − s)
            let s = B::sigmoid(z.clone());
            let one_minus = B::float_add_scalar(B::float_neg(s.clone()), Scalar::Float(1.0));
            let d = B::float_add(s.clone(), B::float_mul(B::float_mul(z, s), one_minus));
            B::float_mul(grad, d)
        }
        FusedAct::Relu6 => {
            let below = B::float_lower_elem(z.clone(), Scalar::Float(0.0), bool_dtype);
            let above = B::float_greater_elem(z, Scalar::Float(6.0), bool_dtype);
            let grad = B::float_mask_fill(grad, below, Scalar::Float(0.0));
            B::float_mask_fill(grad, above, Scalar::Float(0.0))
        }
        FusedAct::Relu => {
            let off = B::float_lower_equal_elem(z, Scalar::Float(0.0), bool_dtype);
            B::float_mask_fill(grad, off, Scalar::Float(0.0))
        }
    }
}

/// [`TrainOps::effnet_batch_norm_act`] composed of burn's operations.
pub(crate) fn batch_norm_act_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
    act: FusedAct,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let r = B::batch_norm_train(x, gamma, beta, epsilon);
    (activation::<B>(r.output, act), r.mean, r.variance)
}

/// [`TrainOps::effnet_batch_norm_act_backward`] composed of burn's operations: the activation's
/// derivative at the recomputed pre-activation, then burn's BatchNorm backward.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_act_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    epsilon: f64,
    act: FusedAct,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let grad = match act {
        FusedAct::Identity => output_grad,
        _ => {
            let z = B::batch_norm(
                x.clone(),
                gamma.clone(),
                beta,
                mean.clone(),
                variance.clone(),
                epsilon,
            );
            activation_backward::<B>(z, output_grad, act)
        }
    };
    let r = B::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
    (r.x_grad, r.gamma_grad, r.beta_grad)
}

/// [`TrainOps::effnet_global_avg_pool`] composed of burn's operations.
pub(crate) fn global_avg_pool_composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mean_dim(B::float_mean_dim(x, 3), 2)
}

/// [`TrainOps::effnet_global_avg_pool_backward`] composed of burn's operations.
pub(crate) fn global_avg_pool_backward_composed<B: Backend>(
    output_grad: FloatTensor<B>,
    h: usize,
    w: usize,
) -> FloatTensor<B> {
    let s = output_grad.shape();
    let spread = B::float_expand(output_grad, Shape::new([s[0], s[1], h, w]));
    B::float_div_scalar(spread, Scalar::Float((h * w) as f64))
}

/// [`TrainOps::effnet_channel_gate_backward`] composed of burn's operations.
pub(crate) fn channel_gate_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    gate: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dx = B::float_mul(output_grad.clone(), gate);
    let prod = B::float_mul(output_grad, x);
    (dx, B::float_sum_dim(B::float_sum_dim(prod, 3), 2))
}
