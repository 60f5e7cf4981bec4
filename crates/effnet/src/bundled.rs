//! The bundled weights, in one place: the spec that names them (`bundled`), their bytes (cargo
//! feature `bundled`) and their loader, used by every crate that starts from them (the CLI, the
//! trainer's `model.init_weights = "bundled"`, the exporters' tests).

use std::path::Path;

use burn::prelude::*;
use effnet_model::{ModelError, Pretrained};

/// The spelling that selects the bundled weights wherever weights are named (`--weights`,
/// `--init-weights`, `model.init_weights`).
pub const BUNDLED_SPEC: &str = "bundled";

/// The bundled ImageNet-1k EfficientNet-Lite0 weights (weights/efficientnet_lite0.bpk, 18.8 MB;
/// cargo feature `bundled`, on by default).
#[cfg(feature = "bundled")]
pub const BUNDLED_WEIGHTS: &[u8] = include_bytes!("../../../weights/efficientnet_lite0.bpk");

/// The bundled model as loaded weights; an error when the library was built without them.
pub fn bundled_pretrained(device: &Device) -> Result<Pretrained, ModelError> {
    #[cfg(feature = "bundled")]
    {
        effnet_model::load_native_bytes(
            Path::new("<bundled efficientnet_lite0>"),
            BUNDLED_WEIGHTS.to_vec(),
            device,
        )
    }
    #[cfg(not(feature = "bundled"))]
    {
        let _ = device;
        Err(ModelError::Read {
            path: Path::new("<bundled>").into(),
            reason:
                "this build has no bundled weights (cargo feature `bundled` of the effnet crate)"
                    .into(),
        })
    }
}
