//! Exported `.tflite` models run in LiteRT's interpreter (python3 + PyPI `ai-edge-litert`, through
//! scripts/tflite_run.py, XNNPACK as LiteRT applies it by default) and must give effnet's logits
//! within 1e-4 on the bundled photos: the real Lite0 (ReLU6 fused into the convs), a reduced
//! torchvision-layout V2 (SiLU, fused blocks, SE, symmetric pads as PAD ops) and a timm
//! TF-"same"-padded V2 (SAME convs, even and odd sizes). Full-integer int8 exports, calibrated
//! on the photos, must keep f32's top-1 on Lite0.
//!
//! Without ai-edge-litert these tests fail, unless `EFFNET_SKIP_LITERT` gives the reason to skip
//! (scripts/test.sh sets it only when `pip install ai-edge-litert` itself fails).

mod support;

use std::path::Path;

use burn::prelude::*;
use effnet_export::{
    BatchSize, Graph, Int8Options, IoType, TfliteOptions, tflite_bytes, write_tflite,
};
use effnet_model::Pretrained;
use support::{bundled, effnet_logits, max_abs_diff, parity_fixture, photo_batch, top1};

const TOLERANCE: f32 = 1e-4;

fn litert_or_skip() -> Result<(), String> {
    support::python_or_skip(
        "ai_edge_litert, numpy",
        "pip install ai-edge-litert numpy",
        "EFFNET_SKIP_LITERT",
    )
}

/// Exports `pre` with `options`, runs it in LiteRT on `input` (NCHW) and returns the logits;
/// `None` when skipped.
fn litert_logits(
    what: &str,
    pre: &Pretrained,
    options: &TfliteOptions,
    input: &[f32],
    shape: [usize; 4],
) -> Option<Vec<f32>> {
    if let Err(reason) = litert_or_skip() {
        eprintln!("skipped {what}: ai-edge-litert unavailable ({reason})");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{what}.tflite"));
    write_tflite(&path, pre, options).expect("export");
    Some(support::run_peer("tflite_run.py", &path, input, shape, &[]))
}

/// Exports `pre`, runs it in LiteRT on `input` and checks the logits against effnet's.
fn check_parity(
    what: &str,
    pre: &Pretrained,
    options: &TfliteOptions,
    input: &[f32],
    shape: [usize; 4],
) {
    let Some(theirs) = litert_logits(what, pre, options, input, shape) else {
        return;
    };
    let ours = effnet_logits(pre, input, shape);
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.1,
        "{what}: logits too small to compare (max |logit| {scale:e})"
    );
    let diff = max_abs_diff(&ours, &theirs);
    println!(
        "{what}: max |effnet - litert| = {diff:.3e} over {} logits (max |logit| {scale:.2})",
        ours.len()
    );
    assert!(
        diff <= TOLERANCE,
        "{what}: max |diff| {diff:e} > {TOLERANCE:e}"
    );
}

#[test]
fn bundled_lite0_matches_litert_on_photos() {
    let pre = bundled();
    let (input, shape) = photo_batch(&pre.preprocess);
    let options = TfliteOptions {
        batch: BatchSize::Fixed(shape[0]),
        ..TfliteOptions::default()
    };
    check_parity("lite0", &pre, &options, &input, shape);
    // A dynamic batch: written for 1, resized by the interpreter to 4.
    let options = TfliteOptions {
        batch: BatchSize::Dynamic,
        ..TfliteOptions::default()
    };
    check_parity("lite0_dynamic", &pre, &options, &input, shape);
}

#[test]
fn reduced_torchvision_v2_matches_litert_on_photos() {
    let pre = parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth");
    let (input, shape) = photo_batch(&pre.preprocess);
    let options = TfliteOptions {
        batch: BatchSize::Fixed(shape[0]),
        ..TfliteOptions::default()
    };
    check_parity("tv_v2_tiny", &pre, &options, &input, shape);
}

#[test]
fn tf_same_padded_v2_matches_litert_at_even_and_odd_sizes() {
    let mut pre = parity_fixture("timm_tf_v2_tiny", "timm_tf_v2_tiny.safetensors");
    assert_eq!(pre.config.padding, effnet_model::PaddingMode::Same);
    for size in [224, 231] {
        pre.preprocess.crop = size;
        pre.preprocess.resize = size;
        let (input, shape) = photo_batch(&pre.preprocess);
        let options = TfliteOptions {
            batch: BatchSize::Fixed(shape[0]),
            ..TfliteOptions::default()
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

/// TFLite's own reading of a serialised model (scripts/tflite_inspect.py); `None` when skipped.
fn inspect(what: &str, bytes: &[u8]) -> Option<serde_json::Value> {
    if let Err(reason) = litert_or_skip() {
        eprintln!("skipped {what}: ai-edge-litert unavailable ({reason})");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{what}.tflite"));
    std::fs::write(&path, bytes).expect("write model");
    let out = std::process::Command::new("python3")
        .arg(support::root().join("scripts/tflite_inspect.py"))
        .arg(&path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "tflite_inspect.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("json"))
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

#[test]
fn lite0_is_builtin_nhwc_ops_with_fused_relu6_and_metadata() {
    let pre = bundled();
    let options = TfliteOptions {
        labels: Some(effnet::imagenet_labels()),
        ..TfliteOptions::default()
    };
    let bytes = tflite_bytes(&pre, &options).expect("export");
    assert_eq!(&bytes[4..8], b"TFL3", "file identifier");
    // Deterministic.
    assert_eq!(bytes, tflite_bytes(&pre, &options).unwrap());
    let Some(info) = inspect("lite0", &bytes) else {
        return;
    };
    let ops = strings(&info["operators"]);
    // Every ReLU6 is fused into its conv; Lite0 has no SiLU and no SE.
    for absent in ["RELU6", "LOGISTIC", "MUL"] {
        assert!(!ops.contains(&absent), "{absent} in {ops:?}");
    }
    assert!(ops.contains(&"DEPTHWISE_CONV_2D") && ops.contains(&"CONV_2D"));
    assert_eq!(&ops[ops.len() - 2..], ["MEAN", "FULLY_CONNECTED"]);
    // LiteRT built one kernel per operator (and its XNNPACK delegate node).
    let built = strings(&info["interpreter_ops"]);
    assert_eq!(
        built.iter().filter(|&&o| o != "DELEGATE").count(),
        ops.len()
    );
    assert_eq!(&built[..ops.len()], ops);
    let input = &info["inputs"][0];
    assert_eq!(input["name"], "input");
    assert_eq!(input["shape"], serde_json::json!([1, 224, 224, 3]), "NHWC");
    assert_eq!(input["type"], "FLOAT32");
    assert_eq!(info["outputs"][0]["name"], "logits");
    assert_eq!(info["outputs"][0]["shape"], serde_json::json!([1, 1000]));
    assert_eq!(strings(&info["signatures"]), ["serving_default"]);
    let meta = &info["metadata"];
    assert_eq!(meta["preprocess.layout"], "NHWC");
    assert_eq!(meta["preprocess.crop"], "224");
    let labels: Vec<String> =
        serde_json::from_str(meta["labels"].as_str().expect("labels")).expect("json");
    assert_eq!(labels, effnet::imagenet_labels());
}

#[test]
fn silu_se_v2_lowers_to_logistic_mul_and_pad() {
    let pre = parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth");
    let options = TfliteOptions {
        batch: BatchSize::Dynamic,
        ..TfliteOptions::default()
    };
    let bytes = tflite_bytes(&pre, &options).expect("export");
    let Some(info) = inspect("tv_v2_tiny", &bytes) else {
        return;
    };
    let ops = strings(&info["operators"]);
    for op in [
        "LOGISTIC",
        "MUL",
        "PAD",
        "ADD",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "MEAN",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let input = &info["inputs"][0];
    assert_eq!(input["shape"][0], 1);
    assert_eq!(input["shape_signature"][0], -1, "dynamic batch");
}

#[test]
fn int8_model_is_integer_inside_with_float_or_int8_boundary() {
    let pre = parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth");
    let quant = support::photo_quant(&pre);
    for io in [IoType::Float32, IoType::Int8] {
        let options = TfliteOptions {
            int8: Some(Int8Options {
                model: quant.clone(),
                input: io,
                output: io,
            }),
            ..TfliteOptions::default()
        };
        let bytes = tflite_bytes(&pre, &options).expect("export");
        let Some(info) = inspect("tv_v2_tiny_int8", &bytes) else {
            return;
        };
        let ops = strings(&info["operators"]);
        let types = &info["tensor_types"];
        // Only the boundary tensors may be f32.
        let floats = types["FLOAT32"].as_u64().unwrap_or(0);
        let (first, last) = (ops[0], ops[ops.len() - 1]);
        if io == IoType::Float32 {
            assert_eq!((first, last), ("QUANTIZE", "DEQUANTIZE"), "{ops:?}");
            assert_eq!(floats, 2, "{types}");
        } else {
            assert!(!ops.contains(&"QUANTIZE") && !ops.contains(&"DEQUANTIZE"));
            assert_eq!(floats, 0, "{types}");
            assert_eq!(info["inputs"][0]["type"], "INT8");
        }
        assert!(types["INT32"].as_u64().unwrap_or(0) > 0, "int32 biases");
        let logistic = ops.iter().filter(|&&o| o == "LOGISTIC").count();
        assert!(logistic > 0);
    }
}

#[test]
fn int8_lite0_keeps_top1_on_photos_in_litert() {
    let pre = bundled();
    let (input, shape) = photo_batch(&pre.preprocess);
    let quant = support::photo_quant(&pre);
    let classes = pre.config.num_classes;
    let f32_top1 = top1(&effnet_logits(&pre, &input, shape), classes);
    for (io, what) in [(IoType::Float32, "float_io"), (IoType::Int8, "int8_io")] {
        let options = TfliteOptions {
            batch: BatchSize::Fixed(shape[0]),
            int8: Some(Int8Options {
                model: quant.clone(),
                input: io,
                output: io,
            }),
            ..TfliteOptions::default()
        };
        let bytes = tflite_bytes(&pre, &options).expect("export");
        let f32_size = tflite_bytes(&pre, &TfliteOptions::default()).unwrap().len();
        assert!(
            bytes.len() * 100 < f32_size * 30,
            "int8 {} vs f32 {f32_size} bytes",
            bytes.len()
        );
        let Some(logits) =
            litert_logits(&format!("lite0_int8_{what}"), &pre, &options, &input, shape)
        else {
            return;
        };
        let int8_top1 = top1(&logits, classes);
        println!("lite0 int8 ({what}): top-1 {int8_top1:?}, f32 {f32_top1:?}");
        assert_eq!(int8_top1, f32_top1, "{what}");
    }
}

#[test]
fn int8_silu_se_v2_runs_in_litert_close_to_f32() {
    let pre = parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth");
    let (input, shape) = photo_batch(&pre.preprocess);
    let quant = support::photo_quant(&pre);
    let options = TfliteOptions {
        batch: BatchSize::Fixed(shape[0]),
        int8: Some(Int8Options {
            model: quant,
            input: IoType::Float32,
            output: IoType::Float32,
        }),
        ..TfliteOptions::default()
    };
    let Some(theirs) = litert_logits("tv_v2_tiny_int8", &pre, &options, &input, shape) else {
        return;
    };
    let ours = effnet_logits(&pre, &input, shape);
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&ours, &theirs);
    println!("tv_v2_tiny int8: max |f32 - int8| = {diff:.3e} (max |logit| {scale:.2})");
    assert!(
        diff < 0.1 * scale,
        "int8 error {diff} vs logit scale {scale}"
    );
}

#[test]
fn bad_options_are_errors_not_panics() {
    let pre = bundled();
    let err = tflite_bytes(
        &pre,
        &TfliteOptions {
            batch: BatchSize::Fixed(0),
            ..TfliteOptions::default()
        },
    )
    .expect_err("batch 0");
    assert!(err.to_string().contains("batch"), "{err}");
    // An int8 model calibrated for another network is refused, naming the mismatch.
    let other = support::photo_quant(&parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth"));
    let err = tflite_bytes(
        &pre,
        &TfliteOptions {
            int8: Some(Int8Options {
                model: other,
                input: IoType::Float32,
                output: IoType::Float32,
            }),
            ..TfliteOptions::default()
        },
    )
    .expect_err("another network's int8 model");
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = write_tflite(
        Path::new("/nonexistent/dir/m.tflite"),
        &pre,
        &TfliteOptions::default(),
    )
    .expect_err("unwritable");
    assert!(
        err.to_string().contains("/nonexistent/dir/m.tflite"),
        "{err}"
    );
}

#[test]
fn graph_evaluator_matches_the_model_and_sees_every_tensor() {
    // The graph both writers lower, run with burn ops, is the model itself.
    let pre = parity_fixture("tv_v2_tiny", "tv_v2_tiny.pth");
    let (input, shape) = photo_batch(&pre.preprocess);
    let device = Device::flex();
    let model = pre.model.clone().fold_batchnorm();
    let graph = Graph::from_model(&model, [shape[2], shape[3]]).expect("graph");
    let x = Tensor::<4>::from_data(TensorData::new(input.clone(), shape), &device);
    let mut seen = vec![false; graph.tensors.len()];
    let logits = effnet_export::Evaluator::new(&graph, &device)
        .run(x, |t, _| seen[t] = true)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32");
    let diff = max_abs_diff(&logits, &effnet_logits(&pre, &input, shape));
    assert!(diff < 1e-5, "graph vs model: {diff:e}");
    assert!(seen.iter().all(|&s| s), "every tensor observed");
}
