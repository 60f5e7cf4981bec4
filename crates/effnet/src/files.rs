//! Weights files on disk: an effnet `.bpk` (checked against the architecture asked for) or a
//! PyTorch state dict (`.pth`/`.pt`/`.bin`/`.safetensors`) imported as a named architecture.

use std::path::Path;

use burn::prelude::*;
use effnet_data::Preprocess;
use effnet_model::weights::default_preprocess;
use effnet_model::{EfficientNetConfig, Pretrained, import_pytorch, load_native, resolve_name};

use crate::Error;

/// Whether a file is an effnet native weights file (by extension; no extension counts as one).
pub fn is_native(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    ext == "bpk" || ext.is_empty()
}

/// Whether a file is a PyTorch state dict effnet can import (by extension).
pub fn is_pytorch(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    ["pth", "pt", "bin", "safetensors"].contains(&ext.as_str())
}

/// A native `.bpk` (checked against `arch`) or a PyTorch file imported as `arch`; a training run
/// folder stands for its `best.bpk`.
pub fn load_file(path: &Path, arch: Option<&str>, device: &Device) -> Result<Pretrained, Error> {
    let best;
    let path = if path.is_dir() {
        best = run_folder_weights(path)?;
        best.as_path()
    } else {
        path
    };
    if is_native(path) {
        let pre = load_native(path, device)?;
        if let Some(arch) = arch {
            let want = EfficientNetConfig::from_name_or_file(arch)?;
            if !want.same_architecture(&pre.config) {
                return Err(Error::WrongModel {
                    weights: path.to_path_buf(),
                    found: pre.config.name,
                    wanted: want.name,
                });
            }
        }
        return Ok(pre);
    }
    if !is_pytorch(path) {
        return Err(Error::Usage(format!(
            "{}: unknown weights format (expected .bpk, .pth/.pt/.bin or .safetensors)",
            path.display()
        )));
    }
    let Some(arch) = arch else {
        return Err(Error::Usage(format!(
            "{}: PyTorch weights need an architecture (a preset name or model TOML) to be read",
            path.display()
        )));
    };
    let config = EfficientNetConfig::from_name_or_file(arch)?;
    import_as(path, &config, tag_preprocess(arch), device)
}

/// The preprocessing of the pretrained tag `arch` names (`tf_efficientnet_b0.ns_jft_in1k`), or of
/// timm's default tag of the architecture; `None` for model TOMLs and nets without weights.
pub fn tag_preprocess(arch: &str) -> Option<Preprocess> {
    if Path::new(arch).extension().is_some_and(|e| e == "toml") {
        return None;
    }
    let tag = resolve_name(arch).ok()?.tag_or_default()?;
    Some(tag.preprocess())
}

/// Imports a PyTorch state dict as `config`, with `preprocess` (else the architecture's default
/// preprocessing).
pub fn import_as(
    path: &Path,
    config: &EfficientNetConfig,
    preprocess: Option<Preprocess>,
    device: &Device,
) -> Result<Pretrained, Error> {
    let imported = import_pytorch(path, config, device)?;
    Ok(Pretrained {
        preprocess: preprocess.unwrap_or_else(|| default_preprocess(&imported.config)),
        model: imported.model,
        config: imported.config,
        source: format!("imported from {}", path.display()),
        labels: None,
        int8: None,
    })
}

/// The weights of a training run folder: its `best.bpk` (the best validation top-1).
pub fn run_folder_weights(dir: &Path) -> Result<std::path::PathBuf, Error> {
    let best = dir.join("best.bpk");
    if best.is_file() {
        return Ok(best);
    }
    let why = if dir.join("config.toml").is_file() {
        "a training run folder without best.bpk yet (no epoch has finished); name a checkpoint's \
         model.bpk instead"
    } else {
        "a folder, not a weights file or a training run folder (no best.bpk)"
    };
    Err(Error::Usage(format!("{}: {why}", dir.display())))
}
