//! ONNX export: the model graph, its input/output signature and its preprocessing metadata.

use std::path::Path;

use effnet_model::Pretrained;
use prost::Message;

use crate::error::ExportError;
use crate::graph::{GraphBuilder, Value};
use crate::proto::{
    GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorShapeProto,
    TypeProto, ValueInfoProto, tensor_proto, tensor_shape_proto, type_proto,
};

/// Oldest opset the exporter writes (every op it uses has its current form there).
pub const MIN_OPSET: i64 = 17;
/// Newest opset the exporter has been checked against (ONNX Runtime 1.32).
pub const MAX_OPSET: i64 = 21;

/// Name of the graph input (`[N, 3, size, size]`, normalised RGB, NCHW).
pub const INPUT_NAME: &str = "input";
/// Name of the graph output (`[N, classes]` logits, before softmax).
pub const OUTPUT_NAME: &str = "logits";

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
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self {
            batch: BatchSize::Fixed(1),
            opset: MIN_OPSET,
            input_size: None,
            labels: None,
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

fn float_value(name: &str, dims: Vec<tensor_shape_proto::Dimension>, doc: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        doc_string: Some(doc.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(tensor_proto::DataType::Float as i32),
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

fn joined(v: &[f32; 3]) -> String {
    v.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
}

/// Everything a deployment needs to feed the graph, as `metadata_props`.
fn metadata(
    pre: &Pretrained,
    size: usize,
    labels: Option<&[String]>,
) -> Vec<StringStringEntryProto> {
    let p = &pre.preprocess;
    let mut props = vec![
        entry(
            "preprocess",
            format!(
                "RGB; resize shorter side to {} ({:?}); center crop {size}x{size}; scale to [0,1]; \
                 subtract mean, divide by std per channel; NCHW float32",
                p.resize, p.interpolation
            ),
        ),
        entry("preprocess.resize", p.resize.to_string()),
        entry("preprocess.crop", size.to_string()),
        entry(
            "preprocess.interpolation",
            format!("{:?}", p.interpolation).to_lowercase(),
        ),
        entry("preprocess.mean", joined(&p.mean)),
        entry("preprocess.std", joined(&p.std)),
        entry("preprocess.layout", "NCHW".into()),
        entry(
            "effnet.model",
            serde_json::to_string(&pre.config).unwrap_or_default(),
        ),
        entry(
            "effnet.preprocess",
            serde_json::to_string(p).unwrap_or_default(),
        ),
        entry("num_classes", pre.config.num_classes.to_string()),
    ];
    if !pre.source.is_empty() {
        props.push(entry("source", pre.source.clone()));
    }
    if let Some(labels) = labels.or(pre.labels.as_deref()) {
        props.push(entry(
            "labels",
            serde_json::to_string(labels).unwrap_or_default(),
        ));
    }
    props
}

/// Builds the ONNX model of `pre`: BatchNorm folded into the convs, explicit conv pads for the
/// input size (TF "same" included), input `input` `[N, 3, S, S]`, output `logits` `[N, classes]`,
/// preprocessing (`preprocess.*`), model description and class names in `metadata_props`.
pub fn export_onnx(pre: &Pretrained, options: &OnnxOptions) -> Result<ModelProto, ExportError> {
    options.check()?;
    if let Some(labels) = &options.labels
        && labels.len() != pre.config.num_classes
    {
        return Err(ExportError::Option(format!(
            "{} labels for a model with {} classes",
            labels.len(),
            pre.config.num_classes
        )));
    }
    let size = options.input_size.unwrap_or(pre.preprocess.crop);
    let model = pre.model.clone().fold_batchnorm();
    let mut graph = GraphBuilder::default();
    let input = Value {
        name: INPUT_NAME.into(),
        hw: [size, size],
    };
    let logits = graph.network(&model, &input)?;
    // The last node writes the graph output under its public name.
    if let Some(last) = graph.nodes.last_mut() {
        last.output = vec![OUTPUT_NAME.into()];
    }
    debug_assert_eq!(logits, "classifier:out");
    let batch = match options.batch {
        BatchSize::Fixed(n) => Some(n),
        BatchSize::Dynamic => None,
    };
    let graph = GraphProto {
        name: Some(pre.config.name.clone()),
        node: graph.nodes,
        initializer: graph.initializers,
        input: vec![float_value(
            INPUT_NAME,
            vec![
                dim(batch, "batch"),
                dim(Some(3), ""),
                dim(Some(size), ""),
                dim(Some(size), ""),
            ],
            "normalised RGB images, NCHW (see metadata preprocess.*)",
        )],
        output: vec![float_value(
            OUTPUT_NAME,
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
            "{} exported by effnet (BatchNorm folded)",
            pre.config.name
        )),
        graph: Some(graph),
        metadata_props: metadata(pre, size, options.labels.as_deref()),
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
    effnet_data::fsutil::write_atomic(path, &bytes).map_err(|e| ExportError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
