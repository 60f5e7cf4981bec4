//! The metadata every exported model carries, whatever its format: preprocessing, model
//! description and class names, as key/value text (ONNX `metadata_props`, TFLite `metadata`).

use effnet_model::Pretrained;

use crate::error::ExportError;

/// Memory layout of the exported graph's image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `[N, 3, H, W]` (ONNX).
    Nchw,
    /// `[N, H, W, 3]` (TFLite).
    Nhwc,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        }
    }
}

fn joined(v: &[f32; 3]) -> String {
    v.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
}

/// Checks that user-given class names fit the model.
pub(crate) fn check_labels(pre: &Pretrained, labels: Option<&[String]>) -> Result<(), ExportError> {
    match labels {
        Some(labels) if labels.len() != pre.config.num_classes => {
            Err(ExportError::Option(format!(
                "{} labels for a model with {} classes",
                labels.len(),
                pre.config.num_classes
            )))
        }
        _ => Ok(()),
    }
}

/// Everything a deployment needs to feed the graph and read its output, as `(key, value)`:
/// `preprocess` (a sentence) and `preprocess.{resize,crop,interpolation,mean,std,layout}`,
/// `effnet.model` and `effnet.preprocess` (JSON), `num_classes`, `source`, `labels` (JSON array;
/// `labels` or else the model's own).
pub(crate) fn metadata(
    pre: &Pretrained,
    size: usize,
    labels: Option<&[String]>,
    layout: Layout,
    input_type: &str,
) -> Vec<(String, String)> {
    let p = &pre.preprocess;
    let mut props = vec![
        (
            "preprocess",
            format!(
                "RGB; resize shorter side to {} ({:?}); center crop {size}x{size}; scale to [0,1]; \
                 subtract mean, divide by std per channel; {} {input_type}",
                p.resize,
                p.interpolation,
                layout.name()
            ),
        ),
        ("preprocess.resize", p.resize.to_string()),
        ("preprocess.crop", size.to_string()),
        (
            "preprocess.interpolation",
            format!("{:?}", p.interpolation).to_lowercase(),
        ),
        ("preprocess.mean", joined(&p.mean)),
        ("preprocess.std", joined(&p.std)),
        ("preprocess.layout", layout.name().into()),
        (
            "effnet.model",
            serde_json::to_string(&pre.config).unwrap_or_default(),
        ),
        (
            "effnet.preprocess",
            serde_json::to_string(p).unwrap_or_default(),
        ),
        ("num_classes", pre.config.num_classes.to_string()),
    ];
    if !pre.source.is_empty() {
        props.push(("source", pre.source.clone()));
    }
    if let Some(labels) = labels.or(pre.labels.as_deref()) {
        props.push(("labels", serde_json::to_string(labels).unwrap_or_default()));
    }
    props.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
