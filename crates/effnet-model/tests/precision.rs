//! Mixed precision on a reduced EfficientNetV2 (Fused-MBConv, MBConv with SE, SiLU): bf16 and
//! f16 forwards stay close to f32, gradients reach the f32 parameters in f32, and BatchNorm keeps
//! f32 statistics.
//!
//! Tolerances are relative to the largest |f32 logit| of the batch: bf16 (8 significant bits)
//! within 5 %, f16 (11 bits) within 1 %. Gradients (no loss scaling) are compared by the
//! relative L2 norm of their difference, which a single unlucky element cannot dominate: bf16
//! within 25 %, f16 within 6 %. Over 24 seeds of this net the largest were 14 % and 3.1 %; an
//! f32 or wrongly cast backward gives 0 or about 100 %. Measured values are printed
//! (`--nocapture`).

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::DType;
use effnet_model::{ComputePrecision, EfficientNet, EfficientNetConfig};

const TINY: &str = include_str!("../../effnet-train/tests/data/effnetv2_tiny.toml");

/// The device RNG is shared by the tests running in parallel: seeding and drawing the initial
/// weights under one lock gives every test (and every run, here or in CI) the same model.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Parameters are initialised lazily, on first use; reading each one draws it now.
struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

fn seeded(cfg: &EfficientNetConfig, device: &Device) -> EfficientNet {
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(17);
    let model = cfg.init(device);
    model.visit(&mut Materialise);
    model
}

fn tiny(device: &Device) -> EfficientNet {
    seeded(
        &EfficientNetConfig::from_toml(TINY).expect("tiny model"),
        device,
    )
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32 values")
}

/// Largest |a - b| over the largest |a|.
fn relative_max_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// |a - b| over |a| in the L2 norm.
fn relative_l2_diff(a: &[f32], b: &[f32]) -> f32 {
    let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
    let diff = norm(&mut a.iter().zip(b).map(|(x, y)| x - y));
    diff / norm(&mut a.iter().copied()).max(1e-12)
}

/// A fixed input batch (not from the device RNG, which tests running in parallel share).
fn input(device: &Device) -> Tensor<4> {
    let n = 4 * 3 * 32 * 32;
    let values: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.37).sin() + (i as f32 * 0.011).cos()) * 0.8)
        .collect();
    Tensor::from_data(TensorData::new(values, [4, 3, 32, 32]), device)
}

#[test]
fn f32_forward_with_is_the_plain_forward() {
    let device = Device::flex();
    let model = tiny(&device);
    let x = input(&device);
    let plain = values(model.forward(x.clone()));
    let with = values(model.forward_with(x, ComputePrecision::F32));
    assert_eq!(plain, with);
}

#[test]
fn half_forwards_stay_close_to_f32_with_f32_logits() {
    let device = Device::flex();
    let model = tiny(&device);
    let x = input(&device);
    let reference = values(model.forward(x.clone()));
    for (precision, tol) in [
        (ComputePrecision::Bf16, 0.05),
        (ComputePrecision::F16, 0.01),
    ] {
        let logits = model.forward_with(x.clone(), precision);
        assert_eq!(logits.dtype(), DType::F32, "{precision} logits are f32");
        let got = values(logits);
        let rel = relative_max_diff(&reference, &got);
        println!("tiny V2 {precision}: max |diff| / max |logit| = {rel:.2e} (tolerance {tol})");
        assert!(rel < tol, "{precision}: relative difference {rel} >= {tol}");
        assert_ne!(
            got, reference,
            "{precision} must really compute in half precision"
        );
    }
}

/// Gradients of three weights (stem, head conv, classifier) after one backward of `model`
/// computing in `precision`, and their types.
fn grads(model: &EfficientNet, precision: ComputePrecision) -> (Vec<f32>, Vec<DType>) {
    let x = input(&model.conv_stem.weight.device());
    let loss = model.forward_with(x, precision).powf_scalar(2.0).mean();
    let g = loss.backward();
    let weights = [&model.conv_stem.weight, &model.conv_head.weight];
    let mut values = Vec::new();
    let mut dtypes = Vec::new();
    let mut take = |grad: Tensor<4>| {
        dtypes.push(grad.dtype());
        values.extend(
            grad.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap(),
        );
    };
    for w in weights {
        take(w.grad(&g).expect("gradient of a conv weight"));
    }
    let lin = model.classifier.weight.grad(&g).expect("classifier grad");
    take(lin.unsqueeze());
    (values, dtypes)
}

#[test]
fn half_backward_gives_f32_gradients_close_to_f32() {
    // Deterministic: no stochastic depth or dropout, one model for every precision.
    let device = Device::flex().autodiff();
    let mut cfg = EfficientNetConfig::from_toml(TINY).expect("tiny model");
    (cfg.drop_path, cfg.dropout) = (0.0, 0.0);
    let model = seeded(&cfg, &device);
    let (reference, _) = grads(&model, ComputePrecision::F32);
    let (again, _) = grads(&model, ComputePrecision::F32);
    assert!(reference == again, "the comparison is deterministic");
    for (precision, tol) in [
        (ComputePrecision::Bf16, 0.25),
        (ComputePrecision::F16, 0.06),
    ] {
        let (got, dtypes) = grads(&model, precision);
        assert!(
            dtypes.iter().all(|d| *d == DType::F32),
            "{precision}: gradients must be f32 (master weights), got {dtypes:?}"
        );
        let rel = relative_l2_diff(&reference, &got);
        println!("tiny V2 {precision} gradients: |diff| / |grad| = {rel:.2e} (tolerance {tol})");
        assert!(rel < tol, "{precision}: gradient difference {rel} >= {tol}");
        assert!(
            rel > 0.0,
            "{precision} must really compute in half precision"
        );
    }
}

#[test]
fn half_training_forward_keeps_batchnorm_statistics_in_f32() {
    let device = Device::flex().autodiff();
    let model = tiny(&device).train();
    let before = model.bn1.as_ref().unwrap().running_mean.value_sync();
    let _ = model.forward_with(input(&device), ComputePrecision::Bf16);
    let bn = model.bn1.as_ref().unwrap();
    let after = bn.running_mean.value_sync();
    assert_eq!(after.dtype(), DType::F32);
    assert_eq!(bn.gamma.val().dtype(), DType::F32);
    let moved = (after - before).abs().max().into_scalar::<f32>();
    assert!(moved > 0.0, "the running mean was updated");
    // The f32 parameters were not replaced by half copies.
    assert_eq!(model.conv_stem.weight.val().dtype(), DType::F32);
}

#[test]
fn precision_names_parse_and_round_trip() {
    for p in ComputePrecision::ALL {
        assert_eq!(p.name().parse::<ComputePrecision>(), Ok(p));
        let toml = toml::to_string(&std::collections::BTreeMap::from([("p", p)])).unwrap();
        assert!(toml.contains(&format!("\"{}\"", p.name())), "{toml}");
    }
    assert_eq!("BF16".parse(), Ok(ComputePrecision::Bf16));
    assert_eq!("fp16".parse(), Ok(ComputePrecision::F16));
    let err = "f8".parse::<ComputePrecision>().unwrap_err();
    assert_eq!(
        err,
        "unknown precision 'f8' (expected one of: f32, bf16, f16)"
    );
    assert!(ComputePrecision::Bf16.supported_on(&Device::flex()));
    assert!(ComputePrecision::F16.supported_on(&Device::flex()));
}
