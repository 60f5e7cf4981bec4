//! Where weights come from ([`WeightsSource`]) and how each kind becomes a [`Pretrained`] model:
//! the bundled Lite0, an effnet `.bpk`, a PyTorch `.pth`/`.safetensors` with an architecture, or
//! a Hugging Face Hub repository (`hf-hub:timm/...`, timm's spelling).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use burn::prelude::*;
use effnet_model::{EfficientNetConfig, Pretrained};

use crate::Error;
use crate::bundled::{BUNDLED_SPEC, bundled_pretrained};
pub use crate::files::{import_as, is_native, is_pytorch, load_file, tag_preprocess};

/// Where a model's weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    /// The ImageNet EfficientNet-Lite0 compiled into the library (cargo feature `bundled`).
    Bundled,
    /// A file: effnet `.bpk`, or PyTorch `.pth`/`.pt`/`.bin`/`.safetensors` (needs an architecture).
    File(PathBuf),
    /// A Hugging Face Hub model repository, `hf-hub:owner/name[@revision]`.
    Hub {
        /// `owner/name`, e.g. `timm/tf_efficientnetv2_s.in21k_ft_in1k`.
        repo: String,
        /// Branch, tag or commit; `main` when absent.
        revision: Option<String>,
    },
}

impl FromStr for WeightsSource {
    type Err = Error;

    /// `bundled`, `hf-hub:owner/name[@revision]` (also `hf_hub:`), or a file path.
    fn from_str(spec: &str) -> Result<Self, Error> {
        let trimmed = spec.trim();
        if trimmed == BUNDLED_SPEC {
            return Ok(Self::Bundled);
        }
        let hub = ["hf-hub:", "hf_hub:"]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p));
        let Some(rest) = hub else {
            return Ok(Self::File(PathBuf::from(spec)));
        };
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev.to_string())),
            None => (rest, None),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match repo.split_once('/') {
            Some((owner, name))
                if valid(owner) && valid(name) && revision.as_deref() != Some("") =>
            {
                Ok(Self::Hub {
                    repo: repo.to_string(),
                    revision,
                })
            }
            _ => Err(Error::Hub {
                spec: spec.to_string(),
                reason: "expected hf-hub:owner/name or hf-hub:owner/name@revision".into(),
            }),
        }
    }
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bundled => f.write_str(BUNDLED_SPEC),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Hub {
                repo,
                revision: Some(rev),
            } => write!(f, "hf-hub:{repo}@{rev}"),
            Self::Hub { repo, .. } => write!(f, "hf-hub:{repo}"),
        }
    }
}

/// Loads weights from `source`. `arch` (a preset name, alias or model TOML) is required for
/// PyTorch files, checked against native files and the bundled model, and overrides the
/// architecture a Hub repository names.
pub fn load_pretrained(
    source: &WeightsSource,
    arch: Option<&str>,
    device: &Device,
) -> Result<Pretrained, Error> {
    match source {
        WeightsSource::Bundled => {
            let pre = bundled_pretrained(device)?;
            if let Some(arch) = arch {
                let want = EfficientNetConfig::from_name_or_file(arch)?;
                if !want.same_architecture(&pre.config) {
                    return Err(Error::Usage(format!(
                        "model '{arch}' needs weights: only {} weights are bundled \
                         (import others with `effnet import`)",
                        pre.config.name
                    )));
                }
            }
            Ok(pre)
        }
        WeightsSource::File(path) => load_file(path, arch, device),
        WeightsSource::Hub { repo, revision } => {
            crate::hub::load(repo, revision.as_deref(), arch, &Default::default(), device)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_into_sources() {
        let parse = |s: &str| s.parse::<WeightsSource>();
        assert_eq!(parse("bundled").unwrap(), WeightsSource::Bundled);
        assert_eq!(
            parse("w/v2s.bpk").unwrap(),
            WeightsSource::File("w/v2s.bpk".into())
        );
        let hub = parse("hf-hub:timm/tf_efficientnetv2_s.in21k_ft_in1k").unwrap();
        assert_eq!(
            hub,
            WeightsSource::Hub {
                repo: "timm/tf_efficientnetv2_s.in21k_ft_in1k".into(),
                revision: None
            }
        );
        assert_eq!(
            hub.to_string(),
            "hf-hub:timm/tf_efficientnetv2_s.in21k_ft_in1k"
        );
        let pinned = parse("hf_hub:timm/efficientnet_b0.ra_in1k@v1.0").unwrap();
        assert_eq!(
            pinned.to_string(),
            "hf-hub:timm/efficientnet_b0.ra_in1k@v1.0"
        );
        for bad in [
            "hf-hub:",
            "hf-hub:noslash",
            "hf-hub:a/b@",
            "hf-hub:a/../b",
            "hf-hub:/x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
