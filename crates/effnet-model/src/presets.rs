//! The bundled model descriptions (`crates/effnet-model/configs/*.toml`, linked as
//! `configs/models/`), embedded so the binary needs no files, and name resolution: every
//! architecture timm lists as `*efficientnet*` and `tinynet*` under timm's own name (timm's
//! names mean timm's architectures), torchvision's `efficientnet_v2_s/m/l`, timm's pretrained
//! tags and deprecated names, and one-line errors with the closest names.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::EfficientNetConfig;
use crate::error::ModelError;

/// Each preset name written once: the name list of each origin and [`PRESETS`] (every name with
/// its TOML, in the order they are listed to users) come from the same lists.
macro_rules! preset_table {
    (
        $(#[$td:meta])* timm: [$($t:literal),* $(,)?],
        $(#[$vd:meta])* torchvision: [$($v:literal),* $(,)?],
        $(#[$ed:meta])* effnet: [$($e:literal),* $(,)?] $(,)?
    ) => {
        $(#[$td])*
        pub const TIMM_ARCHITECTURES: &[&str] = &[$($t),*];
        $(#[$vd])*
        pub const TORCHVISION_ARCHITECTURES: &[&str] = &[$($v),*];
        $(#[$ed])*
        pub const EFFNET_ARCHITECTURES: &[&str] = &[$($e),*];
        /// `(name, TOML text)` of every preset, in the order they are listed to users.
        pub const PRESETS: &[(&str, &str)] = &[
            $(($t, include_str!(concat!("../configs/", $t, ".toml"))),)*
            $(($v, include_str!(concat!("../configs/", $v, ".toml"))),)*
            $(($e, include_str!(concat!("../configs/", $e, ".toml"))),)*
        ];
    };
}

preset_table! {
    /// timm's architectures (`timm.list_models('*efficientnet*') + timm.list_models('tinynet*')`,
    /// timm 1.0.31), in the order `effnet models` lists them.
    timm: [
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "efficientnet_b4",
        "efficientnet_b5",
        "efficientnet_b6",
        "efficientnet_b7",
        "efficientnet_b8",
        "efficientnet_l2",
        "tf_efficientnet_b0",
        "tf_efficientnet_b1",
        "tf_efficientnet_b2",
        "tf_efficientnet_b3",
        "tf_efficientnet_b4",
        "tf_efficientnet_b5",
        "tf_efficientnet_b6",
        "tf_efficientnet_b7",
        "tf_efficientnet_b8",
        "tf_efficientnet_l2",
        "efficientnet_b0_gn",
        "efficientnet_b0_g8_gn",
        "efficientnet_b0_g16_evos",
        "efficientnet_b3_gn",
        "efficientnet_b3_g8_gn",
        "efficientnet_blur_b0",
        "efficientnet_cc_b0_4e",
        "efficientnet_cc_b0_8e",
        "efficientnet_cc_b1_8e",
        "tf_efficientnet_cc_b0_4e",
        "tf_efficientnet_cc_b0_8e",
        "tf_efficientnet_cc_b1_8e",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "efficientnet_lite3",
        "efficientnet_lite4",
        "tf_efficientnet_lite0",
        "tf_efficientnet_lite1",
        "tf_efficientnet_lite2",
        "tf_efficientnet_lite3",
        "tf_efficientnet_lite4",
        "efficientnet_es",
        "efficientnet_em",
        "efficientnet_el",
        "efficientnet_es_pruned",
        "efficientnet_el_pruned",
        "tf_efficientnet_es",
        "tf_efficientnet_em",
        "tf_efficientnet_el",
        "efficientnet_b1_pruned",
        "efficientnet_b2_pruned",
        "efficientnet_b3_pruned",
        "efficientnetv2_s",
        "efficientnetv2_m",
        "efficientnetv2_l",
        "efficientnetv2_xl",
        "tf_efficientnetv2_s",
        "tf_efficientnetv2_m",
        "tf_efficientnetv2_l",
        "tf_efficientnetv2_xl",
        "tf_efficientnetv2_b0",
        "tf_efficientnetv2_b1",
        "tf_efficientnetv2_b2",
        "tf_efficientnetv2_b3",
        "efficientnetv2_rw_t",
        "gc_efficientnetv2_rw_t",
        "efficientnetv2_rw_s",
        "efficientnetv2_rw_m",
        "efficientnet_x_b3",
        "efficientnet_x_b5",
        "efficientnet_h_b5",
        "tinynet_a",
        "tinynet_b",
        "tinynet_c",
        "tinynet_d",
        "tinynet_e",
        "test_efficientnet",
        "test_efficientnet_gn",
        "test_efficientnet_ln",
        "test_efficientnet_evos",
    ],
    /// torchvision's EfficientNetV2 (BN eps 1e-3, symmetric padding): a different architecture from
    /// timm's `efficientnetv2_*` of the same shapes. torchvision's `efficientnet_b0`..`b7` are timm's.
    torchvision: [
        "efficientnet_v2_s",
        "efficientnet_v2_m",
        "efficientnet_v2_l",
    ],
    /// effnet's own presets: the EfficientNetV2-B0..B3 tables with torchvision's numerics (BN eps
    /// 1e-3, symmetric padding), for training from scratch.
    effnet: [
        "efficientnetv2_b0",
        "efficientnetv2_b1",
        "efficientnetv2_b2",
        "efficientnetv2_b3",
    ],
}

/// Names of every preset.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// How deep `base = ...` chains may go (a cycle is an error, not a hang).
const MAX_BASE_DEPTH: usize = 8;

/// One of timm's pretrained tags (`tf_efficientnetv2_s.in21k_ft_in1k`) and the preprocessing
/// its weights were evaluated with, from timm's pretrained configs
/// (crates/effnet-model/data/pretrained.json, written by `scripts/timm_family.py tags`).
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct PretrainedTag {
    /// timm architecture.
    pub architecture: String,
    /// The tag (after the dot).
    pub tag: String,
    /// Training / default evaluation input size.
    pub input_size: usize,
    /// Larger evaluation size timm's validate.py uses, when given.
    #[serde(default)]
    pub test_input_size: Option<usize>,
    /// Crop fraction at `input_size`.
    pub crop_pct: f64,
    /// Crop fraction at `test_input_size`, when given.
    #[serde(default)]
    pub test_crop_pct: Option<f64>,
    /// Resize filter name (`bicubic`, `bilinear`).
    pub interpolation: String,
    /// Channel mean on the 0..1 scale.
    pub mean: [f32; 3],
    /// Channel std on the 0..1 scale.
    pub std: [f32; 3],
    /// Classes of the head.
    pub num_classes: usize,
    /// Hugging Face Hub repository (`timm/<arch>.<tag>`), empty when none.
    pub hf_hub_id: String,
    /// Licence of the weights.
    pub license: String,
}

impl PretrainedTag {
    /// `arch.tag`, timm's full name.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.architecture, self.tag)
    }

    /// The evaluation preprocessing timm's validate.py uses for these weights: the test size and
    /// crop fraction where given, else the input size and crop fraction.
    pub fn preprocess(&self) -> effnet_data::Preprocess {
        let size = self.test_input_size.unwrap_or(self.input_size);
        let crop_pct = self.test_crop_pct.unwrap_or(self.crop_pct);
        let interpolation = self.interpolation.parse().unwrap_or_default();
        let mut p = effnet_data::Preprocess::imagenet(size, crop_pct, interpolation);
        (p.mean, p.std) = (self.mean, self.std);
        p
    }
}

#[derive(Deserialize)]
struct PretrainedData {
    tags: BTreeMap<String, PretrainedTag>,
    default_tags: BTreeMap<String, String>,
    deprecated: BTreeMap<String, String>,
}

fn pretrained_data() -> &'static PretrainedData {
    static DATA: OnceLock<PretrainedData> = OnceLock::new();
    DATA.get_or_init(|| {
        serde_json::from_str(include_str!("../data/pretrained.json")).unwrap_or_else(|e| {
            // Embedded at build time and checked by a test: unreachable in a released build.
            panic!("crates/effnet-model/data/pretrained.json is malformed: {e}")
        })
    })
}

/// Every pretrained tag timm has for `architecture`, in name order.
pub fn pretrained_tags(architecture: &str) -> Vec<&'static PretrainedTag> {
    let data = pretrained_data();
    (data.tags.values())
        .filter(|t| t.architecture == architecture)
        .collect()
}

/// The tag timm loads for `architecture` without one (`pretrained=True`), if it has weights.
pub fn default_tag(architecture: &str) -> Option<&'static PretrainedTag> {
    let data = pretrained_data();
    let tag = data.default_tags.get(architecture)?;
    data.tags.get(&format!("{architecture}.{tag}"))
}

/// timm's deprecated names that now mean `arch.tag` (`tf_efficientnet_b0_ns`), with what they
/// mean.
pub fn deprecated_names() -> &'static BTreeMap<String, String> {
    &pretrained_data().deprecated
}

/// A user's model name resolved to a preset and, when it names one, a pretrained tag.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelName {
    /// The preset (architecture) name.
    pub preset: &'static str,
    /// The pretrained tag the name carried (`.ns_jft_in1k`), with its preprocessing.
    pub tag: Option<&'static PretrainedTag>,
}

impl ModelName {
    /// The tag given, else timm's default tag of the architecture (for preprocessing of its
    /// weights), if it has one.
    pub fn tag_or_default(&self) -> Option<&'static PretrainedTag> {
        self.tag.or_else(|| default_tag(self.preset))
    }
}

/// lukemelas' EfficientNet-PyTorch / -Lite names (`efficientnet-b0`, `efficientnet-lite0`) are
/// TensorFlow ports: timm's `tf_` architectures.
fn lukemelas_alias(name: &str) -> Option<String> {
    let rest = name.strip_prefix("efficientnet-")?;
    let known = |p: &str| {
        rest.strip_prefix(p)
            .is_some_and(|d| d.len() == 1 && d.as_bytes()[0].is_ascii_digit())
    };
    (known("b") || known("l") || known("lite")).then(|| format!("tf_efficientnet_{rest}"))
}

fn preset_static(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
}

/// Resolves what a user typed after `-m`: a preset name in any case, `-` for `_`, with timm's
/// `timm/` or `hf-hub:timm/` prefix and `.tag` suffix, timm's deprecated names and lukemelas'
/// spellings. An unknown name is one error line with the closest names; an unknown tag lists
/// the architecture's tags.
pub fn resolve_name(name: &str) -> Result<ModelName, ModelError> {
    let mut norm = name.trim().to_ascii_lowercase();
    for prefix in ["hf-hub:", "hf_hub:", "timm/"] {
        if let Some(rest) = norm.strip_prefix(prefix) {
            norm = rest.to_string();
        }
    }
    let (arch, mut tag) = match norm.split_once('.') {
        Some((a, t)) => (a.to_string(), Some(t.to_string())),
        None => (norm.clone(), None),
    };
    let mut arch = lukemelas_alias(&arch).unwrap_or_else(|| arch.replace('-', "_"));
    if let Some(target) = deprecated_names().get(&arch) {
        let (a, t) = target.split_once('.').unwrap_or((target.as_str(), ""));
        if tag.is_none() && !t.is_empty() {
            tag = Some(t.to_string());
        }
        arch = a.to_string();
    }
    let Some(preset) = preset_static(&arch) else {
        return Err(unknown(name));
    };
    let tag = match tag {
        None => None,
        Some(t) => {
            let data = pretrained_data();
            match data.tags.get(&format!("{preset}.{t}")) {
                Some(found) => Some(found),
                None => return Err(unknown_tag(name, preset)),
            }
        }
    };
    Ok(ModelName { preset, tag })
}

fn unknown_tag(name: &str, preset: &str) -> ModelError {
    let tags: Vec<String> = pretrained_tags(preset)
        .iter()
        .map(|t| t.tag.clone())
        .collect();
    let known = if tags.is_empty() {
        format!("timm has no pretrained weights for {preset}")
    } else {
        format!("{preset} has the tags {}", tags.join(", "))
    };
    ModelError::UnknownPreset {
        name: name.to_string(),
        known,
    }
}

fn unknown(name: &str) -> ModelError {
    ModelError::UnknownPreset {
        name: name.to_string(),
        known: format!(
            "closest: {}; `effnet models` lists all {}",
            closest_names(name, 3).join(", "),
            PRESETS.len()
        ),
    }
}

/// Edit distance between two names (insertions, deletions, substitutions).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The `n` preset names closest to `name` (edit distance on the normalised spelling).
pub fn closest_names(name: &str, n: usize) -> Vec<&'static str> {
    let norm = name.trim().to_ascii_lowercase().replace('-', "_");
    let norm = norm.split('.').next().unwrap_or_default().to_string();
    let mut scored: Vec<(usize, &'static str)> = PRESETS
        .iter()
        .map(|(p, _)| (edit_distance(&norm, p), *p))
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, p)| p).collect()
}

/// Whether `c` is in a `[...]` set body (`a-c` ranges included).
fn in_set(set: &[char], c: char) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// timm's `list_models` wildcards: `*` any run, `?` one character, `[abc]` / `[!abc]` a set;
/// case-insensitive.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let (negate, set) = match p[1] {
                    '!' => (true, &p[2..end]),
                    _ => (false, &p[1..end]),
                };
                n.first()
                    .is_some_and(|c| in_set(set, *c) != negate && go(&p[end + 1..], &n[1..]))
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    go(&p, &n)
}

/// Other names that select `preset`: lukemelas' spelling, timm's deprecated names (with the tag
/// they imply) and torchvision's where it shares timm's name.
pub fn aliases(preset: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(rest) = preset.strip_prefix("tf_efficientnet_")
        && lukemelas_alias(&format!("efficientnet-{rest}")).as_deref() == Some(preset)
    {
        out.push(format!("efficientnet-{rest}"));
    }
    for (old, new) in deprecated_names() {
        if new.split('.').next() == Some(preset) {
            out.push(old.clone());
        }
    }
    out
}

/// The TOML text of a preset by exact name.
fn preset_text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
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
    let preset = resolve_name(base)?.preset;
    let text = preset_text(preset).ok_or_else(|| unknown(base))?;
    let base_table: toml::Table =
        toml::from_str(text).map_err(|e| ModelError::Config(format!("base '{base}': {e}")))?;
    let mut merged = resolve_base_at(base_table, depth + 1)?;
    merged.extend(table);
    Ok(merged)
}

impl EfficientNetConfig {
    /// A preset by name or alias (see [`resolve_name`]): `efficientnetv2_s` (timm's),
    /// `efficientnet_v2_s` (torchvision's), `tf_efficientnet_b0.ns_jft_in1k` (timm with a
    /// pretrained tag), `tf_efficientnet_b0_ns` (timm's deprecated name), `efficientnet-b0`
    /// (lukemelas, a TF port).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let resolved = resolve_name(name)?;
        let text = preset_text(resolved.preset).ok_or_else(|| unknown(name))?;
        let mut cfg = EfficientNetConfig::from_toml(text)?;
        if let Some(tag) = resolved.tag {
            cfg.num_classes = tag.num_classes;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_fnmatch() {
        assert!(wildcard_match("*lite*", "tf_efficientnet_lite3"));
        assert!(wildcard_match("efficientnet_b?", "efficientnet_b7"));
        assert!(!wildcard_match("efficientnet_b?", "efficientnet_b0_gn"));
        assert!(wildcard_match("tinynet_[a-c]", "tinynet_c"));
        assert!(!wildcard_match("tinynet_[a-c]", "tinynet_d"));
        assert!(wildcard_match("tinynet_[abc]", "tinynet_b"));
        assert!(!wildcard_match("tinynet_[!abc]", "tinynet_b"));
        assert!(wildcard_match("*", "anything"));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("efficientnet_b0", "efficientnet_b0"), 0);
        assert_eq!(edit_distance("efficentnet_b0", "efficientnet_b0"), 1);
        assert_eq!(edit_distance("abc", "xbcd"), 2);
    }
}
