//! Full-integer int8 exports lower effnet's own quantised network — the
//! [`QuantModel`](effnet_cpu::quant::QuantModel) that calibration makes and the int8 `.bpk` and
//! executor use — onto the folded [`Graph`], so that the `.tflite`, the QDQ `.onnx` and effnet's
//! int8 executor hold identical numbers: the n-th conv of the graph is the n-th layer of the
//! model (network order), every graph tensor takes the `QParams` of the site it stands for, and
//! the int8 weights, their per-channel scales and the int32 biases are written as they are.

use effnet_cpu::quant::{QConv, QDepthwise, QParams, QSqueezeExcite, QuantModel};

use crate::error::ExportError;
use crate::graph::{ConvOp, DenseOp, Graph, Op, TensorId};

/// Element type of an int8 model's input or output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoType {
    /// f32, quantised/dequantised inside the model (drop-in for the f32 model).
    #[default]
    Float32,
    /// int8 with the tensor's scale and zero point (the caller quantises).
    Int8,
}

/// What an int8 export lowers: the calibrated model and the types at its boundary.
#[derive(Clone, Debug)]
pub struct Int8Options {
    /// The quantised network (from `effnet_cpu::quant::calib::Calibrator::finish`, or an int8
    /// `.bpk`), made from the same BatchNorm-folded model.
    pub model: QuantModel,
    /// Element type of the image input.
    pub input: IoType,
    /// Element type of the logits.
    pub output: IoType,
}

/// One conv or dense node's int8 weights in burn's layout (`[out, in/groups, kh, kw]`, or
/// `[in, out]` for the classifier), one scale per output channel, int32 biases.
#[derive(Clone, Debug)]
pub(crate) struct QWeights {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
    pub bias: Vec<i32>,
}

/// The quantisation of every tensor and weighted node of a graph.
#[derive(Clone, Debug)]
pub(crate) struct GraphQuant {
    /// Parameters of each graph tensor.
    pub act: Vec<QParams>,
    /// int8 weights of each node (`None` for weightless ops).
    pub weights: Vec<Option<QWeights>>,
}

/// A weighted layer of the model, in network order, with the block it belongs to.
enum Layer<'q> {
    Conv(&'q QConv, Option<usize>),
    Depthwise(&'q QDepthwise, Option<usize>),
}

fn layers(q: &QuantModel) -> Vec<Layer<'_>> {
    let mut out = vec![Layer::Conv(&q.stem, None)];
    for (i, b) in q.blocks.iter().enumerate() {
        if let Some(c) = &b.conv {
            out.push(Layer::Conv(c, Some(i)));
        }
        if let Some(d) = &b.dw {
            out.push(Layer::Depthwise(d, Some(i)));
        }
        if let Some(se) = &b.se {
            out.push(Layer::Conv(&se.reduce, Some(i)));
            out.push(Layer::Conv(&se.expand, Some(i)));
        }
        if let Some(p) = &b.project {
            out.push(Layer::Conv(p, Some(i)));
        }
    }
    out.push(Layer::Conv(&q.head, None));
    out.push(Layer::Conv(&q.fc, None));
    out
}

fn mismatch(what: String) -> ExportError {
    ExportError::Option(format!(
        "the int8 model does not match this network: {what} (calibrate the same weights)"
    ))
}

/// Maps `q` onto `graph` (see the [module docs](self)).
pub(crate) fn map(graph: &Graph, q: &QuantModel) -> Result<GraphQuant, ExportError> {
    let mut act: Vec<Option<QParams>> = vec![None; graph.tensors.len()];
    let mut weights = vec![None; graph.nodes.len()];
    act[graph.input] = Some(q.input);
    let mut producer = vec![None; graph.tensors.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        producer[n.output] = Some(i);
    }
    let layers = layers(q);
    let mut next = layers.iter();
    // The layer whose activation the following ReLU/SiLU nodes finish, and its block.
    let mut current: Option<&Layer> = None;
    let mut block: Option<usize> = None;
    for (i, n) in graph.nodes.iter().enumerate() {
        let params = match &n.op {
            Op::Conv(c) => {
                let layer = next
                    .next()
                    .ok_or_else(|| mismatch(format!("{} has no int8 layer", n.name)))?;
                let (w, pre, b) = conv_weights(&n.name, c, layer)?;
                block = b;
                weights[i] = Some(w);
                current = Some(layer);
                pre
            }
            Op::Dense(d) => {
                let layer = next
                    .next()
                    .ok_or_else(|| mismatch(format!("{} has no int8 layer", n.name)))?;
                let (w, out) = dense_weights(&n.name, d, layer)?;
                weights[i] = Some(w);
                out
            }
            Op::Relu | Op::Relu6 => activation_of(current, &n.name)?,
            Op::Sigmoid => QParams::SIGMOID,
            Op::Mul => {
                let [x, gate] = [n.inputs[0], n.inputs[1]];
                let silu = producer[gate].is_some_and(|p| {
                    matches!(graph.nodes[p].op, Op::Sigmoid) && graph.nodes[p].inputs[0] == x
                });
                if silu {
                    activation_of(current, &n.name)?
                } else {
                    se_of(q, block, &n.name)?.output
                }
            }
            Op::Add => {
                let b = block.ok_or_else(|| mismatch(format!("{} outside a block", n.name)))?;
                q.blocks[b].output
            }
            Op::Mean { keep_dims: true } => se_of(q, block, &n.name)?.pool,
            Op::Mean { keep_dims: false } => q.pool,
        };
        act[n.output] = Some(params);
    }
    if next.next().is_some() {
        return Err(mismatch(
            "the int8 model has more layers than the graph".into(),
        ));
    }
    let act = act
        .into_iter()
        .enumerate()
        .map(|(t, p): (TensorId, _)| {
            p.ok_or_else(|| mismatch(format!("no parameters for {}", graph.tensors[t].name)))
        })
        .collect::<Result<_, _>>()?;
    Ok(GraphQuant { act, weights })
}

/// The int8 weights of one graph conv from its int8 layer (a dense or a depthwise conv, checked
/// to be the same shape), in burn's OIHW layout, with the layer's pre-activation parameters and
/// the block it belongs to.
fn conv_weights(
    name: &str,
    c: &ConvOp,
    layer: &Layer,
) -> Result<(QWeights, QParams, Option<usize>), ExportError> {
    let [o, ci, kh, kw] = c.weight_dims;
    Ok(match layer {
        Layer::Conv(l, b) => {
            if (l.cout, l.cin, l.k, l.k, l.stride) != (o, ci, kh, kw, c.stride[0]) || c.groups != 1
            {
                return Err(mismatch(format!(
                    "{} is a {kh}x{kw} conv {ci} -> {o}, the int8 layer {}x{} {} -> {}",
                    name, l.k, l.k, l.cin, l.cout
                )));
            }
            // HWIO [k·k·cin][cout] -> OIHW.
            let mut v = vec![0i8; l.weight.len()];
            for oc in 0..o {
                for ic in 0..ci {
                    for t in 0..kh * kw {
                        v[(oc * ci + ic) * kh * kw + t] = l.weight[(t * ci + ic) * o + oc];
                    }
                }
            }
            (
                QWeights {
                    values: v,
                    scales: l.weight_scale.clone(),
                    bias: l.bias.clone(),
                },
                l.pre_act,
                *b,
            )
        }
        Layer::Depthwise(l, b) => {
            if !c.is_depthwise() || (l.c, l.k, l.k, l.stride) != (o, kh, kw, c.stride[0]) {
                return Err(mismatch(format!(
                    "{} is not the int8 depthwise {}x{} over {} channels",
                    name, l.k, l.k, l.c
                )));
            }
            // [k·k][c] -> [c][1][kh][kw].
            let mut v = vec![0i8; l.weight.len()];
            for ch in 0..o {
                for t in 0..kh * kw {
                    v[ch * kh * kw + t] = l.weight[t * o + ch];
                }
            }
            (
                QWeights {
                    values: v,
                    scales: l.weight_scale.clone(),
                    bias: l.bias.clone(),
                },
                l.pre_act,
                *b,
            )
        }
    })
}

/// The classifier's int8 weights (burn's `[in, out]`, as the int8 layer holds them) and its
/// output parameters.
fn dense_weights(
    name: &str,
    d: &DenseOp,
    layer: &Layer,
) -> Result<(QWeights, QParams), ExportError> {
    let Layer::Conv(l, _) = layer else {
        return Err(mismatch(format!("{name} is not the int8 classifier")));
    };
    if (l.cin, l.cout, l.k) != (d.dims[0], d.dims[1], 1) {
        return Err(mismatch(format!(
            "classifier {:?}, int8 {} -> {}",
            d.dims, l.cin, l.cout
        )));
    }
    let w = QWeights {
        values: l.weight.clone(),
        scales: l.weight_scale.clone(),
        bias: l.bias.clone(),
    };
    Ok((w, l.output))
}

/// The output parameters of the conv whose activation (ReLU, ReLU6, SiLU) node `name` finishes.
fn activation_of(current: Option<&Layer>, name: &str) -> Result<QParams, ExportError> {
    match current {
        Some(Layer::Conv(l, _)) => Ok(l.output),
        Some(Layer::Depthwise(l, _)) => Ok(l.output),
        None => Err(mismatch(format!("{name} follows no conv"))),
    }
}

fn se_of<'q>(
    q: &'q QuantModel,
    block: Option<usize>,
    node: &str,
) -> Result<&'q QSqueezeExcite, ExportError> {
    block
        .and_then(|b| q.blocks[b].se.as_ref())
        .ok_or_else(|| mismatch(format!("{node}: no squeeze-excitation in the int8 block")))
}
