//! The `effnet` binary as a user runs it: real predictions, output formats, and one-line errors
//! with a non-zero exit for every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn effnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run effnet")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stderr is short, each line an `error:` line, and nothing looks like a panic or backtrace.
fn assert_clean_error(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "must fail: {err}");
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    for line in err.lines() {
        assert!(
            line.starts_with("error: "),
            "unexpected stderr line: {line}"
        );
    }
}

#[test]
fn infer_prints_reference_top5_for_a_photo() {
    let out = effnet(&["infer", "tests/data/photos/chelsea.png"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.starts_with("tests/data/photos/chelsea.png: tiger cat 39."),
        "{s}"
    );
    assert_eq!(s.matches('%').count(), 5, "top-5 by default: {s}");
}

#[test]
fn csv_and_json_follow_timm_shape() {
    let out = effnet(&[
        "infer",
        "tests/data/photos",
        "--format",
        "csv",
        "--topk",
        "3",
    ]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0],
        "filename,label_0,label_1,label_2,prob_0,prob_1,prob_2,index_0,index_1,index_2"
    );
    assert_eq!(lines.len(), 5, "header + 4 photos: {s}");
    assert!(
        lines.iter().any(|l| l.contains("coffee.png,espresso,")),
        "{s}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.json");
    let out = effnet(&[
        "infer",
        "tests/data/photos/coffee.png",
        "--format",
        "json",
        "--topk",
        "2",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v[0]["label_0"], "espresso");
    assert_eq!(v[0]["index_0"], 967);
    assert!(v[0]["prob_0"].as_f64().unwrap() > 0.9);
}

#[test]
fn folder_with_bad_files_classifies_good_ones_and_lists_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/data/photos/coffee.png"),
        dir.path().join("a.png"),
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
    std::fs::write(dir.path().join("junk.jpg"), b"this is not a jpeg at all").unwrap();
    let png = std::fs::read(root().join("tests/data/photos/chelsea.png")).unwrap();
    std::fs::write(dir.path().join("truncated.png"), &png[..png.len() / 3]).unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        b"ignored: not an image extension",
    )
    .unwrap();
    let out = effnet(&["infer", dir.path().to_str().unwrap()]);
    let s = text(&out.stdout);
    assert!(s.contains("a.png: espresso"), "{s}");
    assert_eq!(s.lines().count(), 1, "{s}");
    assert_clean_error(&out, "empty.jpg: empty file");
    let err = text(&out.stderr);
    assert!(err.contains("junk.jpg"), "{err}");
    assert!(err.contains("truncated.png"), "{err}");
    assert!(err.contains("3 of 4 inputs failed"), "{err}");
    assert!(!err.contains("notes.txt"), "{err}");
}

#[test]
fn bad_inputs_are_one_line_errors() {
    assert_clean_error(
        &effnet(&["infer", "no/such/photo.jpg"]),
        "no/such/photo.jpg: no such file",
    );
    let dir = tempfile::tempdir().unwrap();
    assert_clean_error(
        &effnet(&["infer", dir.path().to_str().unwrap()]),
        "directory contains no images",
    );
    assert_clean_error(
        &effnet(&["infer", "--device", "tpu", "tests/data/photos/coffee.png"]),
        "unknown device 'tpu'",
    );
    // Weights of another variant: a .bpk made from the torchvision tiny fixture, checked by --model.
    let bpk = dir.path().join("tiny.bpk");
    let out = effnet(&[
        "import",
        "tests/data/parity/tv_v2_tiny.pth",
        "--model",
        "tests/data/parity/tv_v2_tiny.toml",
        "-o",
        bpk.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_clean_error(
        &effnet(&[
            "infer",
            "--weights",
            bpk.to_str().unwrap(),
            "--model",
            "efficientnet_lite0",
            "tests/data/photos/coffee.png",
        ]),
        "weights are for model 'tv_v2_tiny', not 'efficientnet_lite0'",
    );
    // PyTorch weights whose shapes do not fit the named architecture.
    assert_clean_error(
        &effnet(&[
            "infer",
            "--weights",
            "tests/data/parity/tv_v2_tiny.pth",
            "--model",
            "efficientnetv2_s",
            "tests/data/photos/coffee.png",
        ]),
        "weights do not match model 'efficientnetv2_s'",
    );
    // A corrupt weights file.
    let junk = dir.path().join("junk.bpk");
    std::fs::write(&junk, b"garbage").unwrap();
    assert_clean_error(
        &effnet(&[
            "infer",
            "--weights",
            junk.to_str().unwrap(),
            "tests/data/photos/coffee.png",
        ]),
        "junk.bpk",
    );
    assert_clean_error(
        &effnet(&["infer", "--crop-pct", "1.5", "tests/data/photos/coffee.png"]),
        "--crop-pct",
    );
}

#[test]
fn imported_weights_run_with_their_stored_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("tiny.bpk");
    let out = effnet(&[
        "import",
        "tests/data/parity/timm_tf_v2_tiny.safetensors",
        "--model",
        "tests/data/parity/timm_tf_v2_tiny.toml",
        "-o",
        bpk.to_str().unwrap(),
        "--size",
        "64",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = effnet(&[
        "infer",
        "--weights",
        bpk.to_str().unwrap(),
        "--topk",
        "3",
        "tests/data/photos/coffee.png",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    // 10 random classes, so names are class_N; probabilities of the top-3 are descending.
    assert!(s.contains("class_"), "{s}");
    let probs: Vec<f32> = s
        .split(", ")
        .map(|p| {
            p.rsplit(' ')
                .next()
                .unwrap()
                .trim_end_matches(['%', '\n'])
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(probs.len(), 3);
    assert!(probs[0] >= probs[1] && probs[1] >= probs[2], "{s}");
}

/// A tiny real-image dataset (three texture classes, crops of the bundled Lite0 test photos would
/// be too alike): textures from crates/effnet-train/tests/data, 48×48 crops.
fn make_textures(root: &Path) {
    let src = root_dir().join("crates/effnet-train/tests/data");
    for (ci, name) in ["brick", "grass", "gravel"].iter().enumerate() {
        let img = image::open(src.join(format!("{name}.png")))
            .unwrap()
            .to_rgb8();
        let (w, h) = img.dimensions();
        for split in ["train", "val"] {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            // Train crops from the left half, val crops from the right half.
            let x0 = if split == "train" { 0 } else { w / 2 };
            for k in 0..12u32 {
                let x = x0 + (k * 37 + ci as u32 * 11) % (w / 2 - 48);
                let y = (k * 53) % (h - 48);
                let crop = image::imageops::crop_imm(&img, x, y, 48, 48).to_image();
                crop.save(dir.join(format!("{k}.png"))).unwrap();
            }
        }
    }
}

fn root_dir() -> PathBuf {
    root()
}

#[test]
fn train_then_eval_then_infer_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("textures");
    make_textures(&data);
    let runs = dir.path().join("runs");
    let out = effnet(&[
        "train",
        "--config",
        "configs/train/tiny_cpu.toml",
        "--data",
        data.to_str().unwrap(),
        "--output",
        runs.to_str().unwrap(),
        "--epochs",
        "2",
        "--experiment",
        "smoke",
        "--set",
        "data.eval_size=48",
        "--set",
        "progressive.size=[40,48]",
    ]);
    assert!(out.status.success(), "train failed: {}", text(&out.stderr));
    let run = runs.join("smoke");
    for f in ["summary.csv", "config.toml", "best.bpk"] {
        assert!(run.join(f).exists(), "{f} missing in {}", run.display());
    }
    let summary = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 3, "header + 2 epochs: {summary}");

    let best = run.join("best.bpk");
    let out = effnet(&[
        "eval",
        "--weights",
        best.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "eval failed: {}", text(&out.stderr));
    let s = text(&out.stdout);
    let json = s
        .split("--result\n")
        .nth(1)
        .expect("timm-style --result block");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["img_size"], 48, "{v}");
    let top1 = v["top1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&top1), "{v}");

    // The trained weights carry their class names: infer prints texture names, not indices.
    let val_img = data.join("val/grass/0.png");
    let out = effnet(&[
        "infer",
        "--weights",
        best.to_str().unwrap(),
        "--topk",
        "3",
        val_img.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for name in ["brick", "grass", "gravel"] {
        assert!(s.contains(name), "{s}");
    }
}

#[test]
fn native_and_burn_engines_print_the_same_classes() {
    let photo = "tests/data/photos/coffee.png";
    let json = |engine: &str| {
        let out = effnet(&["infer", photo, "--format", "json", "--engine", engine]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let (native, burn) = (json("native"), json("burn"));
    for i in 0..5 {
        let (k, p) = (format!("index_{i}"), format!("prob_{i}"));
        assert_eq!(native[0][&k], burn[0][&k], "{native} vs {burn}");
        let (a, b) = (
            native[0][&p].as_f64().unwrap(),
            burn[0][&p].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-4, "{native} vs {burn}");
    }
    let out = effnet(&[
        "bench",
        "--model",
        "efficientnet_lite0",
        "--size",
        "64",
        "--iters",
        "1",
        "--engine",
        "native",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"engine\":\"native\""));
}
