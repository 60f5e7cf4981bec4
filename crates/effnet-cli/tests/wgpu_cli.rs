//! `effnet bench --train --device wgpu` as a user runs it: a training benchmark on a CubeCL
//! backend (CI: lavapipe, Mesa's software Vulkan) at a tiny size. The tiny V2 keeps dropout and
//! stochastic depth on, so their random masks run on the device too; the numerics of training
//! on wgpu against the CPU are checked in crates/effnet-train/tests/wgpu_training.rs.
#![cfg(feature = "wgpu")]

mod support;
use support::{effnet, text};

const TINY: &str = "crates/effnet-train/tests/data/effnetv2_tiny.toml";

#[test]
fn bench_train_runs_on_wgpu_and_reports_timm_keys() {
    let out = effnet(&[
        "bench", "--train", "--device", "wgpu", "-m", TINY, "-b", "2", "--size", "32", "--warmup",
        "1", "--iters", "2", "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
    assert_eq!(v["device"], "wgpu", "{v}");
    assert_eq!(v["engine"], "burn", "{v}");
    assert_eq!(v["precision"], "f32", "{v}");
    assert_eq!(v["train_batch_size"], 2, "{v}");
    assert_eq!(v["train_img_size"], 32, "{v}");
    assert_eq!(v["iters"], 2, "{v}");
    let ips = v["train_samples_per_sec"].as_f64().expect("samples/s");
    let ms = v["train_step_time"].as_f64().expect("step time");
    assert!(ips > 0.0 && ms > 0.0, "{v}");
    // samples/s is the batch over the median step time.
    assert!((ips * ms / 1e3 - 2.0).abs() < 0.05, "{v}");
    eprintln!(
        "bench --train on wgpu: first iteration {:.1} s (shader compilation), then {ms:.0} ms/step",
        v["first_iter_s"].as_f64().unwrap_or(f64::NAN)
    );
}
