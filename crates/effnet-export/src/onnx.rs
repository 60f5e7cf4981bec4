//! ONNX export: the model graph (f32, or int8 as a QDQ graph), its input/output signature and
//! its preprocessing metadata.

use std::path::Path;

use effnet_model::Pretrained;
use prost::Message;

use crate::error::ExportError;
use crate::graph::{Graph, INPUT_NAME, OUTPUT_NAME, Op, TensorId};
use crate::int8::{GraphQuant, Int8Options, IoType, map};
use crate::meta::{Layout, check_labels, metadata};
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto,
    tensor_shape_proto, type_proto,
};
use effnet_cpu::quant::QParams;

/// Oldest opset the exporter writes (every op it uses has its current form there).
pub const MIN_OPSET: i64 = 17;
/// Newest opset the exporter has been checked against (ONNX Runtime 1.32).
pub const MAX_OPSET: i64 = 21;

/// The batch dimension of the exported graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    /// A fixed batch size (what TensorRT and some accelerators prefer).
    Fixed(usize),
    /// A symbolic `batch` dimension: any batch size at run time.
    Dynamic,
}

/// How to export.
#[derive(Clone, Debug)]
pub struct OnnxOptions {
    /// Batch dimension.
    pub batch: BatchSize,
    /// ONNX operator set, [`MIN_OPSET`]..=[`MAX_OPSET`].
    pub opset: i64,
    /// Input height and width; `None` takes the crop size of the model's preprocessing.
    pub input_size: Option<usize>,
    /// Class names to record as metadata (`labels`, a JSON array); `None` keeps the model's own.
    pub labels: Option<Vec<String>>,
    /// Full-integer int8 as a QDQ graph with these calibration ranges; `None` exports f32.
    pub int8: Option<Int8Options>,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            batch: BatchSize::Fixed(1),
            opset: MIN_OPSET,
            input_size: None,
            labels: None,
            int8: None,
        }
    }
}

impl OnnxOptions {
    fn check(&self) -> Result<(), ExportError> {
        if !(MIN_OPSET..=MAX_OPSET).contains(&self.opset) {
            return Err(ExportError::Option(format!(
                "opset {} is not supported (use {MIN_OPSET}..={MAX_OPSET})",
                self.opset
            )));
        }
        if self.batch == BatchSize::Fixed(0) {
            return Err(ExportError::Option("batch size must be at least 1".into()));
        }
        if self.input_size == Some(0) {
            return Err(ExportError::Option("input size must be at least 1".into()));
        }
        Ok(())
    }
}

fn attr_ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// An f32 initializer with raw little-endian data.
fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor_proto::DataType::Float as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn raw_tensor(name: &str, dims: &[usize], ty: tensor_proto::DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(ty as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// Nodes and initializers under construction. Tensors keep their graph names; weights are
/// named after their layer (`<layer>.weight`, `<layer>.bias`). In a QDQ (int8) graph every
/// activation `t` is followed by `QuantizeLinear` → `t:q`, each reader takes its own
/// `DequantizeLinear` of it, and weights and biases are int8/int32 initializers
/// (`<layer>.weight:q`) behind a `DequantizeLinear`; ONNX Runtime fuses these groups into
/// integer kernels (QLinearConv, QLinearAdd, QLinearMul, QGemm, …).
struct Lowering<'g> {
    graph: &'g Graph,
    /// int8 parameters of each graph tensor and the boundary types (`None`: f32 graph).
    quant: Option<(GraphQuant, IoType, IoType)>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Lowering<'_> {
    /// The name a node writes graph tensor `t` under.
    fn produced(&self, t: TensorId) -> String {
        let name = &self.graph.tensors[t].name;
        match &self.quant {
            Some(_) if t == self.graph.output => format!("{name}:float"),
            _ => name.clone(),
        }
    }

    /// The name `reader` takes graph tensor `t` under. In a QDQ graph every reading edge gets
    /// its own `DequantizeLinear` of `t:q` (ONNX Runtime fuses a node with the dequantizers
    /// of its inputs only when no other node shares them).
    fn read(&mut self, t: TensorId, reader: &str) -> String {
        let name = self.graph.tensors[t].name.clone();
        let Some((_, input_type, _)) = &self.quant else {
            return name;
        };
        let quantized = if t == self.graph.input && *input_type == IoType::Int8 {
            name.clone()
        } else {
            format!("{name}:q")
        };
        let out = format!("{name}:dq:{reader}");
        let (scale, zero) = (format!("{name}.scale"), format!("{name}.zero_point"));
        self.push(
            "DequantizeLinear",
            &format!("{name}.dequantize:{reader}"),
            &[&quantized, &scale, &zero],
            &out,
            vec![],
        );
        out
    }

    fn push(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(node(op, name, inputs, output, attrs));
    }

    /// Scale and zero-point initializers `<name>.scale`, `<name>.zero_point` of `q`: uint8 with
    /// the zero point moved by 128 (the same real values as int8; ONNX Runtime's x86 kernels
    /// fuse uint8-activation QDQ groups — residual adds included — where int8 ones stay in
    /// float), or int8 for a boundary tensor the caller wants as int8.
    fn qparams(&mut self, name: &str, q: QParams, signed: bool) -> (String, String) {
        let (scale, zero) = (format!("{name}.scale"), format!("{name}.zero_point"));
        self.inits.push(f32_tensor(&scale, &[], &[q.scale]));
        let (ty, zp) = if signed {
            (tensor_proto::DataType::Int8, (q.zero_point as i8) as u8)
        } else {
            (tensor_proto::DataType::Uint8, (q.zero_point + 128) as u8)
        };
        self.inits.push(raw_tensor(&zero, &[], ty, vec![zp]));
        (scale, zero)
    }

    /// The `QuantizeLinear` after graph tensor `t` (nothing in an f32 graph; its readers
    /// dequantize, see [`read`](Self::read)). At the boundary: an int8 input is not quantized
    /// again, and f32 logits are dequantized into the graph output.
    fn qdq(&mut self, t: TensorId) {
        let Some((params, input_type, output_type)) = &self.quant else {
            return;
        };
        let (q, input_type, output_type) = (params.act[t], *input_type, *output_type);
        let name = self.graph.tensors[t].name.clone();
        let int8_input = t == self.graph.input && input_type == IoType::Int8;
        let int8_output = t == self.graph.output && output_type == IoType::Int8;
        let (scale, zero) = self.qparams(&name, q, int8_input || int8_output);
        if int8_input {
            return;
        }
        let produced = self.produced(t);
        let q_out = if t == self.graph.output && output_type == IoType::Int8 {
            name.clone()
        } else {
            format!("{name}:q")
        };
        self.push(
            "QuantizeLinear",
            &format!("{name}.quantize"),
            &[&produced, &scale, &zero],
            &q_out,
            vec![],
        );
        if t == self.graph.output && output_type == IoType::Float32 {
            self.push(
                "DequantizeLinear",
                &format!("{name}.dequantize"),
                &[&q_out, &scale, &zero],
                &name,
                vec![],
            );
        }
    }

    /// Weight (`dims`, output channel on `axis`) and bias initializers of `layer` reading graph
    /// tensor `input`: f32, or int8 per channel / int32 behind `DequantizeLinear`. Returns the
    /// names the layer reads.
    fn weights(
        &mut self,
        node: usize,
        dims: &[usize],
        axis: usize,
        weights: &[f32],
        bias: &[f32],
    ) -> (String, String) {
        let n = &self.graph.nodes[node];
        let (w, b) = (format!("{}.weight", n.name), format!("{}.bias", n.name));
        let Some((params, _, _)) = &self.quant else {
            self.inits.push(f32_tensor(&w, dims, weights));
            self.inits.push(f32_tensor(&b, &[bias.len()], bias));
            return (w, b);
        };
        let input_scale = params.act[n.inputs[0]].scale;
        let channels = bias.len();
        let Some(wq) = params.weights[node].clone() else {
            unreachable!("every conv and dense node has int8 weights");
        };
        let bq = &wq.bias;
        let b_scales: Vec<f32> = wq.scales.iter().map(|s| s * input_scale).collect();
        let per_channel = [channels];
        let (wq_name, bq_name) = (format!("{w}:q"), format!("{b}:q"));
        let raw_w = wq.values.iter().map(|&v| v as u8).collect();
        self.inits.push(raw_tensor(
            &wq_name,
            dims,
            tensor_proto::DataType::Int8,
            raw_w,
        ));
        self.inits
            .push(f32_tensor(&format!("{w}.scale"), &per_channel, &wq.scales));
        self.inits.push(raw_tensor(
            &format!("{w}.zero_point"),
            &per_channel,
            tensor_proto::DataType::Int8,
            vec![0; channels],
        ));
        let raw_b = bq.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.inits.push(raw_tensor(
            &bq_name,
            &per_channel,
            tensor_proto::DataType::Int32,
            raw_b,
        ));
        self.inits
            .push(f32_tensor(&format!("{b}.scale"), &per_channel, &b_scales));
        self.inits.push(raw_tensor(
            &format!("{b}.zero_point"),
            &per_channel,
            tensor_proto::DataType::Int32,
            vec![0; 4 * channels],
        ));
        let axis_attr = || vec![attr_int("axis", axis as i64)];
        for (src, dst) in [(&wq_name, &w), (&bq_name, &b)] {
            let base = dst.clone();
            self.push(
                "DequantizeLinear",
                &format!("{base}.dequantize"),
                &[src, &format!("{base}.scale"), &format!("{base}.zero_point")],
                dst,
                if dst == &w {
                    axis_attr()
                } else {
                    vec![attr_int("axis", 0)]
                },
            );
        }
        (w, b)
    }

    fn lower(&mut self) {
        let g = self.graph;
        self.qdq(g.input);
        for (i, n) in g.nodes.iter().enumerate() {
            let x = self.read(n.inputs[0], &n.name);
            let y = self.produced(n.output);
            match &n.op {
                Op::Conv(c) => {
                    let (w, b) = self.weights(i, &c.weight_dims, 0, &c.weight, &c.bias);
                    let attrs = vec![
                        attr_ints("kernel_shape", &c.weight_dims[2..]),
                        attr_ints("strides", &c.stride),
                        attr_ints("dilations", &c.dilation),
                        attr_ints("pads", &c.pads),
                        attr_int("group", c.groups as i64),
                    ];
                    self.push("Conv", &n.name, &[&x, &w, &b], &y, attrs);
                }
                Op::Dense(d) => {
                    // burn's `[in, out]` weight is Gemm's B as it is (no transpose), so the
                    // output channel is dimension 1.
                    let (w, b) = self.weights(i, &d.dims, 1, &d.weight, &d.bias);
                    self.push("Gemm", &n.name, &[&x, &w, &b], &y, vec![]);
                }
                Op::Relu => self.push("Relu", &n.name, &[&x], &y, vec![]),
                Op::Relu6 => {
                    if !self
                        .inits
                        .iter()
                        .any(|t| t.name.as_deref() == Some("relu6.min"))
                    {
                        self.inits.push(f32_tensor("relu6.min", &[], &[0.0]));
                        self.inits.push(f32_tensor("relu6.max", &[], &[6.0]));
                    }
                    self.push("Clip", &n.name, &[&x, "relu6.min", "relu6.max"], &y, vec![]);
                }
                Op::Sigmoid => self.push("Sigmoid", &n.name, &[&x], &y, vec![]),
                Op::Mul | Op::Add => {
                    let op = if matches!(n.op, Op::Mul) {
                        "Mul"
                    } else {
                        "Add"
                    };
                    let x2 = self.read(n.inputs[1], &n.name);
                    self.push(op, &n.name, &[&x, &x2], &y, vec![]);
                }
                Op::Mean { keep_dims: true } => {
                    self.push("GlobalAveragePool", &n.name, &[&x], &y, vec![]);
                }
                Op::Mean { keep_dims: false } => {
                    let pooled = format!("{}:pooled", n.name);
                    self.push("GlobalAveragePool", &n.name, &[&x], &pooled, vec![]);
                    // In a QDQ graph the pooled map is quantised like the flat result, so
                    // that the pool runs in int8 and the flatten just moves int8 values.
                    let flat_in = match &self.quant {
                        Some((params, _, _)) => {
                            let q = params.act[n.output];
                            let (scale, zero) = self.qparams(&pooled, q, false);
                            let (pq, pdq) = (format!("{pooled}:q"), format!("{pooled}:dq"));
                            self.push(
                                "QuantizeLinear",
                                &format!("{pooled}.quantize"),
                                &[&pooled, &scale, &zero],
                                &pq,
                                vec![],
                            );
                            self.push(
                                "DequantizeLinear",
                                &format!("{pooled}.dequantize"),
                                &[&pq, &scale, &zero],
                                &pdq,
                                vec![],
                            );
                            pdq
                        }
                        None => pooled,
                    };
                    let flatten = format!("{}.flatten", n.name);
                    self.push(
                        "Flatten",
                        &flatten,
                        &[&flat_in],
                        &y,
                        vec![attr_int("axis", 1)],
                    );
                }
            }
            self.qdq(n.output);
        }
    }
}

/// ONNX nodes and initializers of `graph`, f32 or QDQ int8.
fn lower(
    graph: &Graph,
    int8: Option<&Int8Options>,
) -> Result<(Vec<NodeProto>, Vec<TensorProto>), ExportError> {
    let quant = match int8 {
        Some(o) => Some((map(graph, &o.model)?, o.input, o.output)),
        None => None,
    };
    let mut l = Lowering {
        graph,
        quant,
        nodes: Vec::with_capacity(graph.nodes.len() + 1),
        inits: Vec::new(),
    };
    l.lower();
    Ok((l.nodes, l.inits))
}

/// IR version that goes with an opset (ONNX's versioning table).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19 | 20 => 9,
        _ => 10,
    }
}

fn dim(d: Option<usize>, param: &str) -> tensor_shape_proto::Dimension {
    use tensor_shape_proto::dimension::Value as DimValue;
    tensor_shape_proto::Dimension {
        value: Some(match d {
            Some(v) => DimValue::DimValue(v as i64),
            None => DimValue::DimParam(param.into()),
        }),
        ..Default::default()
    }
}

fn value(
    name: &str,
    ty: tensor_proto::DataType,
    dims: Vec<tensor_shape_proto::Dimension>,
    doc: &str,
) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        doc_string: Some(doc.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(ty as i32),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn entry(key: &str, value: String) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value),
    }
}

/// Builds the ONNX model of `pre`: BatchNorm folded into the convs, explicit conv pads for the
/// input size (TF "same" included), input `input` `[N, 3, S, S]`, output `logits` `[N, classes]`,
/// preprocessing (`preprocess.*`), model description and class names in `metadata_props`.
pub fn export_onnx(pre: &Pretrained, options: &OnnxOptions) -> Result<ModelProto, ExportError> {
    options.check()?;
    check_labels(pre, options.labels.as_deref())?;
    let size = options.input_size.unwrap_or(pre.preprocess.crop);
    let model = pre.model.clone().fold_batchnorm();
    let graph = Graph::from_model(&model, [size, size])?;
    let (nodes, initializers) = lower(&graph, options.int8.as_ref())?;
    let io = |f: fn(&Int8Options) -> IoType| match options.int8.as_ref().map(f) {
        Some(IoType::Int8) => tensor_proto::DataType::Int8,
        _ => tensor_proto::DataType::Float,
    };
    let (input_type, output_type) = (io(|o| o.input), io(|o| o.output));
    let batch = match options.batch {
        BatchSize::Fixed(n) => Some(n),
        BatchSize::Dynamic => None,
    };
    let graph = GraphProto {
        name: Some(pre.config.name.clone()),
        node: nodes,
        initializer: initializers,
        input: vec![value(
            INPUT_NAME,
            input_type,
            vec![
                dim(batch, "batch"),
                dim(Some(3), ""),
                dim(Some(size), ""),
                dim(Some(size), ""),
            ],
            "normalised RGB images, NCHW (see metadata preprocess.*)",
        )],
        output: vec![value(
            OUTPUT_NAME,
            output_type,
            vec![dim(batch, "batch"), dim(Some(pre.config.num_classes), "")],
            "class logits (apply softmax for probabilities)",
        )],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: Some(ir_version(options.opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(options.opset),
        }],
        producer_name: Some("effnet".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        model_version: Some(1),
        doc_string: Some(format!(
            "{} exported by effnet (BatchNorm folded{})",
            pre.config.name,
            if options.int8.is_some() {
                ", int8 QDQ"
            } else {
                ""
            }
        )),
        graph: Some(graph),
        metadata_props: metadata(
            pre,
            size,
            options.labels.as_deref(),
            Layout::Nchw,
            if input_type == tensor_proto::DataType::Int8 {
                "int8 (see the input's QuantizeLinear parameters input.scale, input.zero_point)"
            } else {
                "float32"
            },
        )
        .into_iter()
        .map(|(key, value)| entry(&key, value))
        .collect(),
        ..Default::default()
    })
}

/// [`export_onnx`] serialised to the bytes of a `.onnx` file.
pub fn onnx_bytes(pre: &Pretrained, options: &OnnxOptions) -> Result<Vec<u8>, ExportError> {
    Ok(export_onnx(pre, options)?.encode_to_vec())
}

/// [`export_onnx`] written to `path` atomically and durably (effnet's one write path,
/// [`effnet_data::fsutil::write_atomic`]: a failed export leaves no half-written model behind).
pub fn write_onnx(path: &Path, pre: &Pretrained, options: &OnnxOptions) -> Result<(), ExportError> {
    let bytes = onnx_bytes(pre, options)?;
    crate::write_atomic(path, &bytes)
}
