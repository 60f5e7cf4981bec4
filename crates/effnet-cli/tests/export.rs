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
        "--format onnx only",
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
