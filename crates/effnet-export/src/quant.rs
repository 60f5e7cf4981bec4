//! Full-integer quantisation of a folded [`Graph`], calibration-independent: the exporters take
//! the observed f32 range of every activation ([`ActivationRanges`], keyed by the graph's tensor
//! names) and derive the rest the way TensorFlow Lite's converter does — activations int8
//! asymmetric per tensor, weights int8 symmetric per output channel, biases int32 at
//! `input scale × weight scale`, sigmoid outputs at the fixed `1/256, −128`.
//!
//! [`calibrate_minmax`] fills the ranges with plain min/max over a few batches; any calibrator
//! (percentiles, histograms) can fill them instead.

use std::collections::BTreeMap;

use burn::prelude::*;

use crate::error::ExportError;
use crate::graph::{Evaluator, Graph, Op, TensorId};

/// The f32 range one tensor took over the calibration images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
}

/// Observed ranges of a graph's activations, keyed by [`TensorInfo::name`](crate::TensorInfo).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActivationRanges(pub BTreeMap<String, Range>);

impl ActivationRanges {
    /// Widens the range of `name` to cover `[min, max]`.
    pub fn observe(&mut self, name: &str, min: f32, max: f32) {
        let r = self.0.entry(name.to_string()).or_insert(Range { min, max });
        r.min = r.min.min(min);
        r.max = r.max.max(max);
    }
}

/// Element type of the quantised model's input or output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoType {
    /// f32, quantised/dequantised inside the model (drop-in for the f32 model).
    #[default]
    Float32,
    /// int8 with the tensor's scale and zero point (the caller quantises).
    Int8,
}

/// How finely conv and dense weights get their own int8 scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WeightGranularity {
    /// One scale per output channel (what TFLite's converter does; the default).
    #[default]
    PerChannel,
    /// One scale per layer (written as equal per-channel scales, so every runtime takes it):
    /// the cheaper scheme some accelerators need, to measure what it costs.
    PerTensor,
}

/// How to quantise an export: the ranges and the types at the model's boundary.
#[derive(Clone, Debug, Default)]
pub struct Int8Options {
    /// Activation ranges from calibration.
    pub ranges: ActivationRanges,
    /// Element type of the image input.
    pub input: IoType,
    /// Element type of the logits.
    pub output: IoType,
    /// Scale granularity of the weights.
    pub weights: WeightGranularity,
}

/// Affine int8 parameters of one tensor: `real = scale · (q − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Step between consecutive integers.
    pub scale: f32,
    /// The integer that stands for 0.0.
    pub zero_point: i32,
}

impl QParams {
    /// Sigmoid outputs, `[0, 1)` in steps of `1/256` (what TFLite's int8 LOGISTIC requires).
    pub const SIGMOID: QParams = QParams {
        scale: 1.0 / 256.0,
        zero_point: -128,
    };

    /// int8 parameters covering `range` (widened to include 0, so that zero padding is exact).
    pub fn from_range(range: Range) -> Self {
        let (min, max) = (range.min.min(0.0), range.max.max(0.0));
        if !(max - min).is_normal() {
            return QParams {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = (max - min) / 255.0;
        let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i32;
        QParams { scale, zero_point }
    }

    /// `x` quantised (round half away from zero, saturating).
    pub fn quantize(&self, x: f32) -> i8 {
        ((x / self.scale).round() + self.zero_point as f32).clamp(-128.0, 127.0) as i8
    }
}

/// The activation parameters of every tensor of `graph` (`None` for tensors no writer stores:
/// none today). A conv whose only reader is a ReLU/ReLU6 takes that activation's parameters
/// (the activation is fused into it); sigmoid outputs take [`QParams::SIGMOID`].
pub fn activation_params(
    graph: &Graph,
    ranges: &ActivationRanges,
) -> Result<Vec<QParams>, ExportError> {
    let consumers = graph.consumers();
    let mut producer = vec![None; graph.tensors.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        producer[node.output] = Some(i);
    }
    let range_of = |t: TensorId| {
        let name = &graph.tensors[t].name;
        ranges.0.get(name).copied().ok_or_else(|| {
            ExportError::Option(format!(
                "no calibration range for tensor `{name}` (the ranges belong to another model?)"
            ))
        })
    };
    (0..graph.tensors.len())
        .map(|t| {
            if let Some(p) = producer[t]
                && matches!(graph.nodes[p].op, Op::Sigmoid)
            {
                return Ok(QParams::SIGMOID);
            }
            Ok(QParams::from_range(range_of(
                fused_activation(graph, &consumers, t).unwrap_or(t),
            )?))
        })
        .collect()
}

/// The ReLU/ReLU6 output that a conv output `t` can be fused with: `t` must come from a conv
/// and have that activation as its only reader.
pub(crate) fn fused_activation(
    graph: &Graph,
    consumers: &[Vec<usize>],
    t: TensorId,
) -> Option<TensorId> {
    let from_conv = graph
        .nodes
        .iter()
        .any(|n| n.output == t && matches!(n.op, Op::Conv(_)));
    match consumers[t].as_slice() {
        [only] if from_conv && matches!(graph.nodes[*only].op, Op::Relu | Op::Relu6) => {
            Some(graph.nodes[*only].output)
        }
        _ => None,
    }
}

/// One conv or dense node's int8 weights in burn's layout (`[out, in/groups, kh, kw]`, or
/// `[in, out]` for the classifier), one scale per output channel, int32 biases.
#[derive(Clone, Debug)]
pub(crate) struct QWeights {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
    pub bias: Vec<i32>,
}

/// The quantisation of every tensor and weighted node of a graph: what the int8 writers lower.
#[derive(Clone, Debug)]
pub(crate) struct GraphQuant {
    /// Parameters of each graph tensor.
    pub act: Vec<QParams>,
    /// int8 weights of each node (`None` for weightless ops).
    pub weights: Vec<Option<QWeights>>,
}

/// The int8 numbers of `graph` under `options`: activation parameters from the ranges, weights
/// per output channel (or per layer), biases at input scale × weight scale.
pub(crate) fn graph_quant(graph: &Graph, options: &Int8Options) -> Result<GraphQuant, ExportError> {
    let act = activation_params(graph, &options.ranges)?;
    let weights = graph
        .nodes
        .iter()
        .map(|n| {
            let (w, b, channel): (&[f32], &[f32], Box<dyn Fn(usize) -> usize>) = match &n.op {
                Op::Conv(c) => {
                    let per = c.weight.len() / c.out_channels().max(1);
                    (&c.weight, &c.bias, Box::new(move |i| i / per))
                }
                Op::Dense(d) => {
                    let out = d.dims[1];
                    (&d.weight, &d.bias, Box::new(move |i| i % out))
                }
                _ => return None,
            };
            let q = quantize_weights(w, b.len(), channel, options.weights);
            let bias = quantize_bias(b, act[n.inputs[0]].scale, &q.scales);
            Some(QWeights {
                values: q.values,
                scales: q.scales,
                bias,
            })
        })
        .collect();
    Ok(GraphQuant { act, weights })
}

/// Weights quantised symmetrically per output channel.
#[derive(Clone, Debug)]
pub struct ChannelQuant {
    /// The int8 weights, in the input's order.
    pub values: Vec<i8>,
    /// One scale per channel: `max |w| / 127` (1 for an all-zero channel).
    pub scales: Vec<f32>,
}

/// Quantises `weights` with one symmetric scale per channel; `channel(i)` is the output channel
/// of element `i`.
pub fn quantize_per_channel(
    weights: &[f32],
    channels: usize,
    channel: impl Fn(usize) -> usize,
) -> ChannelQuant {
    quantize_weights(weights, channels, channel, WeightGranularity::PerChannel)
}

/// Quantises `weights` symmetrically, one scale per output channel (`channel(i)` of element
/// `i`) or one for all of them (repeated per channel).
pub fn quantize_weights(
    weights: &[f32],
    channels: usize,
    channel: impl Fn(usize) -> usize,
    granularity: WeightGranularity,
) -> ChannelQuant {
    let mut max = vec![0f32; channels];
    for (i, w) in weights.iter().enumerate() {
        let c = channel(i);
        max[c] = max[c].max(w.abs());
    }
    if granularity == WeightGranularity::PerTensor {
        let all = max.iter().fold(0f32, |m, &v| m.max(v));
        max.fill(all);
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let values = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (w / scales[channel(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    ChannelQuant { values, scales }
}

/// Biases as int32 at scale `input_scale · weight_scale[c]`, zero point 0.
pub fn quantize_bias(bias: &[f32], input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    bias.iter()
        .zip(weight_scales)
        .map(|(b, s)| {
            (f64::from(*b) / (f64::from(input_scale) * f64::from(*s)))
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect()
}

/// Plain min/max calibration: runs `graph` on each batch `[N, 3, H, W]` of preprocessed images
/// (loaded lazily by the iterator; its first error stops the calibration) and records every
/// tensor's range.
pub fn calibrate_minmax<E>(
    graph: &Graph,
    batches: impl IntoIterator<Item = Result<Tensor<4>, E>>,
    device: &Device,
) -> Result<ActivationRanges, E> {
    let evaluator = Evaluator::new(graph, device);
    let mut ranges = ActivationRanges::default();
    for batch in batches {
        evaluator.run(batch?, |t, values| {
            let min = values.clone().min().into_scalar::<f32>();
            let max = values.clone().max().into_scalar::<f32>();
            ranges.observe(&graph.tensors[t].name, min, max);
        });
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_represent_zero_exactly_and_cover_the_range() {
        let q = QParams::from_range(Range {
            min: -1.0,
            max: 3.0,
        });
        assert!((q.scale - 4.0 / 255.0).abs() < 1e-7);
        // 0.0 maps to an integer: -128 + 1/(4/255) = -128 + 63.75 = -64.25 -> -64.
        assert_eq!(q.zero_point, -64);
        assert_eq!(q.quantize(0.0) as i32, q.zero_point);
        assert_eq!(q.quantize(-1.0), -128);
        assert_eq!(q.quantize(3.0), 127);
        // A positive-only range is widened to include 0: zero point at the bottom.
        let relu = QParams::from_range(Range { min: 0.5, max: 6.0 });
        assert_eq!(relu.zero_point, -128);
        assert!((relu.scale - 6.0 / 255.0).abs() < 1e-7);
        // A constant-zero tensor gets a usable (non-zero) scale.
        let zero = QParams::from_range(Range { min: 0.0, max: 0.0 });
        assert!(zero.scale > 0.0);
    }

    #[test]
    fn weights_are_symmetric_per_channel() {
        // Two channels interleaved: channel = i % 2.
        let w = [1.1, -0.5, -2.0, 0.2, 0.5, 0.0];
        let q = quantize_per_channel(&w, 2, |i| i % 2);
        assert_eq!(q.scales, vec![2.0 / 127.0, 0.5 / 127.0]);
        assert_eq!(q.values, vec![70, -127, -127, 51, 32, 0]);
        let layer = quantize_weights(&w, 2, |i| i % 2, WeightGranularity::PerTensor);
        assert_eq!(layer.scales, vec![2.0 / 127.0; 2]);
        assert_eq!(layer.values[1], -32);
        let zero = quantize_per_channel(&[0.0, 0.0], 1, |_| 0);
        assert_eq!(zero.scales, vec![1.0]);
        let b = quantize_bias(&[1.0, -1.0], 0.5, &[0.01, 0.02]);
        assert_eq!(b, vec![200, -100]);
    }
}
