//! Exported ONNX graphs run in ONNX Runtime (python3 + PyPI `onnxruntime`, through
//! scripts/onnx_run.py) and must give effnet's logits within 1e-4 on the bundled photos: the real
//! Lite0 (ReLU6, depthwise-separable and inverted-residual blocks), a reduced torchvision-layout
//! V2 (SiLU, fused blocks, SE) and a timm TF-"same"-padded V2 (asymmetric pads), plus a ReLU net.
//!
//! Without onnxruntime these tests fail, unless `EFFNET_SKIP_ONNXRUNTIME` gives the reason to
//! skip (scripts/test.sh sets it only when `pip install onnxruntime` itself fails).

mod support;

use std::path::Path;

use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_export::proto::ModelProto;
use effnet_export::{
    BatchSize, Int8Options, IoType, OnnxOptions, export_onnx, onnx_bytes, write_onnx,
};
use effnet_model::weights::default_preprocess;
use effnet_model::{EfficientNetConfig, Pretrained, import_pytorch};
use support::{bundled, effnet_logits, max_abs_diff, parity_fixture, photo_batch, root, top1};

const TOLERANCE: f32 = 1e-4;

/// Whether ONNX Runtime can run here; `Err(reason)` when a skip was asked for.
fn onnxruntime_or_skip() -> Result<(), String> {
    support::python_or_skip(
        "onnxruntime, numpy",
        "pip install onnxruntime numpy onnx",
        "EFFNET_SKIP_ONNXRUNTIME",
    )
}

/// Runs `model` in ONNX Runtime on `input` and returns the logits.
fn run_onnxruntime(model: &Path, input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    support::run_peer("onnx_run.py", model, input, shape, &[])
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

/// Exports `pre` as a QDQ graph and runs it in ONNX Runtime; `None` when skipped.
fn qdq_logits(
    what: &str,
    pre: &Pretrained,
    int8: Int8Options,
    input: &[f32],
    shape: [usize; 4],
) -> Option<Vec<f32>> {
    if let Err(reason) = onnxruntime_or_skip() {
        eprintln!("skipped {what}: onnxruntime unavailable ({reason})");
        return None;
    }
    let options = OnnxOptions {
        batch: BatchSize::Fixed(shape[0]),
        int8: Some(int8),
        ..OnnxOptions::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{what}.onnx"));
    write_onnx(&path, pre, &options).expect("export");
    Some(run_onnxruntime(&path, input, shape))
}

#[test]
fn int8_qdq_lite0_keeps_top1_on_photos_in_onnxruntime() {
    let pre = bundled();
    let (input, shape) = photo_batch(&pre.preprocess);
    let quant = support::photo_quant(&pre);
    let classes = pre.config.num_classes;
    let f32_top1 = top1(&effnet_logits(&pre, &input, shape), classes);
    for io in [IoType::Float32, IoType::Int8] {
        let int8 = Int8Options {
            model: quant.clone(),
            input: io,
            output: io,
        };
        let Some(logits) = qdq_logits(&format!("lite0_qdq_{io:?}"), &pre, int8, &input, shape)
        else {
            return;
        };
        let int8_top1 = top1(&logits, classes);
        println!("lite0 QDQ ({io:?} io): top-1 {int8_top1:?}, f32 {f32_top1:?}");
        assert_eq!(int8_top1, f32_top1, "{io:?}");
    }
}

#[test]
fn int8_qdq_silu_se_v2_runs_in_onnxruntime_close_to_f32() {
    let pre = parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth");
    let (input, shape) = photo_batch(&pre.preprocess);
    let int8 = Int8Options {
        model: support::photo_quant(&pre),
        input: IoType::Float32,
        output: IoType::Float32,
    };
    let Some(theirs) = qdq_logits("tv_v2_tiny_qdq", &pre, int8, &input, shape) else {
        return;
    };
    let ours = effnet_logits(&pre, &input, shape);
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&ours, &theirs);
    println!("tv_v2_tiny QDQ: max |f32 - int8| = {diff:.3e} (max |logit| {scale:.2})");
    assert!(
        diff < 0.1 * scale,
        "int8 error {diff} vs logit scale {scale}"
    );
}

#[test]
fn int8_qdq_graph_runs_as_integer_kernels_in_onnxruntime() {
    // Every conv, residual add and the classifier fuse into ONNX Runtime's integer kernels:
    // only the boundary Q/DQ stay (the reason activations are uint8 inside the QDQ graph).
    if let Err(reason) = onnxruntime_or_skip() {
        eprintln!("skipped: onnxruntime unavailable ({reason})");
        return;
    }
    let pre = bundled();
    let options = OnnxOptions {
        int8: Some(Int8Options {
            model: support::photo_quant(&pre),
            input: IoType::Float32,
            output: IoType::Float32,
        }),
        ..OnnxOptions::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, optimized) = (dir.path().join("q.onnx"), dir.path().join("opt.onnx"));
    write_onnx(&model, &pre, &options).expect("export");
    let script = "import sys, collections, onnx, onnxruntime as ort\n\
        o = ort.SessionOptions(); o.optimized_model_filepath = sys.argv[2]\n\
        ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n\
        ops = collections.Counter(n.op_type for n in onnx.load(sys.argv[2]).graph.node)\n\
        print(' '.join(f'{k}={v}' for k, v in sorted(ops.items())))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .args([&model, &optimized])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ops = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!("optimized ops: {ops}");
    let count = |op: &str| {
        ops.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{op}=")))
            .map_or(0, |n| n.parse::<usize>().expect("count"))
    };
    assert_eq!(count("Conv"), 0, "{ops}");
    assert_eq!(count("Add"), 0, "{ops}");
    assert!(
        count("QLinearConv") > 40 && count("QLinearAdd") > 0,
        "{ops}"
    );
    assert_eq!(
        count("QuantizeLinear") + count("DequantizeLinear"),
        2,
        "{ops}"
    );
}
