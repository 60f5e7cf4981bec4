//! The wgpu backend computes what the CPU computes (CI runs it on Mesa's software Vulkan,
//! lavapipe). Autotune has shipped wrong-result conv kernels before (burn#5626): this is the guard.
#![cfg(all(feature = "wgpu", feature = "bundled"))]

use std::path::Path;

use effnet::{Classifier, Device, load_rgb, parse_device};

#[test]
fn bundled_lite0_on_wgpu_matches_cpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/photos");
    let images: Vec<_> = ["chelsea.png", "china.jpg", "coffee.png", "flower.jpg"]
        .iter()
        .map(|n| load_rgb(&root.join(n)).unwrap())
        .collect();
    let cpu = Classifier::bundled(&Device::flex()).unwrap();
    let gpu = Classifier::bundled(&parse_device("wgpu").unwrap()).unwrap();
    let a: Vec<f32> = cpu
        .logits(&images)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    let b: Vec<f32> = gpu
        .logits(&images)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    println!("wgpu vs cpu: max |logit diff| = {max:.3e}");
    assert!(max <= 1e-3, "max |logit diff| {max}");
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
            .unwrap()
    };
    for (i, (ra, rb)) in a.chunks(1000).zip(b.chunks(1000)).enumerate() {
        assert_eq!(argmax(ra), argmax(rb), "photo {i}: top-1 differs");
    }
}

/// f16 on wgpu needs the adapter's `SHADER_F16`; lavapipe may not expose it, and then this test
/// says so and checks only that the request is refused cleanly.
#[test]
fn bundled_lite0_in_f16_on_wgpu_matches_cpu_f32_when_the_adapter_has_shader_f16() {
    use effnet::ComputePrecision;
    let device = parse_device("wgpu").unwrap();
    let gpu = Classifier::bundled(&device).unwrap();
    if !ComputePrecision::F16.supported_on(&device) {
        eprintln!("skipped: this wgpu adapter has no SHADER_F16 (f16 is not available on it)");
        let err = gpu
            .with_precision(ComputePrecision::F16)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("not supported"), "{err}");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/photos");
    let images: Vec<_> = ["chelsea.png", "coffee.png"]
        .iter()
        .map(|n| load_rgb(&root.join(n)).unwrap())
        .collect();
    let cpu = Classifier::bundled(&Device::flex()).unwrap();
    let half = gpu.with_precision(ComputePrecision::F16).unwrap();
    let values = |c: &Classifier| -> Vec<f32> {
        (c.logits(&images)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec())
        .unwrap()
    };
    let (a, b) = (values(&cpu), values(&half));
    let max = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    println!("wgpu f16 vs cpu f32: max |logit diff| = {max:.3e} (tolerance 0.1)");
    assert!(max <= 0.1, "max |logit diff| {max}");
}
