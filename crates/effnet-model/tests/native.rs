//! The native executor against burn's forward and the parity fixtures (tests/data/parity,
//! scripts/make_parity_fixtures.py): logits within 1e-4 on every fixture, batches > 1, odd
//! sizes, both layouts, both paddings, and the portable fallback and the AVX2 path against the
//! best SIMD path.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use effnet_cpu::{Isa, Layout};
use effnet_model::native::executor;
use effnet_model::{EfficientNet, EfficientNetConfig, import_pytorch, load_native};

const TOL: f32 = 1e-4;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// One tensor of a safetensors file as (values, shape).
fn read(path: &Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, t.shape().to_vec())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "element count");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(what: &str, ours: &[f32], want: &[f32]) {
    let d = max_diff(ours, want);
    println!("{what}: max|diff| = {d:.3e}");
    assert!(d <= TOL, "{what}: max|diff| {d:e} > {TOL:e}");
}

fn burn_logits(model: &EfficientNet, x: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), &Device::flex());
    model.forward(t).into_data().try_into_vec::<f32>().unwrap()
}

/// Deterministic pseudo-random values in [-2, 2).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn imported(name: &str, weights: &str) -> (EfficientNet, EfficientNetConfig) {
    let text = std::fs::read_to_string(data(&format!("tests/data/parity/{name}.toml"))).unwrap();
    let cfg = EfficientNetConfig::from_toml(&text).unwrap();
    let model = import_pytorch(&data(weights), &cfg, &Device::flex())
        .unwrap()
        .model
        .fold_batchnorm();
    (model, cfg)
}

/// Fixture input and logits, burn's logits, and a batch of 3 odd-sized random images.
fn check_fixture(name: &str, weights: &str) {
    let (model, cfg) = imported(name, weights);
    let exec = executor(&model, &cfg).unwrap();
    let io = data(&format!("tests/data/parity/{name}_io.safetensors"));
    let (x, s) = read(&io, "input");
    let (want, _) = read(&io, "logits");
    let ours = exec.forward(&x, s[0], s[2], s[3], Layout::Nchw).unwrap();
    assert_close(
        &format!("{name} vs reference ({})", exec.isa().name()),
        &ours,
        &want,
    );
    for (h, w) in [(37, 53), (64, 64)] {
        let shape = [3, 3, h, w];
        let x = noise(3 * 3 * h * w, (h * w) as u64);
        let ours = exec.forward(&x, 3, h, w, Layout::Nchw).unwrap();
        assert_close(
            &format!("{name} b3 {h}x{w} vs burn"),
            &ours,
            &burn_logits(&model, &x, shape),
        );
        let scalar = executor(&model, &cfg).unwrap().with_isa(Isa::scalar());
        let fallback = scalar.forward(&x, 3, h, w, Layout::Nchw).unwrap();
        assert_close(
            &format!("{name} b3 {h}x{w} scalar vs simd"),
            &fallback,
            &ours,
        );
        if let Some(avx2) = Isa::avx2().filter(|i| *i != exec.isa()) {
            let exec2 = executor(&model, &cfg).unwrap().with_isa(avx2);
            let y = exec2.forward(&x, 3, h, w, Layout::Nchw).unwrap();
            assert_close(
                &format!("{name} b3 {h}x{w} avx2 vs burn"),
                &y,
                &burn_logits(&model, &x, shape),
            );
        }
    }
}

#[test]
fn torchvision_layout_v2_symmetric_padding_matches() {
    check_fixture("tv_v2_tiny", "tests/data/parity/tv_v2_tiny.pth");
}

#[test]
fn timm_tf_v2_same_padding_matches() {
    check_fixture(
        "timm_tf_v2_tiny",
        "tests/data/parity/timm_tf_v2_tiny.safetensors",
    );
}

#[test]
fn real_lite0_on_the_photos_matches_reference_and_burn() {
    let pre = load_native(&data("weights/efficientnet_lite0.bpk"), &Device::flex()).unwrap();
    let model = pre.model.fold_batchnorm();
    let exec = executor(&model, &pre.config).unwrap();
    let io = data("tests/data/parity/lite0_io.safetensors");
    for (input, logits) in [("input", "logits"), ("random_input", "random_logits")] {
        let (x, s) = read(&io, input);
        let (want, _) = read(&io, logits);
        let ours = exec.forward(&x, s[0], s[2], s[3], Layout::Nchw).unwrap();
        assert_close(&format!("lite0 {input} vs reference"), &ours, &want);
        let burn = burn_logits(&model, &x, [s[0], s[1], s[2], s[3]]);
        assert_close(&format!("lite0 {input} vs burn"), &ours, &burn);
    }
}

#[test]
fn layouts_threads_and_batch_splits_agree() {
    let (model, cfg) = imported(
        "timm_tf_v2_tiny",
        "tests/data/parity/timm_tf_v2_tiny.safetensors",
    );
    let exec = executor(&model, &cfg).unwrap();
    let (b, h, w) = (5, 41, 29);
    let nchw = noise(b * 3 * h * w, 7);
    let mut nhwc = vec![0f32; nchw.len()];
    for i in 0..b {
        for c in 0..3 {
            for p in 0..h * w {
                nhwc[(i * h * w + p) * 3 + c] = nchw[(i * 3 + c) * h * w + p];
            }
        }
    }
    let a = exec.forward(&nchw, b, h, w, Layout::Nchw).unwrap();
    let n = exec.forward(&nhwc, b, h, w, Layout::Nhwc).unwrap();
    assert_close("nhwc vs nchw", &n, &a);
    // One image at a time (tiles over threads) and 1 or 3 threads give the same logits.
    let classes = exec.num_classes();
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let all = pool.install(|| exec.forward(&nchw, b, h, w, Layout::Nchw).unwrap());
        assert_close(&format!("{threads} threads"), &all, &a);
        let per = 3 * h * w;
        for i in 0..b {
            let one = pool.install(|| {
                exec.forward(&nchw[i * per..(i + 1) * per], 1, h, w, Layout::Nchw)
                    .unwrap()
            });
            assert_close("single image", &one, &a[i * classes..(i + 1) * classes]);
        }
    }
    let (_, profile) = exec.profile(&nchw, b, h, w, Layout::Nchw).unwrap();
    assert!(profile.seconds.iter().sum::<f64>() > 0.0);
}

#[test]
fn bad_input_is_an_error() {
    let (model, cfg) = imported("tv_v2_tiny", "tests/data/parity/tv_v2_tiny.pth");
    let exec = executor(&model, &cfg).unwrap();
    let err = exec.forward(&[0.0; 10], 1, 8, 8, Layout::Nchw).unwrap_err();
    assert!(err.to_string().contains("expected 1x3x8x8"), "{err}");
    let mut wrong = cfg.clone();
    wrong.num_classes += 1;
    assert!(executor(&model, &wrong).is_err());
}
