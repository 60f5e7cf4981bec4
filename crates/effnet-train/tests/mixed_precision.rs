//! Mixed-precision training on the CPU (burn's flex backend computes bf16/f16):
//!
//! * a bf16 run of the tiny V2 on the digits set reaches f32's top-1 within 2 points (same
//!   recipe, seed and data as `learn_digits.rs`, 10 epochs instead of 6 so both runs settle:
//!   measured 96.94 % f32, 96.39 % bf16; about 30 s per run on 2 cores);
//! * an f16 step whose gradients are infinite is skipped: weights unchanged, the loss scale
//!   halved, a `skip` record in `log.jsonl`, and the scaler state in the checkpoint.

use effnet_testutil as common;

use effnet_model::parse_device;
use effnet_train::checkpoint;
use effnet_train::optim::build_optimizer;
use effnet_train::{TestHooks, TrainConfig, train, train_with_hooks};

/// The device RNG (model init, dropout, stochastic depth) is shared by the whole process: the
/// training tests take turns, so each run is the seeded, reproducible one.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn recipe(extra: &[&str]) -> TrainConfig {
    TrainConfig::load(&common::tiny_recipe(), &common::tiny_overrides(extra)).expect("tiny recipe")
}

#[test]
fn bf16_training_matches_f32_top1_on_digits() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 0, 0);
    let mut best = Vec::new();
    for precision in ["f32", "bf16"] {
        let p = format!("train.precision=\"{precision}\"");
        let cfg = recipe(&[&p, "train.epochs=10"]);
        let t0 = std::time::Instant::now();
        let out = train(&cfg, &data, &tmp.path().join(precision), false).expect("training");
        eprintln!(
            "digits {precision}: best top-1 {:.2} in {:.1} s",
            out.best_top1,
            t0.elapsed().as_secs_f64()
        );
        best.push(out.best_top1);
    }
    assert!(best[0] >= 80.0, "the f32 reference learns ({:.2})", best[0]);
    assert!(
        (best[1] - best[0]).abs() <= 2.0,
        "bf16 top-1 {:.2} vs f32 {:.2}: more than 2 points apart",
        best[1],
        best[0]
    );
}

fn weights(
    run: &std::path::Path,
    cfg: &TrainConfig,
) -> (Vec<f32>, effnet_train::DynamicLossScaler) {
    let device = parse_device("cpu").unwrap();
    let optim = build_optimizer(&cfg.optim).unwrap();
    let l = checkpoint::load(run, &device, optim).expect("checkpoint");
    let mut v: Vec<f32> = l
        .model
        .conv_stem
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    v.extend(
        l.model
            .classifier
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    let scaler = l
        .state
        .loss_scaler
        .expect("an f16 checkpoint holds the loss scaler");
    (v, scaler)
}

#[test]
fn f16_step_with_infinite_gradients_is_skipped_and_backs_off() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 12, 4);
    // A moderate initial scale, so the clean step really is clean (the default 65536 may well
    // overflow f16 on the first steps of a fresh model, which the scaler would then skip).
    let base = [
        "train.precision=\"f16\"",
        "train.loss_scale.init_scale=1024.0",
        "train.epochs=2",
        "train.batch_size=16",
    ];
    // One clean step, then a checkpoint (the weights to compare with).
    let run = tmp.path().join("run");
    let cfg1 = recipe(&base);
    let hooks1 = TestHooks::parse("stop_after_steps=1").unwrap();
    assert!(
        train_with_hooks(&cfg1, &data, &run, false, hooks1)
            .expect("one step")
            .interrupted
    );
    let (w1, s1) = weights(&run, &cfg1);
    assert_eq!((s1.scale, s1.clean_steps, s1.skipped_steps), (1024.0, 1, 0));
    // Resumed from that checkpoint (so the comparison does not depend on the RNG), the second
    // step's gradients made infinite.
    let cfg2 = recipe(&base);
    let hooks2 = TestHooks::parse("stop_after_steps=2,inf_grad_at_step=2").unwrap();
    assert!(
        train_with_hooks(&cfg2, &data, &run, true, hooks2)
            .expect("step two")
            .interrupted
    );
    let (w2, s2) = weights(&run, &cfg2);
    assert!(w1 == w2, "a skipped step leaves the weights unchanged");
    assert_eq!((s2.scale, s2.clean_steps, s2.skipped_steps), (512.0, 0, 1));
    let run2 = run;
    let log = std::fs::read_to_string(run2.join("log.jsonl")).unwrap();
    let skip: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "skip")
        .collect();
    assert_eq!(skip.len(), 1, "{log}");
    assert_eq!(skip[0]["step"], 2);
    assert_eq!(skip[0]["loss_scale"], 512.0);
}

#[test]
fn unknown_precision_in_a_recipe_is_an_error_naming_the_values() {
    let err = TrainConfig::load(
        &common::tiny_recipe(),
        &common::tiny_overrides(&["train.precision=\"f8\""]),
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("f8") && text.contains("bf16"), "{text}");
}
