//! Exported ONNX graphs run in ONNX Runtime (python3 + PyPI `onnxruntime`, through
//! scripts/onnx_run.py) and must give effnet's logits within 1e-4 on the bundled photos: the real
//! Lite0 (ReLU6, depthwise-separable and inverted-residual blocks), a reduced torchvision-layout
//! V2 (SiLU, fused blocks, SE) and a timm TF-"same"-padded V2 (asymmetric pads), plus a ReLU net.
//!
//! Without onnxruntime these tests fail, unless `EFFNET_SKIP_ONNXRUNTIME` gives the reason to
//! skip (scripts/test.sh sets it only when `pip install onnxruntime` itself fails).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_export::proto::ModelProto;
use effnet_export::{BatchSize, OnnxOptions, export_onnx, onnx_bytes, write_onnx};
use effnet_model::weights::default_preprocess;
use effnet_model::{EfficientNetConfig, Preprocess, Pretrained, import_pytorch};

const TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn photos() -> Vec<PathBuf> {
    ["chelsea.png", "china.jpg", "coffee.png", "flower.jpg"]
        .iter()
        .map(|f| root().join("tests/data/photos").join(f))
        .collect()
}

/// The photos preprocessed as `[N, 3, S, S]` values.
fn photo_batch(pre: &Preprocess) -> (Vec<f32>, [usize; 4]) {
    let per = 3 * pre.crop * pre.crop;
    let paths = photos();
    let mut buf = vec![0f32; per * paths.len()];
    for (slot, path) in buf.chunks_mut(per).zip(&paths) {
        let img = effnet::load_rgb(path).expect("photo");
        pre.apply_into(&img, slot);
    }
    (buf, [paths.len(), 3, pre.crop, pre.crop])
}

/// Whether ONNX Runtime can run here; `Err(reason)` when a skip was asked for.
fn onnxruntime_or_skip() -> Result<(), String> {
    let ok = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    match std::env::var("EFFNET_SKIP_ONNXRUNTIME") {
        Ok(reason) => Err(reason),
        Err(_) => panic!(
            "python3 with onnxruntime and numpy is needed (pip install onnxruntime numpy onnx); \
             set EFFNET_SKIP_ONNXRUNTIME=<reason> to skip"
        ),
    }
}

/// Runs `model` in ONNX Runtime on `input` and returns the logits.
fn run_onnxruntime(model: &Path, input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let dir = model.parent().expect("model in a folder");
    let input_path = dir.join("input.f32");
    let output_path = dir.join("output.f32");
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input_path, bytes).expect("write input");
    let shape = shape.map(|d| d.to_string()).join(",");
    let out = Command::new("python3")
        .arg(root().join("scripts/onnx_run.py"))
        .args([model, &input_path])
        .arg(shape)
        .arg(&output_path)
        .output()
        .expect("run python3");
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "onnx_run.py failed: {log}");
    println!("{}", log.trim());
    std::fs::read(&output_path)
        .expect("read output")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// effnet's own logits, as `effnet infer` computes them (BatchNorm folded).
fn effnet_logits(pre: &Pretrained, input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let device = Device::flex();
    let x = Tensor::<4>::from_data(TensorData::new(input.to_vec(), shape), &device);
    let model = pre.model.clone().fold_batchnorm();
    model
        .forward(x)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 logits")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit count");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Exports `pre`, runs it in ONNX Runtime on `input` and checks the logits; returns max |diff|.
fn check_parity(
    what: &str,
    pre: &Pretrained,
    options: &OnnxOptions,
    input: &[f32],
    shape: [usize; 4],
) -> Option<f32> {
    if let Err(reason) = onnxruntime_or_skip() {
        eprintln!("skipped {what}: onnxruntime unavailable ({reason})");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{what}.onnx"));
    write_onnx(&path, pre, options).expect("export");
    let theirs = run_onnxruntime(&path, input, shape);
    let ours = effnet_logits(pre, input, shape);
    // A comparison of near-zero logits would prove nothing.
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.1,
        "{what}: logits too small to compare (max |logit| {scale:e})"
    );
    let diff = max_abs_diff(&ours, &theirs);
    println!(
        "{what}: max |effnet - onnxruntime| = {diff:.3e} over {} logits (max |logit| {scale:.2})",
        ours.len()
    );
    assert!(
        diff <= TOLERANCE,
        "{what}: max |diff| {diff:e} > {TOLERANCE:e}"
    );
    Some(diff)
}

fn bundled() -> Pretrained {
    effnet::bundled_pretrained(&Device::flex()).expect("bundled weights")
}

fn parity_fixture(name: &str, weights: &str) -> Pretrained {
    let text = std::fs::read_to_string(root().join(format!("tests/data/parity/{name}.toml")))
        .expect("fixture config");
    let cfg = EfficientNetConfig::from_toml(&text).expect("config");
    let imported = import_pytorch(
        &root().join("tests/data/parity").join(weights),
        &cfg,
        &Device::flex(),
    )
    .expect("fixture weights");
    Pretrained {
        preprocess: default_preprocess(&imported.config),
        model: imported.model,
        config: imported.config,
        source: name.into(),
        labels: None,
        int8: None,
    }
}

#[test]
fn bundled_lite0_with_dynamic_batch_matches_onnxruntime_on_photos() {
    let pre = bundled();
    let (input, shape) = photo_batch(&pre.preprocess);
    let options = OnnxOptions {
        batch: BatchSize::Dynamic,
        ..OnnxOptions::default()
    };
    check_parity("lite0", &pre, &options, &input, shape);
    // The same graph at batch 1 (the dynamic dimension really is dynamic).
    let one = &input[..input.len() / shape[0]];
    check_parity(
        "lite0_batch1",
        &pre,
        &options,
        one,
        [1, shape[1], shape[2], shape[3]],
    );
}

#[test]
fn reduced_torchvision_v2_matches_onnxruntime_on_photos() {
    let pre = parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth");
    let (input, shape) = photo_batch(&pre.preprocess);
    let options = OnnxOptions {
        batch: BatchSize::Fixed(shape[0]),
        ..OnnxOptions::default()
    };
    check_parity("tv_v2_tiny", &pre, &options, &input, shape);
}

#[test]
fn tf_same_padded_v2_matches_onnxruntime_at_even_and_odd_sizes() {
    let mut pre = parity_fixture("timm_tf_v2_tiny", "timm_tf_v2_tiny.safetensors");
    assert_eq!(pre.config.padding, effnet_model::PaddingMode::Same);
    // 224: every stride-2 conv pads (0, 1), the extra pixel at the bottom/right.
    // 231: odd sizes, where the pads differ level by level.
    for size in [224, 231] {
        pre.preprocess.crop = size;
        pre.preprocess.resize = size;
        let (input, shape) = photo_batch(&pre.preprocess);
        let options = OnnxOptions {
            batch: BatchSize::Fixed(shape[0]),
            opset: 18,
            ..OnnxOptions::default()
        };
        check_parity(
            &format!("timm_tf_v2_tiny_{size}"),
            &pre,
            &options,
            &input,
            shape,
        );
    }
}

#[test]
fn relu_same_padded_net_matches_onnxruntime_on_random_input() {
    // The torchvision fixture's weights in a ReLU, TF-"same"-padded variant of its architecture
    // (activation and padding change no shapes), at an odd input size.
    let text = std::fs::read_to_string(root().join("tests/data/parity/tv_v2_tiny.toml"))
        .expect("fixture config");
    let mut cfg = EfficientNetConfig::from_toml(&text).expect("config");
    cfg.activation = effnet_model::Activation::Relu;
    cfg.padding = effnet_model::PaddingMode::Same;
    let device = Device::flex();
    let weights = root().join("tests/data/parity/tv_v2_tiny.pth");
    let imported = import_pytorch(&weights, &cfg, &device).expect("fixture weights");
    let pre = Pretrained {
        preprocess: default_preprocess(&imported.config),
        model: imported.model,
        config: imported.config,
        source: String::new(),
        labels: None,
        int8: None,
    };
    let shape = [2, 3, 97, 97];
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let input = x.into_data().try_into_vec::<f32>().expect("f32");
    let options = OnnxOptions {
        batch: BatchSize::Fixed(2),
        input_size: Some(97),
        opset: 21,
        ..OnnxOptions::default()
    };
    check_parity("relu_same", &pre, &options, &input, shape);
}

fn meta(model: &ModelProto, key: &str) -> Option<String> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some(key))
        .and_then(|p| p.value.clone())
}

#[test]
fn graph_records_opset_signature_and_preprocessing() {
    let pre = bundled();
    let model = export_onnx(&pre, &OnnxOptions::default()).expect("export");
    assert_eq!(model.opset_import[0].version, Some(17));
    assert_eq!(model.ir_version, Some(8));
    assert_eq!(meta(&model, "preprocess.crop").as_deref(), Some("224"));
    assert_eq!(
        meta(&model, "preprocess.resize").as_deref(),
        Some(pre.preprocess.resize.to_string().as_str())
    );
    let mean = meta(&model, "preprocess.mean").expect("mean");
    assert_eq!(mean, pre.preprocess.mean.map(|m| m.to_string()).join(","));
    let cfg: EfficientNetConfig =
        serde_json::from_str(&meta(&model, "effnet.model").expect("model")).expect("json");
    assert_eq!(cfg, pre.config);
    let graph = model.graph.as_ref().expect("graph");
    let ops: Vec<&str> = graph
        .node
        .iter()
        .filter_map(|n| n.op_type.as_deref())
        .collect();
    assert!(!ops.contains(&"BatchNormalization"), "BatchNorm is folded");
    assert!(ops.contains(&"Clip"), "ReLU6 is a Clip");
    assert_eq!(ops.last(), Some(&"Gemm"));
    assert_eq!(graph.output[0].name.as_deref(), Some("logits"));
    // Fixed batch 1 by default; the graph is deterministic.
    let again = onnx_bytes(&pre, &OnnxOptions::default()).expect("export");
    assert_eq!(again, prost::Message::encode_to_vec(&model));
}

#[test]
fn bad_options_are_errors_not_panics() {
    let pre = bundled();
    for (options, needle) in [
        (
            OnnxOptions {
                opset: 13,
                ..OnnxOptions::default()
            },
            "opset 13",
        ),
        (
            OnnxOptions {
                batch: BatchSize::Fixed(0),
                ..OnnxOptions::default()
            },
            "batch",
        ),
        (
            OnnxOptions {
                input_size: Some(0),
                ..OnnxOptions::default()
            },
            "input size",
        ),
        (
            OnnxOptions {
                labels: Some(vec!["a".into()]),
                ..OnnxOptions::default()
            },
            "1 labels",
        ),
    ] {
        let err = export_onnx(&pre, &options).expect_err("must fail");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let err = write_onnx(
        Path::new("/nonexistent/dir/m.onnx"),
        &pre,
        &OnnxOptions::default(),
    )
    .expect_err("must fail");
    assert!(err.to_string().contains("/nonexistent/dir/m.onnx"), "{err}");
}
