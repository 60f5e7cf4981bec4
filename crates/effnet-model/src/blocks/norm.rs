//! Normalisations other than BatchNorm, each with its activation (timm's `GroupNormAct`,
//! `LayerNormAct2d`, `EvoNorm2dS0`), and [`NormActBlock`]: the four block types built with them.
//!
//! They normalise with statistics of the sample itself, so they never fold into a conv and the
//! native CPU executor and the ONNX export do not run them (the burn engine does).

use burn::module::{Module, Param};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::sigmoid;

use super::{
    BlockLayers, DropPath, LayerKeys, LayerSettings, SqueezeExcite, activate, apply_se, residual,
    squeeze_excite, timm_keys,
};
use crate::arch::BlockSpec;
use crate::config::{Activation, BlockKind, NormKind};
use crate::precision;

/// GroupNorm over groups of channels, then the activation (timm `GroupNormAct`).
#[derive(Module, Debug)]
pub struct GroupNormAct {
    /// Per-channel scale.
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift.
    pub bias: Param<Tensor<1>>,
    /// Number of groups.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
    /// Activation after the affine transform, if any.
    #[module(skip)]
    pub act: Option<Activation>,
}

/// LayerNorm over the channels of every pixel, then the activation (timm `LayerNormAct2d`).
#[derive(Module, Debug)]
pub struct LayerNormAct {
    /// Per-channel scale.
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift.
    pub bias: Param<Tensor<1>>,
    /// Added to the variance.
    pub eps: f64,
    /// Activation after the affine transform, if any.
    #[module(skip)]
    pub act: Option<Activation>,
}

/// EvoNorm-S0 (timm `EvoNorm2dS0`): `x·σ(v·x) / group_std(x) · w + b`, or only `x·w + b` where
/// the block has no activation (then `v` is absent).
#[derive(Module, Debug)]
pub struct EvoNormS0 {
    /// Per-channel scale.
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift.
    pub bias: Param<Tensor<1>>,
    /// Per-channel gate slope; absent without activation.
    pub v: Option<Param<Tensor<1>>>,
    /// Number of groups of the standard deviation.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
}

/// One normalisation + activation layer of a non-BatchNorm network.
#[derive(Module, Debug)]
pub enum NormAct {
    /// GroupNorm.
    Group(GroupNormAct),
    /// LayerNorm over channels.
    Layer(LayerNormAct),
    /// EvoNorm-S0 (its own activation).
    Evo(EvoNormS0),
}

fn ones(c: usize, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::ones([c], device))
}

fn zeros(c: usize, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::zeros([c], device))
}

/// `(x - mean) / sqrt(var + eps)` with statistics over the last axis of `[B, G, N]`.
fn standardise(x: Tensor<3>, eps: f64) -> Tensor<3> {
    let centred = x.clone() - x.mean_dim(2);
    let var = centred.clone().powi_scalar(2).mean_dim(2);
    centred / var.add_scalar(eps).sqrt()
}

/// `sqrt(var + eps)` of every group of channels, broadcast back to `[B, C, H, W]`.
fn group_std(x: Tensor<4>, groups: usize, eps: f64) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let g = x.reshape([b, groups, (c / groups) * h * w]);
    let centred = g.clone() - g.mean_dim(2);
    let std = centred.powi_scalar(2).mean_dim(2).add_scalar(eps).sqrt();
    std.reshape([b, groups, 1, 1])
        .repeat_dim(2, c / groups)
        .reshape([b, c, 1, 1])
}

fn affine(x: Tensor<4>, weight: &Param<Tensor<1>>, bias: &Param<Tensor<1>>) -> Tensor<4> {
    let c = weight.dims()[0];
    x * weight.val().reshape([1, c, 1, 1]) + bias.val().reshape([1, c, 1, 1])
}

fn maybe_act(x: Tensor<4>, act: Option<Activation>) -> Tensor<4> {
    match act {
        Some(a) => activate(x, a),
        None => x,
    }
}

impl NormAct {
    /// The `kind` layer over `channels` (`group_size` channels per group), with `act` after it
    /// (EvoNorm: its gate) or none.
    pub fn new(
        kind: NormKind,
        channels: usize,
        group_size: usize,
        eps: f64,
        act: Option<Activation>,
        device: &Device,
    ) -> Self {
        let groups = (channels / group_size.max(1)).max(1);
        match kind {
            NormKind::Group => NormAct::Group(GroupNormAct {
                weight: ones(channels, device),
                bias: zeros(channels, device),
                groups,
                eps,
                act,
            }),
            NormKind::Layer => NormAct::Layer(LayerNormAct {
                weight: ones(channels, device),
                bias: zeros(channels, device),
                eps,
                act,
            }),
            NormKind::EvonormS0 | NormKind::Batch => NormAct::Evo(EvoNormS0 {
                weight: ones(channels, device),
                bias: zeros(channels, device),
                v: act.map(|_| ones(channels, device)),
                groups,
                eps,
            }),
        }
    }

    /// Normalises `x` (in f32 whatever its type; the result has `x`'s type).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let dtype: FloatDType = x.dtype().into();
        let x = x.cast(FloatDType::F32);
        let [b, c, h, w] = x.dims();
        let y = match self {
            NormAct::Group(n) => {
                let y = standardise(x.reshape([b, n.groups, (c / n.groups) * h * w]), n.eps);
                maybe_act(affine(y.reshape([b, c, h, w]), &n.weight, &n.bias), n.act)
            }
            NormAct::Layer(n) => {
                let centred = x.clone() - x.mean_dim(1);
                let var = centred.clone().powi_scalar(2).mean_dim(1);
                let y = centred / var.add_scalar(n.eps).sqrt();
                maybe_act(affine(y, &n.weight, &n.bias), n.act)
            }
            NormAct::Evo(n) => {
                let y = match &n.v {
                    Some(v) => {
                        let gate = sigmoid(x.clone() * v.val().reshape([1, c, 1, 1]));
                        x.clone() * gate / group_std(x, n.groups, n.eps)
                    }
                    None => x,
                };
                affine(y, &n.weight, &n.bias)
            }
        };
        y.cast(dtype)
    }
}

/// A `cn`, `er`, `ds` or `ir` block whose norms are [`NormAct`]s; the convs in layer order are
/// `conv1..conv3` (timm: `conv` / `conv_exp, conv_pwl` / `conv_dw, conv_pw` /
/// `conv_pw, conv_dw, conv_pwl`).
#[derive(Module, Debug)]
pub struct NormActBlock {
    /// First conv.
    pub conv1: Conv2d,
    /// Its norm (with the activation).
    pub norm1: NormAct,
    /// Optional squeeze-excitation (before `conv2` in `er`/`ds`, before `conv3` in `ir`).
    pub se: Option<SqueezeExcite>,
    /// Second conv (`er`, `ds`, `ir`).
    pub conv2: Option<Conv2d>,
    /// Its norm (activation only in `ir`).
    pub norm2: Option<NormAct>,
    /// Third conv (`ir`).
    pub conv3: Option<Conv2d>,
    /// Its norm (no activation).
    pub norm3: Option<NormAct>,
    /// Stochastic depth on the residual branch.
    pub drop_path: DropPath,
    /// Whether input is added back.
    pub has_skip: bool,
    /// Which of timm's four block types this is.
    #[module(skip)]
    pub kind: BlockKind,
}

impl NormActBlock {
    /// The block `spec` describes, with `layers.norm` norms.
    pub fn new(spec: &BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        let (cin, mid, cout) = (spec.in_channels, spec.mid_channels, spec.out_channels);
        let norm = |c: usize, act: bool| {
            let act = act.then_some(spec.act);
            NormAct::new(
                layers.norm,
                c,
                layers.norm_group_size,
                layers.bn_eps,
                act,
                device,
            )
        };
        let (k, s, g) = (spec.kernel, spec.stride, spec.groups);
        let se = squeeze_excite(spec, mid, layers, device);
        let conv = |cin, cout, k, s, g| layers.conv(cin, cout, k, s, g, device);
        let none = |conv1, norm1| Self {
            conv1,
            norm1,
            se: None,
            conv2: None,
            norm2: None,
            conv3: None,
            norm3: None,
            drop_path: DropPath::new(spec.drop_path),
            has_skip: spec.has_skip,
            kind: spec.kind,
        };
        match spec.kind {
            BlockKind::Cn => none(conv(cin, cout, k, s, g), norm(cout, true)),
            BlockKind::Er | BlockKind::Ds => Self {
                se,
                conv2: Some(conv(mid, cout, 1, 1, 1)),
                norm2: Some(norm(cout, false)),
                ..none(conv(cin, mid, k, s, g), norm(mid, true))
            },
            _ => Self {
                se,
                conv2: Some(conv(mid, mid, k, s, g)),
                norm2: Some(norm(mid, true)),
                conv3: Some(conv(mid, cout, 1, 1, 1)),
                norm3: Some(norm(cout, false)),
                ..none(conv(cin, mid, 1, 1, 1), norm(mid, true))
            },
        }
    }

    fn convs(&self) -> impl Iterator<Item = &Conv2d> {
        std::iter::once(&self.conv1).chain(self.conv2.iter().chain(self.conv3.iter()))
    }
}

fn conv_norm(conv: &Option<Conv2d>, norm: &Option<NormAct>, x: Tensor<4>) -> Tensor<4> {
    match (conv, norm) {
        (Some(c), Some(n)) => n.forward(precision::conv(c, x)),
        _ => x,
    }
}

impl BlockLayers for NormActBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.norm1.forward(precision::conv(&self.conv1, x.clone()));
        let y = match self.kind {
            BlockKind::Cn => y,
            BlockKind::Er | BlockKind::Ds => {
                conv_norm(&self.conv2, &self.norm2, apply_se(&self.se, y))
            }
            _ => {
                let y = apply_se(&self.se, conv_norm(&self.conv2, &self.norm2, y));
                conv_norm(&self.conv3, &self.norm3, y)
            }
        };
        residual(y, x, self.has_skip, &self.drop_path)
    }
    fn batch_norms(&self) -> Vec<&Option<BatchNorm>> {
        Vec::new()
    }
    fn fold_batchnorm(&mut self) {}
    fn key_table(&self) -> Vec<LayerKeys> {
        let names: &[(&'static str, &'static str)] = match self.kind {
            BlockKind::Cn => &[("conv1", "conv"), ("norm1", "bn1")],
            BlockKind::Er => &[
                ("conv1", "conv_exp"),
                ("norm1", "bn1"),
                ("conv2", "conv_pwl"),
                ("norm2", "bn2"),
            ],
            BlockKind::Ds => &[
                ("conv1", "conv_dw"),
                ("norm1", "bn1"),
                ("conv2", "conv_pw"),
                ("norm2", "bn2"),
            ],
            _ => &[
                ("conv1", "conv_pw"),
                ("norm1", "bn1"),
                ("conv2", "conv_dw"),
                ("norm2", "bn2"),
                ("conv3", "conv_pwl"),
                ("norm3", "bn3"),
            ],
        };
        let mut table: Vec<LayerKeys> = names.iter().map(|&(o, t)| timm_keys(o, t)).collect();
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
        self.convs().map(|c| c.stride[0]).product()
    }
    fn out_channels(&self) -> usize {
        self.convs().last().map_or(0, |c| c.weight.dims()[0])
    }
}
