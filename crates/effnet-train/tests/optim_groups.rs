//! Weight decay reaches conv/linear weights but not BatchNorm parameters or biases, through the
//! paths burn's ModuleOptimizer actually sees on an EfficientNet.

use effnet_testutil as common;

use burn::optim::GradientsParams;
use burn::prelude::*;
use effnet_model::EfficientNetConfig;
use effnet_train::config::{OptimKind, OptimSection};
use effnet_train::optim::build_optimizer;

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn adamw_decays_weights_but_not_bn_or_bias() {
    let dev = Device::flex();
    let ad = dev.clone().autodiff();
    let cfg = EfficientNetConfig::from_name_or_file(&common::tiny_model()).unwrap();
    let mut model = cfg.init(&dev);
    // Non-zero bias, so decay on it would be visible.
    model.classifier.bias = Some(burn::module::Param::from_tensor(Tensor::ones(
        [cfg.num_classes],
        &dev,
    )));
    let model = model.train();
    let before_w = vals(model.conv_stem.weight.val().inner());
    let before_gamma = vals(model.bn1.as_ref().expect("stem BN").gamma.val().inner());
    let before_bias = vals(model.classifier.bias.as_ref().unwrap().val().inner());
    let mut optim = build_optimizer(&OptimSection {
        name: OptimKind::Adamw,
        lr_base: 1.0,
        lr_base_batch: 256,
        weight_decay: 0.5,
        no_decay_bn_bias: true,
        momentum: 0.9,
        rho: 0.9,
        eps: 1e-8,
        betas: [0.9, 0.999],
        nesterov: true,
        lr: None,
    })
    .unwrap();
    // A zero loss: every parameter gets a zero gradient, so only weight decay moves anything.
    let x = Tensor::<4>::ones([2, 3, 32, 32], &ad);
    let loss = model.forward(x).sum().mul_scalar(0.0);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(0.1, model, grads);
    let after_w = vals(model.conv_stem.weight.val().inner());
    let after_gamma = vals(model.bn1.as_ref().expect("stem BN").gamma.val().inner());
    let after_bias = vals(model.classifier.bias.as_ref().unwrap().val().inner());
    for (a, b) in before_w.iter().zip(&after_w) {
        assert!(
            (b - a * 0.95).abs() < 1e-6,
            "conv weight not decayed: {a} -> {b}"
        );
    }
    assert_eq!(before_gamma, after_gamma, "BN gamma was decayed");
    assert_eq!(before_bias, after_bias, "classifier bias was decayed");
}

#[test]
fn global_norm_clipping_scales_all_gradients_to_the_threshold() {
    let dev = Device::flex();
    let ad = dev.clone().autodiff();
    let cfg = EfficientNetConfig::from_name_or_file(&common::tiny_model()).unwrap();
    let model = cfg.init(&dev).train();
    let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &ad);
    let loss = model.forward(x).powf_scalar(2.0).sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let before = effnet_train::optim::clip_grad_norm(&model, &mut grads, 1e9);
    assert!(before > 1e-3, "norm {before}");
    let target = before / 4.0;
    let reported = effnet_train::optim::clip_grad_norm(&model, &mut grads, target);
    assert!((reported - before).abs() < 1e-3 * before);
    let after = effnet_train::optim::clip_grad_norm(&model, &mut grads, 1e9);
    assert!(
        (after - target).abs() < 1e-3 * target,
        "{after} vs {target}"
    );
}
