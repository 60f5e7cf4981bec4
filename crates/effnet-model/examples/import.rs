//! Converts a PyTorch EfficientNet checkpoint into effnet's native `.bpk` (what `effnet import`
//! does, usable before the CLI exists: scripts/make_lite0_weights.sh bootstraps the bundled
//! weights with it).
//!
//! `cargo run --release -p effnet-model --example import -- SRC.pth PRESET OUT.bpk RESIZE CROP
//!  INTERP MEAN STD "SOURCE TEXT"` (MEAN/STD: one value for all channels, 0..1 scale)

use std::path::Path;

use burn::prelude::*;
use effnet_model::{EfficientNetConfig, Preprocess, import_pytorch, save_native};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 9 {
        return Err("usage: import SRC PRESET OUT RESIZE CROP INTERP MEAN STD SOURCE".into());
    }
    let device = Device::flex();
    let cfg = EfficientNetConfig::from_name_or_file(&a[1])?;
    let imported = import_pytorch(Path::new(&a[0]), &cfg, &device)?;
    let mean: f32 = a[6].parse()?;
    let std: f32 = a[7].parse()?;
    let pre = Preprocess {
        resize: a[3].parse()?,
        crop: a[4].parse()?,
        interpolation: a[5].parse()?,
        mean: [mean; 3],
        std: [std; 3],
    };
    save_native(
        Path::new(&a[2]),
        &imported.model,
        &imported.config,
        &pre,
        &a[8],
    )?;
    println!(
        "{}: {} tensors from {:?} layout -> {}",
        a[0], imported.applied, imported.layout, a[2]
    );
    Ok(())
}
