//! `effnet models [PATTERN]` and model names everywhere `-m` is taken: timm's wildcards, the 81
//! timm architectures, tags and aliases, closest-name errors, and weights with NaN refused.

mod support;
use support::{assert_clean_error, effnet, root, text};

#[test]
fn models_lists_every_timm_architecture_with_engines_tags_and_aliases() {
    let out = effnet(&["models"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let rows: Vec<&str> = s.lines().skip(1).filter(|l| !l.contains(" of ")).collect();
    assert_eq!(rows.len(), effnet::preset_names().len(), "{s}");
    let timm = rows.iter().filter(|r| r.contains(" timm ")).count();
    assert_eq!(timm, 81, "{s}");
    let row = |name: &str| {
        *rows
            .iter()
            .find(|r| r.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing: {s}"))
    };
    // Parameters as timm counts them, engines, tags, aliases.
    assert!(row("efficientnet_b0").contains("5,288,548"), "{s}");
    assert!(row("tf_efficientnet_b0").contains("ns_jft_in1k"), "{s}");
    assert!(
        row("tf_efficientnet_b0").contains("tf_efficientnet_b0_ns"),
        "{s}"
    );
    assert!(row("tf_efficientnet_b0").contains("efficientnet-b0"), "{s}");
    let cc = row("efficientnet_cc_b0_4e");
    assert!(cc.contains(" no "), "CondConv runs on burn only: {cc}");
}

#[test]
fn models_takes_timm_wildcards() {
    let out = effnet(&["models", "*lite*"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("10 of "), "5 timm + 5 tf_ Lites: {s}");
    let out = effnet(&["models", "tinynet_[a-c]"]);
    assert!(text(&out.stdout).contains("3 of "), "{}", text(&out.stdout));
    let out = effnet(&["models", "*.ns_jft*"]);
    let s = text(&out.stdout);
    assert!(s.contains("tf_efficientnet_l2"), "{s}");
    assert!(
        !s.lines().any(|l| l.starts_with("efficientnet_b0 ")),
        "no ns tag: {s}"
    );
    assert_clean_error(
        &effnet(&["models", "resnet*"]),
        "no model matches 'resnet*'",
    );
}

#[test]
fn unknown_names_get_one_line_with_the_closest() {
    for args in [
        &[
            "infer",
            "-m",
            "efficientnet_b9",
            "tests/data/photos/coffee.png",
        ][..],
        &["bench", "-m", "efficientnet_b9", "--iters", "1"][..],
    ] {
        let out = effnet(args);
        assert_clean_error(&out, "unknown model 'efficientnet_b9'");
        let err = text(&out.stderr);
        assert!(err.contains("closest: efficientnet_b"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_clean_error(
        &effnet(&[
            "infer",
            "-m",
            "tf_efficientnet_lite0.bogus",
            "tests/data/photos/coffee.png",
        ]),
        "tf_efficientnet_lite0 has the tags in1k",
    );
}

#[test]
fn weights_with_a_nan_are_refused_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("tests/data/parity/timm_tf_v2_tiny.safetensors");
    let mut bytes = std::fs::read(&src).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let name = "blocks.3.0.conv_pwl.weight";
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize + 8 + header_len;
    bytes[start + 4..start + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    let bad = dir.path().join("flipped.safetensors");
    std::fs::write(&bad, bytes).unwrap();
    let out = effnet(&[
        "infer",
        "--weights",
        bad.to_str().unwrap(),
        "-m",
        "tests/data/parity/timm_tf_v2_tiny.toml",
        "tests/data/photos/coffee.png",
    ]);
    assert_clean_error(&out, name);
    assert!(text(&out.stderr).contains("flipped.safetensors"));
    assert!(text(&out.stdout).is_empty(), "no prediction printed");
}
