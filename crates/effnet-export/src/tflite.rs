//! TensorFlow Lite export: the folded [`Graph`] as a `.tflite` flatbuffer (TFLite's own
//! `schema.fbs`, compiled by build/fbs.rs), NHWC, builtin ops only, in f32 or full-integer int8.
//!
//! Convs become `CONV_2D` (weights `[out, kh, kw, in]`) or `DEPTHWISE_CONV_2D` (`[1, kh, kw, c]`)
//! with a following ReLU/ReLU6 fused in; TF "same" pads become `SAME`, other pads an explicit
//! `PAD` before a `VALID` conv. SiLU is `LOGISTIC` + `MUL`, squeeze-excitation `MEAN` (kept
//! dims), two 1×1 convs, `LOGISTIC` and a broadcast `MUL`; the head `MEAN` + `FULLY_CONNECTED`.
//! int8 models hold int8 activations (per tensor), int8 weights (per output channel), int32
//! biases, and `QUANTIZE`/`DEQUANTIZE` at the boundary when the caller wants f32 in and out.

use std::path::Path;

use effnet_model::Pretrained;

use crate::error::ExportError;
use crate::graph::{
    ConvOp, DenseOp, Graph, INPUT_NAME, OUTPUT_NAME, Op, TensorId, fused_activation, same_pads,
};
use crate::int8::{GraphQuant, Int8Options, IoType, map};
use crate::meta::{Layout, check_labels, metadata};
use crate::onnx::BatchSize;
use crate::tflite_schema as fb;
use effnet_cpu::quant::QParams;

/// Schema version written in `Model.version`.
const SCHEMA_VERSION: u32 = 3;

/// How to export a `.tflite` model.
#[derive(Clone, Debug)]
pub struct TfliteOptions {
    /// Batch dimension (`Dynamic`: shape `[1, …]` with signature `[-1, …]`, resizable at run time).
    pub batch: BatchSize,
    /// Input height and width; `None` takes the crop size of the model's preprocessing.
    pub input_size: Option<usize>,
    /// Class names to record as metadata (`labels`, a JSON array); `None` keeps the model's own.
    pub labels: Option<Vec<String>>,
    /// Full-integer int8 with these calibration ranges; `None` exports f32.
    pub int8: Option<Int8Options>,
}

impl Default for TfliteOptions {
    fn default() -> Self {
        Self {
            batch: BatchSize::Fixed(1),
            input_size: None,
            labels: None,
            int8: None,
        }
    }
}

impl TfliteOptions {
    fn check(&self) -> Result<(), ExportError> {
        if self.batch == BatchSize::Fixed(0) {
            return Err(ExportError::Option("batch size must be at least 1".into()));
        }
        if self.input_size == Some(0) {
            return Err(ExportError::Option("input size must be at least 1".into()));
        }
        Ok(())
    }
}

/// Builds the TFLite model of `pre` (see the [module docs](self)): input `input`
/// `[N, S, S, 3]` (normalised RGB, NHWC; int8 when asked), output `logits` `[N, classes]`,
/// signature `serving_default`, and the preprocessing, model description and class names as
/// `metadata` entries (UTF-8 text buffers under the same keys as the ONNX export's).
pub fn export_tflite(pre: &Pretrained, options: &TfliteOptions) -> Result<fb::Model, ExportError> {
    options.check()?;
    check_labels(pre, options.labels.as_deref())?;
    let size = options.input_size.unwrap_or(pre.preprocess.crop);
    let model = pre.model.clone().fold_batchnorm();
    let graph = Graph::from_model(&model, [size, size])?;
    let input_type = match &options.int8 {
        Some(q) if q.input == IoType::Int8 => "int8 (see the input tensor's quantization)",
        _ => "float32",
    };
    let meta = metadata(
        pre,
        size,
        options.labels.as_deref(),
        Layout::Nhwc,
        input_type,
    );
    let description = format!(
        "{} exported by effnet {} (BatchNorm folded{})",
        pre.config.name,
        env!("CARGO_PKG_VERSION"),
        if options.int8.is_some() { ", int8" } else { "" }
    );
    graph_to_tflite(
        &graph,
        options.batch,
        options.int8.as_ref(),
        &description,
        &meta,
    )
}

/// [`export_tflite`] serialised to the bytes of a `.tflite` file.
pub fn tflite_bytes(pre: &Pretrained, options: &TfliteOptions) -> Result<Vec<u8>, ExportError> {
    let model = export_tflite(pre, options)?;
    Ok(crate::flatbuffer::finish(&model, b"TFL3"))
}

/// [`export_tflite`] written to `path` (through a temporary file, so a failed export leaves no
/// half-written model behind).
pub fn write_tflite(
    path: &Path,
    pre: &Pretrained,
    options: &TfliteOptions,
) -> Result<(), ExportError> {
    let bytes = tflite_bytes(pre, options)?;
    crate::write_atomic(path, &bytes)
}

/// Lowers `graph` to a TFLite model with `meta` as metadata entries.
pub fn graph_to_tflite(
    graph: &Graph,
    batch: BatchSize,
    int8: Option<&Int8Options>,
    description: &str,
    meta: &[(String, String)],
) -> Result<fb::Model, ExportError> {
    let quant = match int8 {
        Some(q) => Some(map(graph, &q.model)?),
        None => None,
    };
    let mut w = Writer {
        graph,
        batch,
        quant,
        tensors: Vec::new(),
        // Buffer 0 is the empty buffer every activation tensor points at.
        buffers: vec![fb::Buffer::default()],
        codes: Vec::new(),
        ops: Vec::new(),
        ids: vec![None; graph.tensors.len()],
        float_logits: int8.is_some_and(|q| q.output == IoType::Float32),
    };
    let io = int8.map(|q| (q.input, q.output));
    let input = w.boundary_input(io.map(|(i, _)| i))?;
    w.lower()?;
    let output = w.boundary_output(io.map(|(_, o)| o))?;
    let metadata = meta
        .iter()
        .map(|(key, value)| fb::Metadata {
            name: Some(key.clone()),
            buffer: w.buffer(value.as_bytes().to_vec()),
        })
        .collect();
    let signature = fb::SignatureDef {
        inputs: Some(vec![fb::TensorMap {
            name: Some(INPUT_NAME.into()),
            tensor_index: input as u32,
        }]),
        outputs: Some(vec![fb::TensorMap {
            name: Some(OUTPUT_NAME.into()),
            tensor_index: output as u32,
        }]),
        signature_key: Some("serving_default".into()),
        subgraph_index: 0,
    };
    let operator_codes = w
        .codes
        .iter()
        .map(|&(code, version)| fb::OperatorCode {
            deprecated_builtin_code: code.value().min(127) as i8,
            custom_code: None,
            version,
            builtin_code: code,
        })
        .collect();
    Ok(fb::Model {
        version: SCHEMA_VERSION,
        operator_codes: Some(operator_codes),
        subgraphs: Some(vec![fb::SubGraph {
            tensors: Some(w.tensors),
            inputs: Some(vec![input]),
            outputs: Some(vec![output]),
            operators: Some(w.ops),
            name: Some("main".into()),
        }]),
        description: Some(description.into()),
        buffers: Some(w.buffers),
        metadata: Some(metadata),
        signature_defs: Some(vec![signature]),
        ..Default::default()
    })
}

/// Assembles tensors, buffers and operators.
struct Writer<'g> {
    graph: &'g Graph,
    batch: BatchSize,
    /// int8 parameters of every graph tensor and node (`None`: f32 model).
    quant: Option<GraphQuant>,
    tensors: Vec<fb::Tensor>,
    buffers: Vec<fb::Buffer>,
    codes: Vec<(fb::BuiltinOperator, i32)>,
    ops: Vec<fb::Operator>,
    /// TFLite tensor index of each graph tensor, once written.
    ids: Vec<Option<i32>>,
    /// An int8 model whose int8 logits are dequantized into the f32 output.
    float_logits: bool,
}

fn quantization(scales: Vec<f32>, zero_points: Vec<i64>, axis: i32) -> fb::QuantizationParameters {
    fb::QuantizationParameters {
        scale: Some(scales),
        zero_point: Some(zero_points),
        quantized_dimension: axis,
        ..Default::default()
    }
}

fn per_tensor(q: QParams) -> fb::QuantizationParameters {
    quantization(vec![q.scale], vec![i64::from(q.zero_point)], 0)
}

fn dim(n: usize) -> i32 {
    n as i32
}

impl Writer<'_> {
    fn int8(&self) -> bool {
        self.quant.is_some()
    }

    /// Adds a buffer holding `data`; returns its index.
    fn buffer(&mut self, data: Vec<u8>) -> u32 {
        self.buffers.push(fb::Buffer { data: Some(data) });
        (self.buffers.len() - 1) as u32
    }

    /// Adds a tensor; returns its index.
    fn tensor(
        &mut self,
        name: String,
        shape: Vec<i32>,
        ty: fb::TensorType,
        buffer: u32,
        quant: Option<fb::QuantizationParameters>,
    ) -> i32 {
        let signature = match self.batch {
            BatchSize::Dynamic if buffer == 0 => {
                let mut s = shape.clone();
                s[0] = -1;
                Some(s)
            }
            _ => None,
        };
        self.tensors.push(fb::Tensor {
            shape: Some(shape),
            type_: ty,
            buffer,
            name: Some(name),
            quantization: quant.map(Box::new),
            shape_signature: signature,
            has_rank: true,
            ..Default::default()
        });
        (self.tensors.len() - 1) as i32
    }

    /// Batch size written in activation shapes (1 for a dynamic batch).
    fn batch(&self) -> i32 {
        match self.batch {
            BatchSize::Fixed(n) => dim(n),
            BatchSize::Dynamic => 1,
        }
    }

    /// NHWC shape of graph tensor `t` (`[N, C]` for flat tensors).
    fn shape(&self, t: TensorId) -> Vec<i32> {
        let info = &self.graph.tensors[t];
        match info.hw {
            Some([h, w]) => vec![self.batch(), dim(h), dim(w), dim(info.channels)],
            None => vec![self.batch(), dim(info.channels)],
        }
    }

    /// Writes graph tensor `t` as an activation (f32, or int8 with its parameters) under
    /// `name`, and records it as `t`'s TFLite tensor.
    fn activation_named(&mut self, t: TensorId, name: String) -> i32 {
        let shape = self.shape(t);
        let id = match &self.quant {
            Some(q) => {
                let q = per_tensor(q.act[t]);
                self.tensor(name, shape, fb::TensorType::Int8, 0, Some(q))
            }
            None => self.tensor(name, shape, fb::TensorType::Float32, 0, None),
        };
        self.ids[t] = Some(id);
        id
    }

    /// The TFLite tensor of graph tensor `t`, written on first use.
    fn activation(&mut self, t: TensorId) -> i32 {
        match self.ids[t] {
            Some(id) => id,
            None => self.activation_named(t, self.graph.tensors[t].name.clone()),
        }
    }

    fn f32_constant(&mut self, name: String, shape: Vec<i32>, values: &[f32]) -> i32 {
        let buffer = self.buffer(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        self.tensor(name, shape, fb::TensorType::Float32, buffer, None)
    }

    fn i32_constant(
        &mut self,
        name: String,
        shape: Vec<i32>,
        values: &[i32],
        quant: Option<fb::QuantizationParameters>,
    ) -> i32 {
        let buffer = self.buffer(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        self.tensor(name, shape, fb::TensorType::Int32, buffer, quant)
    }

    /// Weights and bias of conv or dense node `node` in TFLite's layout (`relayout` of burn's),
    /// the output channel on dimension `axis` (0, or 3 for depthwise `[1, kh, kw, c]`): f32, or
    /// the node's int8 weights (per output channel) and int32 biases.
    fn weights(
        &mut self,
        node: usize,
        layer: &str,
        axis: i32,
        shape: Vec<i32>,
        relayout: Relayout,
        (weights, bias): (&[f32], &[f32]),
    ) -> (i32, i32) {
        let (w_name, b_name) = (format!("{layer}.weight"), format!("{layer}.bias"));
        let b_shape = vec![dim(bias.len())];
        let Some(q) = self.quant.as_ref().and_then(|q| q.weights[node].clone()) else {
            let w = self.f32_constant(w_name, shape, &relayout.apply(weights));
            return (w, self.f32_constant(b_name, b_shape, bias));
        };
        let input_scale = self.graph.nodes[node]
            .inputs
            .first()
            .map_or(1.0, |&t| self.qparams(t).scale);
        let values = relayout.apply(&q.values);
        let buffer = self.buffer(values.iter().map(|&v| v as u8).collect());
        let zeros = vec![0i64; q.scales.len()];
        let w = self.tensor(
            w_name,
            shape,
            fb::TensorType::Int8,
            buffer,
            Some(quantization(q.scales.clone(), zeros.clone(), axis)),
        );
        let b_scales = q.scales.iter().map(|s| s * input_scale).collect();
        let b = self.i32_constant(
            b_name,
            b_shape,
            &q.bias,
            Some(quantization(b_scales, zeros, 0)),
        );
        (w, b)
    }

    /// int8 parameters of graph tensor `t` (an int8 model's).
    fn qparams(&self, t: TensorId) -> QParams {
        self.quant.as_ref().map_or(
            QParams {
                scale: 1.0,
                zero_point: 0,
            },
            |q| q.act[t],
        )
    }

    /// Appends an operator (registering its code); `version` is the op version for f32, the
    /// int8 one is used in int8 models.
    fn op(
        &mut self,
        code: fb::BuiltinOperator,
        versions: (i32, i32),
        inputs: Vec<i32>,
        outputs: Vec<i32>,
        options: Option<fb::BuiltinOptions>,
    ) {
        let version = if self.int8() { versions.1 } else { versions.0 };
        let index = match self.codes.iter().position(|&c| c == (code, version)) {
            Some(i) => i,
            None => {
                self.codes.push((code, version));
                self.codes.len() - 1
            }
        };
        self.ops.push(fb::Operator {
            opcode_index: index as u32,
            inputs: Some(inputs),
            outputs: Some(outputs),
            builtin_options: options,
            ..Default::default()
        });
    }

    /// The model input: the graph input itself, or an f32 tensor `QUANTIZE`d into it.
    fn boundary_input(&mut self, io: Option<IoType>) -> Result<i32, ExportError> {
        let t = self.graph.input;
        match io {
            None | Some(IoType::Int8) => Ok(self.activation(t)),
            Some(IoType::Float32) => {
                let shape = self.shape(t);
                let float = self.tensor(INPUT_NAME.into(), shape, fb::TensorType::Float32, 0, None);
                let int8 = self.activation_named(t, format!("{INPUT_NAME}:int8"));
                let options = fb::BuiltinOptions::QuantizeOptions(Box::default());
                self.op(
                    fb::BuiltinOperator::Quantize,
                    (1, 1),
                    vec![float],
                    vec![int8],
                    Some(options),
                );
                Ok(float)
            }
        }
    }

    /// The model output: the graph output itself, or an f32 tensor `DEQUANTIZE`d from it.
    fn boundary_output(&mut self, io: Option<IoType>) -> Result<i32, ExportError> {
        let t = self.graph.output;
        let Some(logits) = self.ids[t] else {
            return Err(ExportError::Unsupported(
                "the graph output is never computed".into(),
            ));
        };
        match io {
            None | Some(IoType::Int8) => Ok(logits),
            Some(IoType::Float32) => {
                let shape = self.shape(t);
                let float =
                    self.tensor(OUTPUT_NAME.into(), shape, fb::TensorType::Float32, 0, None);
                let options = fb::BuiltinOptions::DequantizeOptions(Box::default());
                self.op(
                    fb::BuiltinOperator::Dequantize,
                    (1, 2),
                    vec![logits],
                    vec![float],
                    Some(options),
                );
                Ok(float)
            }
        }
    }

    /// Every node in order; a ReLU/ReLU6 fused into the conv before it is skipped.
    fn lower(&mut self) -> Result<(), ExportError> {
        let g = self.graph;
        let consumers = g.consumers();
        let mut fused = vec![false; g.nodes.len()];
        for (i, node) in g.nodes.iter().enumerate() {
            if fused[i] {
                continue;
            }
            let x = self.activation(node.inputs[0]);
            match &node.op {
                Op::Conv(c) => {
                    let (out, act) = match fused_activation(g, &consumers, node.output) {
                        Some(relu_out) => {
                            let reader = consumers[node.output][0];
                            fused[reader] = true;
                            let act = match g.nodes[reader].op {
                                Op::Relu6 => fb::ActivationFunctionType::Relu6,
                                _ => fb::ActivationFunctionType::Relu,
                            };
                            (relu_out, act)
                        }
                        None => (node.output, fb::ActivationFunctionType::None),
                    };
                    self.conv(i, c, x, out, act)?;
                }
                Op::Dense(d) => self.dense(i, &node.name, d, x, node.output),
                Op::Relu | Op::Relu6 | Op::Sigmoid => {
                    let (code, versions) = match node.op {
                        Op::Relu => (fb::BuiltinOperator::Relu, (1, 2)),
                        Op::Relu6 => (fb::BuiltinOperator::Relu6, (1, 2)),
                        _ => (fb::BuiltinOperator::Logistic, (1, 2)),
                    };
                    let y = self.activation(node.output);
                    self.op(code, versions, vec![x], vec![y], None);
                }
                Op::Mul | Op::Add => {
                    let x2 = self.activation(node.inputs[1]);
                    let y = self.activation(node.output);
                    let none = fb::ActivationFunctionType::None;
                    let (code, options) = match node.op {
                        Op::Mul => (
                            fb::BuiltinOperator::Mul,
                            fb::BuiltinOptions::MulOptions(Box::new(fb::MulOptions {
                                fused_activation_function: none,
                            })),
                        ),
                        _ => (
                            fb::BuiltinOperator::Add,
                            fb::BuiltinOptions::AddOptions(Box::new(fb::AddOptions {
                                fused_activation_function: none,
                                ..Default::default()
                            })),
                        ),
                    };
                    self.op(code, (1, 2), vec![x, x2], vec![y], Some(options));
                }
                Op::Mean { keep_dims } => {
                    let axes =
                        self.i32_constant(format!("{}.axes", node.name), vec![2], &[1, 2], None);
                    let y = self.activation(node.output);
                    let options =
                        fb::BuiltinOptions::ReducerOptions(Box::new(fb::ReducerOptions {
                            keep_dims: *keep_dims,
                        }));
                    self.op(
                        fb::BuiltinOperator::Mean,
                        (1, 2),
                        vec![x, axes],
                        vec![y],
                        Some(options),
                    );
                }
            }
        }
        Ok(())
    }

    /// `CONV_2D` or `DEPTHWISE_CONV_2D` from `input` (graph tensor `t`, TFLite tensor `x`)
    /// into graph tensor `out`, with a `PAD` first where the pads are not TF "same".
    fn conv(
        &mut self,
        node: usize,
        c: &ConvOp,
        x: i32,
        out: TensorId,
        act: fb::ActivationFunctionType,
    ) -> Result<(), ExportError> {
        let g = self.graph;
        let (layer, t) = (g.nodes[node].name.as_str(), g.nodes[node].inputs[0]);
        let Some([h, w]) = self.graph.tensors[t].hw else {
            return Err(ExportError::Unsupported(format!(
                "{layer}: conv over a flat tensor"
            )));
        };
        let [o, i, kh, kw] = c.weight_dims;
        let extent = |k: usize, d: usize| d * (k - 1) + 1;
        let (st, sb) = same_pads(h, extent(kh, c.dilation[0]), c.stride[0]);
        let (sl, sr) = same_pads(w, extent(kw, c.dilation[1]), c.stride[1]);
        let (x, padding) = if c.pads == [st, sl, sb, sr] {
            (x, fb::Padding::Same)
        } else if c.pads == [0; 4] {
            (x, fb::Padding::Valid)
        } else {
            (self.pad(layer, c, t, x), fb::Padding::Valid)
        };
        let y = self.activation(out);
        let (stride_h, stride_w) = (dim(c.stride[0]), dim(c.stride[1]));
        let (dilation_h_factor, dilation_w_factor) = (dim(c.dilation[0]), dim(c.dilation[1]));
        if c.is_depthwise() {
            let (wi, bi) = self.weights(
                node,
                layer,
                3,
                vec![1, dim(kh), dim(kw), dim(o)],
                Relayout::Depthwise(c.weight_dims),
                (&c.weight, &c.bias),
            );
            let options = fb::DepthwiseConv2DOptions {
                padding,
                stride_w,
                stride_h,
                depth_multiplier: 1,
                fused_activation_function: act,
                dilation_w_factor,
                dilation_h_factor,
            };
            let version = if c.dilation != [1, 1] { 2 } else { 1 };
            self.op(
                fb::BuiltinOperator::DepthwiseConv2d,
                (version, 3),
                vec![x, wi, bi],
                vec![y],
                Some(fb::BuiltinOptions::DepthwiseConv2DOptions(Box::new(
                    options,
                ))),
            );
        } else if c.groups == 1 {
            let shape = vec![dim(o), dim(kh), dim(kw), dim(i)];
            let (wi, bi) = self.weights(
                node,
                layer,
                0,
                shape,
                Relayout::Ohwi(c.weight_dims),
                (&c.weight, &c.bias),
            );
            let options = fb::Conv2DOptions {
                padding,
                stride_w,
                stride_h,
                fused_activation_function: act,
                dilation_w_factor,
                dilation_h_factor,
            };
            self.op(
                fb::BuiltinOperator::Conv2d,
                (1, 3),
                vec![x, wi, bi],
                vec![y],
                Some(fb::BuiltinOptions::Conv2DOptions(Box::new(options))),
            );
        } else {
            return Err(ExportError::Unsupported(format!(
                "{layer}: grouped convolution ({} groups) is not exported to TFLite yet",
                c.groups
            )));
        }
        Ok(())
    }

    /// `PAD` of graph tensor `t` (TFLite tensor `x`) by the conv's pads; int8 keeps the input's
    /// parameters (TFLite pads with the zero point).
    fn pad(&mut self, layer: &str, c: &ConvOp, t: TensorId, x: i32) -> i32 {
        let [top, left, bottom, right] = c.pads.map(dim);
        let paddings = [0, 0, top, bottom, left, right, 0, 0];
        let p = self.i32_constant(format!("{layer}.paddings"), vec![4, 2], &paddings, None);
        let mut shape = self.shape(t);
        shape[1] += top + bottom;
        shape[2] += left + right;
        let (ty, quant) = match &self.quant {
            Some(q) => (fb::TensorType::Int8, Some(per_tensor(q.act[t]))),
            None => (fb::TensorType::Float32, None),
        };
        let y = self.tensor(format!("{layer}:padded"), shape, ty, 0, quant);
        let options = fb::BuiltinOptions::PadOptions(Box::default());
        self.op(
            fb::BuiltinOperator::Pad,
            (1, 2),
            vec![x, p],
            vec![y],
            Some(options),
        );
        y
    }

    /// `FULLY_CONNECTED` with weights `[out, in]`.
    fn dense(&mut self, node: usize, layer: &str, d: &DenseOp, x: i32, out: TensorId) {
        let [inputs, outputs] = d.dims;
        let (wi, bi) = self.weights(
            node,
            layer,
            0,
            vec![dim(outputs), dim(inputs)],
            Relayout::Transpose(inputs, outputs),
            (&d.weight, &d.bias),
        );
        // With f32 logits asked of an int8 model, the int8 logits are an inner tensor.
        let y = if self.float_logits && out == self.graph.output {
            self.activation_named(out, format!("{OUTPUT_NAME}:int8"))
        } else {
            self.activation(out)
        };
        let options = fb::FullyConnectedOptions {
            fused_activation_function: fb::ActivationFunctionType::None,
            keep_num_dims: false,
            ..Default::default()
        };
        self.op(
            fb::BuiltinOperator::FullyConnected,
            (1, 4),
            vec![x, wi, bi],
            vec![y],
            Some(fb::BuiltinOptions::FullyConnectedOptions(Box::new(options))),
        );
    }
}

/// How a burn-layout weight becomes TFLite's.
#[derive(Clone, Copy)]
enum Relayout {
    /// `[o, i, kh, kw]` -> `[o, kh, kw, i]`.
    Ohwi([usize; 4]),
    /// `[c, 1, kh, kw]` -> `[1, kh, kw, c]`.
    Depthwise([usize; 4]),
    /// `[rows, cols]` -> `[cols, rows]`.
    Transpose(usize, usize),
}

impl Relayout {
    fn apply<T: Copy + Default>(self, w: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); w.len()];
        match self {
            Relayout::Ohwi([o, i, kh, kw]) => {
                for oc in 0..o {
                    for ic in 0..i {
                        for k in 0..kh * kw {
                            out[(oc * kh * kw + k) * i + ic] = w[(oc * i + ic) * kh * kw + k];
                        }
                    }
                }
            }
            Relayout::Depthwise([c, _, kh, kw]) => {
                for ch in 0..c {
                    for k in 0..kh * kw {
                        out[k * c + ch] = w[ch * kh * kw + k];
                    }
                }
            }
            Relayout::Transpose(rows, cols) => {
                for r in 0..rows {
                    for c in 0..cols {
                        out[c * rows + r] = w[r * cols + c];
                    }
                }
            }
        }
        out
    }
}
