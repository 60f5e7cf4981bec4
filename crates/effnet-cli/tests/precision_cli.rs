//! `--precision` on the command line (infer, eval, bench, train) and `effnet warmup`.

use std::process::Command;

mod support;
use support::{assert_clean_error, effnet, root, text};

const TINY: &str = "crates/effnet-train/tests/data/effnetv2_tiny.toml";

#[test]
fn infer_in_bf16_gives_the_same_top1_on_burn() {
    for precision in ["bf16", "f16"] {
        let out = effnet(&[
            "infer",
            "--precision",
            precision,
            "tests/data/photos/chelsea.png",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(
            s.starts_with("tests/data/photos/chelsea.png: tiger cat "),
            "{s}"
        );
    }
}

#[test]
fn eval_in_bf16_runs_and_reports_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    for (class, photo) in [("a", "chelsea.png"), ("b", "coffee.png")] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        std::fs::copy(
            root().join("tests/data/photos").join(photo),
            dir.path().join(class).join(photo),
        )
        .unwrap();
    }
    let out = effnet(&[
        "eval",
        "--data",
        dir.path().to_str().unwrap(),
        "--positional-labels",
        "--precision",
        "bf16",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let json = s.split("--result\n").nth(1).expect("a --result block");
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("JSON");
    assert!(v["top1"].is_number(), "{v}");
}

#[test]
fn bench_reports_its_precision_for_inference_and_training() {
    for extra in [&[][..], &["--train"][..]] {
        let mut args = vec![
            "bench",
            "-m",
            TINY,
            "-b",
            "2",
            "--size",
            "32",
            "--warmup",
            "1",
            "--iters",
            "1",
            "--json",
            "--precision",
            "f16",
        ];
        args.extend(extra);
        let out = effnet(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
        assert_eq!(v["precision"], "f16", "{v}");
        assert_eq!(v["engine"], "burn", "{v}");
    }
}

#[test]
fn unknown_precision_is_one_clear_error_everywhere() {
    let photo = "tests/data/photos/coffee.png";
    for args in [
        &["infer", "--precision", "f8", photo][..],
        &["eval", "--data", "tests/data/photos", "--precision", "f8"][..],
        &["bench", "-m", TINY, "--size", "32", "--precision", "f8"][..],
        &[
            "train",
            "--data",
            "nowhere",
            "--config",
            "configs/train/tiny_cpu.toml",
            "--precision",
            "f8",
        ][..],
        &["warmup", "-m", TINY, "--precision", "f8"][..],
    ] {
        assert_clean_error(
            &effnet(args),
            "--precision: unknown precision 'f8' (expected one of: f32, bf16, f16)",
        );
    }
    assert_clean_error(
        &effnet(&["infer", "--engine", "native", "--precision", "bf16", photo]),
        "the native engine computes in f32 only",
    );
}

#[test]
fn warmup_runs_every_shape_of_a_recipe_and_names_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args([
            "warmup",
            "--config",
            "configs/train/tiny_cpu.toml",
            "--precision",
            "bf16",
        ])
        .args(["--set", &format!("model.arch={TINY:?}"), "--classes", "10"])
        .env("EFFNET_CACHE_DIR", cache.path())
        .current_dir(root())
        .output()
        .expect("run effnet");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    // tiny_cpu.toml: two progressive stages (24 and 32 px), eval at 32.
    for line in [
        "warmup train",
        " b32 r24 bf16",
        " b32 r32 bf16",
        "warmup eval",
        "warmup infer",
    ] {
        assert!(s.contains(line), "{line:?} missing: {s}");
    }
    assert!(
        s.contains(&format!("cache: {}", cache.path().display())),
        "{s}"
    );
}
