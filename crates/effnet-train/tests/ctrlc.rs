//! A real SIGINT (Ctrl-C) stops training after the current step with a checkpoint that resumes.
//! Its own test binary: the handler and its flag are process-wide.

mod common;

use std::time::{Duration, Instant};

use effnet_train::{TrainConfig, checkpoint, train, trainer};

#[test]
fn sigint_checkpoints_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 20, 2);
    let run = tmp.path().join("run");
    let cfg = TrainConfig::load(
        &common::tiny_recipe(),
        &common::tiny_overrides(&["train.epochs=50", "train.batch_size=8"]),
    )
    .unwrap();
    trainer::install_ctrlc();
    let (d, r) = (data.clone(), run.clone());
    let worker = std::thread::spawn(move || train(&cfg, &d, &r, false));
    let log = run.join("log.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |s| s.lines().count()) < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = worker.join().unwrap().expect("training returns cleanly");
    assert!(out.interrupted);
    assert!(out.global_step >= 3 && out.global_step < 50 * 25);
    let dir = checkpoint::latest(&run).unwrap();
    assert!(
        dir.ends_with(format!("ckpt-{:08}", out.global_step)),
        "{}",
        dir.display()
    );
}
