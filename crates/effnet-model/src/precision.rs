//! Mixed precision, in one place: the compute precision of a forward (and backward) pass.
//!
//! burn 0.22 only offers whole-device float types (every tensor, parameters and optimiser state
//! included, in f16 or bf16). effnet keeps the device, its parameters (the master weights) and
//! the optimiser state in f32 and lowers only the arithmetic:
//!
//! * [`EfficientNet::forward_with`](crate::EfficientNet::forward_with) casts the input image
//!   batch to the compute type; every conv and linear layer then casts its f32 weights to the
//!   type of the activation it receives ([`conv`], [`linear`]), so the whole network follows the
//!   input's type without a flag threaded through it;
//! * BatchNorm runs in f32 ([`batch_norm`]): the activation is widened, normalised with f32
//!   statistics (and the running statistics updated in f32), and narrowed back;
//! * the logits come back in f32, so softmax and the loss are computed in f32.
//!
//! A cast is an autodiff operation whose backward casts the gradient back, so the gradients of
//! the f32 parameters arrive in f32. With f32 every cast is a no-op.

use std::fmt;
use std::str::FromStr;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::module::{conv2d, linear as linear_op};
use burn::tensor::ops::ConvOptions;
use serde::{Deserialize, Serialize};

/// The arithmetic type of a forward/backward pass (timm's `--amp`/`--amp-dtype`). Parameters,
/// optimiser state, BatchNorm, softmax and the loss stay f32 whatever the choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputePrecision {
    /// Everything in f32.
    #[default]
    F32,
    /// Convs, linear layers and activations in bfloat16 (f32's range, 8 significant bits).
    Bf16,
    /// Convs, linear layers and activations in IEEE half (5 exponent bits: training needs a
    /// loss scaler against underflowing gradients).
    F16,
}

impl ComputePrecision {
    /// Every value, in the order help texts list them.
    pub const ALL: [ComputePrecision; 3] = [Self::F32, Self::Bf16, Self::F16];

    /// The burn float type of the arithmetic.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
            Self::F16 => FloatDType::F16,
        }
    }

    /// Whether this lowers the arithmetic below f32.
    pub fn is_half(self) -> bool {
        self != Self::F32
    }

    /// The lowercase name used in recipes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// Whether `device` can compute in this type (flex: all three; wgpu: f16 only with the
    /// adapter's `SHADER_F16`).
    pub fn supported_on(self, device: &Device) -> bool {
        device.supports_dtype(self.float_dtype())
    }
}

impl fmt::Display for ComputePrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ComputePrecision {
    type Err = String;

    /// `f32`, `bf16` or `f16` (case-insensitive; `fp32`, `bfloat16`, `fp16`, `half` accepted).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            other => Err(format!(
                "unknown precision '{other}' (expected one of: f32, bf16, f16)"
            )),
        }
    }
}

/// The float type of `x`.
fn dtype_of<const D: usize>(x: &Tensor<D>) -> FloatDType {
    x.dtype().into()
}

/// Padding `(start, end)` of one spatial axis, as burn's `PaddingConfig2d` computes it (its
/// helper is crate-private); `Same` is TensorFlow's rule (output `ceil(size / stride)`).
fn axis_padding(
    padding: &PaddingConfig2d,
    axis: usize,
    k: usize,
    s: usize,
    n: usize,
) -> [usize; 2] {
    match padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Same => {
            let out = n.div_ceil(s);
            let total = if out > 0 {
                ((out - 1) * s + k).saturating_sub(n)
            } else {
                0
            };
            [total / 2, total - total / 2]
        }
        // (top, left, bottom, right)
        PaddingConfig2d::Explicit(t, l, b, r) => {
            if axis == 0 {
                [*t, *b]
            } else {
                [*l, *r]
            }
        }
    }
}

/// A conv layer's forward in the type of its input: weights and bias are cast to it (f32 input:
/// exactly burn's `Conv2d::forward`).
pub fn conv(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let dtype = dtype_of(&x);
    if dtype == FloatDType::F32 {
        return layer.forward(x);
    }
    let options = conv_options(layer, x.dims());
    let bias = layer.bias.as_ref().map(|b| b.val().cast(dtype));
    conv2d(x, layer.weight.val().cast(dtype), bias, options)
}

/// The backend options of `layer` on an input of shape `dims` (its padding resolved as burn's
/// `Conv2d` resolves it).
pub(crate) fn conv_options(layer: &Conv2d, dims: [usize; 4]) -> ConvOptions<2> {
    let [_, _, h, w] = dims;
    let (k, s) = (layer.kernel_size, layer.stride);
    let [top, bottom] = axis_padding(&layer.padding, 0, k[0], s[0], h);
    let [left, right] = axis_padding(&layer.padding, 1, k[1], s[1], w);
    ConvOptions::new_with_padding(
        s,
        [(top, bottom), (left, right)],
        layer.dilation,
        layer.groups,
    )
}

/// A linear layer's forward in the type of its input (f32 input: burn's `Linear::forward`).
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let dtype = dtype_of(&x);
    if dtype == FloatDType::F32 {
        return layer.forward(x);
    }
    let bias = layer.bias.as_ref().map(|b| b.val().cast(dtype));
    linear_op(x, layer.weight.val().cast(dtype), bias)
}

/// BatchNorm in f32 whatever the input's type; the result has the input's type.
pub fn batch_norm(layer: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let dtype = dtype_of(&x);
    layer.forward(x.cast(FloatDType::F32)).cast(dtype)
}
