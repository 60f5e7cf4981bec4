//! `effnet train` and `effnet eval` as a user runs them, in a pipe: timm's flag names, timm-style
//! log lines, resume, class names carried by checkpoints, eval mapping folders to those names,
//! eval of PyTorch weights, result formats, and signals that checkpoint and exit 128 + N.

use effnet_testutil as common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{effnet, effnet_env, root, text};

fn ok(out: &Output) -> String {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    all
}

#[test]
fn train_in_a_pipe_logs_resumes_and_eval_maps_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 12, 4);
    let run = train_two_epochs_stopping_early(&data, &tmp.path().join("runs"));
    resume_finishes_the_run(&data, &run);
    checkpoints_carry_class_names(&data, &run);
    let sub = copy_val_classes(&data, &tmp.path().join("sub"), &["5", "7"]);
    eval_agrees_with_infer_on_named_folders(&run.join("best.bpk"), &sub, tmp.path());
    eval_rejects_unknown_folder(&run.join("best.bpk"), &sub, &data);
}

/// Trains the tiny recipe in a pipe, stopped at global step 12 (epoch 2, step 2); checks the
/// timm-style log lines and the saved config; returns the run folder.
fn train_two_epochs_stopping_early(data: &Path, out_dir: &Path) -> PathBuf {
    let (d, o) = (data.to_str().unwrap(), out_dir.to_str().unwrap());
    // Run from the repository root with the recipe's own relative model path.
    let first = [
        "train",
        "-c",
        "configs/train/tiny_cpu.toml",
        "--data",
        d,
        "--output",
        o,
        "--experiment",
        "first",
        "--epochs",
        "2",
        "-b",
        "12",
        "--lr",
        "0.002",
        "--seed",
        "3",
        "-j",
        "1",
        "--img-size",
        "32",
        "--log-interval",
        "2",
        "--set",
        "progressive.stages=2",
    ];
    let stop_at_12 = [("EFFNET_TEST_HOOKS", "stop_after_steps=12")];
    let log = ok(&effnet_env(&first, &stop_at_12));
    let run = out_dir.join("first");
    // timm-style lines in a pipe, one epoch numbering (1-based) everywhere.
    assert!(log.contains("Train: 1/2 [ 2/10 ( 20%)]  Loss: "), "{log}");
    assert!(
        log.contains("LR: ") && log.contains("img/s  Data: "),
        "{log}"
    );
    assert!(log.contains("Eval (raw): epoch 1 ["), "{log}");
    assert!(log.contains("epoch 1/2  size 32"), "{log}");
    assert!(
        log.contains("stopped at epoch 2 step 2 (global step 12)"),
        "{log}"
    );
    let saved = effnet_train::TrainConfig::load(&run.join("config.toml"), &[]).unwrap();
    assert_eq!(saved.optim.lr, Some(0.002));
    assert_eq!(saved.progressive.size, [32, 32]);
    assert_eq!(saved.data.eval_size, Some(32));
    assert_eq!(
        (saved.data.workers, saved.seed, saved.train.batch_size),
        (1, 3, 12)
    );
    // Starting the same experiment again is refused.
    let again = effnet(&first);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already holds a run"),
        "{}",
        text(&again.stderr)
    );
    run
}

/// `--resume` continues where the stopped run left off and writes one summary row per epoch.
fn resume_finishes_the_run(data: &Path, run: &Path) {
    let log = ok(&effnet(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--resume",
        run.to_str().unwrap(),
    ]));
    assert!(
        log.contains("resuming") && log.contains("at epoch 2 step 2"),
        "{log}"
    );
    assert!(log.contains("done: best top-1"), "{log}");
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let epochs: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["1", "2"], "{csv}");
}

/// Checkpoint weights carry the class names: infer prints digits, not class_3.
fn checkpoints_carry_class_names(data: &Path, run: &Path) {
    let ckpt = first_entry(&run.join("checkpoints"));
    let img = first_entry(&data.join("val/3"));
    let pred = ok(&effnet(&[
        "infer",
        "--weights",
        ckpt.join("ema.bpk").to_str().unwrap(),
        img.to_str().unwrap(),
        "--topk",
        "3",
    ]));
    assert!(!pred.contains("class_"), "{pred}");
}

fn first_entry(dir: &Path) -> PathBuf {
    dir.read_dir().unwrap().next().unwrap().unwrap().path()
}

/// Copies the validation images of `classes` into `dest/<class>/`.
fn copy_val_classes(data: &Path, dest: &Path, classes: &[&str]) -> PathBuf {
    for c in classes {
        std::fs::create_dir_all(dest.join(c)).unwrap();
        for f in data.join("val").join(c).read_dir().unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dest.join(c).join(f.file_name().unwrap())).unwrap();
        }
    }
    dest.to_path_buf()
}

/// With only folders 5/ and 7/, eval's top-1 is what infer's predictions on those files say
/// (folder names mapped to the stored class names), not a positional relabelling.
fn eval_agrees_with_infer_on_named_folders(best: &Path, sub: &Path, tmp: &Path) {
    let expected = infer_accuracy_by_folder(best, sub);
    let res_file = tmp.join("res.csv");
    let e = ok(&effnet(&[
        "eval",
        "--checkpoint",
        best.to_str().unwrap(),
        "--data",
        sub.to_str().unwrap(),
        "-b",
        "4",
        "--results-file",
        res_file.to_str().unwrap(),
        "--results-format",
        "csv",
    ]));
    let res = std::fs::read_to_string(&res_file).unwrap();
    let mut lines = res.lines();
    assert_eq!(
        lines.next().unwrap(),
        "model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation,images,\
         unreadable_files"
    );
    let row = lines.next().unwrap();
    let top1: f64 = row.split(',').nth(1).unwrap().parse().unwrap();
    assert!(
        (top1 - expected).abs() < 1e-3,
        "eval {top1} vs infer {expected}: {e}"
    );
}

/// Percentage of the images under `sub` whose top-1 label from `effnet infer` is their folder.
fn infer_accuracy_by_folder(best: &Path, sub: &Path) -> f64 {
    let preds = ok(&effnet(&[
        "infer",
        "--weights",
        best.to_str().unwrap(),
        sub.to_str().unwrap(),
        "--format",
        "csv",
        "--topk",
        "1",
    ]));
    let header: Vec<&str> = preds.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let (file_col, label_col) = (col("filename"), col("label_0"));
    let rows: Vec<(String, String)> = preds
        .lines()
        .filter(|l| l.contains(".png,"))
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            (v[file_col].to_string(), v[label_col].to_string())
        })
        .collect();
    assert_eq!(rows.len(), 8, "{preds}");
    let right = rows
        .iter()
        .filter(|(f, label)| Path::new(f).parent().unwrap().ends_with(label))
        .count();
    100.0 * right as f64 / rows.len() as f64
}

/// An unknown folder name is an error naming it and the opt-out flag.
fn eval_rejects_unknown_folder(best: &Path, sub: &Path, data: &Path) {
    std::fs::create_dir_all(sub.join("eleven")).unwrap();
    std::fs::copy(first_entry(&data.join("val/3")), sub.join("eleven/a.png")).unwrap();
    let bad = effnet(&[
        "eval",
        "--weights",
        best.to_str().unwrap(),
        "--data",
        sub.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    let err = text(&bad.stderr);
    assert!(
        err.contains("folder 'eleven'") && err.contains("--positional-labels"),
        "{err}"
    );
}

#[test]
fn eval_takes_pytorch_weights_with_model_and_json_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 1, 2);
    let d = data.to_str().unwrap();
    let w = "tests/data/parity/tv_v2_tiny.pth";
    let m = "tests/data/parity/tv_v2_tiny.toml";
    let no_names = effnet(&["eval", "--weights", w, "-m", m, "--data", d]);
    assert!(!no_names.status.success());
    assert!(
        text(&no_names.stderr).contains("carry no class names"),
        "{}",
        text(&no_names.stderr)
    );
    let res = tmp.path().join("r.json");
    ok(&effnet(&[
        "eval",
        "--weights",
        w,
        "-m",
        m,
        "--data",
        d,
        "--positional-labels",
        "--img-size",
        "32",
        "--results-file",
        res.to_str().unwrap(),
    ]));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&res).unwrap()).unwrap();
    assert_eq!(v["model"], "tv_v2_tiny");
    assert_eq!(v["img_size"], 32);
    let no_model = effnet(&["eval", "--weights", w, "--data", d]);
    assert!(
        text(&no_model.stderr).contains("need an architecture"),
        "{}",
        text(&no_model.stderr)
    );
}

/// Optimiser steps logged so far in a run's `log.jsonl`.
fn lines_in(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| {
        s.lines()
            .filter(|l| l.contains("\"kind\":\"step\""))
            .count()
    })
}

#[test]
fn sigint_sigterm_sighup_checkpoint_and_exit_128_plus_n() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 20, 2);
    for (sig, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let run = tmp.path().join(format!("runs/{sig}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_effnet"))
            .args([
                "train",
                "-c",
                "configs/train/tiny_cpu.toml",
                "--data",
                data.to_str().unwrap(),
                "--output",
                tmp.path().join("runs").to_str().unwrap(),
                "--experiment",
                sig,
                "--epochs",
                "50",
                "-b",
                "8",
            ])
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while lines_in(&run.join("log.jsonl")) < 2 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{sig}: training never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = Command::new("kill")
            .args([format!("-{sig}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{sig}");
        let latest = std::fs::read_to_string(run.join("latest.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&latest).unwrap();
        let step = v["global_step"].as_u64().unwrap();
        assert!(step >= 2, "SIG{sig}: checkpoint at step {step}");
        let last_logged = std::fs::read_to_string(run.join("log.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["step"].as_u64())
            .max();
        assert_eq!(
            last_logged,
            Some(step),
            "SIG{sig}: checkpoint is the last step done"
        );
    }
}
