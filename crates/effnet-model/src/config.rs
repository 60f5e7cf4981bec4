//! Model descriptions as data: one [`EfficientNetConfig`] (serde, TOML) describes any member of
//! the EfficientNet / EfficientNetV2 / Lite family, like torchvision's stage tables.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Which block a stage is built from: timm's four block types (`cn`, `er`, `ds`, `ir`, as in its
/// architecture strings), or torchvision's two names, which pick one by the expansion ratio.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// Fused-MBConv (torchvision): `cn` at expansion 1 (with a residual), else `er`.
    Fused,
    /// MBConv (torchvision): `ds` at expansion 1, else `ir`.
    Mbconv,
    /// timm `ConvBnAct`: k×k conv → norm → act (residual only with `skip = true`).
    Cn,
    /// timm `EdgeResidual` (Fused-MBConv): k×k expand conv → norm → act → [SE] → 1×1 project.
    Er,
    /// timm `DepthwiseSeparableConv`: k×k depthwise → norm → act → [SE] → 1×1 project.
    Ds,
    /// timm `InvertedResidual` (MBConv): 1×1 expand → k×k depthwise → [SE] → 1×1 project.
    Ir,
}

/// The non-linearity used throughout the network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// x·sigmoid(x), the EfficientNet default.
    #[default]
    Silu,
    /// min(max(x, 0), 6), used by the Lite models for quantisation friendliness.
    Relu6,
    /// max(x, 0).
    Relu,
}

/// How convolutions pad their input.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// `(k-1)/2` on every side, as torchvision and timm's non-`tf_` models do.
    #[default]
    Symmetric,
    /// TensorFlow "SAME": the extra pixel goes bottom/right at stride 2; needed by TF-ported weights.
    Same,
}

/// How stage depths are scaled by the depth multiplier.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DepthTrunc {
    /// `ceil(repeats · depth_mult)` (EfficientNet).
    #[default]
    Ceil,
    /// `max(1, round(repeats · depth_mult))`, halves to even (TinyNet).
    Round,
}

/// The normalisation layer after every conv.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// BatchNorm (foldable into the conv for inference).
    #[default]
    Batch,
    /// GroupNorm with `norm_group_size` channels per group (timm `GroupNormAct`).
    Group,
    /// LayerNorm over the channels of each pixel (timm `LayerNormAct2d`).
    Layer,
    /// EvoNorm-S0 with `norm_group_size` channels per group; it is its own activation.
    EvonormS0,
}

/// The channel attention inside blocks with `se_ratio > 0`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    /// Squeeze-and-excitation.
    #[default]
    Se,
    /// Global-context attention (GCNet; timm `GlobalContext`).
    Gc,
}

/// How width multipliers are rounded to channel counts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// EfficientNetV2 (automl): `max(8, int(c*w + 4) // 8 * 8)`, no correction.
    #[default]
    V2,
    /// EfficientNet V1 / torchvision `_make_divisible`: as V2 but adds 8 when rounding lost > 10 %.
    V1,
}

/// One stage: `repeats` blocks of one kind; only the first block strides and changes width.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Fused-MBConv or MBConv.
    pub block: BlockKind,
    /// Number of blocks before depth scaling.
    pub repeats: usize,
    /// Kernel size of the spatial conv.
    pub kernel: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Expansion ratio of the hidden width.
    pub expand: usize,
    /// Input channels before width scaling.
    pub in_channels: usize,
    /// Output channels before width scaling.
    pub out_channels: usize,
    /// Squeeze-excitation ratio relative to the block *input* channels (0 = no SE).
    #[serde(default)]
    pub se_ratio: f64,
    /// Residual override: `false` never adds one (timm `noskip`), `true` lets a `cn` block add
    /// one (timm `skip`); unset, `er`/`ds`/`ir` add one wherever the shape allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<bool>,
    /// Expand an `er` block from this many (width-scaled) channels instead of its input (timm
    /// `fc`, the EdgeTPU nets' first block). 0 = the input width.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_in_channels: usize,
    /// Activation of this stage's blocks, when it differs from the network's (timm `n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// The first block starts with a 2×2 space-to-depth conv (timm `d1`, EfficientNet-X).
    #[serde(default, skip_serializing_if = "is_false")]
    pub space_to_depth: bool,
    /// CondConv experts of an `ir` block's convs (timm `cc`); 0 = plain convs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub experts: usize,
    /// Depth multiplier of this stage, when it differs from the network's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth_mult: Option<f64>,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// A whole network: stem, stages, head and the regularisation defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetConfig {
    /// Preset name, e.g. `efficientnetv2_s`.
    pub name: String,
    /// Stem conv output channels before width scaling.
    pub stem_channels: usize,
    /// Head 1×1 conv output channels before width scaling.
    pub head_channels: usize,
    /// Stage table, in order.
    pub stages: Vec<StageConfig>,
    /// Network non-linearity.
    #[serde(default)]
    pub activation: Activation,
    /// BatchNorm epsilon (1e-3 for V2 and every TF-ported checkpoint).
    #[serde(default = "default_bn_eps")]
    pub bn_eps: f64,
    /// BatchNorm momentum in PyTorch convention (TF 0.99 = 0.01 here).
    #[serde(default = "default_bn_momentum")]
    pub bn_momentum: f64,
    /// Convolution padding mode.
    #[serde(default)]
    pub padding: PaddingMode,
    /// Width multiplier.
    #[serde(default = "one")]
    pub width_mult: f64,
    /// Depth multiplier (repeats are `ceil(r * depth_mult)`).
    #[serde(default = "one")]
    pub depth_mult: f64,
    /// Channel rounding rule for the width multiplier.
    #[serde(default)]
    pub rounding: Rounding,
    /// Keep stem and head widths and the first/last stage depth unscaled (Lite models).
    #[serde(default)]
    pub fix_stem_head: bool,
    /// Dropout before the classifier.
    #[serde(default)]
    pub dropout: f64,
    /// Maximum stochastic-depth rate, reached by the last block.
    #[serde(default)]
    pub drop_path: f64,
    /// Number of output classes.
    #[serde(default = "default_classes")]
    pub num_classes: usize,
    /// Default input resolution for training.
    #[serde(default = "default_size")]
    pub train_size: usize,
    /// Default input resolution for evaluation.
    #[serde(default = "default_size")]
    pub eval_size: usize,
    /// Channel counts are rounded to multiples of this.
    #[serde(default = "default_divisor")]
    pub channel_divisor: usize,
    /// How stage depths are scaled.
    #[serde(default, skip_serializing_if = "is_default")]
    pub depth_trunc: DepthTrunc,
    /// Keep the stem width unscaled (TinyNet; `fix_stem_head` implies it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub fix_stem: bool,
    /// Keep the head width unscaled (TinyNet; `fix_stem_head` implies it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub fix_head: bool,
    /// Normalisation layer; its epsilon is `bn_eps`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub norm: NormKind,
    /// Channels per group of GroupNorm / EvoNorm.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub norm_group_size: usize,
    /// Channels per group of the depthwise (`ds`/`ir`), expand (`er`) and `cn` convs; 0 keeps
    /// timm's defaults (depthwise, dense, dense).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub group_size: usize,
    /// Anti-aliased downsampling: strided depthwise convs run at stride 1 followed by a 3×3
    /// binomial blur at stride 2 (timm `aa_layer='blurpc'`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub blur_pool: bool,
    /// Channel attention of the blocks with `se_ratio > 0`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub attention: Attention,
    /// Explicit `[mid, se, out]` widths of every block, in order (timm's pruned nets); empty =
    /// computed from the stage table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_widths: Vec<[usize; 3]>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_divisor() -> usize {
    8
}

fn default_bn_eps() -> f64 {
    1e-3
}
fn default_bn_momentum() -> f64 {
    0.1
}
fn one() -> f64 {
    1.0
}
fn default_classes() -> usize {
    1000
}
fn default_size() -> usize {
    224
}

impl StageConfig {
    /// Whether a block of this shape adds its input back (stride 1, same width).
    pub fn keeps_shape(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }

    /// Hidden width of the expanded block.
    pub fn mid_channels(&self) -> usize {
        self.in_channels * self.expand
    }
}

impl EfficientNetConfig {
    /// Parses a TOML model description, rejecting unknown keys.
    ///
    /// A `base = "preset"` key starts from that preset and overrides the keys given here.
    pub fn from_toml(text: &str) -> Result<Self, ModelError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ModelError::Config(e.to_string()))?;
        let table = crate::presets::resolve_base(table)?;
        let cfg: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ModelError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises to TOML (what `configs/models/*.toml` contain).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks values that would otherwise panic deep inside layer construction.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(format!("model '{}': {m}", self.name)));
        if self.stages.is_empty() {
            return bad("needs at least one stage".into());
        }
        if self.num_classes == 0 {
            return bad("num_classes must be > 0".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is outside [0, 1)", self.dropout));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return bad(format!("drop_path {} is outside [0, 1)", self.drop_path));
        }
        if !(self.bn_eps > 0.0 && self.bn_eps.is_finite()) {
            return bad(format!("bn_eps {} must be positive", self.bn_eps));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return bad(format!(
                "bn_momentum {} is outside [0, 1]",
                self.bn_momentum
            ));
        }
        if !(self.width_mult > 0.0 && self.depth_mult > 0.0) {
            return bad("width_mult and depth_mult must be positive".into());
        }
        let mut prev_out = self.stem_channels;
        for (i, s) in self.stages.iter().enumerate() {
            if s.in_channels != prev_out {
                return bad(format!(
                    "stage {i}: in_channels {} does not match the previous output {prev_out}",
                    s.in_channels
                ));
            }
            prev_out = s.out_channels;
            if s.repeats == 0 || s.kernel % 2 == 0 || s.stride == 0 || s.expand == 0 {
                return bad(format!(
                    "stage {i}: repeats, stride and expand must be >= 1 and kernel odd"
                ));
            }
            if !(0.0..=1.0).contains(&s.se_ratio) {
                return bad(format!(
                    "stage {i}: se_ratio {} is outside [0, 1]",
                    s.se_ratio
                ));
            }
        }
        crate::budget::check_dimensions(self).or_else(bad)?;
        self.check_layers().or_else(bad)?;
        let param_bytes = crate::budget::estimate_params(self).saturating_mul(4);
        let budget = crate::budget::memory_budget();
        if param_bytes > budget {
            return bad(format!(
                "its parameters alone need about {} of memory, more than the {} available \
                 (set {} to change the budget)",
                crate::budget::format_bytes(param_bytes),
                crate::budget::format_bytes(budget),
                crate::budget::MEMORY_ENV
            ));
        }
        Ok(())
    }

    /// Rounds a channel count by the width multiplier and this config's rule.
    pub fn round_channels(&self, channels: usize) -> usize {
        self.scale_channels(channels)
    }

    /// Stem output channels after scaling.
    pub fn stem_out(&self) -> usize {
        if self.fix_stem_head || self.fix_stem {
            self.stem_channels
        } else {
            self.round_channels(self.stem_channels)
        }
    }

    /// Head output channels after scaling.
    pub fn head_out(&self) -> usize {
        if self.fix_stem_head || self.fix_head {
            self.head_channels
        } else {
            self.round_channels(self.head_channels)
        }
    }

    /// Total number of blocks (drives the stochastic-depth ramp).
    pub fn block_count(&self) -> usize {
        self.resolved_blocks().iter().map(Vec::len).sum()
    }

    /// Output channels of `forward_features` (the head width).
    pub fn num_features(&self) -> usize {
        self.head_out()
    }

    /// Whether `other` builds the same network (same layers, shapes and numerics), whatever
    /// its name, class count, regularisation and default sizes: what weights care about.
    pub fn same_architecture(&self, other: &Self) -> bool {
        let strip = |c: &Self| {
            let mut c = c.clone();
            c.name = String::new();
            c.num_classes = 0;
            (c.dropout, c.drop_path, c.bn_momentum) = (0.0, 0.0, 0.0);
            (c.train_size, c.eval_size) = (0, 0);
            c
        };
        let (a, b) = (strip(self), strip(other));
        a.resolved_blocks() == b.resolved_blocks()
            && (a.stem_out(), a.head_out()) == (b.stem_out(), b.head_out())
            && (a.activation, a.bn_eps, a.padding, a.norm, a.norm_group_size)
                == (b.activation, b.bn_eps, b.padding, b.norm, b.norm_group_size)
            && (a.blur_pool, a.attention) == (b.blur_pool, b.attention)
    }
}

/// Channel rounding of either rule, to a multiple of 8 with a floor of 8.
pub fn round_channels(channels: usize, width_mult: f64, rounding: Rounding) -> usize {
    crate::arch::make_divisible(channels as f64 * width_mult, 8, rounding.round_limit())
}
