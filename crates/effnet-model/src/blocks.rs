//! The building blocks of the family, named after timm's modules so that timm state dicts map
//! one-to-one: `ConvBnAct`, `EdgeResidual` (Fused-MBConv), `DepthwiseSeparable` and
//! `InvertedResidual` (MBConv), with `SqueezeExcite` and `DropPath`. The layers only some
//! architectures use live in the submodules: [`norm`] (GroupNorm, LayerNorm, EvoNorm-S0 and the
//! blocks built with them), [`condconv`], [`attention`] (global context) and [`blurpool`].

pub mod attention;
pub mod blurpool;
pub mod condconv;
pub mod norm;

pub use attention::GlobalContext;
pub use blurpool::BlurPool;
pub use condconv::{CondConv2d, CondConvResidual};
pub use norm::{NormAct, NormActBlock};

use burn::module::{Flag, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Distribution, FloatDType};

use crate::arch::BlockSpec;
use crate::config::{Activation, Attention, BlockKind, NormKind, PaddingMode};
use crate::ops;
pub use crate::ops::activate;

/// Conv followed by its BatchNorm, unless the BN was folded into the conv (inference). Runs in
/// the input's float type, BatchNorm in f32 (see [`crate::precision`]).
pub fn conv_bn(conv: &Conv2d, bn: &Option<BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    conv_bn_act(conv, bn, None, x)
}

/// Conv, its BatchNorm (unless folded) and `act` when there is one, through [`crate::ops`].
pub fn conv_bn_act(
    conv: &Conv2d,
    bn: &Option<BatchNorm>,
    act: Option<Activation>,
    x: Tensor<4>,
) -> Tensor<4> {
    let y = ops::conv2d(conv, x);
    match (bn, act) {
        (Some(bn), act) => ops::batch_norm_act(bn, act, y),
        (None, Some(act)) => activate(y, act),
        (None, None) => y,
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
    /// Network non-linearity.
    pub act: Activation,
    /// Normalisation layer (BatchNorm, or one of [`norm`]'s).
    pub norm: NormKind,
    /// Channels per group of GroupNorm / EvoNorm.
    pub norm_group_size: usize,
    /// Channel attention of blocks with a squeeze width.
    pub attention: Attention,
    /// Anti-aliased (blur-pooled) strided depthwise convs.
    pub blur_pool: bool,
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
        self.conv_padded(cin, cout, kernel, stride, groups, self.padding, device)
    }

    /// [`conv`](Self::conv) with its own padding rule (space-to-depth convs use TF "same").
    #[allow(clippy::too_many_arguments)]
    pub fn conv_padded(
        &self,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        padding: PaddingMode,
        device: &Device,
    ) -> Conv2d {
        let padding = match padding {
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
        let dtype: FloatDType = x.dtype().into();
        x * mask.div_scalar(keep).cast(dtype)
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
        let s = ops::global_avg_pool(x.clone());
        let s = activate(ops::conv2d(&self.conv_reduce, s), self.act);
        ops::channel_gate(x, sigmoid(ops::conv2d(&self.conv_expand, s)))
    }
}

/// One layer's name in each supported checkpoint layout, so a state dict maps one-to-one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerKeys {
    /// effnet's name inside the block, e.g. `conv_pw`.
    pub ours: &'static str,
    /// timm's name inside the block (mostly `ours`; `se.conv_attn` for effnet's `gc.conv_attn`).
    pub timm: &'static str,
    /// torchvision's name inside `features.S.J.block`, e.g. `0.0`.
    pub torchvision: String,
    /// lukemelas' name inside `_blocks.N`, e.g. `_expand_conv`.
    pub lukemelas: &'static str,
}

fn keys(ours: &'static str, torchvision: impl Into<String>, lukemelas: &'static str) -> LayerKeys {
    LayerKeys {
        ours,
        timm: ours,
        torchvision: torchvision.into(),
        lukemelas,
    }
}

/// A layer only timm checkpoints have: `(effnet name, timm name)`.
pub(crate) fn timm_keys(ours: &'static str, timm: &'static str) -> LayerKeys {
    LayerKeys {
        ours,
        timm,
        torchvision: String::new(),
        lukemelas: "",
    }
}

/// Key rows of an optional SE at torchvision index `tv_index`.
fn se_keys(se: &Option<SqueezeExcite>, tv_index: usize) -> Vec<LayerKeys> {
    match se {
        Some(_) => vec![
            keys("se.conv_reduce", format!("{tv_index}.fc1"), "_se_reduce"),
            keys("se.conv_expand", format!("{tv_index}.fc2"), "_se_expand"),
        ],
        None => Vec::new(),
    }
}

/// Adds the (drop-path'd) branch `y` to the input `x` when the block keeps its shape.
pub(crate) fn residual(
    y: Tensor<4>,
    x: Tensor<4>,
    has_skip: bool,
    drop_path: &DropPath,
) -> Tensor<4> {
    if has_skip {
        drop_path.forward(y) + x
    } else {
        y
    }
}

/// SE over `channels` with the block's squeeze width; none when it has none (or when its
/// attention is global context instead).
pub(crate) fn squeeze_excite(
    spec: &BlockSpec,
    channels: usize,
    layers: &LayerSettings,
    device: &Device,
) -> Option<SqueezeExcite> {
    (spec.se_channels > 0 && layers.attention == Attention::Se)
        .then(|| SqueezeExcite::new(channels, spec.se_channels, spec.act, device))
}

pub(crate) fn apply_se(se: &Option<SqueezeExcite>, x: Tensor<4>) -> Tensor<4> {
    match se {
        Some(se) => se.forward(x),
        None => x,
    }
}

/// What every block type provides; [`Block`] only delegates to it.
pub trait BlockLayers {
    /// Runs the block, adding the (drop-path'd) residual where shapes allow.
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;
    /// Its BatchNorms, in layer order (absent once folded).
    fn batch_norms(&self) -> Vec<&Option<BatchNorm>>;
    /// Folds every BatchNorm of the block into its conv (inference only).
    fn fold_batchnorm(&mut self);
    /// Names of its layers in each checkpoint layout, in layer order.
    fn key_table(&self) -> Vec<LayerKeys>;
    /// Its stochastic-depth layer.
    fn drop_path(&self) -> &DropPath;
    /// Spatial stride of the block.
    fn stride(&self) -> usize;
    /// Output channels of the block.
    fn out_channels(&self) -> usize;
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

impl ConvBnAct {
    /// The block `spec` describes.
    pub fn new(spec: &BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        let (cin, cout) = (spec.in_channels, spec.out_channels);
        Self {
            conv: layers.conv(cin, cout, spec.kernel, spec.stride, spec.groups, device),
            bn1: Some(layers.bn(cout, device)),
            drop_path: DropPath::new(spec.drop_path),
            has_skip: spec.has_skip,
            act: spec.act,
        }
    }
}

impl BlockLayers for ConvBnAct {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = conv_bn_act(&self.conv, &self.bn1, Some(self.act), x.clone());
        residual(y, x, self.has_skip, &self.drop_path)
    }
    fn batch_norms(&self) -> Vec<&Option<BatchNorm>> {
        vec![&self.bn1]
    }
    fn fold_batchnorm(&mut self) {
        fold_bn(&mut self.conv, &mut self.bn1);
    }
    fn key_table(&self) -> Vec<LayerKeys> {
        vec![
            keys("conv", "0.0", "_project_conv"),
            keys("bn1", "0.1", "_bn2"),
        ]
    }
    fn drop_path(&self) -> &DropPath {
        &self.drop_path
    }
    fn stride(&self) -> usize {
        self.conv.stride[0]
    }
    fn out_channels(&self) -> usize {
        self.conv.weight.dims()[0]
    }
}

/// Fused-MBConv: k×k expand conv (strided) → BN → act → [SE] → 1×1 project → BN.
#[derive(Module, Debug)]
pub struct EdgeResidual {
    /// k×k expansion conv.
    pub conv_exp: Conv2d,
    /// BN after expansion.
    pub bn1: Option<BatchNorm>,
    /// Optional squeeze-excitation (EfficientNet-X).
    pub se: Option<SqueezeExcite>,
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

impl EdgeResidual {
    /// The block `spec` describes.
    pub fn new(spec: &BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        let (cin, cout, mid) = (spec.in_channels, spec.out_channels, spec.mid_channels);
        let se = squeeze_excite(spec, mid, layers, device);
        Self {
            conv_exp: layers.conv(cin, mid, spec.kernel, spec.stride, spec.groups, device),
            bn1: Some(layers.bn(mid, device)),
            se,
            conv_pwl: layers.conv(mid, cout, 1, 1, 1, device),
            bn2: Some(layers.bn(cout, device)),
            drop_path: DropPath::new(spec.drop_path),
            has_skip: spec.has_skip,
            act: spec.act,
        }
    }
}

impl BlockLayers for EdgeResidual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = conv_bn_act(&self.conv_exp, &self.bn1, Some(self.act), x.clone());
        let y = conv_bn(&self.conv_pwl, &self.bn2, apply_se(&self.se, y));
        residual(y, x, self.has_skip, &self.drop_path)
    }
    fn batch_norms(&self) -> Vec<&Option<BatchNorm>> {
        vec![&self.bn1, &self.bn2]
    }
    fn fold_batchnorm(&mut self) {
        fold_bn(&mut self.conv_exp, &mut self.bn1);
        fold_bn(&mut self.conv_pwl, &mut self.bn2);
    }
    fn key_table(&self) -> Vec<LayerKeys> {
        let mut table = vec![
            keys("conv_exp", "0.0", "_expand_conv"),
            keys("bn1", "0.1", "_bn0"),
        ];
        table.extend(se_keys(&self.se, 1));
        table.push(keys("conv_pwl", "1.0", "_project_conv"));
        table.push(keys("bn2", "1.1", "_bn2"));
        table
    }
    fn drop_path(&self) -> &DropPath {
        &self.drop_path
    }
    fn stride(&self) -> usize {
        self.conv_exp.stride[0]
    }
    fn out_channels(&self) -> usize {
        self.conv_pwl.weight.dims()[0]
    }
}

/// MBConv with expansion 1: [2×2 space-to-depth conv → BN → act] → depthwise k×k → BN → act →
/// SE → 1×1 project → BN.
#[derive(Module, Debug)]
pub struct DepthwiseSeparable {
    /// Space-to-depth conv: 2×2, stride 2, 4× the channels (EfficientNet-X).
    pub conv_s2d: Option<Conv2d>,
    /// BN after the space-to-depth conv.
    pub bn_s2d: Option<BatchNorm>,
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

impl DepthwiseSeparable {
    /// The block `spec` describes.
    pub fn new(spec: &BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        let (cin, cout, mid) = (spec.in_channels, spec.out_channels, spec.mid_channels);
        // SE first: the order layers draw from the RNG is part of a seeded run.
        let se = squeeze_excite(spec, mid, layers, device);
        let s2d = spec.space_to_depth;
        // timm pads an even depthwise kernel (after space-to-depth) TF-"same".
        let dw_padding = if spec.kernel.is_multiple_of(2) {
            PaddingMode::Same
        } else {
            layers.padding
        };
        let (k, g) = (spec.kernel, spec.groups);
        Self {
            conv_s2d: s2d.then(|| layers.conv_padded(cin, mid, 2, 2, 1, PaddingMode::Same, device)),
            bn_s2d: s2d.then(|| layers.bn(mid, device)),
            conv_dw: layers.conv_padded(mid, mid, k, spec.stride, g, dw_padding, device),
            bn1: Some(layers.bn(mid, device)),
            se,
            conv_pw: layers.conv(mid, cout, 1, 1, 1, device),
            bn2: Some(layers.bn(cout, device)),
            drop_path: DropPath::new(spec.drop_path),
            has_skip: spec.has_skip,
            act: spec.act,
        }
    }
}

impl BlockLayers for DepthwiseSeparable {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.conv_s2d {
            Some(conv) => conv_bn_act(conv, &self.bn_s2d, Some(self.act), x.clone()),
            None => x.clone(),
        };
        let y = conv_bn_act(&self.conv_dw, &self.bn1, Some(self.act), y);
        let y = conv_bn(&self.conv_pw, &self.bn2, apply_se(&self.se, y));
        residual(y, x, self.has_skip, &self.drop_path)
    }
    fn batch_norms(&self) -> Vec<&Option<BatchNorm>> {
        vec![&self.bn_s2d, &self.bn1, &self.bn2]
    }
    fn fold_batchnorm(&mut self) {
        if let Some(conv) = &mut self.conv_s2d {
            fold_bn(conv, &mut self.bn_s2d);
        }
        fold_bn(&mut self.conv_dw, &mut self.bn1);
        fold_bn(&mut self.conv_pw, &mut self.bn2);
    }
    fn key_table(&self) -> Vec<LayerKeys> {
        let project = if self.se.is_some() { 2 } else { 1 };
        let mut table = Vec::new();
        if self.conv_s2d.is_some() {
            table.push(timm_keys("conv_s2d", "conv_s2d"));
            table.push(timm_keys("bn_s2d", "bn_s2d"));
        }
        table.extend([
            keys("conv_dw", "0.0", "_depthwise_conv"),
            keys("bn1", "0.1", "_bn1"),
        ]);
        table.extend(se_keys(&self.se, 1));
        table.push(keys("conv_pw", format!("{project}.0"), "_project_conv"));
        table.push(keys("bn2", format!("{project}.1"), "_bn2"));
        table
    }
    fn drop_path(&self) -> &DropPath {
        &self.drop_path
    }
    fn stride(&self) -> usize {
        let s2d = self.conv_s2d.as_ref().map_or(1, |c| c.stride[0]);
        s2d * self.conv_dw.stride[0]
    }
    fn out_channels(&self) -> usize {
        self.conv_pw.weight.dims()[0]
    }
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
    /// Blur pool after the depthwise conv, which then runs at stride 1 (`blur_pool` nets).
    pub aa: Option<BlurPool>,
    /// Optional squeeze-excitation.
    pub se: Option<SqueezeExcite>,
    /// Global-context attention in place of SE (`attention = "gc"`; timm's `se` module).
    pub gc: Option<GlobalContext>,
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

impl InvertedResidual {
    /// The block `spec` describes.
    pub fn new(spec: &BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        let (cin, cout, mid) = (spec.in_channels, spec.out_channels, spec.mid_channels);
        // SE first: the order layers draw from the RNG is part of a seeded run.
        let se = squeeze_excite(spec, mid, layers, device);
        let gc = (spec.se_channels > 0 && layers.attention == Attention::Gc)
            .then(|| GlobalContext::new(mid, spec.se_channels, spec.act, device));
        let blur = layers.blur_pool && spec.stride > 1;
        let dw_stride = if blur { 1 } else { spec.stride };
        Self {
            conv_pw: layers.conv(cin, mid, 1, 1, 1, device),
            bn1: Some(layers.bn(mid, device)),
            conv_dw: layers.conv(mid, mid, spec.kernel, dw_stride, spec.groups, device),
            bn2: Some(layers.bn(mid, device)),
            aa: blur.then(|| BlurPool::new(mid, spec.stride)),
            se,
            gc,
            conv_pwl: layers.conv(mid, cout, 1, 1, 1, device),
            bn3: Some(layers.bn(cout, device)),
            drop_path: DropPath::new(spec.drop_path),
            has_skip: spec.has_skip,
            act: spec.act,
        }
    }
}

impl BlockLayers for InvertedResidual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = conv_bn_act(&self.conv_pw, &self.bn1, Some(self.act), x.clone());
        let y = conv_bn_act(&self.conv_dw, &self.bn2, Some(self.act), y);
        let y = match &self.aa {
            Some(aa) => aa.forward(y),
            None => y,
        };
        let y = match &self.gc {
            Some(gc) => gc.forward(y),
            None => apply_se(&self.se, y),
        };
        let y = conv_bn(&self.conv_pwl, &self.bn3, y);
        residual(y, x, self.has_skip, &self.drop_path)
    }
    fn batch_norms(&self) -> Vec<&Option<BatchNorm>> {
        vec![&self.bn1, &self.bn2, &self.bn3]
    }
    fn fold_batchnorm(&mut self) {
        fold_bn(&mut self.conv_pw, &mut self.bn1);
        fold_bn(&mut self.conv_dw, &mut self.bn2);
        fold_bn(&mut self.conv_pwl, &mut self.bn3);
    }
    fn key_table(&self) -> Vec<LayerKeys> {
        let project = if self.se.is_some() { 3 } else { 2 };
        let mut table = vec![
            keys("conv_pw", "0.0", "_expand_conv"),
            keys("bn1", "0.1", "_bn0"),
            keys("conv_dw", "1.0", "_depthwise_conv"),
            keys("bn2", "1.1", "_bn1"),
        ];
        table.extend(se_keys(&self.se, 2));
        if self.gc.is_some() {
            table.extend(GlobalContext::key_table());
        }
        table.push(keys("conv_pwl", format!("{project}.0"), "_project_conv"));
        table.push(keys("bn3", format!("{project}.1"), "_bn2"));
        table
    }
    fn drop_path(&self) -> &DropPath {
        &self.drop_path
    }
    fn stride(&self) -> usize {
        let aa = self.aa.as_ref().map_or(1, |a| a.stride);
        aa * self.conv_dw.stride[0]
    }
    fn out_channels(&self) -> usize {
        self.conv_pwl.weight.dims()[0]
    }
}

/// Any block of the family; a stage is a `Vec<Block>`. Every method delegates to the block type
/// through [`BlockLayers`]; the variant names are part of the weights-file layout.
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
    /// MBConv whose convs mix CondConv experts per sample.
    CondConvResidual(CondConvResidual),
    /// Any of the four block types built with GroupNorm, LayerNorm or EvoNorm.
    NormActBlock(NormActBlock),
}

impl Block {
    /// Builds the block type that `spec` (and the network's norm) calls for.
    pub fn new(spec: &BlockSpec, layers: &LayerSettings, device: &Device) -> Self {
        if layers.norm != NormKind::Batch {
            return Block::NormActBlock(NormActBlock::new(spec, layers, device));
        }
        match spec.kind {
            BlockKind::Cn => Block::ConvBnAct(ConvBnAct::new(spec, layers, device)),
            BlockKind::Er => Block::EdgeResidual(EdgeResidual::new(spec, layers, device)),
            BlockKind::Ds => {
                Block::DepthwiseSeparable(DepthwiseSeparable::new(spec, layers, device))
            }
            _ if spec.experts > 0 => {
                Block::CondConvResidual(CondConvResidual::new(spec, layers, device))
            }
            _ => Block::InvertedResidual(InvertedResidual::new(spec, layers, device)),
        }
    }

    /// The block as its type's [`BlockLayers`].
    pub fn layers(&self) -> &dyn BlockLayers {
        match self {
            Block::ConvBnAct(b) => b,
            Block::EdgeResidual(b) => b,
            Block::DepthwiseSeparable(b) => b,
            Block::InvertedResidual(b) => b,
            Block::CondConvResidual(b) => b,
            Block::NormActBlock(b) => b,
        }
    }

    fn layers_mut(&mut self) -> &mut dyn BlockLayers {
        match self {
            Block::ConvBnAct(b) => b,
            Block::EdgeResidual(b) => b,
            Block::DepthwiseSeparable(b) => b,
            Block::InvertedResidual(b) => b,
            Block::CondConvResidual(b) => b,
            Block::NormActBlock(b) => b,
        }
    }

    /// Runs the block, adding the (drop-path'd) residual where shapes allow.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.layers().forward(x)
    }

    /// Folds every BatchNorm of the block into its conv (inference only).
    pub fn fold_batchnorm(&mut self) {
        self.layers_mut().fold_batchnorm();
    }

    /// Stochastic-depth rate of this block.
    pub fn drop_path_rate(&self) -> f64 {
        self.layers().drop_path().prob
    }

    /// Spatial stride of the block.
    pub fn stride(&self) -> usize {
        self.layers().stride()
    }

    /// Output channels of the block.
    pub fn out_channels(&self) -> usize {
        self.layers().out_channels()
    }
}
