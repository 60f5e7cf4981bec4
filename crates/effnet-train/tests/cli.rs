//! The clap structs as the CLI mounts them: flags become overrides, a run folder's saved
//! config restarts a run, `--resume` continues one, and `eval` prints timm's JSON fields.

mod common;

use clap::{Parser, Subcommand};
use effnet_train::{EvalArgs, TrainArgs, TrainConfig};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Train(TrainArgs),
    Eval(EvalArgs),
}

fn train_args(args: &[&str]) -> TrainArgs {
    let mut v = vec!["effnet", "train"];
    v.extend_from_slice(args);
    match Cli::try_parse_from(v).expect("parse").cmd {
        Cmd::Train(t) => t,
        Cmd::Eval(_) => unreachable!(),
    }
}

#[test]
fn flags_override_config_and_runs_restart_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 6, 2);
    let out = tmp.path().join("runs");
    let model = common::tiny_model();
    let recipe = common::tiny_recipe().display().to_string();
    let arch = format!("model.arch={model:?}");
    let base = [
        "--config",
        &recipe,
        "--data",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--set",
        &arch,
        "--epochs",
        "2",
        "--batch-size",
        "12",
        "--lr",
        "0.02",
        "--seed",
        "3",
        "--set",
        "progressive.stages=2",
        "--set",
        "testing.stop_after_steps=6",
    ];
    let mut a = base.to_vec();
    a.extend(["--experiment", "first"]);
    let args = train_args(&a);
    let ov = args.overrides();
    assert!(ov.contains(&"train.epochs=2".to_string()) && ov.contains(&"seed=3".to_string()));
    args.run().expect("first run (stops at step 6)");
    let run = out.join("first");
    let saved = TrainConfig::load(&run.join("config.toml"), &[]).unwrap();
    assert_eq!(
        (saved.train.epochs, saved.train.batch_size, saved.seed),
        (2, 12, 3)
    );
    assert!((saved.optim.lr_base - 0.02).abs() < 1e-12);
    // Starting the same experiment again is refused; resuming continues it.
    assert!(train_args(&a).run().is_err());
    train_args(&[
        "--data",
        data.to_str().unwrap(),
        "--resume",
        run.to_str().unwrap(),
        "--set",
        "testing.stop_after_steps=0",
    ])
    .run()
    .expect("resume");
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The saved config starts a fresh, identical run.
    train_args(&[
        "--config",
        run.join("config.toml").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--experiment",
        "again",
        "--set",
        "testing.stop_after_steps=0",
    ])
    .run()
    .expect("rerun from saved config");
    let again = std::fs::read_to_string(out.join("again/summary.csv")).unwrap();
    let col = |s: &str, k: usize| -> Vec<String> {
        s.lines()
            .map(|l| l.split(',').nth(k).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        col(&csv, 3),
        col(&again, 3),
        "train_loss differs between identical runs"
    );

    // eval on the best weights.
    let res_file = tmp.path().join("res.json");
    let e = match Cli::try_parse_from([
        "effnet",
        "eval",
        "--weights",
        run.join("best.bpk").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--results-file",
        res_file.to_str().unwrap(),
    ])
    .unwrap()
    .cmd
    {
        Cmd::Eval(e) => e,
        Cmd::Train(_) => unreachable!(),
    };
    e.run().expect("eval");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&res_file).unwrap()).unwrap();
    for k in [
        "model",
        "top1",
        "top1_err",
        "top5",
        "top5_err",
        "param_count",
        "img_size",
        "crop_pct",
        "interpolation",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert_eq!(v["model"], "efficientnetv2_tiny");
}
