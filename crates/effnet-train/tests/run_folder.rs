//! The run folder: one process at a time (flock), no folder left by a failed start, resume
//! refused on a different class set before anything is written, and outputs rebuilt from the
//! checkpoint on resume.

use effnet_testutil as common;

use std::path::Path;

use effnet_train::run_folder::RunFolder;
use effnet_train::{TestHooks, TrainConfig, train, train_with_hooks};

fn recipe(extra: &[&str]) -> TrainConfig {
    TrainConfig::load(&common::tiny_recipe(), &common::tiny_overrides(extra)).unwrap()
}

fn err_text(e: anyhow::Error) -> String {
    format!("{e:#}")
}

#[test]
fn second_process_on_a_locked_run_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let held = RunFolder::create(&run).expect("first lock");
    let e = err_text(RunFolder::open(&run).unwrap_err());
    assert!(e.contains("in use by another effnet process"), "{e}");
    let data = tmp.path().join("digits");
    common::make_digits(&data, 16, 3, 1);
    // A whole training start into the held folder fails the same way, and leaves it alone.
    let cfg = recipe(&[
        "train.epochs=1",
        "sched.warmup_epochs=0",
        "progressive.stages=1",
    ]);
    let e = err_text(train(&cfg, &data, &run, false).unwrap_err());
    assert!(e.contains("in use"), "{e}");
    assert!(run.is_dir());
    drop(held);
    RunFolder::open(&run).expect("free again once the holder is gone");
}

#[test]
fn failed_start_leaves_no_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("runs/exp");
    let e = err_text(train(&recipe(&[]), &tmp.path().join("missing"), &run, false).unwrap_err());
    assert!(e.contains("does not exist"), "{e}");
    assert!(!run.exists() && !tmp.path().join("runs").exists());
    let data = tmp.path().join("digits");
    common::make_digits(&data, 16, 3, 1);
    let bad = recipe(&["model.init_weights=\"no/such/weights.bpk\""]);
    let e = err_text(train(&bad, &data, &run, false).unwrap_err());
    assert!(e.contains("weights.bpk"), "{e}");
    assert!(!run.exists());
}

fn classes_txt(run: &Path) -> String {
    std::fs::read_to_string(run.join("classes.txt")).unwrap()
}

#[test]
fn resume_with_other_classes_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 16, 4, 1);
    let run = tmp.path().join("run");
    let cfg = recipe(&["train.batch_size=8"]);
    let hooks = TestHooks::parse("stop_after_steps=2").unwrap();
    assert!(
        train_with_hooks(&cfg, &data, &run, false, hooks)
            .unwrap()
            .interrupted
    );
    let before = classes_txt(&run);
    let log_before = std::fs::read(run.join("log.jsonl")).unwrap();
    // An 11th class.
    let extra = data.join("train/x");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(
        data.join("train/1")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        extra.join("a.png"),
    )
    .unwrap();
    let e = err_text(train(&cfg, &data, &run, true).unwrap_err());
    assert!(
        e.contains("cannot resume") && e.contains("new [\"x\"]"),
        "{e}"
    );
    assert_eq!(classes_txt(&run), before);
    assert_eq!(std::fs::read(run.join("log.jsonl")).unwrap(), log_before);
    // A renamed class.
    std::fs::remove_dir_all(&extra).unwrap();
    std::fs::rename(data.join("train/9"), data.join("train/nine")).unwrap();
    std::fs::rename(data.join("val/9"), data.join("val/nine")).unwrap();
    let e = err_text(train(&cfg, &data, &run, true).unwrap_err());
    assert!(e.contains("missing [\"9\"]") && e.contains("nine"), "{e}");
    assert_eq!(classes_txt(&run), before);
}

#[test]
fn resume_rebuilds_summary_log_and_plots_lost_after_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 16, 4, 1);
    let run = tmp.path().join("run");
    let cfg = recipe(&[
        "train.epochs=2",
        "train.batch_size=8",
        "progressive.stages=1",
    ]);
    let out = train(&cfg, &data, &run, false).unwrap();
    assert_eq!(out.history.len(), 2);
    let full_csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    // A kill after the final checkpoint but before summary.csv, the plots and the epoch record.
    let header_and_one: Vec<&str> = full_csv.lines().take(2).collect();
    std::fs::write(run.join("summary.csv"), header_and_one.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(run.join("plots")).unwrap();
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| !(l.contains("\"kind\":\"epoch\"") && l.contains("\"epoch\":2")))
        .collect();
    std::fs::write(run.join("log.jsonl"), kept.join("\n") + "\n").unwrap();

    let again = train(&cfg, &data, &run, true).expect("resume of a finished run");
    assert_eq!(again.global_step, out.global_step);
    assert_eq!(
        std::fs::read_to_string(run.join("summary.csv")).unwrap(),
        full_csv
    );
    for f in ["loss", "top1", "lr"] {
        assert!(run.join(format!("plots/{f}.png")).is_file(), "{f}");
    }
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let epochs = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"epoch\""))
        .count();
    assert_eq!(epochs, 2, "{log}");
}

#[test]
fn recipe_paths_resolve_against_the_recipe_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("recipes/sub");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        common::data_dir().join("effnetv2_tiny.toml"),
        dir.join("net.toml"),
    )
    .unwrap();
    let text = std::fs::read_to_string(common::tiny_recipe())
        .unwrap()
        .replace(
            "../../crates/effnet-train/tests/data/effnetv2_tiny.toml",
            "net.toml",
        );
    std::fs::write(dir.join("r.toml"), text).unwrap();
    let cfg = TrainConfig::load(&dir.join("r.toml"), &[]).unwrap();
    assert_eq!(
        Path::new(&cfg.model.arch),
        std::path::absolute(dir.join("net.toml")).unwrap()
    );
    // Preset names and `bundled` stay names.
    let cfg = TrainConfig::load(
        &dir.join("r.toml"),
        &[
            "model.arch=\"efficientnet_lite0\"".into(),
            "model.init_weights=\"bundled\"".into(),
        ],
    )
    .unwrap();
    assert_eq!(cfg.model.arch, "efficientnet_lite0");
    assert_eq!(cfg.model.init_weights.as_deref(), Some("bundled"));
    // The shipped recipes load from any working directory (their paths are file-relative).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/train");
    for name in ["tiny_cpu.toml", "finetune_lite0.toml"] {
        let cfg = TrainConfig::load(&root.join(name), &[]).unwrap();
        let arch = Path::new(&cfg.model.arch);
        assert!(
            !arch.is_absolute() || arch.is_file(),
            "{name}: {}",
            arch.display()
        );
        if let Some(w) = &cfg.model.init_weights {
            assert!(w == "bundled" || Path::new(w).is_file(), "{name}: {w}");
        }
    }
}

#[test]
fn typed_config_round_trips_and_rejects_sentinels() {
    let cfg = recipe(&[]);
    let again = TrainConfig::from_toml_with(&cfg.to_toml().unwrap(), &[]).unwrap();
    assert_eq!(cfg, again);
    for (ov, key) in [
        ("model.num_classes=0", "model.num_classes"),
        ("model.drop_path=-1", "model.drop_path"),
        ("model.init_weights=\"\"", "model.init_weights"),
        ("data.eval_size=0", "data.eval_size"),
        ("data.interpolation=\"cubic\"", "cubic"),
        ("optim.lr=-1", "optim.lr"),
    ] {
        let e = TrainConfig::load(&common::tiny_recipe(), &common::tiny_overrides(&[ov]))
            .map(|_| ())
            .unwrap_err();
        assert!(format!("{e:#}").contains(key), "{ov}: {e:#}");
    }
    // `optim.lr` is absolute, `optim.lr_base` scales with the batch.
    let c = recipe(&["optim.lr_base=0.256"]);
    assert!((c.optim.peak_lr(32) - 0.032).abs() < 1e-12);
    let c = recipe(&["optim.lr=0.01"]);
    assert!((c.optim.peak_lr(32) - 0.01).abs() < 1e-12);
}
