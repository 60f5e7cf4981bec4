//! From scratch, the tiny EfficientNetV2 must really learn real handwritten digits.
//!
//! Data: the 1797 UCI digits (tests/data, CC BY 4.0) upscaled to 32x32, every 5th image held out
//! (360 validation images, 36 per class). Chance is 10 %; a linear classifier on these pixels
//! reaches ~95 %, so a working CNN trainer clears 80 % within a few epochs, while a broken one
//! (wrong gradients, labels shuffled against images, optimiser not stepping, eval on the wrong
//! weights) stays near 10-30 %. The threshold is 80 %.

use effnet_testutil as common;

use effnet_train::{TrainConfig, train};

#[test]
fn tiny_v2_learns_digits_from_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 0, 0);
    let cfg = TrainConfig::load(&common::tiny_recipe(), &common::tiny_overrides(&[]))
        .expect("tiny recipe");
    let run = tmp.path().join("run");
    let t0 = std::time::Instant::now();
    let out = train(&cfg, &data, &run, false).expect("training");
    let secs = t0.elapsed().as_secs_f64();
    let last = out.history.last().unwrap();
    eprintln!(
        "digits from scratch: {} epochs in {secs:.1}s, top-1 {:.2} (EMA {:?}), best {:.2}",
        out.history.len(),
        last.eval_top1,
        last.ema_top1,
        out.best_top1
    );
    assert!(
        out.best_top1 >= 80.0,
        "best top-1 {:.2} < 80",
        out.best_top1
    );
    // Training loss went down and progressive learning changed the image size.
    assert!(last.train_loss < out.history[0].train_loss);
    assert_eq!(out.history[0].img_size, 24);
    assert_eq!(last.img_size, 32);
    // Outputs exist and summary.csv has a row per epoch.
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), out.history.len() + 1);
    assert!(csv.starts_with("epoch,stage,img_size,train_loss,eval_loss,eval_top1"));
    for f in [
        "plots/loss.png",
        "plots/top1.png",
        "plots/lr.png",
        "config.toml",
        "best.bpk",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // `effnet eval` on best.bpk reproduces the best top-1 recorded during training.
    // best.bpk carries the class names; evaluating it reproduces the training metric.
    let best = effnet_model::load_native(
        &run.join("best.bpk"),
        &effnet_model::parse_device("cpu").unwrap(),
    )
    .expect("best.bpk");
    let names = best.labels.clone().expect("class names in best.bpk");
    assert_eq!(names, (0..10).map(|d| d.to_string()).collect::<Vec<_>>());
    let val = effnet_data::ImageFolder::scan_with_classes(&data.join("val"), &names).unwrap();
    let k = effnet_train::evaluate(
        &best.model,
        &val,
        &best.preprocess,
        64,
        2,
        &effnet_model::parse_device("cpu").unwrap(),
        &mut effnet_train::Silent,
        (0, "eval"),
    )
    .expect("eval");
    let res_top1 = k.top1_pct();
    assert!(
        (res_top1 - out.best_top1).abs() < 0.01,
        "eval {res_top1} vs training best {}",
        out.best_top1
    );
    assert_eq!(best.preprocess.crop, 32);
}

/// effnet's training ops (the default on the CPU) and burn's plain composition
/// (`effnet_model::ops::with_plain_ops`) train the tiny recipe to the same top-1, within a
/// point: the ops change the arithmetic's rounding, not what is learnt.
#[test]
fn ops_and_plain_composition_learn_digits_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 0, 0);
    let cfg = TrainConfig::load(&common::tiny_recipe(), &common::tiny_overrides(&[]))
        .expect("tiny recipe");
    let run = |plain: bool| {
        let dir = tmp.path().join(if plain { "plain" } else { "ops" });
        let t0 = std::time::Instant::now();
        let out = effnet_model::ops::with_plain_ops(plain, || train(&cfg, &data, &dir, false))
            .expect("training");
        let top1 = out.history.last().unwrap().eval_top1;
        eprintln!(
            "digits, {}: top-1 {top1:.2} in {:.1}s",
            if plain {
                "plain composition"
            } else {
                "effnet ops"
            },
            t0.elapsed().as_secs_f64()
        );
        top1
    };
    let (ops, plain) = (run(false), run(true));
    assert!(
        (ops - plain).abs() <= 1.0,
        "top-1 with the ops {ops:.2} vs plain composition {plain:.2}"
    );
}
