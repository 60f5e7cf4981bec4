//! Golden parity against the reference implementations (fixtures: scripts/make_parity_fixtures.py):
//! max |diff| <= 1e-4 and relative L2 <= 1e-5 in f32 on CPU.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use effnet_model::{EfficientNetConfig, KeyLayout, import_pytorch, load_native};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Reads one tensor of a safetensors file as (values, shape).
fn read(path: &Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("{name} in {}", path.display()));
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, t.shape().to_vec())
}

fn tensor4((v, s): (Vec<f32>, Vec<usize>), device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2], s[3]]), device)
}

/// (max abs diff, relative L2) between ours and the reference.
fn compare(ours: Vec<f32>, want: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), want.len(), "element count");
    let mut max = 0f32;
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in ours.iter().zip(want) {
        max = max.max((a - b).abs());
        num += ((a - b) as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    (max, (num / den.max(1e-30)).sqrt() as f32)
}

fn assert_close(what: &str, ours: Tensor<2>, want: &[f32]) {
    let ours = ours.into_data().try_into_vec::<f32>().unwrap();
    let (max, rel) = compare(ours, want);
    println!("{what}: max|diff| = {max:.3e}, rel L2 = {rel:.3e}");
    assert!(
        max <= 1e-4 && rel <= 1e-5,
        "{what}: max|diff| {max:e}, rel L2 {rel:e}"
    );
}

fn check_imported(name: &str, weights: &str, layout: KeyLayout) {
    let device = Device::flex();
    let cfg_text =
        std::fs::read_to_string(data(&format!("tests/data/parity/{name}.toml"))).unwrap();
    let cfg = EfficientNetConfig::from_toml(&cfg_text).unwrap();
    let imported = import_pytorch(&data(weights), &cfg, &device).unwrap();
    assert_eq!(imported.layout, layout);
    let io = data(&format!("tests/data/parity/{name}_io.safetensors"));
    let x = tensor4(read(&io, "input"), &device);
    let (logits, _) = read(&io, "logits");
    let (feats, _) = read(&io, "features");
    let model = imported.model;
    let f = model.forward_features(x.clone());
    let f2: Tensor<2> = f.flatten(1, 3);
    assert_close(&format!("{name} features"), f2, &feats);
    assert_close(&format!("{name} logits"), model.forward(x.clone()), &logits);
    // BatchNorm folded into the convs (what inference uses) gives the same logits.
    let folded = model.fold_batchnorm();
    assert!(folded.is_folded());
    assert_close(&format!("{name} folded logits"), folded.forward(x), &logits);
}

#[test]
fn torchvision_layout_v2_matches_torchvision() {
    check_imported(
        "tv_v2_tiny",
        "tests/data/parity/tv_v2_tiny.pth",
        KeyLayout::Torchvision,
    );
}

#[test]
fn timm_tf_layout_v2_with_same_padding_matches_timm() {
    check_imported(
        "timm_tf_v2_tiny",
        "tests/data/parity/timm_tf_v2_tiny.safetensors",
        KeyLayout::Timm,
    );
}

#[test]
fn real_lite0_weights_match_reference_logits() {
    let device = Device::flex();
    let pre = load_native(&data("weights/efficientnet_lite0.bpk"), &device).unwrap();
    // Written as `efficientnet_lite0` before timm's names meant timm's architectures: the file's
    // TF-padded Lite0 is timm's `tf_efficientnet_lite0`.
    assert_eq!(pre.config.name, "tf_efficientnet_lite0");
    let io = data("tests/data/parity/lite0_io.safetensors");
    let folded = pre.model.clone().fold_batchnorm();
    // Splitting a batch across threads gives the same logits.
    let x = tensor4(read(&io, "input"), &device);
    let (want, _) = read(&io, "logits");
    assert_close("lite0 forward_split(3)", folded.forward_split(x, 3), &want);
    for (input, logits) in [("input", "logits"), ("random_input", "random_logits")] {
        let x = tensor4(read(&io, input), &device);
        let (want, _) = read(&io, logits);
        assert_close(
            &format!("lite0 {input}"),
            pre.model.forward(x.clone()),
            &want,
        );
        assert_close(&format!("lite0 folded {input}"), folded.forward(x), &want);
    }
}

#[test]
fn mismatched_weights_are_named_errors() {
    let device = Device::flex();
    // timm tiny weights into the torchvision tiny architecture: shapes differ.
    let cfg_text = std::fs::read_to_string(data("tests/data/parity/tv_v2_tiny.toml")).unwrap();
    let cfg = EfficientNetConfig::from_toml(&cfg_text).unwrap();
    let err = import_pytorch(
        &data("tests/data/parity/timm_tf_v2_tiny.safetensors"),
        &cfg,
        &device,
    )
    .err()
    .expect("must fail");
    let msg = err.to_string();
    assert!(msg.contains("timm_tf_v2_tiny.safetensors"), "{msg}");
    assert!(msg.contains("blocks."), "names a tensor: {msg}");
    // A missing file and a non-checkpoint file.
    let err = import_pytorch(Path::new("/nonexistent/x.pth"), &cfg, &device)
        .err()
        .unwrap();
    assert!(err.to_string().contains("no such file"), "{err}");
    let err = import_pytorch(&data("tests/data/parity/tv_v2_tiny.toml"), &cfg, &device)
        .err()
        .unwrap();
    assert!(err.to_string().contains("tv_v2_tiny.toml"), "{err}");
}

/// A copy of `src` with the first element of tensor `name` replaced by `value`, at `dst`.
fn mutate_safetensors(src: &Path, dst: &Path, name: &str, value: f32) {
    let mut bytes = std::fs::read(src).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize + 8 + header_len;
    bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(dst, bytes).unwrap();
}

#[test]
fn weights_with_nan_or_inf_are_refused_by_tensor() {
    let device = Device::flex();
    let cfg_text = std::fs::read_to_string(data("tests/data/parity/timm_tf_v2_tiny.toml")).unwrap();
    let cfg = EfficientNetConfig::from_toml(&cfg_text).unwrap();
    let src = data("tests/data/parity/timm_tf_v2_tiny.safetensors");
    for (tensor, value) in [
        ("blocks.1.0.conv_exp.weight", f32::NAN),
        ("bn2.running_var", f32::INFINITY),
    ] {
        let dst = std::env::temp_dir().join(format!(
            "effnet-nonfinite-{}-{}.safetensors",
            std::process::id(),
            tensor.replace('.', "_")
        ));
        mutate_safetensors(&src, &dst, tensor, value);
        let err = import_pytorch(&dst, &cfg, &device).err().expect("refused");
        std::fs::remove_file(&dst).ok();
        let msg = err.to_string();
        assert!(
            msg.contains(&dst.display().to_string()) && msg.contains(tensor),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }
}
