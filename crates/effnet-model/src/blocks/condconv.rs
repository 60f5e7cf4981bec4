//! CondConv (conditionally parameterised convolution; timm `CondConv2d` / `CondConvResidual`):
//! every conv of the block holds `E` expert kernels, and each sample convolves with its own mix
//! `Σ r_e W_e`, where `r = sigmoid(routing_fn(mean-pooled block input))`. The mixed kernels of a
//! batch run as one grouped conv (groups × batch).
//!
//! The mix depends on the input, so the BatchNorms stay unfolded; the native CPU executor and
//! the ONNX export do not run it (the burn engine does).

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, FloatDType};

use super::{
    BlockLayers, DropPath, LayerKeys, LayerSettings, SqueezeExcite, activate, apply_se, residual,
    squeeze_excite, timm_keys,
};
use crate::arch::BlockSpec;
use crate::config::{Activation, PaddingMode};
use crate::precision;

/// A conv whose kernel is a per-sample mix of expert kernels.
#[derive(Module, Debug)]
pub struct CondConv2d {
    /// Expert kernels, flattened: `[experts, out · in/groups · k · k]` (timm's layout).
    pub weight: Param<Tensor<2>>,
    /// Output channels.
    pub out_channels: usize,
    /// Input channels per group.
    pub in_per_group: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Groups.
    pub groups: usize,
    /// Padding rule.
    #[module(skip)]
    pub padding: PaddingMode,
}

/// `(before, after)` padding of one axis of length `n`.
fn pads(padding: PaddingMode, n: usize, k: usize, s: usize) -> (usize, usize) {
    match padding {
        PaddingMode::Symmetric => {
            let p = (s - 1 + k - 1) / 2;
            (p, p)
        }
        PaddingMode::Same => {
            let total = ((n.div_ceil(s).max(1) - 1) * s + k).saturating_sub(n);
            (total / 2, total - total / 2)
        }
    }
}

impl CondConv2d {
    /// `experts` kernels of a `cin → cout` conv, each initialised like timm (normal, std
    /// `sqrt(2 / fan_out)`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        experts: usize,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        padding: PaddingMode,
        device: &Device,
    ) -> Self {
        let per_expert = cout * (cin / groups) * kernel * kernel;
        let fan_out = (kernel * kernel * cout / groups) as f64;
        let dist = Distribution::Normal(0.0, (2.0 / fan_out).sqrt());
        Self {
            weight: Param::from_tensor(Tensor::random([experts, per_expert], dist, device)),
            out_channels: cout,
            in_per_group: cin / groups,
            kernel,
            stride,
            groups,
            padding,
        }
    }

    /// Convolves each sample of `x` with its mix of experts (`routing`: `[B, experts]`).
    pub fn forward(&self, x: Tensor<4>, routing: Tensor<2>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let dtype: FloatDType = x.dtype().into();
        let (k, s, out) = (self.kernel, self.stride, self.out_channels);
        let mixed = routing.cast(dtype).matmul(self.weight.val().cast(dtype));
        let weight = mixed.reshape([b * out, self.in_per_group, k, k]);
        let pad_h = pads(self.padding, h, k, s);
        let pad_w = pads(self.padding, w, k, s);
        let options =
            ConvOptions::new_with_padding([s, s], [pad_h, pad_w], [1, 1], self.groups * b);
        let y = conv2d(x.reshape([1, b * c, h, w]), weight, None, options);
        let [_, _, oh, ow] = y.dims();
        y.reshape([b, out, oh, ow])
    }
}

/// MBConv with CondConv expand, depthwise and project convs and a shared routing.
#[derive(Module, Debug)]
pub struct CondConvResidual {
    /// Pooled input → one logit per expert.
    pub routing_fn: Linear,
    /// 1×1 expansion.
    pub conv_pw: CondConv2d,
    /// BN after expansion.
    pub bn1: Option<BatchNorm>,
    /// Depthwise conv (strided).
    pub conv_dw: CondConv2d,
    /// BN after the depthwise conv.
    pub bn2: Option<BatchNorm>,
    /// Optional squeeze-excitation.
    pub se: Option<SqueezeExcite>,
    /// 1×1 projection.
    pub conv_pwl: CondConv2d,
    /// BN after projection (no activation).
    pub bn3: Option<BatchNorm>,
    /// Stochastic depth on the residual branch.
    pub drop_path: DropPath,
    /// Whether input is added back.
    pub has_skip: bool,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

fn bn(bn: &Option<BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    match bn {
        Some(bn) => precision::batch_norm(bn, x),
        None => x,
    }
}

impl CondConvResidual {
    /// The block `spec` describes (`spec.experts` experts).
    pub fn new(spec: &BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        let (cin, cout, mid, e) = (
            spec.in_channels,
            spec.out_channels,
            spec.mid_channels,
            spec.experts,
        );
        let se = squeeze_excite(spec, mid, layers, device);
        let range = 1.0 / ((cin + e) as f64).sqrt();
        let mut routing_fn = LinearConfig::new(cin, e)
            .with_initializer(Initializer::Uniform {
                min: -range,
                max: range,
            })
            .init(device);
        routing_fn.bias = Some(Param::from_tensor(Tensor::zeros([e], device)));
        let cc =
            |cin, cout, k, s, g| CondConv2d::new(e, cin, cout, k, s, g, layers.padding, device);
        Self {
            routing_fn,
            conv_pw: cc(cin, mid, 1, 1, 1),
            bn1: Some(layers.bn(mid, device)),
            conv_dw: cc(mid, mid, spec.kernel, spec.stride, spec.groups),
            bn2: Some(layers.bn(mid, device)),
            se,
            conv_pwl: cc(mid, cout, 1, 1, 1),
            bn3: Some(layers.bn(cout, device)),
            drop_path: DropPath::new(spec.drop_path),
            has_skip: spec.has_skip,
            act: spec.act,
        }
    }
}

impl BlockLayers for CondConvResidual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let pooled = x.clone().mean_dim(3).mean_dim(2).reshape([b, c]);
        let routing = sigmoid(precision::linear(&self.routing_fn, pooled));
        let y = self.conv_pw.forward(x.clone(), routing.clone());
        let y = activate(bn(&self.bn1, y), self.act);
        let y = self.conv_dw.forward(y, routing.clone());
        let y = activate(bn(&self.bn2, y), self.act);
        let y = self.conv_pwl.forward(apply_se(&self.se, y), routing);
        residual(bn(&self.bn3, y), x, self.has_skip, &self.drop_path)
    }
    fn batch_norms(&self) -> Vec<&Option<BatchNorm>> {
        vec![&self.bn1, &self.bn2, &self.bn3]
    }
    /// The expert mix depends on the input: the BatchNorms stay.
    fn fold_batchnorm(&mut self) {}
    fn key_table(&self) -> Vec<LayerKeys> {
        let mut table = vec![
            timm_keys("routing_fn", "routing_fn"),
            timm_keys("conv_pw", "conv_pw"),
            timm_keys("bn1", "bn1"),
            timm_keys("conv_dw", "conv_dw"),
            timm_keys("bn2", "bn2"),
            timm_keys("conv_pwl", "conv_pwl"),
            timm_keys("bn3", "bn3"),
        ];
        if self.se.is_some() {
            table.push(timm_keys("se.conv_reduce", "se.conv_reduce"));
            table.push(timm_keys("se.conv_expand", "se.conv_expand"));
        }
        table
    }
    fn drop_path(&self) -> &DropPath {
        &self.drop_path
    }
    fn stride(&self) -> usize {
        self.conv_dw.stride
    }
    fn out_channels(&self) -> usize {
        self.conv_pwl.out_channels
    }
}
