//! A run stopped mid-epoch and resumed from its checkpoint must reproduce the uninterrupted run:
//! the same loss at every step and the same final metrics. The stop uses a test hook,
//! which takes the same path as Ctrl-C (checkpoint, then return).

use effnet_testutil as common;

use effnet_train::{TestHooks, TrainConfig, train, train_with_hooks};

fn cfg(extra: &[&str]) -> TrainConfig {
    let mut ov = common::tiny_overrides(&[
        "train.epochs=2",
        "train.batch_size=16",
        // Exercise every random stream: mixup + cutmix, dropout, stochastic depth, RandAugment.
        "progressive.mixup=[0.2, 0.4]",
        "train.cutmix=true",
        "progressive.dropout=[0.1, 0.2]",
        "model.drop_path=0.1",
        "optim.name=\"rmsproptf\"",
        "optim.lr_base=0.08",
        "optim.weight_decay=1e-5",
        "checkpoint.every_steps=4",
    ]);
    ov.extend(extra.iter().map(|s| s.to_string()));
    TrainConfig::load(&common::tiny_recipe(), &ov).expect("recipe")
}

fn step_losses(run: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "step")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn killed_and_resumed_run_matches_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 24, 6);

    let full_dir = tmp.path().join("full");
    let full = train(&cfg(&[]), &data, &full_dir, false).expect("uninterrupted run");
    assert!(!full.interrupted);
    assert_eq!(full.history.len(), 2);

    // Stop after 7 steps: mid-epoch 0, three steps after the step-4 checkpoint.
    let part_dir = tmp.path().join("part");
    let hooks = TestHooks::parse("stop_after_steps=7").unwrap();
    let stopped = train_with_hooks(&cfg(&[]), &data, &part_dir, false, hooks).expect("stopped run");
    assert!(stopped.interrupted);
    assert_eq!(stopped.global_step, 7);
    assert!(stopped.history.is_empty());
    // The resumed process reads the run folder's saved config, as `--resume` does.
    let saved = TrainConfig::load(&part_dir.join("config.toml"), &[]).expect("saved config");
    let resumed = train(&saved, &data, &part_dir, true).expect("resumed run");
    assert!(!resumed.interrupted);
    assert_eq!(resumed.global_step, full.global_step);

    let a = step_losses(&full_dir);
    let b = step_losses(&part_dir);
    assert_eq!(a.len(), full.global_step as usize);
    assert_eq!(
        a.iter().map(|x| x.0).collect::<Vec<_>>(),
        b.iter().map(|x| x.0).collect::<Vec<_>>()
    );
    for ((s, la), (_, lb)) in a.iter().zip(&b) {
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs().max(1.0),
            "step {s}: uninterrupted loss {la} vs resumed {lb}"
        );
    }
    for (ra, rb) in full.history.iter().zip(&resumed.history) {
        assert!(
            (ra.train_loss - rb.train_loss).abs() < 1e-5,
            "{ra:?} vs {rb:?}"
        );
        assert!(
            (ra.eval_loss - rb.eval_loss).abs() < 1e-4,
            "{ra:?} vs {rb:?}"
        );
        assert_eq!(ra.eval_top1, rb.eval_top1);
        assert_eq!(ra.ema_top1, rb.ema_top1);
        assert_eq!(ra.lr, rb.lr);
    }
    // keep_last = 2 step checkpoints survive pruning.
    let kept = std::fs::read_dir(part_dir.join("checkpoints"))
        .unwrap()
        .count();
    assert_eq!(kept, 2);
    // summary.csv has one row per epoch despite the interruption.
    let csv = std::fs::read_to_string(part_dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}
