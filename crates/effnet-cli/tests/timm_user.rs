//! What a timm user tries first, each row of issue 20's table run through the binary: ImageNet
//! folders named by WordNet id or class name for `eval`, timm's train.py flags, training without
//! a recipe, one vocabulary (`-b`, `--img-size`, `-o`) in `export`, errors that name the flag,
//! resuming finished and extended runs, a run folder as weights, and files that fail to decode.

use std::path::{Path, PathBuf};
use std::process::Output;

use effnet_testutil as common;

mod support;
use support::{effnet, effnet_env, text};

fn ok(out: &Output) -> String {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    all
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The four bundled photos in ImageNet folders named by `name(synset, class name)`.
fn photo_folders(dest: &Path, name: impl Fn(&str, &str) -> String) -> PathBuf {
    let photos = support::root().join("tests/data/photos");
    for (file, synset, label) in [
        ("chelsea.png", "n02123159", "tiger cat"),
        ("china.jpg", "n03877845", "palace"),
        ("coffee.png", "n07920052", "espresso"),
        ("flower.jpg", "n11939491", "daisy"),
    ] {
        let dir = dest.join(name(synset, label));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(photos.join(file), dir.join(file)).unwrap();
    }
    dest.to_path_buf()
}

/// The record's top-1 and image count from `eval`'s JSON output.
fn record(out: &str) -> serde_json::Value {
    let json = out.split("--result\n").nth(1).expect("--result");
    let end = json.find("\n}").expect("end of record") + 2;
    serde_json::from_str(&json[..end]).unwrap()
}

#[test]
fn eval_maps_synset_and_class_name_folders_of_imagenet_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // Synset folders, the data folder given positionally, the bundled ImageNet weights.
    let synsets = photo_folders(&tmp.path().join("val"), |id, _| id.to_string());
    let out = ok(&effnet(&["eval", s(&synsets), "-b", "4"]));
    let r = record(&out);
    assert_eq!(
        (r["top1"].as_f64(), r["images"].as_u64()),
        (Some(100.0), Some(4)),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");
    // Folders named as infer prints the classes (also with '_' for spaces).
    let names = photo_folders(&tmp.path().join("names"), |_, l| l.replace(' ', "_"));
    let csv = tmp.path().join("r.csv");
    let out = ok(&effnet(&["eval", s(&names), "-o", s(&csv)]));
    assert!(out.contains(" * Acc@1 100.000"), "{out}");
    let written = std::fs::read_to_string(&csv).unwrap();
    assert!(
        written.starts_with("model,top1,"),
        "-o x.csv writes CSV: {written}"
    );
    // Positional labelling of 4 folders onto 1000 classes is allowed, with a warning.
    let out = effnet(&["eval", s(&synsets), "--positional-labels"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: --positional-labels: 4 folders become classes 0..3 of the model's 1000"
        ),
        "{err}"
    );
    // timm's class map: line N names class N; folders it does not list are skipped.
    let map = tmp.path().join("map.txt");
    let mut lines = vec![String::new(); 1000];
    lines[282] = "n02123159".into();
    lines[967] = "n07920052".into();
    std::fs::write(&map, lines.join("\n")).unwrap();
    let out = ok(&effnet(&[
        "eval",
        "--data",
        s(&synsets),
        "--class-map",
        s(&map),
    ]));
    assert_eq!(record(&out)["images"], 2, "{out}");
    assert!(
        out.contains("2 folder(s) not in the map are skipped"),
        "{out}"
    );
    // An unknown folder is named, with the ways out.
    std::fs::create_dir_all(synsets.join("n99999999")).unwrap();
    std::fs::copy(
        synsets.join("n02123159/chelsea.png"),
        synsets.join("n99999999/a.png"),
    )
    .unwrap();
    let bad = effnet(&["eval", s(&synsets)]);
    support::assert_clean_error(&bad, "folder 'n99999999' is not a class of the weights");
    assert!(
        text(&bad.stderr).contains("--class-map"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn export_speaks_the_same_vocabulary() {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("lite0.onnx");
    let out = ok(&effnet(&[
        "export",
        "-b",
        "2",
        "--img-size",
        "96",
        "-o",
        s(&onnx),
    ]));
    assert!(onnx.is_file(), "{out}");
    let help = ok(&effnet(&["export", "--help"]));
    assert!(
        help.contains("--img-size") && help.contains("-b, --batch-size"),
        "{help}"
    );
    // Image-decoding flags only where images are read.
    assert!(!help.contains("--max-image-pixels"), "{help}");
    assert!(ok(&effnet(&["infer", "--help"])).contains("--max-image-pixels"));
    let top = ok(&effnet(&["--help"]));
    for cmd in [
        "infer", "eval", "import", "export", "bench", "train", "warmup", "models",
    ] {
        assert!(top.contains(&format!("  {cmd} ")), "{cmd} in {top}");
    }
}

#[test]
fn train_help_shows_timm_flags_with_their_recipe_keys() {
    let help = ok(&effnet(&["train", "--help"]));
    for (flag, key) in [
        ("--opt", "optim.name"),
        ("--opt-eps", "optim.eps"),
        ("--momentum", "optim.momentum"),
        ("--weight-decay", "optim.weight_decay"),
        ("--sched", "sched.name"),
        ("--warmup-epochs", "sched.warmup_epochs"),
        ("--warmup-lr", "sched.warmup_lr"),
        ("--min-lr", "sched.min_lr"),
        ("--smoothing", "train.label_smoothing"),
        ("--drop", "progressive.dropout"),
        ("--drop-path", "model.drop_path"),
        ("--mixup", "progressive.mixup"),
        ("--cutmix", "train.cutmix"),
        ("--aa", "data.randaugment"),
        ("--reprob", "data.reprob"),
        ("--model-ema", "ema.enabled"),
        ("--model-ema-decay", "ema.decay"),
        ("--amp", "train.precision"),
        ("--amp-dtype", "train.precision"),
        ("--pretrained", "model.init_weights"),
        ("--initial-checkpoint", "model.init_weights"),
        ("--grad-accum-steps", "train.grad_accum_steps"),
        ("--clip-grad", "train.clip_grad"),
    ] {
        let lines: Vec<&str> = help.lines().collect();
        let named = |l: &&str| {
            l.contains(&format!("{flag} ")) || l.contains(&format!("{flag}]")) || l.ends_with(flag)
        };
        let at = lines
            .iter()
            .position(named)
            .unwrap_or_else(|| panic!("{flag} in {help}"));
        // The help of one flag: its line, the wrapped lines after it, and (for an alias shown
        // at the end) the lines before it.
        let text = lines[at.saturating_sub(3)..(at + 4).min(lines.len())].join(" ");
        assert!(text.contains(key), "{flag} says {key}: {text}");
    }
    // A flag train does not have, but a recipe key, points at --set.
    let out = effnet(&["train", "data", "--mixup-prob", "0.5"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--set train.mixup_prob=VALUE"), "{err}");
}

#[test]
fn flag_errors_name_the_flag_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = effnet(&[
        "train",
        "-c",
        "configs/train/tiny_cpu.toml",
        s(tmp.path()),
        "--epochs",
        "1",
    ]);
    support::assert_clean_error(&out, "--epochs 1: ");
    let err = text(&out.stderr);
    assert!(
        err.contains("sched.warmup_epochs") && err.contains("--warmup-epochs"),
        "{err}"
    );
    let out = effnet(&["train", s(tmp.path())]);
    support::assert_clean_error(&out, "-m MODEL or -c RECIPE");
}

/// Trains the tiny model without a recipe (timm's defaults scaled by the model) with timm's
/// flags, then resumes the finished run, extends it, and uses the run folder as weights.
#[test]
fn recipe_less_training_with_timm_flags_resume_and_run_folder_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 32, 8, 2);
    // One file that passes the scan but fails to decode (a byte of its pixel data changed).
    let broken = data
        .join("train/3")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&broken).unwrap();
    let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
    bytes[idat + 8] ^= 0xff;
    std::fs::write(&broken, bytes).unwrap();
    let runs = tmp.path().join("runs");
    let model = common::tiny_model();
    let mut args = vec![
        "train",
        s(&data),
        "-m",
        &model,
        "-o",
        s(&runs),
        "--experiment",
        "r",
        "--epochs",
        "2",
        "-b",
        "8",
        "--img-size",
        "32",
        "-j",
        "1",
        "--opt",
        "momentum",
        "--sched",
        "step",
        "--decay-epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--warmup-lr",
        "1e-6",
        "--min-lr",
        "1e-6",
        "--momentum",
        "0.8",
        "--weight-decay",
        "1e-4",
        "--smoothing",
        "0.05",
        "--drop",
        "0.1",
        "--drop-path",
        "0.05",
        "--mixup",
        "0.2",
        "--cutmix",
        "0.2",
        "--aa",
        "rand-m5-n1",
        "--reprob",
        "0.25",
        "--model-ema",
        "--model-ema-decay",
        "0.9",
        "--grad-accum-steps",
        "2",
        "--clip-grad",
        "1.0",
        "--lr",
        "0.01",
        "--opt-eps",
        "1e-7",
    ];
    args.extend(["--log-interval", "1"]);
    let log = ok(&effnet(&args));
    let run = runs.join("r");
    let cfg = effnet_train::TrainConfig::load(&run.join("config.toml"), &[]).unwrap();
    assert_eq!(cfg.optim.name, effnet_train::config::OptimKind::Sgd);
    assert!(!cfg.optim.nesterov);
    assert_eq!(cfg.sched.name, effnet_train::config::SchedKind::Exponential);
    assert_eq!(
        (cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.eps),
        (0.8, 1e-4, 1e-7)
    );
    assert_eq!(
        (cfg.train.label_smoothing, cfg.train.clip_grad),
        (0.05, 1.0)
    );
    assert_eq!(
        (cfg.progressive.dropout, cfg.progressive.mixup),
        ([0.1, 0.1], [0.2, 0.2])
    );
    assert!(cfg.train.cutmix && cfg.ema.enabled && cfg.ema.decay == 0.9);
    assert_eq!((cfg.data.reprob, cfg.train.grad_accum_steps), (0.25, 2));
    assert_eq!(cfg.model.drop_path, Some(0.05));
    // The decode failure: one warning in the whole run, and the epochs say how many were used.
    let broken_name = broken.file_name().unwrap().to_str().unwrap();
    let warned = log.lines().filter(|l| l.contains(broken_name)).count();
    assert_eq!(warned, 1, "{log}");
    assert!(
        log.contains("1 file(s) failed to decode in epoch 1"),
        "{log}"
    );
    // 80 training images, batches of 8, 2 per step: 5 steps; epoch 1 uses 79 of them.
    assert!(log.contains("epoch 1/2  size 32  images 79"), "{log}");
    // Epoch 2 has 79 images: 9 full batches, 4 steps of 2 (64 images).
    assert!(log.contains("epoch 2/2  size 32  images 64"), "{log}");
    // Stages count from 1 in the logs a person reads.
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("1,1,32,"), "{csv}");
    // Resuming a finished run says so; extending it warns that the schedule is re-planned.
    let again = ok(&effnet(&["train", s(&data), "--resume", s(&run)]));
    assert!(
        again.contains("already finished (2 of 2 epochs done)"),
        "{again}"
    );
    let more = ok(&effnet(&[
        "train",
        s(&data),
        "--resume",
        s(&run),
        "--epochs",
        "3",
    ]));
    assert!(more.contains("re-planned over 3 epochs"), "{more}");
    assert!(more.contains("epoch 3/3"), "{more}");
    // A run folder given as weights is its best.bpk.
    let img = data
        .join("val/3")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = ok(&effnet(&["infer", s(&img), "--checkpoint", s(&run)]));
    assert!(out.contains(s(&img)), "{out}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let bad = effnet(&["infer", s(&img), "--checkpoint", s(&empty)]);
    support::assert_clean_error(&bad, "not a weights file or a training run folder");
    // The binary's test hooks come from the environment, never from the recipe.
    let stopped = effnet_env(
        &[
            "train",
            s(&data),
            "-m",
            &model,
            "-o",
            s(&runs),
            "--experiment",
            "s",
            "-b",
            "8",
            "--img-size",
            "32",
            "--epochs",
            "1",
            "-j",
            "1",
        ],
        &[("EFFNET_TEST_HOOKS", "stop_after_steps=1")],
    );
    assert!(
        text(&stopped.stdout).contains("stopped at epoch 1 step 1"),
        "{}",
        text(&stopped.stdout)
    );
    let saved = std::fs::read_to_string(runs.join("s/config.toml")).unwrap();
    assert!(!saved.contains("testing"), "{saved}");
}
