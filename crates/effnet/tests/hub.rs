//! `hf-hub:` weights: downloaded from a local stand-in for the Hugging Face Hub into the
//! standard cache layout, resumed from a partial file, checked against their sha256, read from
//! the cache afterwards, and numerically the same model as the file itself.
#![cfg(feature = "hub")]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use effnet::hub::{HubOptions, load};
use effnet_testutil::hub_server::{COMMIT, HubServer, sha256_hex, tiny_repo};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn arch() -> String {
    root()
        .join("tests/data/parity/timm_tf_v2_tiny.toml")
        .display()
        .to_string()
}

fn options(server: &HubServer, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: Some(server.endpoint.clone()),
        cache_dir: Some(cache.to_path_buf()),
    }
}

/// Logits on a fixed, deterministic input.
fn logits(model: &effnet::EfficientNet, device: &Device) -> Vec<f32> {
    let values: Vec<f32> = (0..3 * 64 * 64).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 64, 64]), device);
    model
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap()
}

#[test]
fn downloads_into_the_hub_cache_and_builds_the_same_model_as_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let server = HubServer::start(tiny_repo(&root(), "tiny"));
    let device = Device::flex();
    let pre = load(
        "timm/tiny",
        None,
        Some(&arch()),
        &options(&server, cache.path()),
        &device,
    )
    .unwrap();
    // huggingface_hub's layout: models--owner--name/{refs/main, snapshots/<commit>/, blobs/}.
    let repo_dir = cache.path().join("models--timm--tiny");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    assert!(snapshot.join("model.safetensors").exists());
    assert!(snapshot.join("config.json").exists());
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    // timm's config.json decides preprocessing (test size and crop) and class names.
    assert_eq!((pre.preprocess.crop, pre.preprocess.resize), (64, 64));
    assert_eq!(pre.preprocess.mean, [0.5; 3]);
    assert_eq!(
        pre.preprocess.interpolation,
        effnet::Interpolation::Bilinear
    );
    assert_eq!(pre.labels.as_ref().unwrap()[3], "texture_3");
    assert!(pre.source.starts_with("hf-hub:timm/tiny"), "{}", pre.source);
    // Same numbers as importing the fixture file directly.
    let direct = effnet::source::load_file(
        &root().join("tests/data/parity/timm_tf_v2_tiny.safetensors"),
        Some(&arch()),
        &device,
    )
    .unwrap();
    assert_eq!(logits(&pre.model, &device), logits(&direct.model, &device));

    // A second load is served from the cache: no new weight download.
    let before = server.requests().len();
    load(
        "timm/tiny",
        None,
        Some(&arch()),
        &options(&server, cache.path()),
        &device,
    )
    .unwrap();
    let after = server.requests();
    assert!(
        after[before..]
            .iter()
            .all(|r| !r.contains("model.safetensors")),
        "{after:?}"
    );
}

#[test]
fn a_partial_download_resumes_from_where_it_stopped() {
    let cache = tempfile::tempdir().unwrap();
    let files = tiny_repo(&root(), "resume");
    let weights = &files["/timm/resume/resolve/main/model.safetensors"];
    let half = weights.bytes.len() / 2;
    let blobs = cache.path().join("models--timm--resume/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        blobs.join(format!("{}.part", weights.etag)),
        &weights.bytes[..half],
    )
    .unwrap();
    let server = HubServer::start(files.clone());
    effnet::hub::download("timm/resume", None, &options(&server, cache.path())).unwrap();
    let ranges = server.requests();
    assert!(
        ranges
            .iter()
            .any(|r| r.contains("model.safetensors") && r.ends_with(&format!("bytes={half}-"))),
        "resumed at byte {half}: {ranges:?}"
    );
    let blob = std::fs::read(blobs.join(&weights.etag)).unwrap();
    assert_eq!(sha256_hex(&blob), weights.etag);
}

#[test]
fn corrupt_or_missing_downloads_are_clear_errors() {
    let cache = tempfile::tempdir().unwrap();
    let mut files = tiny_repo(&root(), "corrupt");
    let key = "/timm/corrupt/resolve/main/model.safetensors";
    let mut bad = files[key].clone();
    bad.bytes[1000] ^= 0xff; // content no longer matches its announced sha256
    files.insert(key.to_string(), bad);
    let server = HubServer::start(files);
    let err = effnet::hub::download("timm/corrupt", None, &options(&server, cache.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hf-hub:timm/corrupt") && err.contains("sha256"),
        "{err}"
    );
    let snapshot = cache
        .path()
        .join("models--timm--corrupt/snapshots")
        .join(COMMIT)
        .join("model.safetensors");
    assert!(
        !snapshot.exists(),
        "a corrupt file is not left in the cache"
    );

    let err = effnet::hub::download("timm/absent", None, &options(&server, cache.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hf-hub:timm/absent") && err.contains("no weights"),
        "{err}"
    );
    // Without an architecture, the one config.json names is used (not a preset here).
    let server2 = HubServer::start(tiny_repo(&root(), "noarch"));
    let err = load(
        "timm/noarch",
        None,
        None,
        &options(&server2, cache.path()),
        &Device::flex(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown model 'timm_tf_v2_tiny'"), "{err}");
}
