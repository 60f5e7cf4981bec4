//! The backbone interface (timm's `features_only` / `feature_info`): one map per resolution,
//! with the strides and widths timm reports, and the last one is exactly what the head conv reads.

use burn::prelude::*;
use effnet_model::EfficientNetConfig;

fn input(device: &Device, size: usize) -> Tensor<4> {
    let values: Vec<f32> = (0..2 * 3 * size * size)
        .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(values, [2, 3, size, size]), device)
}

#[test]
fn feature_info_matches_timm_for_v1_and_v2() {
    let device = Device::flex();
    // timm efficientnetv2_s / efficientnet_b0 feature_info: (module, reduction, channels).
    for (preset, want) in [
        (
            "efficientnetv2_s",
            vec![
                ("blocks.0", 2, 24),
                ("blocks.1", 4, 48),
                ("blocks.2", 8, 64),
                ("blocks.4", 16, 160),
                ("blocks.5", 32, 256),
            ],
        ),
        (
            "efficientnet_b0",
            vec![
                ("blocks.0", 2, 16),
                ("blocks.1", 4, 24),
                ("blocks.2", 8, 40),
                ("blocks.4", 16, 112),
                ("blocks.6", 32, 320),
            ],
        ),
    ] {
        let model = EfficientNetConfig::preset(preset).unwrap().init(&device);
        let got: Vec<(String, usize, usize)> = model
            .feature_info()
            .into_iter()
            .map(|f| (f.module, f.reduction, f.num_chs))
            .collect();
        let want: Vec<(String, usize, usize)> = want
            .into_iter()
            .map(|(m, r, c)| (m.to_string(), r, c))
            .collect();
        assert_eq!(got, want, "{preset}");
    }
}

#[test]
fn feature_maps_have_the_announced_shapes_and_the_last_feeds_the_head() {
    let device = Device::flex();
    let model = EfficientNetConfig::preset("efficientnetv2_b0")
        .unwrap()
        .init(&device)
        .fold_batchnorm();
    let x = input(&device, 64);
    let info = model.feature_info();
    let maps = model
        .forward_feature_maps(x.clone(), &[0, 1, 2, 3, 4])
        .unwrap();
    assert_eq!(maps.len(), 5);
    for (map, f) in maps.iter().zip(&info) {
        assert_eq!(
            map.dims(),
            [2, f.num_chs, 64 / f.reduction, 64 / f.reduction],
            "{f:?}"
        );
    }
    // Head conv + BN + act applied to the last map is exactly forward_features.
    let last = maps.last().unwrap().clone();
    let head = effnet_model::blocks::activate(
        effnet_model::blocks::conv_bn(&model.conv_head, &model.bn2, last),
        model.act,
    );
    let diff: f32 = (head - model.forward_features(x.clone()))
        .abs()
        .max()
        .into_scalar();
    assert_eq!(diff, 0.0f32, "same computation, same numbers");
    // A subset in any order comes back finest first, equal to the full run's maps.
    let some = model.forward_feature_maps(x.clone(), &[3, 1]).unwrap();
    assert_eq!(some.len(), 2);
    let d1: f32 = (some[0].clone() - maps[1].clone())
        .abs()
        .max()
        .into_scalar();
    let d3: f32 = (some[1].clone() - maps[3].clone())
        .abs()
        .max()
        .into_scalar();
    assert_eq!((d1, d3), (0.0f32, 0.0f32));
    let err = model.forward_feature_maps(x, &[5]).unwrap_err().to_string();
    assert!(err.contains("feature index 5 out of range"), "{err}");
}
