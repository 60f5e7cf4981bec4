//! Weights in and out: PyTorch `.pth` / `.safetensors` import in torchvision, timm and
//! lukemelas (EfficientNet-PyTorch / -Lite) key layouts, and effnet's native burnpack files,
//! which carry the model description and preprocessing beside the tensors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::prelude::*;
use burn::store::burn_pack::{self, Bytes};
use burn::store::{
    ApplyResult, BurnpackStore, FloatCastAdapter, HalfPrecisionAdapter, ModuleSnapshot,
    ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

use crate::config::{BlockKind, EfficientNetConfig, PaddingMode};
use crate::error::ModelError;
use crate::model::EfficientNet;
pub use effnet_data::{Interpolation, Preprocess};

pub use crate::pretrained::Pretrained;
use crate::pretrained::{META_CONFIG, META_LABELS, META_PRECISION, META_PREPROCESS, META_SOURCE};

/// Where a state dict's keys come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLayout {
    /// torchvision `features.S.J.block.K...`.
    Torchvision,
    /// timm `conv_stem`, `blocks.S.J.conv_pw`, ... (also `tf_*` models); effnet's own names.
    Timm,
    /// lukemelas EfficientNet-PyTorch / EfficientNet-Lite `_conv_stem`, `_blocks.N...`.
    Lukemelas,
}

impl KeyLayout {
    /// Guesses the layout from the key names.
    pub fn detect<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        keys.into_iter().find_map(|k| {
            if k.starts_with("features.") {
                Some(Self::Torchvision)
            } else if k.starts_with("conv_stem.") {
                Some(Self::Timm)
            } else if k.starts_with("_conv_stem.") {
                Some(Self::Lukemelas)
            } else {
                None
            }
        })
    }
}

/// Source module prefix → effnet module prefix, for every layer of `model` in `layout`.
pub fn key_map(model: &EfficientNet, layout: KeyLayout) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut add = |from: String, to: &str| {
        map.insert(from, to.to_string());
    };
    let n_stages = model.blocks.len();
    match layout {
        KeyLayout::Timm => {
            for top in ["conv_stem", "conv_head", "classifier"] {
                add(top.into(), top);
            }
            let norms = model.norm1.is_some();
            add("bn1".into(), if norms { "norm1" } else { "bn1" });
            add("bn2".into(), if norms { "norm2" } else { "bn2" });
        }
        KeyLayout::Torchvision => {
            add("features.0.0".into(), "conv_stem");
            add("features.0.1".into(), "bn1");
            add(format!("features.{}.0", n_stages + 1), "conv_head");
            add(format!("features.{}.1", n_stages + 1), "bn2");
            add("classifier.1".into(), "classifier");
        }
        KeyLayout::Lukemelas => {
            for (from, to) in [
                ("_conv_stem", "conv_stem"),
                ("_bn0", "bn1"),
                ("_conv_head", "conv_head"),
                ("_bn1", "bn2"),
                ("_fc", "classifier"),
            ] {
                add(from.into(), to);
            }
        }
    }
    let mut flat = 0usize;
    for (s, stage) in model.blocks.iter().enumerate() {
        for (j, block) in stage.iter().enumerate() {
            let ours = format!("blocks.{s}.{j}");
            for keys in block.layers().key_table() {
                let from = match layout {
                    KeyLayout::Timm => format!("{ours}.{}", keys.timm),
                    // Layers only timm checkpoints have: no name in the other layouts.
                    KeyLayout::Torchvision | KeyLayout::Lukemelas if keys.lukemelas.is_empty() => {
                        continue;
                    }
                    KeyLayout::Torchvision => {
                        format!("features.{}.{j}.block.{}", s + 1, keys.torchvision)
                    }
                    KeyLayout::Lukemelas => format!("_blocks.{flat}.{}", keys.lukemelas),
                };
                add(from, &format!("{ours}.{}", keys.ours));
            }
            flat += 1;
        }
    }
    map
}

/// Reads every tensor of a `.pth`/`.pt`/`.bin` or `.safetensors` file.
fn read_tensors(path: &Path) -> Result<BTreeMap<String, burn_pack::Tensor>, ModelError> {
    let read_err = |reason: String| ModelError::Read {
        path: path.to_path_buf(),
        reason,
    };
    if !path.exists() {
        return Err(read_err("no such file".into()));
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "safetensors" {
        let mut store = SafetensorsStore::from_file(path).map_indices_contiguous(false);
        return store
            .get_all_tensors()
            .cloned()
            .map_err(|e| read_err(format!("not a readable safetensors file ({e})")));
    }
    // A PyTorch checkpoint, possibly wrapping the state dict under a top-level key.
    let mut last_err = String::new();
    for top in [
        None,
        Some("state_dict"),
        Some("model"),
        Some("state_dict_ema"),
    ] {
        let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
        if let Some(top) = top {
            store = store.with_top_level_key(top);
        }
        match store.get_all_tensors() {
            Ok(t) if KeyLayout::detect(t.keys().map(|k| strip_wrapper(k))).is_some() => {
                return Ok(t.clone());
            }
            Ok(_) => {}
            Err(e) => last_err = e.to_string(),
        }
    }
    if last_err.is_empty() {
        Err(read_err(
            "no EfficientNet state dict found (expected torchvision, timm or lukemelas keys)"
                .into(),
        ))
    } else {
        Err(read_err(format!(
            "not a readable PyTorch checkpoint ({last_err})"
        )))
    }
}

fn strip_wrapper(key: &str) -> &str {
    key.strip_prefix("module.").unwrap_or(key)
}

/// Result of an import: the loaded model and what was learned about the file.
pub struct Imported {
    /// The model with the file's weights.
    pub model: EfficientNet,
    /// The model description actually used (classes taken from the file).
    pub config: EfficientNetConfig,
    /// The key layout that was detected.
    pub layout: KeyLayout,
    /// Number of tensors applied.
    pub applied: usize,
}

/// Imports a PyTorch `.pth` or `.safetensors` state dict into a model built from `config`.
///
/// The number of classes is taken from the file's classifier. Any missing, unexpected or
/// mis-shaped tensor is an error naming it; only `num_batches_tracked` is ignored.
pub fn import_pytorch(
    path: &Path,
    config: &EfficientNetConfig,
    device: &Device,
) -> Result<Imported, ModelError> {
    import_state_dict(path, read_tensors(path)?, config, device)
}

/// [`import_pytorch`] of a state dict already in memory; `path` names its origin in errors.
/// Every float tensor is checked first: one with a NaN or an infinity is refused by name.
pub fn import_state_dict(
    path: &Path,
    tensors: BTreeMap<String, burn_pack::Tensor>,
    config: &EfficientNetConfig,
    device: &Device,
) -> Result<Imported, ModelError> {
    for tensor in tensors.values() {
        check_finite(path, tensor)?;
    }
    let layout = KeyLayout::detect(tensors.keys().map(|k| strip_wrapper(k))).ok_or_else(|| {
        ModelError::Read {
            path: path.to_path_buf(),
            reason:
                "no EfficientNet state dict found (expected torchvision, timm or lukemelas keys)"
                    .into(),
        }
    })?;
    let mut config = config.clone();
    let classifier_key = match layout {
        KeyLayout::Torchvision => "classifier.1.weight",
        KeyLayout::Timm => "classifier.weight",
        KeyLayout::Lukemelas => "_fc.weight",
    };
    if let Some(t) = tensors
        .iter()
        .find(|(k, _)| strip_wrapper(k) == classifier_key)
        .map(|(_, t)| t)
        && t.shape.len() == 2
    {
        config.num_classes = t.shape[0];
    }
    // The file decides the head size: bound it (and the memory it implies) before building.
    config.validate().map_err(|e| ModelError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut model = config.init(device);
    let map = key_map(&model, layout);

    let mut unexpected = Vec::new();
    let mut renamed = Vec::with_capacity(tensors.len());
    for (key, mut tensor) in tensors {
        let key = strip_wrapper(&key).to_string();
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        let Some((prefix, leaf)) = key.rsplit_once('.') else {
            unexpected.push(key);
            continue;
        };
        match map.get(prefix) {
            Some(ours) => {
                tensor.name = format!("{ours}.{leaf}");
                renamed.push(tensor);
            }
            None => unexpected.push(key),
        }
    }
    let result = model.apply(renamed, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    check_result(path, &config.name, &result, unexpected)?;
    Ok(Imported {
        model,
        config,
        layout,
        applied: result.applied.len(),
    })
}

fn check_result(
    path: &Path,
    model: &str,
    result: &ApplyResult,
    mut unexpected: Vec<String>,
) -> Result<(), ModelError> {
    unexpected.extend(result.unused.iter().cloned());
    let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
    let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    if missing.is_empty() && unexpected.is_empty() && errors.is_empty() {
        return Ok(());
    }
    let list = |v: &[&str]| {
        let mut s = v.iter().take(8).copied().collect::<Vec<_>>().join(", ");
        if v.len() > 8 {
            s.push_str(&format!(", ... ({} in all)", v.len()));
        }
        s
    };
    let mut parts = Vec::new();
    if !errors.is_empty() {
        let e: Vec<&str> = errors.iter().map(String::as_str).collect();
        parts.push(format!("mis-shaped: {}", list(&e)));
    }
    if !missing.is_empty() {
        parts.push(format!("missing: {}", list(&missing)));
    }
    if !unexpected.is_empty() {
        let u: Vec<&str> = unexpected.iter().map(String::as_str).collect();
        parts.push(format!("unexpected: {}", list(&u)));
    }
    Err(ModelError::Mismatch {
        path: path.to_path_buf(),
        model: model.to_string(),
        details: parts.join("; "),
    })
}

/// Refuses a tensor holding a NaN or an infinity (a flipped bit in a download does it), naming
/// the file and the tensor; integer tensors pass.
pub fn check_finite(path: &Path, tensor: &burn_pack::Tensor) -> Result<(), ModelError> {
    let bad = |what: &str| ModelError::NonFinite {
        path: path.to_path_buf(),
        tensor: tensor.name.clone(),
        what: what.to_string(),
    };
    let width = match tensor.dtype {
        DType::F64 => 8,
        DType::F32 | DType::Flex32 => 4,
        DType::F16 | DType::BF16 => 2,
        _ => return Ok(()),
    };
    let bytes = tensor
        .to_bytes()
        .map_err(|e| bad(&format!("unreadable ({e})")))?;
    let finite = |c: &[u8]| match (tensor.dtype, c) {
        (DType::F64, c) => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])).is_finite(),
        (DType::F16, [lo, hi]) => u16::from_le_bytes([*lo, *hi]) & 0x7C00 != 0x7C00,
        (DType::BF16, [lo, hi]) => u16::from_le_bytes([*lo, *hi]) & 0x7F80 != 0x7F80,
        (_, c) => f32::from_le_bytes(c.try_into().unwrap_or([0; 4])).is_finite(),
    };
    match bytes.chunks_exact(width).position(|c| !finite(c)) {
        None => Ok(()),
        Some(i) => Err(bad(&format!("element {i} is NaN or infinite"))),
    }
}

/// Checks every parameter and buffer of a loaded model with [`check_finite`].
pub fn check_model_finite(path: &Path, model: &EfficientNet) -> Result<(), ModelError> {
    model
        .collect(None, None, true)
        .iter()
        .try_for_each(|t| check_finite(path, t))
}

/// The keys and shapes timm's `state_dict()` of this network holds (without
/// `num_batches_tracked`): effnet's layers under timm's names, in effnet's layer order.
pub fn timm_state_dict_shapes(model: &EfficientNet) -> Vec<(String, Vec<usize>)> {
    let to_timm: HashMap<String, String> = key_map(model, KeyLayout::Timm)
        .into_iter()
        .map(|(timm, ours)| (ours, timm))
        .collect();
    model
        .collect(None, None, true)
        .into_iter()
        .filter_map(|t| {
            let (prefix, leaf) = t.name.rsplit_once('.')?;
            let mut shape = t.shape.to_vec();
            let timm_prefix = to_timm.get(prefix)?;
            let linear = prefix == "classifier" || prefix.ends_with("routing_fn");
            if linear && leaf == "weight" {
                shape.reverse();
            }
            let leaf = match leaf {
                "gamma" => "weight",
                "beta" => "bias",
                other => other,
            };
            Some((format!("{timm_prefix}.{leaf}"), shape))
        })
        .collect()
}

/// Storage precision of a native weights file. Computation is always f32: half-precision
/// weights are widened when loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoragePrecision {
    /// Every tensor in f32.
    #[default]
    F32,
    /// Conv and linear weights in f16 (half the size); BatchNorm parameters and statistics stay
    /// f32, since `running_var` and small `gamma`s lose too much in f16.
    F16,
}

/// Writes `model` with its description and preprocessing to a native `.bpk` file, atomically.
pub fn save_native(
    path: &Path,
    model: &EfficientNet,
    config: &EfficientNetConfig,
    preprocess: &Preprocess,
    source: &str,
) -> Result<(), ModelError> {
    save_native_labeled(path, model, config, preprocess, source, None)
}

/// [`save_native`] plus class names, so predictions from the file can be printed by name.
pub fn save_native_labeled(
    path: &Path,
    model: &EfficientNet,
    config: &EfficientNetConfig,
    preprocess: &Preprocess,
    source: &str,
    labels: Option<&[String]>,
) -> Result<(), ModelError> {
    save_native_as(
        path,
        model,
        config,
        preprocess,
        source,
        labels,
        StoragePrecision::F32,
    )
}

/// [`save_native_labeled`] at a chosen storage [`StoragePrecision`]; [`load_native`] reads either.
pub fn save_native_as(
    path: &Path,
    model: &EfficientNet,
    config: &EfficientNetConfig,
    preprocess: &Preprocess,
    source: &str,
    labels: Option<&[String]>,
    precision: StoragePrecision,
) -> Result<(), ModelError> {
    let write_err = |reason: String| ModelError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut meta = vec![
        (
            META_CONFIG,
            serde_json::to_string(config).map_err(|e| write_err(e.to_string()))?,
        ),
        (
            META_PREPROCESS,
            serde_json::to_string(preprocess).map_err(|e| write_err(e.to_string()))?,
        ),
        (META_SOURCE, source.to_string()),
    ];
    if let Some(labels) = labels {
        meta.push((
            META_LABELS,
            serde_json::to_string(labels).map_err(|e| write_err(e.to_string()))?,
        ));
    }
    // One atomic, durable write path for the whole project (temp file, fsync, rename, fsync dir).
    effnet_data::fsutil::write_atomic_with(path, |tmp| {
        let mut store = BurnpackStore::from_file(tmp)
            .auto_extension(false)
            .overwrite(true);
        for (key, value) in meta {
            store = store.metadata(key, value);
        }
        if precision == StoragePrecision::F16 {
            store = store
                .metadata(META_PRECISION, "f16")
                .with_to_adapter(HalfPrecisionAdapter::new());
        }
        model
            .save_into(&mut store)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| write_err(e.to_string()))
}

/// Files written before preset names meant timm's architectures carry a preset name whose
/// preset is now another architecture (`efficientnet_lite0` for the TF-padded Lite0,
/// `efficientnetv2_s` for torchvision's V2-S): they get the name of the preset they match.
fn rename_legacy(config: &mut EfficientNetConfig) {
    let Ok(named) = EfficientNetConfig::preset(&config.name) else {
        return;
    };
    if named.name != config.name || named.same_architecture(config) {
        return;
    }
    let same = crate::presets::PRESETS.iter().find(|(name, _)| {
        EfficientNetConfig::preset(name).is_ok_and(|p| p.same_architecture(config))
    });
    if let Some((name, _)) = same {
        config.name = name.to_string();
    }
}

/// Loads a native `.bpk` written by [`save_native`] onto `device`.
pub fn load_native(path: &Path, device: &Device) -> Result<Pretrained, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    load_native_bytes(path, bytes, device)
}

/// Loads a native model from bytes in memory; `origin` names them in errors.
pub fn load_native_bytes(
    origin: &Path,
    bytes: Vec<u8>,
    device: &Device,
) -> Result<Pretrained, ModelError> {
    let read_err = |reason: String| ModelError::Read {
        path: origin.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(read_err("empty file".into()));
    }
    let bytes = Bytes::from_bytes_vec(bytes);
    let reader = burn_pack::Reader::from_bytes(bytes.clone())
        .map_err(|e| read_err(format!("not an effnet weights file ({e})")))?;
    let meta = reader.metadata();
    let get = |key: &str| {
        meta.get(key).ok_or_else(|| {
            read_err(format!(
                "burnpack file without '{key}' metadata: import PyTorch weights with `effnet import`"
            ))
        })
    };
    let mut config: EfficientNetConfig = serde_json::from_str(get(META_CONFIG)?)
        .map_err(|e| read_err(format!("bad model metadata ({e})")))?;
    config.validate().map_err(|e| read_err(e.to_string()))?;
    rename_legacy(&mut config);
    let preprocess: Preprocess = serde_json::from_str(get(META_PREPROCESS)?)
        .map_err(|e| read_err(format!("bad preprocess metadata ({e})")))?;
    preprocess
        .validate()
        .map_err(|e| read_err(format!("bad preprocess metadata ({e})")))?;
    let source = meta.get(META_SOURCE).cloned().unwrap_or_default();
    let labels: Option<Vec<String>> = match meta.get(META_LABELS) {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| read_err(format!("bad labels metadata ({e})")))?,
        ),
        None => None,
    };
    if meta.get(META_PRECISION).map(String::as_str) == Some(crate::int8::INT8) {
        let q = crate::int8::read_quant_model(&reader).map_err(read_err)?;
        return crate::int8::pretrained(q, config, preprocess, source, labels, device)
            .map_err(read_err);
    }
    let mut model = config.init(device);
    // Half-precision files (`StoragePrecision::F16`) are widened to f32; f32 tensors pass unchanged.
    let mut store =
        BurnpackStore::from_bytes(Some(bytes)).with_from_adapter(FloatCastAdapter::to(DType::F32));
    let result = model
        .load_from(&mut store)
        .map_err(|e| read_err(e.to_string()))?;
    check_result(origin, &config.name, &result, Vec::new())?;
    check_model_finite(origin, &model)?;
    Ok(Pretrained {
        model,
        config,
        preprocess,
        source,
        labels,
        int8: None,
    })
}

/// Default preprocessing for a freshly imported model: that of timm's default pretrained tag
/// when the config names a timm architecture that has weights; else TF-padded (ported) weights
/// get the 0.5/0.5 normalisation timm uses for them, others ImageNet statistics, and
/// EfficientNetV2-style nets (Fused-MBConv stages) the full image at eval size.
pub fn default_preprocess(config: &EfficientNetConfig) -> Preprocess {
    if let Some(tag) = crate::presets::default_tag(&config.name) {
        return tag.preprocess();
    }
    let mut p = Preprocess::imagenet(config.eval_size, 0.875, Interpolation::Bicubic);
    if config.padding == PaddingMode::Same {
        p.mean = [0.5; 3];
        p.std = [0.5; 3];
    }
    let fused = |s: &crate::config::StageConfig| {
        matches!(s.block, BlockKind::Fused | BlockKind::Cn | BlockKind::Er)
    };
    if config.stages.iter().any(fused) {
        // EfficientNetV2 evaluates on the full image at eval size (timm crop_pct 1.0).
        p.resize = config.eval_size;
    }
    p
}
