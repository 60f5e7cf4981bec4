//! The building blocks of the family, named after timm's modules so that timm state dicts map
//! one-to-one: `ConvBnAct`, `EdgeResidual` (Fused-MBConv), `DepthwiseSeparable` and
//! `InvertedResidual` (MBConv), with `SqueezeExcite` and `DropPath`.

use burn::module::{Flag, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{relu, sigmoid, silu};

use crate::config::{Activation, PaddingMode};

/// Applies the configured activation.
pub fn activate(x: Tensor<4>, act: Activation) -> Tensor<4> {
    match act {
        Activation::Silu => silu(x),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::Relu => relu(x),
    }
}

/// Conv followed by its BatchNorm, unless the BN was folded into the conv (inference).
pub fn conv_bn(conv: &Conv2d, bn: &Option<BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    let y = conv.forward(x);
    match bn {
        Some(bn) => bn.forward(y),
        None => y,
    }
}

/// Folds an inference BatchNorm into the preceding conv: `w·s`, `b·s + β − μ·s` with
/// `s = γ / sqrt(σ² + ε)`. One pass over memory fewer per layer; the BN is removed.
pub fn fold_bn(conv: &mut Conv2d, bn: &mut Option<BatchNorm>) {
    let Some(b) = bn.take() else {
        return;
    };
    let scale = b.gamma.val() / b.running_var.value().add_scalar(b.epsilon).sqrt();
    let [c] = scale.dims();
    let weight = conv.weight.val() * scale.clone().reshape([c, 1, 1, 1]);
    let shift = b.beta.val() - b.running_mean.value() * scale.clone();
    let bias = match &conv.bias {
        Some(old) => old.val() * scale + shift,
        None => shift,
    };
    conv.weight = Param::from_tensor(weight);
    conv.bias = Some(Param::from_tensor(bias));
}

/// Settings shared by every conv/BN pair in one network.
#[derive(Clone, Copy, Debug)]
pub struct LayerSettings {
    /// Padding rule.
    pub padding: PaddingMode,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
    /// BatchNorm momentum (PyTorch convention).
    pub bn_momentum: f64,
}

impl LayerSettings {
    /// A bias-free conv initialised like torchvision (Kaiming normal, fan-out over the full kernel).
    pub fn conv(
        &self,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Conv2d {
        let padding = match self.padding {
            PaddingMode::Symmetric => {
                let p = (kernel - 1) / 2;
                PaddingConfig2d::Explicit(p, p, p, p)
            }
            PaddingMode::Same => PaddingConfig2d::Same,
        };
        let fan_out = (cout * kernel * kernel) as f64;
        Conv2dConfig::new([cin, cout], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_padding(padding)
            .with_bias(false)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: (2.0 / fan_out).sqrt(),
            })
            .init(device)
    }

    /// A BatchNorm with this network's epsilon and momentum.
    pub fn bn(&self, channels: usize, device: &Device) -> BatchNorm {
        BatchNormConfig::new(channels)
            .with_epsilon(self.bn_eps)
            .with_momentum(self.bn_momentum)
            .init(device)
    }
}

/// Stochastic depth: drops the whole residual branch per sample during training.
///
/// Follows burn's `Dropout` convention: active only when its flag is set and the input lives on
/// an autodiff device, so an inference model is deterministic without extra calls.
#[derive(Module, Debug)]
pub struct DropPath {
    /// Probability of dropping the branch.
    pub prob: f64,
    /// Runtime switch (not persisted).
    pub training: Param<Flag>,
}

impl DropPath {
    /// A drop-path layer with the given drop probability.
    pub fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// Scales kept samples by `1/keep` and zeroes dropped ones.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.prob <= 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [b, _, _, _] = x.dims();
        let mask = Tensor::<4>::random([b, 1, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask.div_scalar(keep)
    }
}

/// Squeeze-and-excitation: global pool, 1×1 reduce, activation, 1×1 expand, sigmoid gate.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    /// 1×1 conv down to the squeeze width (with bias).
    pub conv_reduce: Conv2d,
    /// 1×1 conv back to the block width (with bias).
    pub conv_expand: Conv2d,
    /// Activation between the two convs.
    #[module(skip)]
    pub act: Activation,
}

impl SqueezeExcite {
    /// SE over `channels` with `squeeze` hidden units.
    pub fn new(channels: usize, squeeze: usize, act: Activation, device: &Device) -> Self {
        let conv = |cin: usize, cout: usize| {
            Conv2dConfig::new([cin, cout], [1, 1])
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: (2.0 / cout as f64).sqrt(),
                })
                .init(device)
        };
        let mut conv_reduce = conv(channels, squeeze);
        let mut conv_expand = conv(squeeze, channels);
        conv_reduce.bias = Some(Param::from_tensor(Tensor::zeros([squeeze], device)));
        conv_expand.bias = Some(Param::from_tensor(Tensor::zeros([channels], device)));
        Self {
            conv_reduce,
            conv_expand,
            act,
        }
    }

    /// Gates `x` channel-wise.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = x.clone().mean_dim(3).mean_dim(2);
        let s = activate(self.conv_reduce.forward(s), self.act);
        x * sigmoid(self.conv_expand.forward(s))
    }
}

/// Conv → BN → act, with an optional residual (Fused-MBConv with expansion 1).
#[derive(Module, Debug)]
pub struct ConvBnAct {
    /// k×k conv.
    pub conv: Conv2d,
    /// Its BatchNorm.
    pub bn1: Option<BatchNorm>,
    /// Stochastic depth on the residual branch.
    pub drop_path: DropPath,
    /// Whether input is added back.
    pub has_skip: bool,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

/// Fused-MBConv with expansion > 1: k×k expand conv (strided) → BN → act → 1×1 project → BN.
#[derive(Module, Debug)]
pub struct EdgeResidual {
    /// k×k expansion conv.
    pub conv_exp: Conv2d,
    /// BN after expansion.
    pub bn1: Option<BatchNorm>,
    /// 1×1 projection.
    pub conv_pwl: Conv2d,
    /// BN after projection (no activation).
    pub bn2: Option<BatchNorm>,
    /// Stochastic depth on the residual branch.
    pub drop_path: DropPath,
    /// Whether input is added back.
    pub has_skip: bool,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

/// MBConv with expansion 1: depthwise k×k → BN → act → SE → 1×1 project → BN.
#[derive(Module, Debug)]
pub struct DepthwiseSeparable {
    /// Depthwise conv.
    pub conv_dw: Conv2d,
    /// BN after the depthwise conv.
    pub bn1: Option<BatchNorm>,
    /// Optional squeeze-excitation.
    pub se: Option<SqueezeExcite>,
    /// 1×1 projection.
    pub conv_pw: Conv2d,
    /// BN after projection (no activation).
    pub bn2: Option<BatchNorm>,
    /// Stochastic depth on the residual branch.
    pub drop_path: DropPath,
    /// Whether input is added back.
    pub has_skip: bool,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

/// MBConv: 1×1 expand → BN → act → depthwise k×k → BN → act → SE → 1×1 project → BN.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1×1 expansion conv.
    pub conv_pw: Conv2d,
    /// BN after expansion.
    pub bn1: Option<BatchNorm>,
    /// Depthwise conv (strided).
    pub conv_dw: Conv2d,
    /// BN after the depthwise conv.
    pub bn2: Option<BatchNorm>,
    /// Optional squeeze-excitation.
    pub se: Option<SqueezeExcite>,
    /// 1×1 projection.
    pub conv_pwl: Conv2d,
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

/// Any block of the family; a stage is a `Vec<Block>`.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Block {
    /// Fused-MBConv, expansion 1.
    ConvBnAct(ConvBnAct),
    /// Fused-MBConv, expansion > 1.
    EdgeResidual(EdgeResidual),
    /// MBConv, expansion 1.
    DepthwiseSeparable(DepthwiseSeparable),
    /// MBConv, expansion > 1.
    InvertedResidual(InvertedResidual),
}

/// Shape of one block, resolved from a stage.
#[derive(Clone, Copy, Debug)]
pub struct BlockSpec {
    /// Fused or MBConv.
    pub kind: crate::config::BlockKind,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Spatial kernel.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Expansion ratio.
    pub expand: usize,
    /// SE ratio relative to `cin`.
    pub se_ratio: f64,
    /// Stochastic-depth rate of this block.
    pub drop_path: f64,
    /// Activation.
    pub act: Activation,
}

impl Block {
    /// Builds the block that matches `spec`.
    pub fn new(spec: BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        use crate::config::BlockKind;
        let BlockSpec {
            kind,
            cin,
            cout,
            kernel,
            stride,
            expand,
            se_ratio,
            drop_path,
            act,
        } = spec;
        let has_skip = stride == 1 && cin == cout;
        let drop_path = DropPath::new(drop_path);
        let mid = cin * expand;
        let se = (se_ratio > 0.0).then(|| {
            let squeeze = ((cin as f64 * se_ratio) as usize).max(1);
            SqueezeExcite::new(mid, squeeze, act, device)
        });
        match (kind, expand) {
            (BlockKind::Fused, 1) => Block::ConvBnAct(ConvBnAct {
                conv: layers.conv(cin, cout, kernel, stride, 1, device),
                bn1: Some(layers.bn(cout, device)),
                drop_path,
                has_skip,
                act,
            }),
            (BlockKind::Fused, _) => Block::EdgeResidual(EdgeResidual {
                conv_exp: layers.conv(cin, mid, kernel, stride, 1, device),
                bn1: Some(layers.bn(mid, device)),
                conv_pwl: layers.conv(mid, cout, 1, 1, 1, device),
                bn2: Some(layers.bn(cout, device)),
                drop_path,
                has_skip,
                act,
            }),
            (BlockKind::Mbconv, 1) => Block::DepthwiseSeparable(DepthwiseSeparable {
                conv_dw: layers.conv(cin, cin, kernel, stride, cin, device),
                bn1: Some(layers.bn(cin, device)),
                se,
                conv_pw: layers.conv(cin, cout, 1, 1, 1, device),
                bn2: Some(layers.bn(cout, device)),
                drop_path,
                has_skip,
                act,
            }),
            (BlockKind::Mbconv, _) => Block::InvertedResidual(InvertedResidual {
                conv_pw: layers.conv(cin, mid, 1, 1, 1, device),
                bn1: Some(layers.bn(mid, device)),
                conv_dw: layers.conv(mid, mid, kernel, stride, mid, device),
                bn2: Some(layers.bn(mid, device)),
                se,
                conv_pwl: layers.conv(mid, cout, 1, 1, 1, device),
                bn3: Some(layers.bn(cout, device)),
                drop_path,
                has_skip,
                act,
            }),
        }
    }

    /// Runs the block, adding the (drop-path'd) residual where shapes allow.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (y, skip, drop_path) = match self {
            Block::ConvBnAct(b) => {
                let y = activate(conv_bn(&b.conv, &b.bn1, x.clone()), b.act);
                (y, b.has_skip, &b.drop_path)
            }
            Block::EdgeResidual(b) => {
                let y = activate(conv_bn(&b.conv_exp, &b.bn1, x.clone()), b.act);
                let y = conv_bn(&b.conv_pwl, &b.bn2, y);
                (y, b.has_skip, &b.drop_path)
            }
            Block::DepthwiseSeparable(b) => {
                let mut y = activate(conv_bn(&b.conv_dw, &b.bn1, x.clone()), b.act);
                if let Some(se) = &b.se {
                    y = se.forward(y);
                }
                let y = conv_bn(&b.conv_pw, &b.bn2, y);
                (y, b.has_skip, &b.drop_path)
            }
            Block::InvertedResidual(b) => {
                let y = activate(conv_bn(&b.conv_pw, &b.bn1, x.clone()), b.act);
                let mut y = activate(conv_bn(&b.conv_dw, &b.bn2, y), b.act);
                if let Some(se) = &b.se {
                    y = se.forward(y);
                }
                let y = conv_bn(&b.conv_pwl, &b.bn3, y);
                (y, b.has_skip, &b.drop_path)
            }
        };
        if skip { drop_path.forward(y) + x } else { y }
    }

    /// Folds every BatchNorm of the block into its conv (inference only).
    pub fn fold_batchnorm(&mut self) {
        match self {
            Block::ConvBnAct(b) => fold_bn(&mut b.conv, &mut b.bn1),
            Block::EdgeResidual(b) => {
                fold_bn(&mut b.conv_exp, &mut b.bn1);
                fold_bn(&mut b.conv_pwl, &mut b.bn2);
            }
            Block::DepthwiseSeparable(b) => {
                fold_bn(&mut b.conv_dw, &mut b.bn1);
                fold_bn(&mut b.conv_pw, &mut b.bn2);
            }
            Block::InvertedResidual(b) => {
                fold_bn(&mut b.conv_pw, &mut b.bn1);
                fold_bn(&mut b.conv_dw, &mut b.bn2);
                fold_bn(&mut b.conv_pwl, &mut b.bn3);
            }
        }
    }

    /// Stochastic-depth rate of this block.
    pub fn drop_path_rate(&self) -> f64 {
        match self {
            Block::ConvBnAct(b) => b.drop_path.prob,
            Block::EdgeResidual(b) => b.drop_path.prob,
            Block::DepthwiseSeparable(b) => b.drop_path.prob,
            Block::InvertedResidual(b) => b.drop_path.prob,
        }
    }
}
