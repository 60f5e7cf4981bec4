//! A stop request from another thread (what the CLI's signal handler does) stops training after
//! the current step with a checkpoint that resumes.

use effnet_testutil as common;

use std::time::{Duration, Instant};

use effnet_train::{Silent, StopHandle, TrainConfig, Trainer, checkpoint};

#[test]
fn stop_request_checkpoints_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 20, 2);
    let run = tmp.path().join("run");
    let cfg = TrainConfig::load(
        &common::tiny_recipe(),
        &common::tiny_overrides(&["train.epochs=50", "train.batch_size=8"]),
    )
    .unwrap();
    let stop = StopHandle::new();
    let (d, r, s) = (data.clone(), run.clone(), stop.clone());
    let worker = std::thread::spawn(move || {
        Trainer::new(&cfg, &d, &r, Box::new(Silent)).and_then(|mut t| t.run(&s))
    });
    let log = run.join("log.jsonl");
    let t0 = Instant::now();
    let steps = |s: String| {
        s.lines()
            .filter(|l| l.contains("\"kind\":\"step\""))
            .count()
    };
    while std::fs::read_to_string(&log).map_or(0, steps) < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.request_stop();
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
