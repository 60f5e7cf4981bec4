//! The bundled model descriptions (`crates/effnet-model/configs/*.toml`, linked as
//! `configs/models/`), embedded so the binary needs no files, and the names users know them by
//! (timm, torchvision, lukemelas, Keras spellings).

use crate::config::{EfficientNetConfig, PaddingMode};
use crate::error::ModelError;

/// `(name, TOML text)` of every preset, in the order they are listed to users.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "efficientnetv2_s",
        include_str!("../configs/efficientnetv2_s.toml"),
    ),
    (
        "efficientnetv2_m",
        include_str!("../configs/efficientnetv2_m.toml"),
    ),
    (
        "efficientnetv2_l",
        include_str!("../configs/efficientnetv2_l.toml"),
    ),
    (
        "efficientnetv2_xl",
        include_str!("../configs/efficientnetv2_xl.toml"),
    ),
    (
        "efficientnetv2_b0",
        include_str!("../configs/efficientnetv2_b0.toml"),
    ),
    (
        "efficientnetv2_b1",
        include_str!("../configs/efficientnetv2_b1.toml"),
    ),
    (
        "efficientnetv2_b2",
        include_str!("../configs/efficientnetv2_b2.toml"),
    ),
    (
        "efficientnetv2_b3",
        include_str!("../configs/efficientnetv2_b3.toml"),
    ),
    (
        "efficientnet_b0",
        include_str!("../configs/efficientnet_b0.toml"),
    ),
    (
        "efficientnet_b1",
        include_str!("../configs/efficientnet_b1.toml"),
    ),
    (
        "efficientnet_b2",
        include_str!("../configs/efficientnet_b2.toml"),
    ),
    (
        "efficientnet_b3",
        include_str!("../configs/efficientnet_b3.toml"),
    ),
    (
        "efficientnet_b4",
        include_str!("../configs/efficientnet_b4.toml"),
    ),
    (
        "efficientnet_b5",
        include_str!("../configs/efficientnet_b5.toml"),
    ),
    (
        "efficientnet_b6",
        include_str!("../configs/efficientnet_b6.toml"),
    ),
    (
        "efficientnet_b7",
        include_str!("../configs/efficientnet_b7.toml"),
    ),
    (
        "efficientnet_lite0",
        include_str!("../configs/efficientnet_lite0.toml"),
    ),
];

/// Names of every preset.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// How deep `base = ...` chains may go (a cycle is an error, not a hang).
const MAX_BASE_DEPTH: usize = 8;

/// A user's model name reduced to a preset name, and whether it asks for the TF-ported variant.
///
/// Accepts `-` for `_`, any case, timm's pretrained tags (`tf_efficientnetv2_s.in21k_ft_in1k`),
/// a `timm/` repository prefix, torchvision's `efficientnet_v2_s` and timm's `tf_` prefix.
pub fn canonical_name(name: &str) -> (String, bool) {
    let mut norm = name.trim().to_ascii_lowercase().replace('-', "_");
    if let Some(rest) = norm.strip_prefix("timm/") {
        norm = rest.to_string();
    }
    if let Some((arch, _tag)) = norm.split_once('.') {
        norm = arch.to_string();
    }
    let tf = norm.starts_with("tf_");
    let norm = norm.trim_start_matches("tf_");
    (norm.replace("efficientnet_v2_", "efficientnetv2_"), tf)
}

/// The TOML text of a preset by exact name.
fn preset_text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn unknown(name: &str) -> ModelError {
    ModelError::UnknownPreset {
        name: name.to_string(),
        known: preset_names().join(", "),
    }
}

/// Expands a `base = "preset"` key: the preset's table with this table's keys on top.
pub(crate) fn resolve_base(table: toml::Table) -> Result<toml::Table, ModelError> {
    resolve_base_at(table, 0)
}

fn resolve_base_at(mut table: toml::Table, depth: usize) -> Result<toml::Table, ModelError> {
    let Some(base) = table.remove("base") else {
        return Ok(table);
    };
    let Some(base) = base.as_str() else {
        return Err(ModelError::Config("base must be a preset name".into()));
    };
    if depth >= MAX_BASE_DEPTH {
        return Err(ModelError::Config(format!(
            "base '{base}': more than {MAX_BASE_DEPTH} levels of base (a cycle?)"
        )));
    }
    let (canonical, _) = canonical_name(base);
    let text = preset_text(&canonical).ok_or_else(|| unknown(base))?;
    let base_table: toml::Table =
        toml::from_str(text).map_err(|e| ModelError::Config(format!("base '{base}': {e}")))?;
    let mut merged = resolve_base_at(base_table, depth + 1)?;
    merged.extend(table);
    Ok(merged)
}

impl EfficientNetConfig {
    /// A preset by name (`efficientnetv2_s`, `efficientnet_lite0`, ...) or an alias of it:
    /// `efficientnet_v2_s` (torchvision), `efficientnet-b0` (lukemelas), `efficientnetv2_s.in1k`
    /// (timm with a pretrained tag). timm's `tf_` prefix names the TF-ported variant: same
    /// shapes, TF "same" padding and BatchNorm epsilon 1e-3, as those weights need.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let (canonical, tf) = canonical_name(name);
        let text = preset_text(&canonical).ok_or_else(|| unknown(name))?;
        let mut cfg = EfficientNetConfig::from_toml(text)?;
        if tf && cfg.padding != PaddingMode::Same {
            cfg.padding = PaddingMode::Same;
            cfg.bn_eps = 1e-3;
            cfg.name = format!("tf_{}", cfg.name);
        }
        Ok(cfg)
    }

    /// Loads a model description from a TOML file, or a preset when `spec` names one.
    pub fn from_name_or_file(spec: &str) -> Result<Self, ModelError> {
        let path = std::path::Path::new(spec);
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(path).map_err(|e| ModelError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            return EfficientNetConfig::from_toml(&text).map_err(|e| ModelError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
        Self::preset(spec)
    }
}
