//! Each block type names its own layers: its key table covers exactly the tensors it holds, and
//! its BatchNorm list and fold agree with its structure.

use std::collections::BTreeSet;

use burn::prelude::*;
use burn::store::ModuleSnapshot;
use effnet_model::{Block, EfficientNetConfig};

fn blocks_of(preset: &str) -> Vec<Block> {
    let device = Device::flex();
    let model = EfficientNetConfig::preset(preset).unwrap().init(&device);
    model.blocks.into_iter().flatten().collect()
}

#[test]
fn key_tables_cover_exactly_the_tensors_of_every_block_type() {
    let mut kinds = BTreeSet::new();
    // V2-B0 has ConvBnAct, EdgeResidual and InvertedResidual; B0 has DepthwiseSeparable with SE,
    // Lite0 InvertedResidual and DepthwiseSeparable without SE.
    for preset in ["efficientnetv2_b0", "efficientnet_b0", "efficientnet_lite0"] {
        for block in blocks_of(preset) {
            kinds.insert(format!("{block:?}").split('(').next().unwrap().to_string());
            let table = block.layers().key_table();
            let ours: BTreeSet<&str> = table.iter().map(|k| k.ours).collect();
            assert_eq!(ours.len(), table.len(), "{preset}: duplicate names");
            let held: BTreeSet<String> = block
                .collect(None, None, true)
                .into_iter()
                .filter_map(|t| t.name.rsplit_once('.').map(|(p, _)| p.to_string()))
                .collect();
            let named: BTreeSet<String> = ours.iter().map(|s| s.to_string()).collect();
            assert_eq!(held, named, "{preset}: key table vs tensors");
            let timm: BTreeSet<&str> = table.iter().map(|k| k.timm).collect();
            assert_eq!(timm.len(), table.len(), "{preset}: timm names unique");
            let tv: BTreeSet<&str> = table.iter().map(|k| k.torchvision.as_str()).collect();
            let luke: BTreeSet<&str> = table.iter().map(|k| k.lukemelas).collect();
            assert_eq!(tv.len(), table.len(), "{preset}: torchvision names unique");
            assert_eq!(luke.len(), table.len(), "{preset}: lukemelas names unique");
        }
    }
    assert_eq!(kinds.len(), 4, "all four block types seen: {kinds:?}");
}

#[test]
fn batch_norm_lists_match_the_tensors_and_fold_removes_them() {
    for mut block in blocks_of("efficientnetv2_b0") {
        let bns = block.layers().batch_norms();
        let bn_names = block
            .collect(None, None, true)
            .into_iter()
            .filter(|t| t.name.ends_with("running_var"))
            .count();
        assert_eq!(bns.len(), bn_names);
        assert!(bns.iter().all(|b| b.is_some()));
        block.fold_batchnorm();
        assert!(block.layers().batch_norms().iter().all(|b| b.is_none()));
    }
}

#[test]
fn resolved_blocks_are_what_gets_built() {
    for preset in [
        "efficientnetv2_s",
        "efficientnet_x_b3",
        "efficientnet_blur_b0",
        "tinynet_e",
    ] {
        let cfg = EfficientNetConfig::preset(preset).unwrap();
        let model = cfg.init(&Device::flex());
        let specs = cfg.resolved_blocks();
        assert_eq!(specs.len(), model.blocks.len(), "{preset}");
        for (stage, built) in specs.iter().zip(&model.blocks) {
            assert_eq!(stage.len(), built.len(), "{preset}");
            for (j, (spec, block)) in stage.iter().zip(built).enumerate() {
                let stride = if spec.space_to_depth { 2 } else { spec.stride };
                assert_eq!(block.stride(), stride, "{preset} block {j}");
                assert_eq!(
                    block.out_channels(),
                    spec.out_channels,
                    "{preset} block {j}"
                );
                assert!(
                    j == 0 || spec.stride == 1,
                    "{preset}: only the first block strides"
                );
            }
        }
    }
}
