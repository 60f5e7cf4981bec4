//! `effnet export --precision int8` as a user runs it: an int8 .bpk calibrated on the bundled
//! photos that `infer` and `bench --weights` run on the int8 executor, and one-line errors for
//! missing or empty calibration folders.

mod support;
use support::{assert_clean_error, effnet, text};

#[test]
fn int8_bpk_classifies_the_photos_like_f32_and_benches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lite0_int8.bpk");
    let p = path.to_str().unwrap();
    let args = ["export", "--format", "bpk", "--precision", "int8"];
    let out = effnet(&[&args[..], &["--calib", "tests/data/photos", "-o", p]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("calibrated on 4 images"));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 6_000_000, "{size} bytes");
    let top1 = |out: &std::process::Output| -> Vec<String> {
        text(&out.stdout)
            .lines()
            .map(|l| l.split(',').next().unwrap_or("").to_string())
            .collect()
    };
    let f32_out = effnet(&["infer", "tests/data/photos"]);
    let int8_out = effnet(&["infer", "tests/data/photos", "--weights", p]);
    assert!(int8_out.status.success(), "{}", text(&int8_out.stderr));
    // "file: label prob%" of every photo: the same top-1 labels as the f32 weights.
    let labels = |v: Vec<String>| -> Vec<String> {
        v.iter()
            .map(|l| l.rsplit_once(' ').map_or(l.clone(), |(a, _)| a.to_string()))
            .collect()
    };
    assert_eq!(labels(top1(&int8_out)), labels(top1(&f32_out)));
    let out = effnet(&[
        "bench",
        "--weights",
        p,
        "--iters",
        "1",
        "--warmup",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"engine\":\"native-int8\""));
}

#[test]
fn int8_export_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("q.bpk");
    let o = o.to_str().unwrap();
    let int8 = ["export", "--format", "bpk", "--precision", "int8", "-o", o];
    assert_clean_error(&effnet(&int8), "--calib");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = empty.to_str().unwrap();
    assert_clean_error(&effnet(&[&int8[..], &["--calib", e]].concat()), "no images");
    let bad = [
        &int8[..],
        &["--calib", "tests/data/photos", "--calib-method", "entropy"],
    ];
    assert_clean_error(&effnet(&bad.concat()), "entropy");
    assert!(!std::path::Path::new(o).exists());
}
