//! `effnet bench`: inference throughput on random inputs, the figure `scripts/bench_infer_cpu.sh`
//! puts beside PyTorch's.

use std::process::ExitCode;
use std::time::Instant;

use burn::prelude::*;
use clap::Args;
use effnet::EfficientNetConfig;

/// What `effnet bench` times.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Forward passes.
    Infer,
    /// Training steps.
    Train,
}

/// Arguments of `effnet bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// What to time: `infer` (default) or `train` (same as --train).
    #[arg(value_enum, default_value_t = Mode::Infer)]
    pub mode: Mode,
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
    /// Keep BatchNorm as separate layers (inference folds it into the convs by default).
    #[arg(long)]
    pub no_fold: bool,
    /// Time training steps (forward, cross-entropy, backward, AdamW) instead of inference.
    #[arg(long)]
    pub train: bool,
    /// Inference engine: native (effnet's CPU executor; the default on cpu) or burn.
    #[arg(long, value_enum)]
    pub engine: Option<crate::infer::EngineArg>,
    /// Also print the time split per layer type (one image after another, single forward).
    #[arg(long)]
    pub profile: bool,
}

/// Runs the benchmark.
pub fn run(mut a: BenchArgs) -> anyhow::Result<ExitCode> {
    a.train |= a.mode == Mode::Train;
    if a.batch == 0 || a.size < 32 || a.iters == 0 {
        anyhow::bail!("--batch and --iters must be >= 1 and --size >= 32");
    }
    let device = effnet::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let cfg = EfficientNetConfig::from_name_or_file(&a.model)?;
    let native = use_native(&a)?;
    let (first, mut times) = if a.train {
        time_training(&cfg, &a, &device)
    } else if native {
        crate::native_bench::time(&cfg, &a)?
    } else {
        time_inference(&cfg, &a, &device)
    };
    let engine = if native { "native" } else { "burn" };
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let ips = a.batch as f64 / median;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": cfg.name, "device": a.device, "batch": a.batch, "size": a.size,
                "engine": engine,
                "mode": if a.train { "train" } else { "infer" },
                "median_ms": median * 1e3, "img_per_s": ips, "first_iter_s": first,
                "iters": a.iters,
            })
        );
    } else {
        println!(
            "{} {} on {} ({}) b{} r{}: {:.1} ms/iter (median of {}), {:.1} img/s; first iteration {:.2} s",
            if a.train { "train" } else { "infer" },
            cfg.name,
            a.device,
            engine,
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

/// Whether inference runs on the native CPU executor (`--engine`, default native on cpu).
fn use_native(a: &BenchArgs) -> anyhow::Result<bool> {
    use crate::infer::EngineArg;
    let cpu = a.device == "cpu" || a.device == "flex";
    match a.engine {
        Some(EngineArg::Native) if !cpu => anyhow::bail!("--engine native runs on the cpu only"),
        Some(EngineArg::Native) => Ok(!a.train),
        Some(EngineArg::Burn) => Ok(false),
        None => Ok(cpu && !a.train),
    }
}

/// Runs `step` for warm-up and timed iterations: (first-iteration seconds, timed seconds).
fn time_loop(a: &BenchArgs, mut step: impl FnMut()) -> (f64, Vec<f64>) {
    let t0 = Instant::now();
    step();
    let first = t0.elapsed().as_secs_f64();
    for _ in 1..a.warmup {
        step();
    }
    let times = (0..a.iters)
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64()
        })
        .collect();
    (first, times)
}

fn random_input(a: &BenchArgs, device: &Device) -> Tensor<4> {
    Tensor::<4>::random(
        [a.batch, 3, a.size, a.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    )
}

fn time_inference(cfg: &EfficientNetConfig, a: &BenchArgs, device: &Device) -> (f64, Vec<f64>) {
    let mut model = cfg.init(device);
    if !a.no_fold {
        model = model.fold_batchnorm();
    }
    let x = random_input(a, device);
    if a.profile {
        crate::native_bench::print_profile(&crate::native_bench::profile_burn(
            &model,
            x.clone(),
            a.iters,
        ));
    }
    // The same path as `effnet infer` (CPU batches split across the rayon threads).
    time_loop(a, || {
        let y = model.forward_inference(x.clone());
        // Reading back forces the whole graph to run on asynchronous devices.
        let _ = y.slice([0..1, 0..1]).into_data();
    })
}

fn time_training(cfg: &EfficientNetConfig, a: &BenchArgs, device: &Device) -> (f64, Vec<f64>) {
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamWConfig, GradientsParams};
    let device = device.clone().autodiff();
    let mut model = Some(cfg.init(&device));
    let mut optim = AdamWConfig::new().init();
    let x = random_input(a, &device);
    let y = Tensor::<1, Int>::arange(0..a.batch as i64, &device)
        .remainder_scalar(cfg.num_classes as i64);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    time_loop(a, || {
        let Some(m) = model.take() else { return };
        let loss = loss_fn.forward(m.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(1e-3, m, grads));
        let _ = loss.into_data();
    })
}
