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
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    let b: Vec<f32> = gpu
        .logits(&images)
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
