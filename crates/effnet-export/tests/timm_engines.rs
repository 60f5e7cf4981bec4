//! timm's architectures on effnet's other engines: the native CPU executor and the ONNX export
//! (run in ONNX Runtime) each either run an architecture within 1e-4 of timm's logits, or refuse
//! it with one line naming the layer, exactly where `EfficientNetConfig::native_unsupported` /
//! `onnx_unsupported` say (what `effnet models` and docs/models.md report). Weight-free
//! fixtures as in effnet-model's timm_family test (tests/data/timm/, scripts/timm_family.py).
//!
//! `EFFNET_TIMM_FIXTURES=DIR cargo test --release -p effnet-export --test timm_engines --
//! --ignored --nocapture` prints the table for all 81 (docs/models.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::*;
use effnet::reexports::effnet_cpu::Layout;
use effnet_export::{BatchSize, OnnxOptions, write_onnx};
use effnet_model::Pretrained;
use effnet_model::fixtures::{fixture_model, fixtures_in, max_abs_diff, read_fixture, read_input};
use effnet_model::weights::default_preprocess;

const TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn onnxruntime_available() -> bool {
    Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .is_ok_and(|s| s.success())
}

fn run_onnxruntime(model: &Path, input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let dir = model.parent().expect("model in a folder");
    let (input_path, output_path) = (dir.join("input.f32"), dir.join("output.f32"));
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input_path, bytes).expect("write input");
    let out = Command::new("python3")
        .arg(root().join("scripts/onnx_run.py"))
        .args([model, &input_path])
        .arg(shape.map(|d| d.to_string()).join(","))
        .arg(&output_path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "onnx_run.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (std::fs::read(&output_path).expect("output").chunks_exact(4))
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// `yes (diff)` / `no (layer)` for one engine (`layer`: what the config says it lacks).
fn cell(result: &Result<Option<f32>, String>, layer: Option<&str>) -> String {
    match result {
        Ok(Some(d)) => format!("yes ({d:.1e})"),
        Ok(None) => "yes".into(),
        Err(_) => format!("no: {}", layer.unwrap_or("?")),
    }
}

/// Checks every fixture in `dir` on both engines; ONNX Runtime runs only for `ort(arch)`.
fn check(dir: &Path, ort: &dyn Fn(&str) -> bool) {
    let device = Device::flex();
    let x = read_input(dir, &device).unwrap();
    let shape: [usize; 4] = x.dims();
    let input: Vec<f32> = x.clone().into_data().try_to_vec::<f32>().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let have_ort = onnxruntime_available();
    let mut failures = Vec::new();
    println!("| architecture | params | max abs logit diff (burn) | native executor | ONNX |");
    println!("|---|---:|---:|---|---|");
    for arch in fixtures_in(dir).unwrap() {
        let fixture = read_fixture(dir, &arch).unwrap();
        let imported = fixture_model(dir, &fixture, &device).unwrap();
        let (model, config) = (imported.model.fold_batchnorm(), imported.config);
        let burn: Vec<f32> = model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let burn_diff = max_abs_diff(&burn, &fixture.logits);
        let native = match effnet_model::native::executor(&model, &config) {
            Ok(exec) => {
                let y = exec.forward(&input, shape[0], shape[2], shape[3], Layout::Nchw);
                Ok(Some(max_abs_diff(&y.unwrap(), &fixture.logits)))
            }
            Err(e) => Err(e.to_string()),
        };
        let pre = Pretrained {
            preprocess: default_preprocess(&config),
            model,
            config: config.clone(),
            source: arch.clone(),
            labels: None,
            int8: None,
        };
        let options = OnnxOptions {
            batch: BatchSize::Fixed(shape[0]),
            input_size: Some(shape[2]),
            ..OnnxOptions::default()
        };
        let path = tmp.path().join(format!("{arch}.onnx"));
        let onnx = match write_onnx(&path, &pre, &options) {
            Ok(()) if have_ort && ort(&arch) => Ok(Some(max_abs_diff(
                &run_onnxruntime(&path, &input, shape),
                &fixture.logits,
            ))),
            Ok(()) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        std::fs::remove_file(&path).ok(); // EfficientNet-L2 alone is 1.9 GB
        drop(pre);
        println!(
            "| {arch} | {} | {burn_diff:.1e} | {} | {} |",
            config.num_params(),
            cell(&native, config.native_unsupported()),
            cell(&onnx, config.onnx_unsupported())
        );
        // The engines refuse exactly what the config says they cannot run, naming the layer.
        for (engine, result, expected) in [
            ("native", &native, config.native_unsupported()),
            ("onnx", &onnx, config.onnx_unsupported()),
        ] {
            match (result, expected) {
                (Ok(Some(d)), None) if *d > TOLERANCE => {
                    failures.push(format!("{arch} {engine}: max diff {d:e}"))
                }
                (Ok(_), None) => {}
                (Err(msg), Some(layer)) if msg.contains(layer) && !msg.contains('\n') => {}
                (r, e) => failures.push(format!("{arch} {engine}: got {r:?}, expected {e:?}")),
            }
        }
        if burn_diff > TOLERANCE {
            failures.push(format!("{arch} burn: max diff {burn_diff:e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn timm_architectures_run_natively_and_in_onnx_or_are_refused_by_layer() {
    // ONNX Runtime (a Python process per model) for the architectures only it checks.
    let ort = |arch: &str| {
        [
            "efficientnet_x_b3",
            "efficientnet_b0_g16_evos",
            "tf_efficientnet_es",
        ]
        .contains(&arch)
    };
    check(&root().join("tests/data/timm"), &ort);
}

#[test]
#[ignore = "needs EFFNET_TIMM_FIXTURES=DIR from `scripts/timm_family.py fixtures --all --out DIR`"]
fn all_timm_architectures_on_every_engine() {
    let dir = std::env::var("EFFNET_TIMM_FIXTURES").expect("EFFNET_TIMM_FIXTURES");
    check(Path::new(&dir), &|_| true);
}
