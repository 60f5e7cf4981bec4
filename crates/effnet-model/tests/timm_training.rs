//! Every layer type the timm family added trains on the CPU: a reduced-size network with it
//! runs forward and backward, takes one optimizer step, and the loss is finite and the
//! layer's own parameters move.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use burn::tensor::Distribution;
use effnet_model::{EfficientNet, EfficientNetConfig};

/// A reduced `base` preset (narrow, shallow, 10 classes) with `extra` TOML on top.
fn reduced(base: &str, extra: &str) -> EfficientNetConfig {
    let text = format!(
        "base = \"{base}\"\nname = \"{base}_smoke\"\nnum_classes = 10\ndropout = 0.1\n\
         drop_path = 0.1\n{extra}"
    );
    EfficientNetConfig::from_toml(&text).unwrap_or_else(|e| panic!("{base}: {e}"))
}

/// Values of every tensor whose path contains `part`.
fn values_of(model: &EfficientNet, part: &str) -> Vec<f32> {
    model
        .collect(None, None, true)
        .into_iter()
        .filter(|t| t.name.contains(part))
        .flat_map(|t| {
            let bytes = t.to_bytes().unwrap();
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One SGD step on random images: the loss is finite and the tensors named `layer` change.
fn trains(cfg: &EfficientNetConfig, layer: &str, size: usize) {
    let device = Device::flex().autodiff();
    let model = cfg.init(&device);
    let before = values_of(&model, layer);
    assert!(!before.is_empty(), "{}: no '{layer}' tensors", cfg.name);
    let x = Tensor::<4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 7], [2]), &device);
    let logits = model.forward(x);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets);
    let value: f32 = loss.clone().into_scalar();
    assert!(value.is_finite(), "{}: loss {value}", cfg.name);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = SgdConfig::new().init();
    let model = optim.step(0.1, model, grads);
    let after = values_of(&model, layer);
    assert_eq!(before.len(), after.len());
    assert!(
        before.iter().zip(&after).any(|(a, b)| a != b),
        "{}: '{layer}' did not move",
        cfg.name
    );
    assert!(
        after.iter().all(|v| v.is_finite()),
        "{}: non-finite weights",
        cfg.name
    );
}

#[test]
fn group_norm_trains() {
    trains(&reduced("test_efficientnet_gn", ""), "norm1", 32);
}

#[test]
fn layer_norm_trains() {
    trains(&reduced("test_efficientnet_ln", ""), "norm2", 32);
}

#[test]
fn evonorm_trains() {
    trains(&reduced("test_efficientnet_evos", ""), ".v", 32);
}

#[test]
fn condconv_trains() {
    let cfg = reduced(
        "efficientnet_cc_b0_4e",
        "width_mult = 0.25\ndepth_mult = 0.3\n",
    );
    trains(&cfg, "routing_fn", 32);
    trains(&cfg, "blocks.4.0.conv_pw", 32);
}

#[test]
fn global_context_trains() {
    let cfg = reduced(
        "gc_efficientnetv2_rw_t",
        "width_mult = 0.25\ndepth_mult = 0.2\n",
    );
    trains(&cfg, "gc.conv_attn", 32);
}

#[test]
fn blur_pool_and_grouped_convs_train() {
    let blur = reduced(
        "efficientnet_blur_b0",
        "width_mult = 0.25\ndepth_mult = 0.3\n",
    );
    trains(&blur, "conv_dw", 32);
    let grouped = reduced(
        "efficientnet_b0_g16_evos",
        "width_mult = 0.25\ndepth_mult = 0.3\n",
    );
    trains(&grouped, "conv_dw", 32);
}

#[test]
fn space_to_depth_and_fused_se_train() {
    let cfg = reduced("efficientnet_x_b3", "width_mult = 0.25\ndepth_mult = 0.3\n");
    trains(&cfg, "conv_s2d", 32);
    trains(&cfg, "blocks.1.0.se", 32);
}
