//! `effnet bench`: inference throughput on random inputs, the figure `scripts/bench_infer_cpu.sh`
//! puts beside PyTorch's.

use std::process::ExitCode;
use std::time::Instant;

use burn::prelude::*;
use clap::Args;
use effnet::EfficientNetConfig;

/// Arguments of `effnet bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Architecture preset or model TOML (random weights: speed does not depend on them).
    #[arg(long, default_value = "efficientnetv2_s")]
    pub model: String,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Input resolution.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed iterations (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark.
pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    if a.batch == 0 || a.size < 32 || a.iters == 0 {
        anyhow::bail!("--batch and --iters must be >= 1 and --size >= 32");
    }
    let device = effnet::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let cfg = EfficientNetConfig::from_name_or_file(&a.model)?;
    let model = cfg.init(&device);
    let x = Tensor::<4>::random(
        [a.batch, 3, a.size, a.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let step = || {
        let y = model.forward(x.clone());
        // Reading back forces the whole graph to run on asynchronous devices.
        let _ = y.slice([0..1, 0..1]).into_data();
    };
    let t0 = Instant::now();
    step();
    let first = t0.elapsed().as_secs_f64();
    for _ in 1..a.warmup {
        step();
    }
    let mut times: Vec<f64> = (0..a.iters)
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let ips = a.batch as f64 / median;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": cfg.name, "device": a.device, "batch": a.batch, "size": a.size,
                "median_ms": median * 1e3, "img_per_s": ips, "first_iter_s": first,
                "iters": a.iters,
            })
        );
    } else {
        println!(
            "{} on {} b{} r{}: {:.1} ms/iter (median of {}), {:.1} img/s; first iteration {:.2} s",
            cfg.name,
            a.device,
            a.batch,
            a.size,
            median * 1e3,
            a.iters,
            ips,
            first
        );
    }
    Ok(ExitCode::SUCCESS)
}
