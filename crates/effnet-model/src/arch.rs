//! From a stage table to the exact blocks that get built: width and depth scaling, residuals,
//! squeeze widths, groups, space-to-depth and pruned widths, following timm's EfficientNet
//! builder rule for rule (so that every timm architecture gets timm's shapes).

use crate::config::{Activation, BlockKind, DepthTrunc, EfficientNetConfig, Rounding, StageConfig};

/// One block, fully resolved: everything its constructor needs.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSpec {
    /// `Cn`, `Er`, `Ds` or `Ir` (never the torchvision aliases).
    pub kind: BlockKind,
    /// Kernel of the spatial conv (depthwise for `ds`/`ir`, expand for `er`, the conv for `cn`).
    pub kernel: usize,
    /// Stride of the block (taken by its space-to-depth conv when it has one).
    pub stride: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Channels of the spatial conv (`ir`/`er`: expanded; `ds`: input or space-to-depth width).
    pub mid_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Hidden width of the squeeze-excitation / global-context MLP; 0 = none.
    pub se_channels: usize,
    /// Groups of the spatial conv (`mid_channels` for a depthwise conv).
    pub groups: usize,
    /// Whether the input is added back.
    pub has_skip: bool,
    /// Activation of the block.
    pub act: Activation,
    /// Starts with a 2×2 stride-2 space-to-depth conv to `mid_channels` (EfficientNet-X).
    pub space_to_depth: bool,
    /// CondConv experts (0 = plain convs).
    pub experts: usize,
    /// Stochastic-depth rate.
    pub drop_path: f64,
}

/// timm's `make_divisible`: nearest multiple of `divisor` (at least `divisor`), one step up when
/// rounding lost more than `1 - round_limit` of the value.
pub fn make_divisible(value: f64, divisor: usize, round_limit: f64) -> usize {
    let d = divisor as f64;
    let mut new = (((value + d / 2.0).floor() as usize) / divisor * divisor).max(divisor);
    if (new as f64) < round_limit * value {
        new += divisor;
    }
    new
}

/// Python's `round` (halves to even), which timm uses for squeeze widths and rounded depths.
pub fn round_half_even(v: f64) -> usize {
    let r = v.round();
    let r = if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    };
    r.max(0.0) as usize
}

impl Rounding {
    /// The `round_limit` of timm's `round_channels` for this rule.
    pub fn round_limit(self) -> f64 {
        match self {
            Rounding::V1 => 0.9,
            Rounding::V2 => 0.0,
        }
    }
}

fn groups(group_size: usize, channels: usize) -> usize {
    if group_size == 0 {
        1
    } else {
        (channels / group_size).max(1)
    }
}

impl EfficientNetConfig {
    /// Width-scaled channel count (this config's multiplier, divisor and rounding rule).
    pub fn scale_channels(&self, channels: usize) -> usize {
        if self.width_mult == 0.0 {
            return channels;
        }
        make_divisible(
            channels as f64 * self.width_mult,
            self.channel_divisor,
            self.rounding.round_limit(),
        )
    }

    /// Depth-scaled repeats of stage `i`.
    fn stage_repeats(&self, i: usize, s: &StageConfig) -> usize {
        let last = self.stages.len().saturating_sub(1);
        let fixed = self.fix_stem_head && (i == 0 || i == last);
        let mult = if fixed {
            1.0
        } else {
            s.depth_mult.unwrap_or(self.depth_mult)
        };
        let scaled = s.repeats as f64 * mult;
        match self.depth_trunc {
            DepthTrunc::Ceil => scaled.ceil() as usize,
            DepthTrunc::Round => round_half_even(scaled).max(1),
        }
    }

    /// Every block of the network, stage by stage, as it gets built.
    pub fn resolved_blocks(&self) -> Vec<Vec<BlockSpec>> {
        let stem = self.stem_out();
        let repeats: Vec<usize> = (self.stages.iter().enumerate())
            .map(|(i, s)| self.stage_repeats(i, s))
            .collect();
        let total: usize = repeats.iter().sum();
        let mut widths = self.block_widths.iter();
        let mut in_ch = stem;
        let mut nominal_in = stem;
        let mut index = 0usize;
        // 0: no space-to-depth region, 1: its first block, 2: inside it.
        let mut s2d_state = 0u8;
        let mut out = Vec::with_capacity(self.stages.len());
        for (s, &n) in self.stages.iter().zip(&repeats) {
            let mut stage = Vec::with_capacity(n);
            for j in 0..n {
                let mut stride = if j == 0 { s.stride } else { 1 };
                let mut expand = s.expand as f64;
                let mut s2d = false;
                if s2d_state == 0 && s.space_to_depth && j == 0 {
                    s2d_state = 1;
                }
                if s2d_state == 2 && stride == 2 {
                    // The space-to-depth conv already downsampled: this block ends the region.
                    stride = 1;
                    expand /= 4.0;
                    s2d_state = 0;
                } else if s2d_state == 1 {
                    s2d = true;
                }
                let drop_path = self.drop_path * index as f64 / total.max(1) as f64;
                // Residuals follow the unpruned widths (as in timm, which prunes a built net).
                let mut spec = self.block_spec(
                    s,
                    nominal_in,
                    stride,
                    expand,
                    s2d,
                    s2d_state == 2,
                    drop_path,
                );
                nominal_in = spec.out_channels;
                if let Some(&[mid, se, out_ch]) = widths.next() {
                    spec.in_channels = in_ch;
                    spec.mid_channels = mid;
                    spec.se_channels = se;
                    spec.out_channels = out_ch;
                    spec.groups = match spec.kind {
                        BlockKind::Ds | BlockKind::Ir => mid,
                        _ => spec.groups,
                    };
                }
                if s2d_state == 1 {
                    s2d_state = 2;
                }
                in_ch = spec.out_channels;
                stage.push(spec);
                index += 1;
            }
            out.push(stage);
        }
        out
    }

    /// One block of stage `s` with input width `in_ch`.
    #[allow(clippy::too_many_arguments)]
    fn block_spec(
        &self,
        s: &StageConfig,
        in_ch: usize,
        stride: usize,
        expand: f64,
        s2d: bool,
        in_s2d_region: bool,
        drop_path: f64,
    ) -> BlockSpec {
        let kind = match (s.block, s.expand) {
            (BlockKind::Fused, 1) => BlockKind::Cn,
            (BlockKind::Fused, _) => BlockKind::Er,
            (BlockKind::Mbconv, 1) => BlockKind::Ds,
            (BlockKind::Mbconv, _) => BlockKind::Ir,
            (kind, _) => kind,
        };
        let mut out_ch = self.scale_channels(s.out_channels);
        if s2d || in_s2d_region {
            out_ch *= 4;
        }
        // The block's own input width once a space-to-depth conv has run.
        let inner_in = if s2d { in_ch * 4 } else { in_ch };
        let shape_kept = stride == 1 && in_ch == out_ch;
        let cn_skip = s.skip.unwrap_or(s.block == BlockKind::Fused);
        let has_skip = match kind {
            BlockKind::Cn => cn_skip && shape_kept,
            _ => s.skip != Some(false) && shape_kept,
        };
        let mid = match kind {
            BlockKind::Cn => out_ch,
            BlockKind::Ds => inner_in,
            BlockKind::Er if s.force_in_channels > 0 => make_divisible(
                self.scale_channels(s.force_in_channels) as f64 * expand,
                8,
                0.9,
            ),
            _ => make_divisible(inner_in as f64 * expand, 8, 0.9),
        };
        let mut se_ratio = match kind {
            BlockKind::Ds => s.se_ratio,
            _ => s.se_ratio / expand,
        };
        if s2d {
            se_ratio /= 4.0;
        }
        let se_channels = match (kind, s.se_ratio > 0.0) {
            (BlockKind::Cn, _) | (_, false) => 0,
            _ => match self.attention {
                crate::config::Attention::Se => round_half_even(mid as f64 * se_ratio),
                crate::config::Attention::Gc => make_divisible(mid as f64 * se_ratio, 1, 0.0),
            },
        };
        let groups = match kind {
            BlockKind::Cn => groups(self.group_size, in_ch),
            BlockKind::Er => groups(self.group_size, mid),
            _ => groups(self.group_size.max(1), mid),
        };
        let kernel = if s2d { s.kernel.div_ceil(2) } else { s.kernel };
        BlockSpec {
            kind,
            kernel,
            stride,
            in_channels: in_ch,
            mid_channels: mid,
            out_channels: out_ch,
            se_channels,
            groups,
            has_skip,
            act: s.activation.unwrap_or(self.activation),
            space_to_depth: s2d,
            experts: s.experts,
            drop_path,
        }
    }
}

impl EfficientNetConfig {
    /// Trainable parameters of the network this config builds (timm's count: BatchNorm running
    /// statistics excluded), computed without building it.
    pub fn num_params(&self) -> usize {
        use crate::config::{Attention, NormKind};
        let norm = |c: usize, act: bool| match self.norm {
            NormKind::EvonormS0 if act => 3 * c,
            _ => 2 * c,
        };
        let conv = |cin: usize, cout: usize, k: usize, g: usize| cout * (cin / g.max(1)) * k * k;
        let stem = self.stem_out();
        let mut total = conv(3, stem, 3, 1) + norm(stem, true);
        let mut last = stem;
        for b in self.resolved_blocks().iter().flatten() {
            let (cin, mid, cout, k, g) = (
                b.in_channels,
                b.mid_channels,
                b.out_channels,
                b.kernel,
                b.groups,
            );
            let project_norm = if b.kind == BlockKind::Cn {
                0
            } else {
                norm(cout, false)
            };
            let convs = match b.kind {
                BlockKind::Cn => conv(cin, cout, k, g) + norm(cout, true),
                BlockKind::Er => conv(cin, mid, k, g) + norm(mid, true) + conv(mid, cout, 1, 1),
                BlockKind::Ds => {
                    let s2d = if b.space_to_depth {
                        conv(cin, mid, 2, 1) + norm(mid, true)
                    } else {
                        0
                    };
                    s2d + conv(mid, mid, k, g) + norm(mid, true) + conv(mid, cout, 1, 1)
                }
                _ => {
                    let experts = b.experts.max(1);
                    let body = conv(cin, mid, 1, 1) + conv(mid, mid, k, g) + conv(mid, cout, 1, 1);
                    let routing = if b.experts > 0 {
                        cin * b.experts + b.experts
                    } else {
                        0
                    };
                    body * experts + routing + 2 * norm(mid, true)
                }
            } + project_norm;
            let se = b.se_channels;
            total += convs
                + match (se, self.attention) {
                    (0, _) => 0,
                    (_, Attention::Se) => 2 * mid * se + mid + se,
                    (_, Attention::Gc) => mid + 1 + 2 * mid * se + se + 2 * se + mid,
                };
            last = cout;
        }
        let head = self.head_out();
        total
            + conv(last, head, 1, 1)
            + norm(head, true)
            + head * self.num_classes
            + self.num_classes
    }

    /// The first layer the native CPU executor cannot run, if any (it then falls back to burn).
    pub fn native_unsupported(&self) -> Option<&'static str> {
        self.onnx_unsupported().or_else(|| {
            let blocks = self.resolved_blocks();
            let all = || blocks.iter().flatten();
            let grouped = |b: &BlockSpec| match b.kind {
                BlockKind::Cn | BlockKind::Er => b.groups != 1,
                _ => b.groups != b.mid_channels,
            };
            if all().any(|b| b.space_to_depth) {
                Some("space-to-depth")
            } else if all().any(|b| b.kind == BlockKind::Er && b.se_channels > 0) {
                Some("squeeze-excitation inside Fused-MBConv")
            } else if all().any(grouped) {
                Some("grouped convolution")
            } else {
                None
            }
        })
    }

    /// The first layer the ONNX export cannot write, if any.
    pub fn onnx_unsupported(&self) -> Option<&'static str> {
        use crate::config::{Attention, NormKind};
        if self.norm != NormKind::Batch {
            Some(match self.norm {
                NormKind::Group => "GroupNorm",
                NormKind::Layer => "LayerNorm",
                _ => "EvoNorm",
            })
        } else if self.stages.iter().any(|s| s.experts > 0) {
            Some("CondConv")
        } else if self.blur_pool {
            Some("BlurPool")
        } else if self.attention == Attention::Gc {
            Some("global-context attention")
        } else {
            None
        }
    }

    /// Checks the layer options against each other and against the resolved widths (groups that
    /// divide their channels, options only some blocks implement), so that building never panics.
    pub(crate) fn check_layers(&self) -> Result<(), String> {
        use crate::config::{Attention, NormKind};
        if !(1..=256).contains(&self.channel_divisor) {
            return Err(format!(
                "channel_divisor {} is outside 1..=256",
                self.channel_divisor
            ));
        }
        let grouped_norm = matches!(self.norm, NormKind::Group | NormKind::EvonormS0);
        if grouped_norm && self.norm_group_size == 0 {
            return Err(format!("norm {:?} needs norm_group_size > 0", self.norm));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.depth_mult.is_some_and(|d| !(d > 0.0 && d <= 64.0)) {
                return Err(format!("stage {i}: depth_mult must be in (0, 64]"));
            }
            if s.space_to_depth && (s.block != BlockKind::Ds || i != 0) {
                return Err(format!(
                    "stage {i}: space_to_depth is implemented for a first `ds` stage only"
                ));
            }
            if s.experts > 0 && !matches!(s.block, BlockKind::Ir | BlockKind::Mbconv) {
                return Err(format!("stage {i}: experts (CondConv) need `ir` blocks"));
            }
            if s.experts > 64 {
                return Err(format!("stage {i}: {} experts is above 64", s.experts));
            }
        }
        let special = self
            .stages
            .iter()
            .any(|s| s.space_to_depth || s.experts > 0)
            || self.blur_pool
            || self.attention == Attention::Gc;
        if self.norm != NormKind::Batch && special {
            return Err(format!(
                "norm {:?} is implemented for plain cn/er/ds/ir blocks (no space-to-depth, \
                 CondConv, blur pool or global context)",
                self.norm
            ));
        }
        let blocks = self.resolved_blocks();
        let n: usize = blocks.iter().map(Vec::len).sum();
        if !self.block_widths.is_empty() && self.block_widths.len() != n {
            return Err(format!(
                "block_widths has {} entries for {n} blocks",
                self.block_widths.len()
            ));
        }
        if self
            .block_widths
            .iter()
            .flatten()
            .any(|&w| w == 0 || w > 1 << 16)
        {
            return Err("block_widths must be in 1..=65536".into());
        }
        let divides = |what: &str, c: usize, g: usize| {
            if g == 0 || c % g != 0 {
                Err(format!("{what}: {c} channels are not divisible by {g}"))
            } else {
                Ok(())
            }
        };
        for (i, b) in blocks.iter().flatten().enumerate() {
            let conv_in = match b.kind {
                BlockKind::Cn | BlockKind::Er => b.in_channels,
                _ => b.mid_channels,
            };
            divides(&format!("block {i} grouped conv input"), conv_in, b.groups)?;
            divides(
                &format!("block {i} grouped conv output"),
                b.mid_channels,
                b.groups,
            )?;
            if b.has_skip && b.in_channels != b.out_channels {
                return Err(format!(
                    "block {i}: a residual block of {} -> {} channels (block_widths)",
                    b.in_channels, b.out_channels
                ));
            }
            if self.blur_pool && b.stride > 1 && b.kind != BlockKind::Ir {
                return Err(format!(
                    "block {i}: blur_pool is implemented for strided `ir` blocks only"
                ));
            }
            if self.attention == Attention::Gc && b.se_channels > 0 && b.kind != BlockKind::Ir {
                return Err(format!(
                    "block {i}: global context is implemented for `ir` blocks only"
                ));
            }
            if grouped_norm {
                for c in [b.mid_channels, b.out_channels] {
                    divides(&format!("block {i} norm"), c, self.norm_group_size)?;
                }
            }
        }
        if grouped_norm {
            divides("stem norm", self.stem_out(), self.norm_group_size)?;
            divides("head norm", self.head_out(), self.norm_group_size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_follows_timm() {
        assert_eq!(make_divisible(32.0 * 1.1, 8, 0.9), 32);
        assert_eq!(make_divisible(16.0 * 0.8, 8, 0.9), 16);
        assert_eq!(make_divisible(24.0 * 0.8, 8, 0.9), 24);
        assert_eq!(make_divisible(20.0, 8, 0.0), 24);
        assert_eq!(make_divisible(3.0, 8, 0.9), 8);
        assert_eq!(make_divisible(96.0 * 0.25 / 6.0, 1, 0.0), 4);
    }

    #[test]
    fn python_round_halves_to_even() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(2.4999), 2);
        assert_eq!(round_half_even(0.5), 0);
    }
}
