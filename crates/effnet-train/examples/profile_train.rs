//! Per-layer-kind time split of a CPU training step (see [`effnet_train::profile`]), printed
//! as a markdown table.
//!
//! `cargo run --release -p effnet-train --example profile_train -- [model] [batch] [size] [reps]`
//! (`EFFNET_PLAIN_OPS=1` for burn's plain composition, `RAYON_NUM_THREADS=1` for one thread).

use burn::prelude::*;
use effnet_model::{ComputePrecision, EfficientNetConfig};
use effnet_train::profile::profile_training;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let name = arg(0, "efficientnetv2_b0");
    let batch: usize = arg(1, "16").parse()?;
    let size: usize = arg(2, "128").parse()?;
    let reps: usize = arg(3, "3").parse()?;
    let device = Device::flex();
    device.seed(0);
    let cfg = EfficientNetConfig::from_name_or_file(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let profile = profile_training(&cfg, &device, batch, size, reps, ComputePrecision::F32)?;
    println!("threads: {}\n\n{}", rayon_threads(), profile.to_markdown());
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into())
}
