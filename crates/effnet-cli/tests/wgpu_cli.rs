//! `effnet bench --train --profile --device wgpu` as a user (and scripts/gpu-check.sh on a GPU)
//! runs it: a training benchmark and the per-layer split on a CubeCL backend (CI: lavapipe,
//! Mesa's software Vulkan) at a tiny size. The tiny V2 keeps dropout and stochastic depth on, so
//! their random masks run on the device too; the numerics of training on wgpu against the CPU
//! are checked in crates/effnet-train/tests/wgpu_training.rs.
#![cfg(feature = "wgpu")]

mod support;
use support::{effnet, text};

const TINY: &str = "crates/effnet-train/tests/data/effnetv2_tiny.toml";

#[test]
fn bench_train_runs_on_wgpu_with_the_per_layer_profile() {
    let out = effnet(&[
        "bench",
        "--train",
        "--profile",
        "--device",
        "wgpu",
        "-m",
        TINY,
        "-b",
        "2",
        "--size",
        "32",
        "--warmup",
        "1",
        "--iters",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (first, profile) = stdout
        .split_once('\n')
        .expect("a JSON line, then the profile");
    let v: serde_json::Value = serde_json::from_str(first.trim()).expect("JSON");
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
    // The split the GPU check reads (scripts/gpu-check.sh): every layer kind of the tiny V2, the
    // optimiser and the EMA, each with a time.
    assert!(profile.contains("whole step"), "{profile}");
    for kind in [
        "stem",
        "fused-MBConv",
        "depthwise",
        "squeeze-excite",
        "BN + activation",
        "AdamW step",
        "EMA update",
    ] {
        let row = profile
            .lines()
            .find(|l| l.starts_with('|') && l.contains(kind))
            .unwrap_or_else(|| panic!("no {kind} row: {profile}"));
        let total: f64 = row
            .split('|')
            .nth(5)
            .and_then(|c| c.trim().parse().ok())
            .expect(row);
        assert!(total > 0.0, "{row}");
    }
    eprintln!(
        "bench --train on wgpu: first iteration {:.1} s (shader compilation), then {ms:.0} ms/step",
        v["first_iter_s"].as_f64().unwrap_or(f64::NAN)
    );
}
