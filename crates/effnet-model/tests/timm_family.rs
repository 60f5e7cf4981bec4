//! timm's EfficientNet family, checked against timm itself (fixtures: `scripts/timm_family.py`,
//! tests/data/timm/):
//!
//! * every architecture's parameter count, and the names and shapes of timm's `state_dict`
//!   (digest of its `key:[shape]` lines), against timm's manifest;
//! * logits within 1e-4 of timm's on real pixels, with weights both sides draw from the same
//!   seeded stream ([`effnet_model::fixtures`]) and BatchNorm statistics measured by timm on real
//!   pixels: the CI set in tests/data/timm/, all 81 with
//!   `EFFNET_TIMM_FIXTURES=DIR cargo test --release -p effnet-model --test timm_family -- --ignored`
//!   after `python3 scripts/timm_family.py fixtures --all --out DIR` (docs/models.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use effnet_model::fixtures::{
    fixture_model, fixtures_in, fnv1a64, max_abs_diff, read_fixture, read_input,
};
use effnet_model::{EfficientNetConfig, timm_state_dict_shapes};
use serde_json::Value;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/timm")
        .join(rel)
}

fn manifest() -> BTreeMap<String, Value> {
    let text =
        std::fs::read_to_string(data("manifest.json")).expect("tests/data/timm/manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest JSON");
    let archs = v["architectures"].as_object().expect("architectures");
    archs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `(digest, count, sorted lines)` of a state-dict listing, as the script computes them.
fn digest(shapes: &[(String, Vec<usize>)]) -> (String, usize, Vec<String>) {
    let mut lines: Vec<String> = shapes
        .iter()
        .map(|(k, s)| {
            let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
            format!("{k}:[{}]", dims.join(", "))
        })
        .collect();
    lines.sort();
    (
        format!("{:016x}", fnv1a64(&lines.join("\n"))),
        lines.len(),
        lines,
    )
}

/// Models above this many parameters are checked by count only in the default run (building
/// them costs seconds and gigabytes); `--ignored` builds them all.
const BUILD_LIMIT: usize = 50_000_000;

fn check_manifest(build_limit: usize) {
    let device = Device::flex();
    let manifest = manifest();
    assert_eq!(manifest.len(), effnet_model::TIMM_ARCHITECTURES.len());
    let mut wrong = Vec::new();
    let mut built = 0;
    for (name, want) in &manifest {
        let cfg = EfficientNetConfig::preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let params = want["params"].as_u64().unwrap() as usize;
        if cfg.num_params() != params {
            wrong.push(format!(
                "{name}: {} params, timm {params}",
                cfg.num_params()
            ));
        }
        if params > build_limit {
            continue;
        }
        let model = cfg.init(&device);
        built += 1;
        if model.num_trainable_params() != params {
            wrong.push(format!(
                "{name}: built model has {} params, timm {params}",
                model.num_trainable_params()
            ));
        }
        let (d, n, lines) = digest(&timm_state_dict_shapes(&model));
        if d != want["digest"].as_str().unwrap() || n != want["tensors"].as_u64().unwrap() as usize
        {
            let mut msg =
                format!("{name}: state_dict digest {d} ({n} tensors) differs from timm's");
            if let Some(keys) = want.get("keys").and_then(Value::as_array) {
                let theirs: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
                let only_ours: Vec<&String> = lines
                    .iter()
                    .filter(|l| !theirs.contains(&l.as_str()))
                    .collect();
                let only_theirs: Vec<&&str> = theirs
                    .iter()
                    .filter(|l| !lines.contains(&l.to_string()))
                    .collect();
                msg.push_str(&format!(
                    ": ours only {only_ours:?}; timm only {only_theirs:?}"
                ));
            }
            wrong.push(msg);
        }
    }
    println!("{} architectures, {built} built", manifest.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_architecture_has_timms_parameters_names_and_shapes() {
    check_manifest(BUILD_LIMIT);
}

#[test]
#[ignore = "builds every architecture up to EfficientNet-L2 (480M parameters): minutes and ~4 GB"]
fn every_architecture_built_has_timms_names_and_shapes() {
    check_manifest(usize::MAX);
}

fn check_logits(dir: &Path) {
    let device = Device::flex();
    let x = read_input(dir, &device).unwrap();
    let archs = fixtures_in(dir).unwrap();
    assert!(!archs.is_empty(), "no fixtures in {}", dir.display());
    let mut failed = Vec::new();
    for arch in archs {
        let fixture = read_fixture(dir, &arch).unwrap();
        let model = fixture_model(dir, &fixture, &device).unwrap_or_else(|e| panic!("{e}"));
        let ours: Vec<f32> = model
            .model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let diff = max_abs_diff(&ours, &fixture.logits);
        println!(
            "{arch:<28} {:>12} params  max|logit diff| {diff:.2e}",
            model.config.num_params()
        );
        if !(diff <= 1e-4) {
            failed.push(format!("{arch}: {diff:e}"));
        }
    }
    assert!(
        failed.is_empty(),
        "logits differ from timm's: {}",
        failed.join(", ")
    );
}

#[test]
fn logits_match_timm_on_real_pixels() {
    check_logits(&data(""));
}

#[test]
#[ignore = "needs EFFNET_TIMM_FIXTURES=DIR from `scripts/timm_family.py fixtures --all --out DIR`"]
fn all_architectures_match_timm() {
    let dir = std::env::var("EFFNET_TIMM_FIXTURES").expect("EFFNET_TIMM_FIXTURES");
    check_logits(Path::new(&dir));
}

#[test]
fn new_layers_round_trip_through_native_files() {
    use effnet_model::weights::default_preprocess;
    use effnet_model::{load_native, save_native};
    let device = Device::flex();
    let dir = data("");
    let x = read_input(&dir, &device).unwrap();
    for arch in [
        "test_efficientnet_gn",
        "test_efficientnet_evos",
        "efficientnet_cc_b0_4e",
        "gc_efficientnetv2_rw_t",
    ] {
        let fixture = read_fixture(&dir, arch).unwrap();
        let imported = fixture_model(&dir, &fixture, &device).unwrap();
        let path = std::env::temp_dir().join(format!("effnet-{}-{arch}.bpk", std::process::id()));
        let pre = default_preprocess(&imported.config);
        save_native(&path, &imported.model, &imported.config, &pre, "test").unwrap();
        let loaded = load_native(&path, &device).unwrap();
        std::fs::remove_file(&path).ok();
        let a: Vec<f32> = imported
            .model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b: Vec<f32> = loaded
            .model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(a, b, "{arch}");
        assert_eq!(loaded.config.name, arch);
    }
}
