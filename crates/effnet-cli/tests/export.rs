//! `effnet export` as a user runs it: ONNX and f16 .bpk files out, the f16 file classifying the
//! photos through `effnet infer --weights`, and one-line errors for bad arguments.

mod support;
use support::{assert_clean_error, effnet, root, text};

#[test]
fn export_onnx_writes_a_protobuf_model_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lite0.onnx");
    let p = path.to_str().unwrap();
    let out = effnet(&["export", "--format", "onnx", "--dynamic-batch", "-o", p]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("efficientnet_lite0"),
        "{}",
        text(&out.stdout)
    );
    let bytes = std::fs::read(&path).unwrap();
    // 4.65 M parameters in f32 plus the graph.
    assert!(
        bytes.len() > 18_000_000 && bytes.len() < 20_000_000,
        "{} bytes",
        bytes.len()
    );
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("preprocess.mean") && has("tiger cat") && has("GlobalAveragePool"));
    assert!(!dir.path().join("lite0.onnx.tmp").exists());
}

#[test]
fn export_tflite_writes_a_flatbuffer_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lite0.tflite");
    let p = path.to_str().unwrap();
    let out = effnet(&["export", "--format", "tflite", "-o", p]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[4..8], b"TFL3");
    assert!(
        bytes.len() > 18_000_000 && bytes.len() < 20_000_000,
        "{} bytes",
        bytes.len()
    );
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("preprocess.mean") && has("tiger cat") && has("NHWC"));
    assert!(!dir.path().join("lite0.tflite.tmp").exists());
}

#[test]
fn int8_exports_are_calibrated_on_a_folder_and_a_quarter_the_size() {
    let dir = tempfile::tempdir().unwrap();
    for (format, file, f32_bytes) in [
        ("tflite", "q.tflite", 18_700_000),
        ("onnx", "q.onnx", 18_600_000),
    ] {
        let path = dir.path().join(file);
        let p = path.to_str().unwrap();
        let out = effnet(&[
            "export",
            "--format",
            format,
            "--precision",
            "int8",
            "--calib",
            "tests/data/photos",
            "--input-type",
            "int8",
            "-o",
            p,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("calibrated on 4 images of tests/data/photos"),
            "{}",
            text(&out.stderr)
        );
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size * 100 < f32_bytes * 30, "{format}: {size} bytes");
    }
}

#[test]
fn f16_bpk_is_half_size_and_classifies_like_the_bundled_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lite0_f16.bpk");
    let p = path.to_str().unwrap();
    let out = effnet(&["export", "--format", "bpk", "--precision", "f16", "-o", p]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let size = std::fs::metadata(&path).unwrap().len();
    let full = std::fs::metadata(root().join("weights/efficientnet_lite0.bpk"))
        .unwrap()
        .len();
    assert!(size * 100 < full * 55, "f16 {size} vs f32 {full} bytes");
    let out = effnet(&["infer", "tests/data/photos/chelsea.png", "--weights", p]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.starts_with("tests/data/photos/chelsea.png: tiger cat 39."),
        "{s}"
    );
}

#[test]
fn export_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("x.onnx");
    let o = o.to_str().unwrap();
    assert_clean_error(
        &effnet(&["export", "--weights", "/nonexistent/w.bpk", "-o", o]),
        "/nonexistent/w.bpk",
    );
    assert_clean_error(
        &effnet(&[
            "export",
            "--weights",
            "tests/data/parity/tv_v2_tiny.pth",
            "-o",
            o,
        ]),
        "need an architecture",
    );
    assert_clean_error(
        &effnet(&["export", "--precision", "f16", "-o", o]),
        "--precision",
    );
    assert_clean_error(&effnet(&["export", "--opset", "11", "-o", o]), "opset 11");
    assert_clean_error(
        &effnet(&["export", "--weights", "README.md", "-o", o]),
        "unknown weights format",
    );
    assert_clean_error(
        &effnet(&["export", "--model", "efficientnetv2_s", "-o", o]),
        "only tf_efficientnet_lite0 weights are bundled",
    );
    assert_clean_error(
        &effnet(&["export", "--format", "bpk", "--batch", "4", "-o", o]),
        "--format onnx|tflite only",
    );
    assert_clean_error(
        &effnet(&[
            "export",
            "--format",
            "tflite",
            "--precision",
            "int8",
            "-o",
            o,
        ]),
        "--calib DIR",
    );
    assert_clean_error(
        &effnet(&[
            "export",
            "--format",
            "tflite",
            "--precision",
            "f16",
            "-o",
            o,
        ]),
        "--precision f16 applies to --format bpk",
    );
    assert_clean_error(
        &effnet(&["export", "--calib", "tests/data/photos", "-o", o]),
        "--calib applies to --precision int8",
    );
    assert_clean_error(
        &effnet(&["export", "--format", "tflite", "--opset", "18", "-o", o]),
        "--opset applies to --format onnx",
    );
    assert_clean_error(
        &effnet(&[
            "export",
            "--format",
            "onnx",
            "--precision",
            "int8",
            "--calib",
            "/nonexistent/calib",
            "-o",
            o,
        ]),
        "/nonexistent/calib",
    );
    assert_clean_error(
        &effnet(&["export", "-o", "/nonexistent/dir/x.onnx"]),
        "/nonexistent/dir/x.onnx",
    );
}

#[test]
fn export_from_pytorch_weights_with_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tv.onnx");
    let out = effnet(&[
        "export",
        "--weights",
        "tests/data/parity/tv_v2_tiny.pth",
        "--model",
        "tests/data/parity/tv_v2_tiny.toml",
        "--batch",
        "2",
        "--size",
        "64",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000);
}
