//! Full-integer int8 quantisation of a compiled network: the one description of an int8 model
//! that every consumer lowers (effnet's own int8 executor, the `.bpk` int8 file, the TFLite and
//! ONNX QDQ writers).
//!
//! The scheme is TFLite's and ONNX Runtime's "QDQ" one:
//! - weights int8, symmetric, one scale per output channel (`real = scale[c] · q`, `q` in
//!   −127..=127);
//! - activations int8 per tensor with a zero point (`real = scale · (q − zero_point)`, `q` in
//!   −128..=127), ranges from calibration ([`calib`]);
//! - biases int32 in units of `input.scale · weight_scale[c]`, zero point 0.
//!
//! [`QuantModel`] mirrors the BN-folded f32 [`Plan`]: the same layers in the same order, each
//! with its int8 weights and the [`QParams`] of its input, of its output before the activation
//! (what a TFLite `LOGISTIC`/`MUL` pair for SiLU consumes) and after it.

pub mod calib;
#[cfg(test)]
mod network_tests;

use crate::error::CpuError;
use crate::kernels::Act;
use crate::plan::{BlockPlan, Conv, Depthwise, Pad, Plan, SqueezeExcite};

/// Affine int8 quantisation of one activation tensor: `real = scale · (q − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Size of one step (> 0).
    pub scale: f32,
    /// The int8 value that stands for real 0 (−128..=127).
    pub zero_point: i32,
}

impl QParams {
    /// TFLite's fixed quantisation of a sigmoid's output (`LOGISTIC`): [0, 1) in steps of 1/256.
    pub const SIGMOID: QParams = QParams {
        scale: 1.0 / 256.0,
        zero_point: -128,
    };

    /// The parameters that cover `[min, max]` (widened to contain 0, so that zero padding is
    /// exact) with the 256 int8 steps.
    pub fn from_range(min: f32, max: f32) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let span = if min.is_finite() && max.is_finite() {
            max - min
        } else {
            0.0
        };
        let scale = if span > f32::MIN_POSITIVE * 255.0 {
            span / 255.0
        } else {
            // A constant-zero tensor: any scale represents it; 1/255 keeps arithmetic finite.
            1.0 / 255.0
        };
        let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i32;
        Self { scale, zero_point }
    }

    /// The nearest int8 value of `x` (saturating), computed as the int8 executor computes it
    /// (`x · (1/scale) + zero_point`, ties to even).
    pub fn quantize(self, x: f32) -> i8 {
        let y = x * (1.0 / self.scale) + self.zero_point as f32;
        y.round_ties_even().clamp(-128.0, 127.0) as i8
    }

    /// The real value of `q`.
    pub fn dequantize(self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }

    /// `x` rounded to the nearest representable value (fake quantisation).
    pub fn round_trip(self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }

    /// The zero point of the same tensor stored as `u8` (`q + 128`), as the int8 kernels keep
    /// activations (x86's VNNI multiplies unsigned activations by signed weights).
    pub fn zero_point_u8(self) -> i32 {
        self.zero_point + 128
    }

    /// Real range `[min, max]` the 256 values cover.
    pub fn range(self) -> (f32, f32) {
        (self.dequantize(-128), self.dequantize(127))
    }

    fn check(self, what: &str) -> Result<(), CpuError> {
        if self.scale.is_finite() && self.scale > 0.0 && (-128..=127).contains(&self.zero_point) {
            Ok(())
        } else {
            Err(CpuError::Shape(format!(
                "{what}: bad quantisation scale {} / zero point {}",
                self.scale, self.zero_point
            )))
        }
    }
}

/// How many scales a weight tensor gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightScales {
    /// One per output channel (TFLite's and ONNX Runtime's default for convs).
    #[default]
    PerChannel,
    /// One for the whole tensor (stored repeated per channel), to measure what per-channel buys.
    PerTensor,
}

/// Symmetric int8 weights of a `[rows][cout]` matrix, `real = scale[c] · q`: one scale per
/// output channel, or the same for all with [`WeightScales::PerTensor`].
pub fn quantize_weights(weight: &[f32], cout: usize, scales: WeightScales) -> (Vec<i8>, Vec<f32>) {
    let mut max = vec![0f32; cout];
    for row in weight.chunks_exact(cout) {
        for (m, w) in max.iter_mut().zip(row) {
            *m = m.max(w.abs());
        }
    }
    if scales == WeightScales::PerTensor {
        let all = max.iter().fold(0f32, |a, b| a.max(*b));
        max.fill(all);
    }
    let scale: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = weight
        .chunks_exact(cout)
        .flat_map(|row| {
            row.iter()
                .zip(&scale)
                .map(|(w, s)| (w / s).round_ties_even().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    (q, scale)
}

/// int32 biases in units of `input_scale · weight_scale[c]` (saturating).
pub fn quantize_bias(bias: &[f32], input_scale: f32, weight_scale: &[f32]) -> Vec<i32> {
    bias.iter()
        .zip(weight_scale)
        .map(|(b, s)| {
            let q = (*b as f64 / (input_scale as f64 * *s as f64)).round();
            q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

/// A dense conv (stem, Fused-MBConv, 1×1 expand/project, head), a squeeze-excitation product or
/// the classifier (`k = 1` on a 1×1 image) in int8.
#[derive(Clone, Debug)]
pub struct QConv {
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding rule.
    pub pad: Pad,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// `[k·k·cin][cout]` in (ky, kx, cin) row order, as [`Conv::weight`].
    pub weight: Vec<i8>,
    /// `[cout]`: `real weight = weight_scale[c] · q`.
    pub weight_scale: Vec<f32>,
    /// `[cout]` in units of `input.scale · weight_scale[c]`.
    pub bias: Vec<i32>,
    /// Activation after the bias.
    pub act: Act,
    /// The input tensor.
    pub input: QParams,
    /// The output before the activation (equal to `output` unless `act` is SiLU).
    pub pre_act: QParams,
    /// The output after the activation.
    pub output: QParams,
}

/// A depthwise conv in int8 (weights `[k·k][c]`, one scale per channel).
#[derive(Clone, Debug)]
pub struct QDepthwise {
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding rule.
    pub pad: Pad,
    /// Channels.
    pub c: usize,
    /// `[k·k][c]`, as [`Depthwise::weight`].
    pub weight: Vec<i8>,
    /// `[c]`.
    pub weight_scale: Vec<f32>,
    /// `[c]` in units of `input.scale · weight_scale[c]`.
    pub bias: Vec<i32>,
    /// Activation after the bias.
    pub act: Act,
    /// The input tensor.
    pub input: QParams,
    /// The output before the activation (equal to `output` unless `act` is SiLU).
    pub pre_act: QParams,
    /// The output after the activation.
    pub output: QParams,
}

/// Squeeze-excitation in int8 terms: `output = x · sigmoid(expand(act(reduce(mean(x)))))`.
#[derive(Clone, Debug)]
pub struct QSqueezeExcite {
    /// Channel means of the gated tensor `x` (the depthwise output): the reduce's input.
    pub pool: QParams,
    /// `c → squeeze` 1×1 conv with its activation (`reduce.input == pool`).
    pub reduce: QConv,
    /// `squeeze → c` 1×1 conv, no activation: its `output` is the sigmoid's input.
    pub expand: QConv,
    /// The sigmoid's output, the gates ([`QParams::SIGMOID`]).
    pub gate: QParams,
    /// `x · gate`: the projection's input.
    pub output: QParams,
}

/// One block in int8, as [`BlockPlan`].
#[derive(Clone, Debug)]
pub struct QBlock {
    /// Full k×k conv (Fused-MBConv) or 1×1 expansion.
    pub conv: Option<QConv>,
    /// Depthwise conv (MBConv).
    pub dw: Option<QDepthwise>,
    /// Squeeze-excitation on the depthwise output.
    pub se: Option<QSqueezeExcite>,
    /// 1×1 projection (its `output` is the tensor before the residual add).
    pub project: Option<QConv>,
    /// Adds the block input to its output.
    pub skip: bool,
    /// The block's output (after the residual add; the last layer's output without one).
    pub output: QParams,
}

/// How the activation ranges were chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeMethod {
    /// The observed minimum and maximum.
    MinMax,
    /// The given percentile of each tail (e.g. 99.99), ignoring rarer outliers.
    Percentile(f32),
    /// The clipping range that minimises the expected squared quantisation error.
    Mse,
}

impl std::fmt::Display for RangeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeMethod::MinMax => f.write_str("minmax"),
            RangeMethod::Percentile(p) => write!(f, "percentile:{p}"),
            RangeMethod::Mse => f.write_str("mse"),
        }
    }
}

impl std::str::FromStr for RangeMethod {
    type Err = String;

    /// `minmax`, `mse`, `percentile` (99.999) or `percentile:P` (50 < P <= 100).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("unknown calibration method '{s}' (minmax, mse, percentile or percentile:P)")
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "minmax" | "min-max" => Ok(Self::MinMax),
            "mse" => Ok(Self::Mse),
            "percentile" => Ok(Self::Percentile(99.999)),
            other => {
                let p: f32 = other
                    .strip_prefix("percentile:")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if p > 50.0 && p <= 100.0 {
                    Ok(Self::Percentile(p))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// A whole network in int8, as [`Plan`]: what calibration produces, the int8 `.bpk` stores and
/// every int8 backend lowers.
#[derive(Clone, Debug)]
pub struct QuantModel {
    /// The preprocessed input image.
    pub input: QParams,
    /// Stem conv (with activation).
    pub stem: QConv,
    /// Blocks in order.
    pub blocks: Vec<QBlock>,
    /// 1×1 head conv (with activation).
    pub head: QConv,
    /// Global average of the head output: the classifier's input.
    pub pool: QParams,
    /// Classifier as a 1×1 conv `[features][classes]`; its `output` are the logits.
    pub fc: QConv,
    /// How the activation ranges were chosen.
    pub method: RangeMethod,
    /// Images the ranges were calibrated on.
    pub calibration_images: usize,
}

impl QConv {
    /// Quantises a f32 conv given its tensors' parameters.
    pub fn from_conv(
        c: &Conv,
        scales: WeightScales,
        input: QParams,
        pre_act: QParams,
        output: QParams,
    ) -> Self {
        let (weight, weight_scale) = quantize_weights(&c.weight, c.cout, scales);
        let bias = quantize_bias(&c.bias, input.scale, &weight_scale);
        Self {
            k: c.k,
            stride: c.stride,
            pad: c.pad,
            cin: c.cin,
            cout: c.cout,
            weight,
            weight_scale,
            bias,
            act: c.act,
            input,
            pre_act,
            output,
        }
    }

    /// A plain product `[cin][cout]` (squeeze-excitation, classifier) as a 1×1 conv.
    pub fn linear(
        w: &[f32],
        b: &[f32],
        act: Act,
        scales: WeightScales,
        qp: [QParams; 3],
    ) -> Result<Self, CpuError> {
        let (cin, cout) = (w.len() / b.len().max(1), b.len());
        let conv = Conv {
            k: 1,
            stride: 1,
            pad: Pad::Explicit {
                top: 0,
                left: 0,
                bottom: 0,
                right: 0,
            },
            cin,
            cout,
            weight: w.to_vec(),
            bias: b.to_vec(),
            act,
        };
        if cin * cout != w.len() || cout == 0 {
            return Err(CpuError::Shape(format!(
                "linear layer with {} weights for {cout} outputs",
                w.len()
            )));
        }
        Ok(Self::from_conv(&conv, scales, qp[0], qp[1], qp[2]))
    }

    /// The f32 weights this layer computes with (`scale · q`), `[k·k·cin][cout]`.
    pub fn dequantized_weight(&self) -> Vec<f32> {
        dequantize_weights(&self.weight, &self.weight_scale)
    }

    /// The f32 biases (`input.scale · weight_scale · q`).
    pub fn dequantized_bias(&self) -> Vec<f32> {
        dequantize_bias(&self.bias, self.input.scale, &self.weight_scale)
    }

    /// The f32 conv this layer computes (for references and the burn engine).
    pub fn dequantized(&self) -> Conv {
        Conv {
            k: self.k,
            stride: self.stride,
            pad: self.pad,
            cin: self.cin,
            cout: self.cout,
            weight: self.dequantized_weight(),
            bias: self.dequantized_bias(),
            act: self.act,
        }
    }

    fn validate(&self, what: &str) -> Result<(), CpuError> {
        let n = self.k * self.k * self.cin * self.cout;
        if self.weight.len() != n
            || self.weight_scale.len() != self.cout
            || self.bias.len() != self.cout
            || self.k == 0
            || self.stride == 0
        {
            return Err(CpuError::Shape(format!(
                "{what}: {} weights, {} scales, {} biases for a {}x{} conv {} -> {}",
                self.weight.len(),
                self.weight_scale.len(),
                self.bias.len(),
                self.k,
                self.k,
                self.cin,
                self.cout
            )));
        }
        check_scales(what, &self.weight_scale)?;
        self.input.check(what)?;
        self.pre_act.check(what)?;
        self.output.check(what)
    }
}

fn check_scales(what: &str, scales: &[f32]) -> Result<(), CpuError> {
    match scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        Some(s) => Err(CpuError::Shape(format!("{what}: bad weight scale {s}"))),
        None => Ok(()),
    }
}

fn dequantize_weights(q: &[i8], scale: &[f32]) -> Vec<f32> {
    q.chunks_exact(scale.len())
        .flat_map(|row| row.iter().zip(scale).map(|(q, s)| *q as f32 * s))
        .collect()
}

fn dequantize_bias(q: &[i32], input_scale: f32, scale: &[f32]) -> Vec<f32> {
    q.iter()
        .zip(scale)
        .map(|(q, s)| (*q as f64 * input_scale as f64 * *s as f64) as f32)
        .collect()
}

impl QDepthwise {
    /// Quantises a f32 depthwise conv given its tensors' parameters.
    pub fn from_depthwise(
        d: &Depthwise,
        scales: WeightScales,
        input: QParams,
        pre_act: QParams,
        output: QParams,
    ) -> Self {
        let (weight, weight_scale) = quantize_weights(&d.weight, d.c, scales);
        let bias = quantize_bias(&d.bias, input.scale, &weight_scale);
        Self {
            k: d.k,
            stride: d.stride,
            pad: d.pad,
            c: d.c,
            weight,
            weight_scale,
            bias,
            act: d.act,
            input,
            pre_act,
            output,
        }
    }

    /// The f32 depthwise conv this layer computes.
    pub fn dequantized(&self) -> Depthwise {
        Depthwise {
            k: self.k,
            stride: self.stride,
            pad: self.pad,
            c: self.c,
            weight: dequantize_weights(&self.weight, &self.weight_scale),
            bias: dequantize_bias(&self.bias, self.input.scale, &self.weight_scale),
            act: self.act,
        }
    }

    fn validate(&self, what: &str) -> Result<(), CpuError> {
        if self.weight.len() != self.k * self.k * self.c
            || self.weight_scale.len() != self.c
            || self.bias.len() != self.c
            || self.k == 0
            || self.stride == 0
        {
            return Err(CpuError::Shape(format!(
                "{what}: {} weights for a {}x{} depthwise conv over {} channels",
                self.weight.len(),
                self.k,
                self.k,
                self.c
            )));
        }
        check_scales(what, &self.weight_scale)?;
        self.input.check(what)?;
        self.pre_act.check(what)?;
        self.output.check(what)
    }
}

impl QSqueezeExcite {
    /// The f32 squeeze-excitation this computes (dequantised weights; the gating itself is
    /// quantised to `output`).
    pub fn dequantized(&self) -> SqueezeExcite {
        let (r, e) = (self.reduce.dequantized(), self.expand.dequantized());
        SqueezeExcite {
            w_reduce: r.weight,
            b_reduce: r.bias,
            w_expand: e.weight,
            b_expand: e.bias,
            act: self.reduce.act,
        }
    }
}

impl QuantModel {
    /// Checks shapes, scales and that every layer's input parameters are its producer's output
    /// parameters (what the int8 executor requantises between).
    pub fn validate(&self) -> Result<(), CpuError> {
        self.dequantized_plan().validate()?;
        self.input.check("input")?;
        self.pool.check("pool")?;
        let link = |what: &str, got: QParams, want: QParams| {
            if got == want {
                Ok(())
            } else {
                Err(CpuError::Shape(format!(
                    "{what} input quantisation {got:?} differs from its producer's {want:?}"
                )))
            }
        };
        self.stem.validate("stem")?;
        link("stem", self.stem.input, self.input)?;
        let mut x = self.stem.output;
        for (i, b) in self.blocks.iter().enumerate() {
            let what = |part: &str| format!("block {i} {part}");
            let mut cur = x;
            if let Some(c) = &b.conv {
                c.validate(&what("conv"))?;
                link(&what("conv"), c.input, cur)?;
                cur = c.output;
            }
            if let Some(d) = &b.dw {
                d.validate(&what("depthwise"))?;
                link(&what("depthwise"), d.input, cur)?;
                cur = d.output;
            }
            if let Some(se) = &b.se {
                se.reduce.validate(&what("SE reduce"))?;
                se.expand.validate(&what("SE expand"))?;
                link(&what("SE reduce"), se.reduce.input, se.pool)?;
                link(&what("SE expand"), se.expand.input, se.reduce.output)?;
                se.pool.check(&what("SE pool"))?;
                se.gate.check(&what("SE gate"))?;
                se.output.check(&what("SE output"))?;
                cur = se.output;
            }
            if let Some(p) = &b.project {
                p.validate(&what("projection"))?;
                link(&what("projection"), p.input, cur)?;
                cur = p.output;
            }
            b.output.check(&what("output"))?;
            if !b.skip && b.output != cur {
                return Err(CpuError::Shape(format!(
                    "block {i} output quantisation differs from its last layer's"
                )));
            }
            x = b.output;
        }
        self.head.validate("head")?;
        link("head", self.head.input, x)?;
        self.fc.validate("classifier")?;
        link("classifier", self.fc.input, self.pool)
    }

    /// The f32 network with the int8 weights dequantised: the reference the int8 executor is
    /// tested against, and what the burn engine runs for an int8 file.
    pub fn dequantized_plan(&self) -> Plan {
        let fc = self.fc.dequantized();
        Plan {
            stem: self.stem.dequantized(),
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockPlan {
                    conv: b.conv.as_ref().map(QConv::dequantized),
                    dw: b.dw.as_ref().map(QDepthwise::dequantized),
                    se: b.se.as_ref().map(QSqueezeExcite::dequantized),
                    project: b.project.as_ref().map(QConv::dequantized),
                    skip: b.skip,
                })
                .collect(),
            head: self.head.dequantized(),
            fc_weight: fc.weight,
            fc_bias: fc.bias,
        }
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.fc.cout
    }

    /// Bytes of int8 weights (what the file mostly holds).
    pub fn weight_bytes(&self) -> usize {
        self.layers().map(|l| l.weight.len()).sum::<usize>()
            + self
                .blocks
                .iter()
                .filter_map(|b| b.dw.as_ref())
                .map(|d| d.weight.len())
                .sum::<usize>()
    }

    /// Every dense layer (stem, block convs, SE products, projections, head, classifier) in
    /// network order.
    pub fn layers(&self) -> impl Iterator<Item = &QConv> {
        std::iter::once(&self.stem)
            .chain(self.blocks.iter().flat_map(|b| {
                b.conv
                    .iter()
                    .chain(b.se.iter().flat_map(|s| [&s.reduce, &s.expand]))
                    .chain(b.project.iter())
            }))
            .chain([&self.head, &self.fc])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qparams_cover_their_range_and_zero_exactly() {
        for (lo, hi) in [
            (-1.0, 3.0),
            (0.0, 6.0),
            (-0.278, 12.5),
            (2.0, 5.0),
            (-4.0, -1.0),
        ] {
            let q = QParams::from_range(lo, hi);
            assert!((-128..=127).contains(&q.zero_point));
            assert_eq!(q.round_trip(0.0), 0.0, "{lo}..{hi}");
            let (a, b) = q.range();
            assert!(
                a <= lo.min(0.0) + q.scale && b >= hi.max(0.0) - q.scale,
                "{lo}..{hi}"
            );
            assert!(q.scale <= (hi.max(0.0) - lo.min(0.0)) / 255.0 * 1.0001);
            // Rounding error at most half a step inside the range.
            for i in 0..100 {
                let x = lo + (hi - lo) * i as f32 / 99.0;
                assert!((q.round_trip(x) - x).abs() <= q.scale * 0.5001, "{x}");
            }
        }
        let zero = QParams::from_range(0.0, 0.0);
        assert!(zero.scale > 0.0 && zero.round_trip(0.0) == 0.0);
    }

    #[test]
    fn weights_quantise_per_output_channel_symmetrically() {
        // Two output channels of very different magnitudes keep their own resolution.
        let w = [1.0, 0.01, -0.5, -0.02, 0.25, 0.005];
        let (q, s) = quantize_weights(&w, 2, WeightScales::PerChannel);
        let (_, t) = quantize_weights(&w, 2, WeightScales::PerTensor);
        assert_eq!(t, vec![1.0 / 127.0; 2]);
        assert_eq!(q[0], 127);
        assert_eq!(q[3], -127);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-9 && (s[1] - 0.02 / 127.0).abs() < 1e-9);
        for (i, (q, w)) in q.iter().zip(w).enumerate() {
            assert!((*q as f32 * s[i % 2] - w).abs() <= s[i % 2] * 0.5);
        }
        let b = quantize_bias(&[0.3, -0.001], 0.05, &s);
        assert_eq!(b[0], (0.3f64 / (0.05 * s[0] as f64)).round() as i32);
        assert_eq!(dequantize_bias(&b, 0.05, &s)[1], {
            let v = b[1] as f64 * 0.05 * s[1] as f64;
            v as f32
        });
    }

    #[test]
    fn range_methods_parse() {
        assert_eq!(
            "minmax".parse::<RangeMethod>().unwrap(),
            RangeMethod::MinMax
        );
        assert_eq!("MSE".parse::<RangeMethod>().unwrap(), RangeMethod::Mse);
        assert_eq!(
            "percentile:99.9".parse::<RangeMethod>().unwrap(),
            RangeMethod::Percentile(99.9)
        );
        assert!("percentile:20".parse::<RangeMethod>().is_err());
        assert!("entropy".parse::<RangeMethod>().is_err());
    }
}
