//! The bundled model descriptions (`configs/models/*.toml`), embedded so the binary needs no files.

use crate::config::EfficientNetConfig;
use crate::error::ModelError;

/// `(name, TOML text)` of every preset, in the order they are listed to users.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "efficientnetv2_s",
        include_str!("../../../configs/models/efficientnetv2_s.toml"),
    ),
    (
        "efficientnetv2_m",
        include_str!("../../../configs/models/efficientnetv2_m.toml"),
    ),
    (
        "efficientnetv2_l",
        include_str!("../../../configs/models/efficientnetv2_l.toml"),
    ),
    (
        "efficientnetv2_xl",
        include_str!("../../../configs/models/efficientnetv2_xl.toml"),
    ),
    (
        "efficientnetv2_b0",
        include_str!("../../../configs/models/efficientnetv2_b0.toml"),
    ),
    (
        "efficientnetv2_b1",
        include_str!("../../../configs/models/efficientnetv2_b1.toml"),
    ),
    (
        "efficientnetv2_b2",
        include_str!("../../../configs/models/efficientnetv2_b2.toml"),
    ),
    (
        "efficientnetv2_b3",
        include_str!("../../../configs/models/efficientnetv2_b3.toml"),
    ),
    (
        "efficientnet_b0",
        include_str!("../../../configs/models/efficientnet_b0.toml"),
    ),
    (
        "efficientnet_lite0",
        include_str!("../../../configs/models/efficientnet_lite0.toml"),
    ),
];

/// Names of every preset.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

impl EfficientNetConfig {
    /// A preset by name (`efficientnetv2_s`, `efficientnet_lite0`, ...); also accepts `-` for `_`
    /// and timm's `tf_` prefix (same architecture, TF padding is set by the weights).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let norm = name.trim().to_ascii_lowercase().replace('-', "_");
        let norm = norm.strip_prefix("tf_").unwrap_or(&norm);
        PRESETS
            .iter()
            .find(|(n, _)| *n == norm)
            .map(|(_, text)| EfficientNetConfig::from_toml(text))
            .unwrap_or_else(|| {
                Err(ModelError::UnknownPreset {
                    name: name.to_string(),
                    known: preset_names().join(", "),
                })
            })
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
