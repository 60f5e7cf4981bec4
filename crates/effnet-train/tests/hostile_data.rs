//! Hostile training input: absurd sizes and dimensions in the recipe, NaN normalisation, truncated
//! JPEGs and symlink loops in the data tree, a class whose images are all corrupt.

use effnet_testutil as common;

use std::path::Path;

use effnet_train::data::open_splits;
use effnet_train::{TrainConfig, train};

fn recipe(extra: &[&str]) -> anyhow::Result<TrainConfig> {
    TrainConfig::load(&common::tiny_recipe(), &common::tiny_overrides(extra))
}

fn err_text(e: anyhow::Error) -> String {
    format!("{e:#}")
}

#[test]
fn absurd_sizes_dimensions_and_statistics_are_refused_at_parse_time() {
    for (set, needle) in [
        ("progressive.size=[100000,100000]", "100000"),
        ("progressive.size=[64,5000]", "5000"),
        ("data.eval_size=100000", "100000"),
        ("model.num_classes=1000000000000", "num_classes"),
        ("data.mean=[nan,0.5,0.5]", "mean"),
        ("data.std=[inf,0.5,0.5]", "std"),
        ("data.std=[nan,0.5,0.5]", "std"),
        ("data.crop_pct=0.0001", "resize"),
        (
            "data.randaugment=\"rand-m9-n1000000000\"",
            "n must be a whole number",
        ),
        ("train.batch_size=100000000", "one batch of 100000000"),
        ("data.eval_batch_size=100000000", "one batch of 100000000"),
    ] {
        let e = err_text(recipe(&[set]).unwrap_err());
        assert!(e.contains(needle), "{set}: {e}");
        assert!(!e.contains('\n'), "{set}: {e}");
    }
    // Counts that would allocate per stage or loop per image without end.
    for (sets, needle) in [
        (
            [
                "train.epochs=1000000000000",
                "progressive.stages=1000000000000",
            ],
            "progressive.stages",
        ),
        (
            [
                "data.randaugment=\"automl\"",
                "data.randaugment_layers=1000000000",
            ],
            "randaugment_layers",
        ),
    ] {
        let e = err_text(recipe(&sets).unwrap_err());
        assert!(e.contains(needle), "{sets:?}: {e}");
    }
    // The shipped recipes still pass.
    recipe(&[]).expect("tiny recipe");
}

/// Writes truncated copies of a class's first image as JPEG, cut at the given fractions.
fn add_truncated_jpegs(class_dir: &Path, fractions: &[f64]) {
    let first = std::fs::read_dir(class_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a png");
    let img = image::open(&first).unwrap();
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    let jpg = buf.into_inner();
    for f in fractions {
        let n = (jpg.len() as f64 * f) as usize;
        std::fs::write(class_dir.join(format!("cut-{f}.jpg")), &jpg[..n]).unwrap();
    }
}

#[test]
fn truncated_jpegs_and_symlink_loops_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 16, 3, 1);
    let cfg = recipe(&[]).unwrap();
    let clean = open_splits(&data, &cfg).unwrap();
    assert_eq!(clean.train.unreadable_count(), 0);
    add_truncated_jpegs(&data.join("train/3"), &[0.1, 0.5, 0.99]);
    add_truncated_jpegs(&data.join("val/4"), &[0.5]);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("..", data.join("train/3/loop")).unwrap();
        std::os::unix::fs::symlink("../..", data.join("train/7/loop")).unwrap();
    }
    let splits = open_splits(&data, &cfg).unwrap();
    assert_eq!(splits.train.unreadable_count(), 3);
    assert_eq!(splits.val.unreadable_count(), 1);
    assert_eq!(
        splits.train.class_counts(),
        clean.train.class_counts(),
        "no truncated file and no image reached through a loop is a sample"
    );
    assert!(
        splits.train.report().contains("3 unreadable"),
        "{}",
        splits.train.report()
    );
}

#[test]
fn a_class_with_only_corrupt_images_stops_training_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    common::make_digits(&data, 16, 3, 1);
    for e in std::fs::read_dir(data.join("train/6")).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    }
    let cfg = recipe(&[
        "train.epochs=1",
        "progressive.stages=1",
        "sched.warmup_epochs=0",
    ])
    .unwrap();
    let e = err_text(train(&cfg, &data, &tmp.path().join("run"), false).unwrap_err());
    assert!(e.contains("'6'") && e.contains("unreadable"), "{e}");
    assert!(!tmp.path().join("run").join("summary.csv").exists());
}
