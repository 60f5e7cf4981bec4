//! The folded network as a format-neutral graph: primitive ops (conv, activations, elementwise
//! products and sums, global mean, dense) on named tensors, with burn-layout weights and the
//! explicit conv pads burn computes for the exported input size. The ONNX and TFLite writers
//! both lower this one graph, each to its own layout; quantisation parameters are keyed by its
//! tensor names, and [`Evaluator`] runs it (burn ops) so that a calibrator can observe them.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use effnet_model::{Activation, Block, EfficientNet, SqueezeExcite};

use crate::error::ExportError;

/// Index of a tensor in [`Graph::tensors`].
pub type TensorId = usize;

/// Name of the graph input (normalised RGB images).
pub const INPUT_NAME: &str = "input";
/// Name of the graph output (`[N, classes]` logits, before softmax).
pub const OUTPUT_NAME: &str = "logits";

/// One activation tensor of the graph (per image: the batch dimension is the writer's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Unique name (`input`, `logits`, or `<layer>:out`, e.g. `blocks.1.0.conv_pw.relu6:out`).
    pub name: String,
    /// Channels (features for a flat tensor).
    pub channels: usize,
    /// Height and width of a feature map; `None` for a flat `[N, channels]` tensor.
    pub hw: Option<[usize; 2]>,
}

/// A 2-D convolution with burn's weight layout and explicit pads.
#[derive(Clone, Debug)]
pub struct ConvOp {
    /// `[out, in / groups, kh, kw]`, row-major.
    pub weight: Vec<f32>,
    /// Dimensions of `weight`.
    pub weight_dims: [usize; 4],
    /// `[out]` (zeros where the conv had none).
    pub bias: Vec<f32>,
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Vertical and horizontal dilation.
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]` zero padding of the input.
    pub pads: [usize; 4],
    /// Channel groups (1: dense conv; `out` with one input channel each: depthwise).
    pub groups: usize,
}

impl ConvOp {
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight_dims[0]
    }

    /// Whether every output channel reads exactly one input channel of its own.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.weight_dims[1] == 1 && self.groups == self.weight_dims[0]
    }

    /// Output height and width for an input of size `hw`.
    pub fn out_hw(&self, hw: [usize; 2]) -> [usize; 2] {
        let [_, _, kh, kw] = self.weight_dims;
        let [t, l, b, r] = self.pads;
        let axis = |n: usize, before: usize, after: usize, k: usize, s: usize, d: usize| {
            (n + before + after).saturating_sub(d * (k - 1) + 1) / s + 1
        };
        [
            axis(hw[0], t, b, kh, self.stride[0], self.dilation[0]),
            axis(hw[1], l, r, kw, self.stride[1], self.dilation[1]),
        ]
    }
}

/// A fully connected layer with burn's `[in, out]` weight layout.
#[derive(Clone, Debug)]
pub struct DenseOp {
    /// `[in, out]`, row-major.
    pub weight: Vec<f32>,
    /// Input features and output features.
    pub dims: [usize; 2],
    /// `[out]`.
    pub bias: Vec<f32>,
}

/// What a node computes.
#[derive(Clone, Debug)]
pub enum Op {
    /// Convolution (input: one feature map).
    Conv(ConvOp),
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// Elementwise product of two inputs; the second may be `[N, C, 1, 1]` (broadcast over H, W).
    Mul,
    /// Elementwise sum of two inputs of the same shape.
    Add,
    /// Average over height and width: `[N, C, 1, 1]` with `keep_dims`, else flat `[N, C]`.
    Mean {
        /// Keep the pooled map as `1×1` instead of flattening it.
        keep_dims: bool,
    },
    /// Fully connected layer on a flat tensor.
    Dense(DenseOp),
}

/// One operation: its inputs and its output tensor.
#[derive(Clone, Debug)]
pub struct Node {
    /// Layer name (the model's module path plus the op, e.g. `blocks.0.0.conv_dw.relu6`).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Input tensors.
    pub inputs: Vec<TensorId>,
    /// Output tensor.
    pub output: TensorId,
}

/// The whole folded network for one input size, nodes in execution order.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Every activation tensor, the input first.
    pub tensors: Vec<TensorInfo>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// The image input `[N, 3, H, W]`.
    pub input: TensorId,
    /// The logits `[N, classes]`.
    pub output: TensorId,
}

/// The one-line refusal for a layer the exporters do not write yet.
fn unsupported_layer(layer: &str) -> ExportError {
    ExportError::Unsupported(format!(
        "the ONNX/TFLite export does not support {layer} layers yet (this model runs on the burn \
         engine only; see docs/models.md)"
    ))
}

fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ExportError> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ExportError::Unsupported(format!("weights not readable as f32 ({e:?})")))
}

/// `(begin, end)` padding of TensorFlow/burn "same": output `ceil(in / stride)`, extra pixel at
/// the end (bottom/right), like burn's `PaddingConfig2d::Same`, ONNX's `SAME_UPPER` and TFLite's
/// `SAME`; `kernel` is the dilated extent.
pub(crate) fn same_pads(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// `[top, left, bottom, right]` pads of `conv` for an input of size `hw`, as burn pads it.
fn conv_pads(conv: &Conv2d, hw: [usize; 2]) -> [usize; 4] {
    match conv.padding {
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
        PaddingConfig2d::Same => {
            let (t, b) = same_pads(hw[0], conv.kernel_size[0], conv.stride[0]);
            let (l, r) = same_pads(hw[1], conv.kernel_size[1], conv.stride[1]);
            [t, l, b, r]
        }
    }
}

impl Graph {
    /// Lowers a BatchNorm-folded `model` for `[h, w]` inputs.
    pub fn from_model(model: &EfficientNet, hw: [usize; 2]) -> Result<Self, ExportError> {
        if model.norm1.is_some() {
            return Err(unsupported_layer("GroupNorm / LayerNorm / EvoNorm"));
        }
        // CondConv blocks keep their BatchNorms when folding: name the layer, not the fold.
        if model
            .blocks
            .iter()
            .flatten()
            .any(|b| matches!(b, Block::CondConvResidual(_)))
        {
            return Err(unsupported_layer("CondConv"));
        }
        if !model.is_folded() {
            return Err(ExportError::Unsupported(
                "BatchNorm must be folded first (EfficientNet::fold_batchnorm)".into(),
            ));
        }
        let mut g = Graph {
            tensors: vec![TensorInfo {
                name: INPUT_NAME.into(),
                channels: 3,
                hw: Some(hw),
            }],
            nodes: Vec::new(),
            input: 0,
            output: 0,
        };
        let x = g.conv("conv_stem", &model.conv_stem, 0)?;
        let mut x = g.activate("conv_stem", model.act, x);
        for (s, stage) in model.blocks.iter().enumerate() {
            for (j, block) in stage.iter().enumerate() {
                x = g.block(&format!("blocks.{s}.{j}"), block, x)?;
            }
        }
        let x = g.conv("conv_head", &model.conv_head, x)?;
        let x = g.activate("conv_head", model.act, x);
        let pooled = g.push("global_pool", Op::Mean { keep_dims: false }, &[x], None);
        let weight = model.classifier.weight.val();
        let [features, classes] = weight.dims();
        let bias = match &model.classifier.bias {
            Some(b) => values(b.val())?,
            None => vec![0.0; classes],
        };
        let dense = DenseOp {
            weight: values(weight)?,
            dims: [features, classes],
            bias,
        };
        g.output = g.push("classifier", Op::Dense(dense), &[pooled], None);
        g.tensors[g.output].name = OUTPUT_NAME.into();
        Ok(g)
    }

    /// Number of classes (width of the output).
    pub fn num_classes(&self) -> usize {
        self.tensors[self.output].channels
    }

    /// The tensor with this name.
    pub fn tensor_id(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name)
    }

    /// The nodes reading each tensor (indices into [`nodes`](Self::nodes)).
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut users = vec![Vec::new(); self.tensors.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &t in &node.inputs {
                users[t].push(i);
            }
        }
        users
    }

    /// Adds a node whose output has the shape of its first input unless `shape` says otherwise
    /// (`Some((channels, hw))`); returns the output tensor.
    fn push(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[TensorId],
        shape: Option<(usize, Option<[usize; 2]>)>,
    ) -> TensorId {
        let first = &self.tensors[inputs[0]];
        let (channels, hw) = match (&op, shape) {
            (_, Some(shape)) => shape,
            (Op::Mean { keep_dims: true }, None) => (first.channels, Some([1, 1])),
            (Op::Mean { keep_dims: false }, None) => (first.channels, None),
            (Op::Dense(d), None) => (d.dims[1], None),
            _ => (first.channels, first.hw),
        };
        let output = self.tensors.len();
        self.tensors.push(TensorInfo {
            name: format!("{name}:out"),
            channels,
            hw,
        });
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs: inputs.to_vec(),
            output,
        });
        output
    }

    /// A conv with the module's weights, bias and the pads burn uses at this input size.
    fn conv(&mut self, name: &str, conv: &Conv2d, x: TensorId) -> Result<TensorId, ExportError> {
        let Some(hw) = self.tensors[x].hw else {
            return Err(ExportError::Unsupported(format!(
                "{name}: convolution over a flat tensor"
            )));
        };
        let weight = conv.weight.val();
        let weight_dims = weight.dims();
        let bias = match &conv.bias {
            Some(b) => values(b.val())?,
            None => vec![0.0; weight_dims[0]],
        };
        let op = ConvOp {
            weight: values(weight)?,
            weight_dims,
            bias,
            stride: conv.stride,
            dilation: conv.dilation,
            pads: conv_pads(conv, hw),
            groups: conv.groups,
        };
        let shape = (op.out_channels(), Some(op.out_hw(hw)));
        Ok(self.push(name, Op::Conv(op), &[x], Some(shape)))
    }

    /// The network's non-linearity: SiLU as `x · sigmoid(x)`, ReLU6, ReLU.
    fn activate(&mut self, name: &str, act: Activation, x: TensorId) -> TensorId {
        match act {
            Activation::Silu => {
                let gate = self.push(&format!("{name}.sigmoid"), Op::Sigmoid, &[x], None);
                self.push(&format!("{name}.silu"), Op::Mul, &[x, gate], None)
            }
            Activation::Relu6 => self.push(&format!("{name}.relu6"), Op::Relu6, &[x], None),
            Activation::Relu => self.push(&format!("{name}.relu"), Op::Relu, &[x], None),
        }
    }

    fn conv_act(
        &mut self,
        name: &str,
        conv: &Conv2d,
        act: Activation,
        x: TensorId,
    ) -> Result<TensorId, ExportError> {
        let y = self.conv(name, conv, x)?;
        Ok(self.activate(name, act, y))
    }

    /// Squeeze-excitation: mean, reduce conv, activation, expand conv, sigmoid gate, product.
    fn squeeze_excite(
        &mut self,
        name: &str,
        se: &SqueezeExcite,
        x: TensorId,
    ) -> Result<TensorId, ExportError> {
        let s = self.push(
            &format!("{name}.pool"),
            Op::Mean { keep_dims: true },
            &[x],
            None,
        );
        let s = self.conv_act(&format!("{name}.conv_reduce"), &se.conv_reduce, se.act, s)?;
        let s = self.conv(&format!("{name}.conv_expand"), &se.conv_expand, s)?;
        let gate = self.push(&format!("{name}.gate"), Op::Sigmoid, &[s], None);
        Ok(self.push(&format!("{name}.scale"), Op::Mul, &[x, gate], None))
    }

    fn maybe_se(
        &mut self,
        name: &str,
        se: &Option<SqueezeExcite>,
        x: TensorId,
    ) -> Result<TensorId, ExportError> {
        match se {
            Some(se) => self.squeeze_excite(&format!("{name}.se"), se, x),
            None => Ok(x),
        }
    }

    /// One block (BatchNorm already folded), with its residual sum where it has one.
    fn block(&mut self, name: &str, block: &Block, x: TensorId) -> Result<TensorId, ExportError> {
        let leaf = |leaf: &str| format!("{name}.{leaf}");
        let (y, skip) = match block {
            Block::ConvBnAct(b) => (self.conv_act(&leaf("conv"), &b.conv, b.act, x)?, b.has_skip),
            Block::EdgeResidual(b) => {
                let y = self.conv_act(&leaf("conv_exp"), &b.conv_exp, b.act, x)?;
                let y = self.maybe_se(name, &b.se, y)?;
                (self.conv(&leaf("conv_pwl"), &b.conv_pwl, y)?, b.has_skip)
            }
            Block::DepthwiseSeparable(b) => {
                let y = match &b.conv_s2d {
                    Some(conv) => self.conv_act(&leaf("conv_s2d"), conv, b.act, x)?,
                    None => x,
                };
                let y = self.conv_act(&leaf("conv_dw"), &b.conv_dw, b.act, y)?;
                let y = self.maybe_se(name, &b.se, y)?;
                (self.conv(&leaf("conv_pw"), &b.conv_pw, y)?, b.has_skip)
            }
            Block::InvertedResidual(b) if b.aa.is_some() || b.gc.is_some() => {
                return Err(unsupported_layer(if b.aa.is_some() {
                    "BlurPool"
                } else {
                    "global-context attention"
                }));
            }
            Block::CondConvResidual(_) => return Err(unsupported_layer("CondConv")),
            Block::NormActBlock(_) => {
                return Err(unsupported_layer("GroupNorm / LayerNorm / EvoNorm"));
            }
            Block::InvertedResidual(b) => {
                let y = self.conv_act(&leaf("conv_pw"), &b.conv_pw, b.act, x)?;
                let y = self.conv_act(&leaf("conv_dw"), &b.conv_dw, b.act, y)?;
                let y = self.maybe_se(name, &b.se, y)?;
                (self.conv(&leaf("conv_pwl"), &b.conv_pwl, y)?, b.has_skip)
            }
        };
        Ok(if skip {
            self.push(&leaf("residual"), Op::Add, &[y, x], None)
        } else {
            y
        })
    }
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

/// Runs a [`Graph`] with burn ops, weights uploaded once: the reference for the writers' layouts
/// and the place where a calibrator observes every tensor.
pub struct Evaluator<'g> {
    graph: &'g Graph,
    /// Weight and bias tensors of each node (`None` for weightless ops).
    params: Vec<Option<(Tensor<4>, Tensor<1>)>>,
    /// Index of the last node reading each tensor.
    last_use: Vec<usize>,
}

impl<'g> Evaluator<'g> {
    /// Uploads the graph's weights to `device`.
    pub fn new(graph: &'g Graph, device: &Device) -> Self {
        let params = graph
            .nodes
            .iter()
            .map(|node| match &node.op {
                Op::Conv(c) => Some((
                    Tensor::from_data(TensorData::new(c.weight.clone(), c.weight_dims), device),
                    Tensor::from_data(TensorData::new(c.bias.clone(), [c.bias.len()]), device),
                )),
                Op::Dense(d) => Some((
                    Tensor::from_data(
                        TensorData::new(d.weight.clone(), [1, 1, d.dims[0], d.dims[1]]),
                        device,
                    ),
                    Tensor::from_data(TensorData::new(d.bias.clone(), [d.bias.len()]), device),
                )),
                _ => None,
            })
            .collect();
        let mut last_use = vec![0; graph.tensors.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for &t in &node.inputs {
                last_use[t] = i;
            }
        }
        Self {
            graph,
            params,
            last_use,
        }
    }

    /// Logits `[N, classes]` of `input` `[N, 3, H, W]`. `observe` sees every tensor as it is
    /// made, the input included; flat tensors are shown as `[N, C, 1, 1]`.
    pub fn run(
        &self,
        input: Tensor<4>,
        mut observe: impl FnMut(TensorId, &Tensor<4>),
    ) -> Tensor<2> {
        let g = self.graph;
        let mut live: Vec<Option<Tensor<4>>> = vec![None; g.tensors.len()];
        observe(g.input, &input);
        live[g.input] = Some(input);
        for (i, node) in g.nodes.iter().enumerate() {
            let arg = |k: usize| {
                live[node.inputs[k]]
                    .clone()
                    .expect("graph inputs are computed before use")
            };
            let y = match (&node.op, &self.params[i]) {
                (Op::Conv(c), Some((w, b))) => {
                    let [t, l, bottom, r] = c.pads;
                    let options = ConvOptions::new_with_padding(
                        c.stride,
                        [(t, bottom), (l, r)],
                        c.dilation,
                        c.groups,
                    );
                    conv2d(arg(0), w.clone(), Some(b.clone()), options)
                }
                (Op::Dense(d), Some((w, b))) => {
                    let x: Tensor<2> = arg(0).flatten(1, 3);
                    let w: Tensor<2> = w.clone().reshape([d.dims[0], d.dims[1]]);
                    let y = x.matmul(w) + b.clone().unsqueeze();
                    y.unsqueeze_dims(&[2, 3])
                }
                (Op::Relu, _) => relu(arg(0)),
                (Op::Relu6, _) => arg(0).clamp(0.0, 6.0),
                (Op::Sigmoid, _) => sigmoid(arg(0)),
                (Op::Mul, _) => arg(0) * arg(1),
                (Op::Add, _) => arg(0) + arg(1),
                (Op::Mean { .. }, _) => arg(0).mean_dim(3).mean_dim(2),
                (Op::Conv(_) | Op::Dense(_), None) => unreachable!("weights uploaded in new"),
            };
            for &t in &node.inputs {
                if self.last_use[t] == i {
                    live[t] = None;
                }
            }
            observe(node.output, &y);
            live[node.output] = Some(y);
        }
        live[g.output]
            .take()
            .expect("the output is computed")
            .flatten(1, 3)
    }
}

#[cfg(test)]
mod tests {
    use super::same_pads;

    #[test]
    fn same_padding_puts_the_extra_pixel_at_the_end() {
        // 224, k3 s2: out 112, total (111*2+3)-224 = 1 -> (0, 1), like TF and burn.
        assert_eq!(same_pads(224, 3, 2), (0, 1));
        // Odd input, k3 s2: out 113, total (112*2+3)-225 = 2 -> (1, 1).
        assert_eq!(same_pads(225, 3, 2), (1, 1));
        // k5 s2 on 112: out 56, total 55*2+5-112 = 3 -> (1, 2).
        assert_eq!(same_pads(112, 5, 2), (1, 2));
        // Stride 1 keeps the size: k3 -> (1, 1), k1 -> (0, 0).
        assert_eq!(same_pads(7, 3, 1), (1, 1));
        assert_eq!(same_pads(7, 1, 1), (0, 0));
    }
}
