//! `Classifier::load` takes what a user types after `--weights`: each kind of source, with the
//! architecture required, checked or ignored as the source needs, and a clear error otherwise.

use std::path::{Path, PathBuf};

use effnet::{Classifier, Device, Error};

fn data(rel: &str) -> String {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    p.display().to_string()
}

#[test]
fn pytorch_files_need_an_architecture_and_load_with_one() {
    let device = Device::flex();
    let pth = data("tests/data/parity/tv_v2_tiny.pth");
    let err = Classifier::load(&pth, None, &device).err().unwrap();
    assert!(matches!(err, Error::Usage(_)), "{err}");
    assert!(err.to_string().contains("tv_v2_tiny.pth"), "{err}");
    let c = Classifier::load(
        &pth,
        Some(&data("tests/data/parity/tv_v2_tiny.toml")),
        &device,
    )
    .unwrap();
    assert_eq!(c.config().name, "tv_v2_tiny");
    assert_eq!(c.labels().len(), c.config().num_classes);
    let err = Classifier::load(&pth, Some("efficientnetv2_s"), &device)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("weights do not match model 'efficientnetv2_s'"),
        "{err}"
    );
}

#[cfg(feature = "bundled")]
#[test]
fn bundled_weights_answer_to_their_aliases_only() {
    let device = Device::flex();
    for arch in [
        None,
        Some("tf_efficientnet_lite0"),
        Some("EfficientNet-Lite0"),
        Some("tf_efficientnet_lite0.in1k"),
    ] {
        let c = Classifier::load("bundled", arch, &device).unwrap();
        assert_eq!(c.config().name, "tf_efficientnet_lite0");
    }
    // timm's own Lite0 (symmetric padding, BN eps 1e-5) is another architecture.
    for other in ["efficientnet_v2_s", "efficientnet_lite0"] {
        let err = Classifier::load("bundled", Some(other), &device)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("only tf_efficientnet_lite0 weights are bundled"),
            "{err}"
        );
    }
}

#[test]
fn unreadable_sources_name_themselves() {
    let device = Device::flex();
    let err = Classifier::load("no/such/weights.bpk", None, &device)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no/such/weights.bpk"), "{err}");
    let err = Classifier::load("hf-hub:no-slash", None, &device)
        .err()
        .unwrap();
    assert!(err.to_string().contains("hf-hub:owner/name"), "{err}");
}
