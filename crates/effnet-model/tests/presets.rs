//! Every preset builds with exactly the published parameter count (timm's architectures: see
//! timm_family.rs), and the structural rules (stochastic-depth ramp, residuals, SE width) hold.

use burn::prelude::*;
use effnet_model::{Block, EfficientNetConfig, PRESETS};

/// torchvision's and effnet's own presets (timm's are checked against timm's manifest).
const EXPECTED: &[(&str, usize)] = &[
    ("efficientnet_v2_s", 21_458_488),
    ("efficientnet_v2_m", 54_139_356),
    ("efficientnet_v2_l", 118_515_272),
    ("efficientnetv2_b0", 7_139_704),
    ("efficientnetv2_b1", 8_141_052),
    ("efficientnetv2_b2", 10_096_086),
    ("efficientnetv2_b3", 14_358_406),
    // torchvision efficientnet_b0..b7 are timm's presets of the same names.
    ("efficientnet_b0", 5_288_548),
    ("efficientnet_b1", 7_794_184),
    ("efficientnet_b7", 66_347_960),
];

#[test]
fn parameter_counts_match_published() {
    let device = Device::flex();
    assert_eq!(
        EXPECTED.len(),
        PRESETS.len() - effnet_model::TIMM_ARCHITECTURES.len() + 3,
        "every non-timm preset has an expected count"
    );
    let mut wrong = Vec::new();
    for (name, expected) in EXPECTED {
        let cfg = EfficientNetConfig::preset(name).unwrap();
        if cfg.num_params() != *expected {
            wrong.push(format!(
                "{name}: counted {}, expected {expected}",
                cfg.num_params()
            ));
        }
        if *expected > 30_000_000 {
            continue; // counted above; building it again adds seconds, not checks
        }
        let model = cfg.init(&device);
        let got = model.num_trainable_params();
        if got != *expected {
            wrong.push(format!("{name}: got {got}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn block_counts_and_drop_path_ramp() {
    let device = Device::flex();
    for (name, blocks) in [
        ("efficientnetv2_s", 40),
        ("efficientnetv2_m", 57),
        ("efficientnetv2_l", 79),
        ("efficientnetv2_xl", 100),
        ("efficientnetv2_b0", 21),
        ("efficientnet_b0", 16),
    ] {
        let cfg = EfficientNetConfig::preset(name).unwrap();
        assert_eq!(cfg.block_count(), blocks, "{name}");
        if blocks > 60 {
            continue; // building the big ones again adds nothing
        }
        let rates = cfg.init(&device).drop_path_rates();
        assert_eq!(rates.len(), blocks);
        for (i, r) in rates.iter().enumerate() {
            let want = cfg.drop_path * i as f64 / blocks as f64;
            assert!((r - want).abs() < 1e-12, "{name} block {i}: {r} vs {want}");
        }
        assert_eq!(rates[0], 0.0);
    }
}

#[test]
fn residual_only_at_stride_one_with_equal_channels_and_se_from_block_input() {
    let device = Device::flex();
    let model = EfficientNetConfig::preset("efficientnetv2_s")
        .unwrap()
        .init(&device);
    // Stage 4 (index 3) first block: MBConv 64 -> 128, stride 2: no skip; SE squeeze 16 = 64/4.
    match &model.blocks[3][0] {
        Block::InvertedResidual(b) => {
            assert!(!b.has_skip);
            let se = b.se.as_ref().expect("MBConv has SE");
            assert_eq!(se.conv_reduce.weight.dims(), [16, 256, 1, 1]);
        }
        other => panic!("expected MBConv, got {other:?}"),
    }
    match &model.blocks[3][1] {
        Block::InvertedResidual(b) => {
            assert!(b.has_skip);
            assert_eq!(
                b.se.as_ref().unwrap().conv_reduce.weight.dims(),
                [32, 512, 1, 1]
            );
        }
        other => panic!("expected MBConv, got {other:?}"),
    }
    // Fused e1 stage keeps its activation and has a skip (24 -> 24, stride 1).
    assert!(matches!(&model.blocks[0][0], Block::ConvBnAct(b) if b.has_skip));
    assert!(matches!(&model.blocks[1][0], Block::EdgeResidual(b) if !b.has_skip));
}

#[test]
fn config_round_trips_and_rejects_bad_values() {
    for (name, text) in PRESETS {
        let cfg = EfficientNetConfig::from_toml(text).unwrap();
        assert_eq!(&cfg.name, name);
        assert_eq!(EfficientNetConfig::from_toml(&cfg.to_toml()).unwrap(), cfg);
    }
    let s = PRESETS[0].1;
    let err = EfficientNetConfig::from_toml(&format!("bogus_key = 1\n{s}")).unwrap_err();
    assert!(err.to_string().contains("bogus_key"), "{err}");
    let err =
        EfficientNetConfig::from_toml(&s.replace("dropout = 0.2", "dropout = 1.5")).unwrap_err();
    assert!(err.to_string().contains("dropout"), "{err}");
    let err = EfficientNetConfig::preset("efficientnetv2_ss").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("closest") && msg.contains("efficientnetv2_s,"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn forward_shapes_and_reset_classifier() {
    let device = Device::flex();
    let model = EfficientNetConfig::preset("efficientnetv2_b0")
        .unwrap()
        .init(&device);
    let x = Tensor::<4>::zeros([2, 3, 64, 64], &device);
    assert_eq!(model.forward_features(x.clone()).dims(), [2, 1280, 2, 2]);
    assert_eq!(
        model
            .forward_head(model.forward_features(x.clone()), true)
            .dims(),
        [2, 1280]
    );
    let model = model.reset_classifier(7);
    assert_eq!(model.num_classes(), 7);
    assert_eq!(model.forward(x).dims(), [2, 7]);
}

#[test]
fn width_rounding_rules_differ_only_where_v1_corrects() {
    use effnet_model::Rounding;
    use effnet_model::config::round_channels;
    // Plain rounding to a multiple of 8 (both rules).
    assert_eq!(round_channels(32, 1.2, Rounding::V2), 40);
    assert_eq!(round_channels(32, 1.2, Rounding::V1), 40);
    assert_eq!(round_channels(1280, 1.1, Rounding::V2), 1408);
    // 17 * 0.7 = 11.9 rounds down to 8, losing > 10 %: V1 adds a divisor, V2 does not.
    assert_eq!(round_channels(17, 0.7, Rounding::V2), 8);
    assert_eq!(round_channels(17, 0.7, Rounding::V1), 16);
    // Never below 8.
    assert_eq!(round_channels(4, 1.0, Rounding::V2), 8);
}

#[test]
fn drop_path_is_per_sample_and_only_in_training() {
    use effnet_model::DropPath;
    let plain = Device::flex();
    let x = Tensor::<4>::ones([64, 2, 3, 3], &plain);
    let dp = DropPath::new(0.5);
    // Inference device: identity.
    let y = dp.forward(x.clone());
    assert_eq!(y.into_data(), x.clone().into_data());
    // Autodiff device: each sample either all zeros or all 1/keep = 2.
    let ad = plain.clone().autodiff();
    let y = dp.forward(Tensor::<4>::ones([64, 2, 3, 3], &ad));
    let v: Vec<f32> = y.into_data().convert::<f32>().try_into_vec().unwrap();
    let mut kept = 0;
    for sample in v.chunks(18) {
        assert!(sample.iter().all(|&s| s == sample[0]), "per-sample mask");
        assert!(
            sample[0] == 0.0 || (sample[0] - 2.0).abs() < 1e-6,
            "{}",
            sample[0]
        );
        kept += (sample[0] != 0.0) as usize;
    }
    assert!((10..=54).contains(&kept), "about half kept, got {kept}/64");
}

#[test]
fn derived_presets_are_their_base_plus_overrides() {
    let b0 = EfficientNetConfig::preset("efficientnetv2_b0").unwrap();
    let b2 = EfficientNetConfig::preset("efficientnetv2_b2").unwrap();
    assert_eq!(b2.stages, b0.stages);
    assert_eq!((b2.width_mult, b2.depth_mult, b2.dropout), (1.1, 1.2, 0.3));
    assert_eq!((b2.train_size, b2.eval_size), (208, 260));
    assert_eq!(b2.name, "efficientnetv2_b2");
    // A user's model file on top of a preset: only what differs.
    let mine = EfficientNetConfig::from_toml(
        "base = \"efficientnet_v2_s\"\nname = \"my_s\"\nnum_classes = 10\ndrop_path = 0.1\n",
    )
    .unwrap();
    let s = EfficientNetConfig::preset("efficientnet_v2_s").unwrap();
    assert_eq!(mine.stages, s.stages);
    assert_eq!((mine.num_classes, mine.drop_path), (10, 0.1));
    assert_eq!(mine.eval_size, s.eval_size);
    // Overrides are still checked, unknown keys and bases still rejected.
    let err =
        EfficientNetConfig::from_toml("base = \"efficientnetv2_b0\"\ndropout = 2.0\n").unwrap_err();
    assert!(err.to_string().contains("dropout"), "{err}");
    let err = EfficientNetConfig::from_toml("base = \"efficientnetv2_b0\"\nwidht_mult = 2.0\n")
        .unwrap_err();
    assert!(err.to_string().contains("widht_mult"), "{err}");
    let err = EfficientNetConfig::from_toml("base = \"resnet50\"\n").unwrap_err();
    assert!(err.to_string().contains("resnet50"), "{err}");
    let err = EfficientNetConfig::from_toml("base = 3\n").unwrap_err();
    assert!(err.to_string().contains("base"), "{err}");
}

#[test]
fn names_users_know_are_aliases() {
    for (alias, name) in [
        ("efficientnet_v2_s", "efficientnet_v2_s"),
        ("efficientnet_v2_m", "efficientnet_v2_m"),
        ("EfficientNet-Lite0", "tf_efficientnet_lite0"),
        ("efficientnet-b0", "tf_efficientnet_b0"),
        ("efficientnet_lite0", "efficientnet_lite0"),
        ("tf_efficientnetv2_s.in21k_ft_in1k", "tf_efficientnetv2_s"),
        ("timm/efficientnet_b3.ra2_in1k", "efficientnet_b3"),
        ("hf-hub:timm/tinynet_a.in1k", "tinynet_a"),
        ("tf_efficientnet_b0_ns", "tf_efficientnet_b0"),
        ("efficientnetv2-b1", "efficientnetv2_b1"),
    ] {
        let cfg = EfficientNetConfig::preset(alias).unwrap_or_else(|e| panic!("{alias}: {e}"));
        assert_eq!(cfg.name, name, "{alias}");
    }
    // A deprecated name carries its tag; a tag's class count is the head's.
    let ns = effnet_model::resolve_name("tf_efficientnet_b0_ns").unwrap();
    assert_eq!(ns.tag.map(|t| t.tag.as_str()), Some("ns_jft_in1k"));
    let in21k = EfficientNetConfig::preset("tf_efficientnetv2_s.in21k").unwrap();
    assert_eq!(in21k.num_classes, 21843);
    // timm's names mean timm's architectures: the tf_ ports differ in padding and BN epsilon,
    // torchvision's V2 in BN epsilon, both with the same shapes.
    let timm = EfficientNetConfig::preset("efficientnetv2_s").unwrap();
    let tf = EfficientNetConfig::preset("tf_efficientnetv2_s").unwrap();
    let tv = EfficientNetConfig::preset("efficientnet_v2_s").unwrap();
    assert_eq!(
        (timm.bn_eps, timm.padding),
        (1e-5, effnet_model::PaddingMode::Symmetric)
    );
    assert_eq!(
        (tf.bn_eps, tf.padding),
        (1e-3, effnet_model::PaddingMode::Same)
    );
    assert_eq!(
        (tv.bn_eps, tv.padding),
        (1e-3, effnet_model::PaddingMode::Symmetric)
    );
    assert_eq!(timm.num_params(), tv.num_params());
    assert!(!timm.same_architecture(&tv) && !timm.same_architecture(&tf));
    let lite = EfficientNetConfig::preset("efficientnet_lite0").unwrap();
    assert_eq!(
        (lite.bn_eps, lite.padding),
        (1e-5, effnet_model::PaddingMode::Symmetric)
    );
    // Unknown tags list the architecture's tags.
    let err = EfficientNetConfig::preset("efficientnet_b0.bogus").unwrap_err();
    assert!(err.to_string().contains("ra_in1k"), "{err}");
}

#[test]
fn pretrained_tags_carry_timms_evaluation_preprocessing() {
    use effnet_model::{Interpolation, default_tag, resolve_name};
    // Test size and crop where the tag has them (timm validate.py's default).
    let tag = resolve_name("tf_efficientnetv2_s.in21k_ft_in1k")
        .unwrap()
        .tag
        .unwrap();
    let p = tag.preprocess();
    assert_eq!((p.crop, p.resize), (384, 384));
    assert_eq!((p.mean, p.std), ([0.5; 3], [0.5; 3]));
    let b1 = default_tag("efficientnet_b1").unwrap();
    assert_eq!(b1.tag, "ra4_e3600_r240_in1k");
    let p = b1.preprocess();
    assert_eq!(
        (p.crop, p.resize, p.interpolation),
        (288, 288, Interpolation::Bicubic)
    );
    // Input size and crop_pct otherwise: 224 / 0.875 = 256.
    let p = resolve_name("efficientnet_b0.ra_in1k")
        .unwrap()
        .tag
        .unwrap()
        .preprocess();
    assert_eq!((p.crop, p.resize), (224, 256));
    assert_eq!(p.mean, [0.485, 0.456, 0.406]);
    // Every tag names a preset, and every preset with a default tag has its weights listed.
    for arch in effnet_model::TIMM_ARCHITECTURES {
        for t in effnet_model::pretrained_tags(arch) {
            assert_eq!(&t.architecture, arch);
            assert!(t.preprocess().validate().is_ok(), "{}", t.full_name());
        }
    }
    let tags: usize = (effnet_model::TIMM_ARCHITECTURES.iter())
        .map(|a| effnet_model::pretrained_tags(a).len())
        .sum();
    assert_eq!(tags, 97, "timm 1.0.31's pretrained tags of the family");
}
