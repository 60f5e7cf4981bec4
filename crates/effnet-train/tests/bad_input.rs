//! Bad input fails early with a message that names the problem, and failures during training
//! leave the last good checkpoint usable.

use effnet_testutil as common;

use effnet_train::checkpoint;
use effnet_train::{TestHooks, TrainConfig, train, train_with_hooks};

fn recipe(extra: &[&str]) -> anyhow::Result<TrainConfig> {
    TrainConfig::load(&common::tiny_recipe(), &common::tiny_overrides(extra))
}

fn err_text(e: anyhow::Error) -> String {
    format!("{e:#}")
}

#[test]
fn unknown_keys_and_impossible_values_are_named() {
    let e = err_text(recipe(&["train.epochz=3"]).unwrap_err());
    assert!(e.contains("epochz"), "{e}");
    let e = err_text(recipe(&["optimizer.lr=3"]).unwrap_err());
    assert!(e.contains("optimizer"), "{e}");
    let e = err_text(recipe(&["train.batch_size=0"]).unwrap_err());
    assert!(e.contains("train.batch_size"), "{e}");
    let e = err_text(recipe(&["optim.lr_base=-1"]).unwrap_err());
    assert!(e.contains("optim.lr_base"), "{e}");
    let e = err_text(recipe(&["progressive.size=[64, 32]"]).unwrap_err());
    assert!(e.contains("progressive.size"), "{e}");
    let e = err_text(recipe(&["optim.name=\"lbfgs\""]).unwrap_err());
    assert!(e.contains("lbfgs"), "{e}");
    let e = err_text(recipe(&["data.randaugment=\"magic\""]).unwrap_err());
    assert!(e.contains("data.randaugment"), "{e}");
    let e = err_text(recipe(&["device=\"tpu\""]).unwrap_err());
    assert!(e.contains("tpu"), "{e}");
    let e = err_text(recipe(&["train.epochs"]).unwrap_err());
    assert!(e.contains("key=value"), "{e}");
    // Every shipped recipe parses and validates.
    let dir = common::tiny_recipe().parent().unwrap().to_path_buf();
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            TrainConfig::load(&p, &["device=\"cpu\"".into()])
                .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
        }
    }
}

#[test]
fn missing_data_dir_and_empty_class_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = recipe(&[
        "train.epochs=1",
        "progressive.stages=1",
        "sched.warmup_epochs=0",
    ])
    .unwrap();
    let e = err_text(
        train(
            &cfg,
            &tmp.path().join("nope"),
            &tmp.path().join("run"),
            false,
        )
        .unwrap_err(),
    );
    assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
    assert!(
        !tmp.path().join("run").exists(),
        "a failed start leaves no run folder"
    );

    let data = tmp.path().join("digits");
    common::make_digits(&data, 16, 3, 1);
    std::fs::create_dir_all(data.join("train/empty_class")).unwrap();
    let e = err_text(train(&cfg, &data, &tmp.path().join("run2"), false).unwrap_err());
    assert!(
        e.contains("empty_class") && e.contains("without images"),
        "{e}"
    );

    std::fs::remove_dir(data.join("train/empty_class")).unwrap();
    std::fs::remove_dir_all(data.join("val")).unwrap();
    let e = err_text(train(&cfg, &data, &tmp.path().join("run3"), false).unwrap_err());
    assert!(e.contains("val"), "{e}");
}

#[test]
fn nan_loss_stops_with_message_and_keeps_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 8, 2);
    let run = tmp.path().join("run");
    let cfg = recipe(&[
        "train.batch_size=8",
        "train.epochs=2",
        "checkpoint.every_steps=2",
    ])
    .unwrap();
    let nan = TestHooks::parse("nan_at_step=5").unwrap();
    let e = err_text(train_with_hooks(&cfg, &data, &run, false, nan).unwrap_err());
    assert!(
        e.contains("loss is NaN") && e.contains("global step 5"),
        "{e}"
    );
    assert!(e.contains("ckpt-00000004"), "{e}");
    let dir = checkpoint::latest(&run).unwrap();
    assert!(dir.ends_with("ckpt-00000004"), "{}", dir.display());
    // The checkpoint loads and resuming without the fault finishes the run.
    let ok = recipe(&[
        "train.batch_size=8",
        "train.epochs=2",
        "checkpoint.every_steps=2",
    ])
    .unwrap();
    let out = train(&ok, &data, &run, true).expect("resume after NaN");
    assert_eq!(out.history.len(), 2);
    assert!(out.history.iter().all(|r| r.train_loss.is_finite()));
}

#[test]
fn failed_checkpoint_write_keeps_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 8, 2);
    let run = tmp.path().join("run");
    let cfg = recipe(&["train.batch_size=8", "train.epochs=2"]).unwrap();
    let stop_after = |n: u64| TestHooks {
        stop_after_steps: Some(n),
        ..Default::default()
    };
    let out = train_with_hooks(&cfg, &data, &run, false, stop_after(3)).unwrap();
    assert!(out.interrupted);
    let before = std::fs::read(run.join("latest.json")).unwrap();
    // A directory where the temp file of latest.json must go: the write fails like a full disk.
    std::fs::create_dir_all(run.join("latest.json.tmp/blocker")).unwrap();
    let e = err_text(train_with_hooks(&cfg, &data, &run, true, stop_after(6)).unwrap_err());
    assert!(e.contains("latest.json"), "{e}");
    assert_eq!(std::fs::read(run.join("latest.json")).unwrap(), before);
    let dir = checkpoint::latest(&run).unwrap();
    assert!(dir.ends_with("ckpt-00000003"), "{}", dir.display());
    // Once the disk is fine again, resuming continues from step 3.
    std::fs::remove_dir_all(run.join("latest.json.tmp")).unwrap();
    let out = train_with_hooks(&cfg, &data, &run, true, stop_after(5)).unwrap();
    assert!(out.interrupted);
    assert_eq!(out.global_step, 5);
}
