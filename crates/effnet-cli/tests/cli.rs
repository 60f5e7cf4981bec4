//! The `effnet` binary as a user runs it: real predictions, output formats, and one-line errors
//! with a non-zero exit for every kind of bad input.

use std::path::Path;
use std::process::Command;

mod support;
use support::{assert_clean_error, effnet, root, text};

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
    // timm inference.py's columns with --results-separate-col: index, label, prob.
    assert_eq!(
        lines[0],
        "filename,index_0,index_1,index_2,label_0,label_1,label_2,prob_0,prob_1,prob_2"
    );
    assert_eq!(lines.len(), 5, "header + 4 photos: {s}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("coffee.png,967,") && l.contains(",espresso,")),
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
    // timm's `json`: orient=index, one object per file with index/label/prob lists.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let rec = &v["tests/data/photos/coffee.png"];
    assert_eq!(rec["label"][0], "espresso");
    assert_eq!(rec["index"][0], 967);
    assert_eq!(rec["prob"].as_array().unwrap().len(), 2);
    assert!(rec["prob"][0].as_f64().unwrap() > 0.9);
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
        "crop-pct must be in (0, 1]",
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
    let src = support::root().join("crates/effnet-train/tests/data");
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
fn output_format_follows_the_extension_of_o() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out.csv");
    let out = effnet(&[
        "infer",
        "tests/data/photos/coffee.png",
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = std::fs::read_to_string(&csv).unwrap();
    assert!(s.starts_with("filename,index_0,"), "{s}");
    // .jsonl: timm's json-records, one object per line.
    let jsonl = dir.path().join("out.jsonl");
    let out = effnet(&[
        "infer",
        "tests/data/photos",
        "--topk",
        "1",
        "-o",
        jsonl.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(s.lines().count(), 4, "{s}");
    for line in s.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            rec["filename"]
                .as_str()
                .unwrap()
                .starts_with("tests/data/photos/")
        );
        assert_eq!(rec["label"].as_array().unwrap().len(), 1);
    }
    // --format (or timm's --results-format) wins over the extension.
    let txt = dir.path().join("out.csv");
    let out = effnet(&[
        "infer",
        "tests/data/photos/coffee.png",
        "--results-format",
        "json-split",
        "-o",
        txt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&txt).unwrap()).unwrap();
    assert_eq!(
        v["columns"],
        serde_json::json!(["filename", "index", "label", "prob"])
    );
    assert_eq!(v["data"][0][2][0], "espresso");
}

#[test]
fn timm_flag_names_work_and_old_ones_stay() {
    for args in [
        &[
            "-m",
            "efficientnet-lite0",
            "-b",
            "2",
            "--img-size",
            "224",
            "-j",
            "1",
        ][..],
        &[
            "--model",
            "tf_efficientnet_lite0",
            "--batch",
            "2",
            "--size",
            "224",
        ][..],
        &["--checkpoint", "bundled", "--batch-size", "1"][..],
    ] {
        let mut all = vec!["infer", "--topk", "1"];
        all.extend_from_slice(args);
        all.push("tests/data/photos/coffee.png");
        let out = effnet(&all);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("espresso"), "{args:?}");
    }
    assert_clean_error(
        &effnet(&[
            "infer",
            "-m",
            "efficientnetv2_s",
            "tests/data/photos/coffee.png",
        ]),
        "only tf_efficientnet_lite0 weights are bundled",
    );
}

#[test]
fn bench_prints_timm_keys_param_count_and_uses_the_model_eval_size() {
    let out = effnet(&[
        "bench",
        "-m",
        "efficientnetv2_b1",
        "--iters",
        "1",
        "--warmup",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["model"], "efficientnetv2_b1");
    assert_eq!(v["infer_img_size"], 240, "V2-B1's eval size: {v}");
    assert_eq!(v["infer_batch_size"], 1);
    assert_eq!(v["param_count"], 8.14, "millions, as timm: {v}");
    assert!(v["infer_samples_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["infer_step_time"].as_f64().unwrap() > 0.0);
    let out = effnet(&[
        "bench",
        "-m",
        "efficientnet_lite0",
        "-b",
        "2",
        "--img-size",
        "64",
        "--iters",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("batch_size 2 img_size 64 param_count 4.65M"),
        "{s}"
    );
}

use effnet_testutil::hub_server;

#[test]
fn hf_hub_weights_import_and_infer_through_the_standard_cache() {
    let home = tempfile::tempdir().unwrap();
    let server = hub_server::HubServer::start(hub_server::tiny_repo(&root(), "tiny"));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_effnet"))
            .args(args)
            .current_dir(root())
            .env("HF_ENDPOINT", &server.endpoint)
            .env("HF_HOME", home.path())
            // 127.0.0.1 must not go through a proxy the environment may name.
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("all_proxy")
            .output()
            .expect("run effnet")
    };
    let bpk = home.path().join("tiny.bpk");
    let toml = "tests/data/parity/timm_tf_v2_tiny.toml";
    let out = run(&[
        "import",
        "hf-hub:timm/tiny",
        "-m",
        toml,
        "-o",
        bpk.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let snapshot = home
        .path()
        .join("hub/models--timm--tiny/snapshots")
        .join(hub_server::COMMIT);
    assert!(snapshot.join("model.safetensors").exists());
    // The .bpk keeps the repository's class names and its 64 px evaluation size.
    let out = effnet(&[
        "infer",
        "--weights",
        bpk.to_str().unwrap(),
        "tests/data/photos/coffee.png",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("texture_"),
        "{}",
        text(&out.stdout)
    );
    // The same spec wherever weights are taken: infer reads it from the cache.
    let out = run(&[
        "infer",
        "--weights",
        "hf-hub:timm/tiny",
        "-m",
        toml,
        "--topk",
        "2",
        "tests/data/photos/coffee.png",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("texture_").count(), 2);
    assert_clean_error(
        &run(&["import", "hf-hub:timm/nothing-here", "-m", toml]),
        "hf-hub:timm/nothing-here: no weights in the repository",
    );
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
    // `--format json`: one object keyed by file name, with index/label/prob lists.
    let (n, b) = (&native[photo], &burn[photo]);
    assert_eq!(n["index"].as_array().map(Vec::len), Some(5), "{native}");
    assert_eq!(n["index"], b["index"], "{native} vs {burn}");
    for i in 0..5 {
        let (a, c) = (
            n["prob"][i].as_f64().unwrap(),
            b["prob"][i].as_f64().unwrap(),
        );
        assert!((a - c).abs() < 1e-4, "{native} vs {burn}");
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
