//! Pretrained weights from the Hugging Face Hub the way timm users get them:
//! `hf-hub:timm/tf_efficientnetv2_s.in21k_ft_in1k` downloads `model.safetensors` (or
//! `pytorch_model.bin`) and timm's `config.json` into the standard cache (`HF_HOME`, hub layout,
//! shared with Python's huggingface_hub) through the `hf-hub` crate; downloads resume from a
//! partial file and LFS files are checked against their sha256 (their ETag).

use std::path::PathBuf;

use burn::prelude::*;
use effnet_model::{EfficientNetConfig, Pretrained};

use crate::Error;

/// Where to download from and cache to; `None` takes `HF_ENDPOINT` / `HF_HOME` (or their
/// defaults, `https://huggingface.co` and `~/.cache/huggingface`).
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// Hub base URL.
    pub endpoint: Option<String>,
    /// The hub cache folder itself (`$HF_HOME/hub`).
    pub cache_dir: Option<PathBuf>,
}

/// Weight files a Hub repository may hold, in the order they are tried.
pub const WEIGHT_FILES: &[&str] = &["model.safetensors", "pytorch_model.bin"];

/// The local files of one repository after download.
#[derive(Clone, Debug)]
pub struct HubFiles {
    /// The weights (inside the cache's `snapshots/<commit>/`).
    pub weights: PathBuf,
    /// timm's `config.json`, when the repository has one.
    pub config: Option<PathBuf>,
}

/// timm's `config.json`: the architecture, class names and evaluation preprocessing.
#[derive(serde::Deserialize, Debug, Default)]
struct TimmConfig {
    architecture: Option<String>,
    label_names: Option<Vec<String>>,
    #[serde(default)]
    pretrained_cfg: PretrainedCfg,
}

#[derive(serde::Deserialize, Debug, Default)]
struct PretrainedCfg {
    input_size: Option<[usize; 3]>,
    test_input_size: Option<[usize; 3]>,
    crop_pct: Option<f64>,
    test_crop_pct: Option<f64>,
    interpolation: Option<String>,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
}

impl PretrainedCfg {
    /// timm's evaluation settings (the test size where given, as its validate.py uses).
    fn overrides(&self) -> effnet_model::PreprocessOverrides {
        effnet_model::PreprocessOverrides {
            size: self.test_input_size.or(self.input_size).map(|s| s[2]),
            crop_pct: self.test_crop_pct.or(self.crop_pct),
            interpolation: self.interpolation.as_deref().and_then(|i| i.parse().ok()),
            mean: self.mean,
            std: self.std,
        }
    }
}

/// Downloads (or finds in the cache) the weights and config of `repo` at `revision`.
pub fn download(
    repo: &str,
    revision: Option<&str>,
    options: &HubOptions,
) -> Result<HubFiles, Error> {
    imp::download(repo, revision, options)
}

/// Downloads `repo` and builds its model: the architecture is `arch` when given, else the one
/// its `config.json` names, else the repository name (`timm/efficientnet_b0.ra_in1k`).
pub fn load(
    repo: &str,
    revision: Option<&str>,
    arch: Option<&str>,
    options: &HubOptions,
    device: &Device,
) -> Result<Pretrained, Error> {
    let spec = match revision {
        Some(r) => format!("hf-hub:{repo}@{r}"),
        None => format!("hf-hub:{repo}"),
    };
    let files = download(repo, revision, options)?;
    let timm = match &files.config {
        Some(path) => read_config(path, &spec)?,
        None => TimmConfig::default(),
    };
    let repo_name = repo.rsplit('/').next().unwrap_or(repo);
    let arch = arch
        .map(str::to_string)
        .or(timm.architecture.clone())
        .unwrap_or_else(|| repo_name.to_string());
    let config = EfficientNetConfig::from_name_or_file(&arch)?;
    // timm's table for the repository's tag (`timm/<arch>.<tag>`) first, then what the
    // repository's config.json says on top.
    let table =
        crate::files::tag_preprocess(repo_name).or_else(|| crate::files::tag_preprocess(&arch));
    let mut pre = crate::files::import_as(&files.weights, &config, table, device)?;
    pre.preprocess = timm.pretrained_cfg.overrides().apply(pre.preprocess)?;
    // timm lists ImageNet's classes by WordNet id: names are what people read.
    pre.labels = (timm.label_names)
        .filter(|l| l.len() == pre.config.num_classes)
        .map(crate::labels::readable_labels);
    pre.source = format!("{spec} ({})", files.weights.display());
    Ok(pre)
}

fn read_config(path: &std::path::Path, spec: &str) -> Result<TimmConfig, Error> {
    let bad = |reason: String| Error::Hub {
        spec: spec.to_string(),
        reason: format!("{}: {reason}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("not a timm config.json ({e})")))
}

#[cfg(feature = "hub")]
mod imp {
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
    use hf_hub::{Repo, RepoType};
    use sha2::{Digest, Sha256};

    use super::{HubFiles, HubOptions, WEIGHT_FILES};
    use crate::Error;

    pub fn download(
        repo: &str,
        revision: Option<&str>,
        options: &HubOptions,
    ) -> Result<HubFiles, Error> {
        let spec = format!("hf-hub:{repo}");
        let err = |reason: String| Error::Hub {
            spec: spec.clone(),
            reason,
        };
        let mut builder = ApiBuilder::from_env().with_progress(false).with_retries(3);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(dir) = &options.cache_dir {
            builder = builder.with_cache_dir(dir.clone());
        }
        let api = builder.build().map_err(|e| err(describe(&e)))?;
        let revision = revision.unwrap_or("main").to_string();
        let handle = api.repo(Repo::with_revision(repo.into(), RepoType::Model, revision));
        let mut first_error = None;
        for name in WEIGHT_FILES {
            match fetch(&handle, name) {
                Ok(Some(weights)) => {
                    let config = fetch(&handle, "config.json").map_err(&err)?;
                    return Ok(HubFiles { weights, config });
                }
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(err(first_error.unwrap_or_else(|| {
            format!(
                "no weights in the repository (looked for {})",
                WEIGHT_FILES.join(", ")
            )
        })))
    }

    /// The cached or downloaded file; `None` when the repository has no such file.
    fn fetch(repo: &ApiRepo, name: &str) -> Result<Option<PathBuf>, String> {
        match repo.get(name) {
            Ok(path) => {
                verify(&path).map_err(|e| format!("{name}: {e}"))?;
                Ok(Some(path))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(format!("{name}: {}", describe(&e))),
        }
    }

    fn is_not_found(e: &ApiError) -> bool {
        matches!(e, ApiError::RequestError(r) if matches!(**r, ureq::Error::Status(404, _)))
    }

    fn describe(e: &ApiError) -> String {
        match e {
            ApiError::RequestError(r) => match &**r {
                ureq::Error::Status(code, resp) => {
                    format!("server answered {code} for {}", resp.get_url())
                }
                ureq::Error::Transport(t) => format!("cannot reach the hub ({t})"),
            },
            other => other.to_string(),
        }
    }

    /// An LFS blob is named by its sha256: a file whose content does not hash to its name is
    /// removed (with its snapshot link) so the next attempt downloads it again.
    fn verify(pointer: &Path) -> Result<(), String> {
        let blob = std::fs::canonicalize(pointer).map_err(|e| e.to_string())?;
        let name = blob
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(()); // a small git-stored file, named by its git hash
        }
        let got = sha256_hex(&blob).map_err(|e| e.to_string())?;
        if got.eq_ignore_ascii_case(&name) {
            return Ok(());
        }
        std::fs::remove_file(&blob).ok();
        std::fs::remove_file(pointer).ok();
        Err(format!(
            "download corrupt: sha256 {got} instead of {name} (removed; run again)"
        ))
    }

    fn sha256_hex(path: &Path) -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

#[cfg(not(feature = "hub"))]
mod imp {
    use super::{HubFiles, HubOptions};
    use crate::Error;

    pub fn download(repo: &str, _: Option<&str>, _: &HubOptions) -> Result<HubFiles, Error> {
        Err(Error::Hub {
            spec: format!("hf-hub:{repo}"),
            reason: "this build has no Hub support (cargo feature `hub` of the effnet crate)"
                .into(),
        })
    }
}
