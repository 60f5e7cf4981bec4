//! `effnet bench`: inference throughput on random inputs, the figure `scripts/bench_infer_cpu.sh`
//! puts beside PyTorch's.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use burn::prelude::*;
use clap::Args;
use effnet::{ComputePrecision, EfficientNetConfig};

use crate::native_bench::Run;

/// What `effnet bench` times.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Forward passes.
    Infer,
    /// Training steps.
    Train,
}

/// The optimiser `effnet bench --train` steps with.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum OptimArg {
    /// AdamW (weight decay 0.05, lr 1e-3).
    Adamw,
    /// TensorFlow-1 RMSProp (weight decay 1e-5, lr 0.016).
    Rmsproptf,
    /// SGD with Nesterov momentum (weight decay 1e-4, lr 0.1).
    Sgd,
}

impl OptimArg {
    /// effnet-train's section for it (as in a recipe, no decay on BatchNorm and biases) and
    /// the learning rate to step with.
    fn section(self) -> (effnet_train::config::OptimSection, f64) {
        use effnet_train::config::{OptimKind, OptimSection};
        let (name, weight_decay, eps, lr) = match self {
            OptimArg::Adamw => (OptimKind::Adamw, 0.05, 1e-8, 1e-3),
            OptimArg::Rmsproptf => (OptimKind::Rmsproptf, 1e-5, 1e-3, 0.016),
            OptimArg::Sgd => (OptimKind::Sgd, 1e-4, 1e-3, 0.1),
        };
        let section = OptimSection {
            name,
            weight_decay,
            eps,
            ..OptimSection::default()
        };
        (section, lr)
    }
}

/// Arguments of `effnet bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// What to time: `infer` (default) or `train` (same as --train).
    #[arg(value_enum, default_value_t = Mode::Infer)]
    pub mode: Mode,
    /// Architecture preset, alias or model TOML (random weights: speed does not depend on them).
    #[arg(short = 'm', long, default_value = "efficientnetv2_s")]
    pub model: String,
    /// Images per forward pass.
    #[arg(short = 'b', long, visible_alias = "batch", default_value_t = 1)]
    pub batch_size: usize,
    /// Input resolution; default: the model's eval size (train size with --train).
    #[arg(long = "img-size", visible_alias = "size", value_name = "N")]
    pub img_size: Option<usize>,
    #[command(flatten)]
    pub runtime: crate::args::RuntimeArgs,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed iterations (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Print one JSON object (timm benchmark.py's keys) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keep BatchNorm as separate layers (inference folds it into the convs by default).
    #[arg(long)]
    pub no_fold: bool,
    /// Time training steps (forward, cross-entropy, backward, optimiser) instead of inference.
    #[arg(long)]
    pub train: bool,
    /// Optimiser of --train (effnet-train's: fused over all parameters on the cpu, burn's
    /// per-tensor form elsewhere or with EFFNET_PLAIN_OPTIM=1).
    #[arg(long, value_enum, default_value_t = OptimArg::Adamw)]
    pub optimizer: OptimArg,
    /// Also print the time split per layer type (inference: one image after another, single
    /// forward; with --train: each layer's forward and backward, the optimiser and the EMA).
    #[arg(long)]
    pub profile: bool,
    /// Time these weights (a .bpk, f32 or int8) on the native engine instead of random ones of
    /// --model.
    #[arg(long, value_name = "PATH")]
    pub weights: Option<String>,
    /// Time the int8 executor: random weights of --model quantised with activation ranges from
    /// the benchmark's own inputs (speed does not depend on the values).
    #[arg(long, conflicts_with = "weights")]
    pub int8: bool,
}

/// Runs the benchmark.
pub fn run(mut a: BenchArgs) -> anyhow::Result<ExitCode> {
    a.train |= a.mode == Mode::Train;
    a.runtime.set_threads()?;
    let device = a.runtime.device()?;
    let loaded = match &a.weights {
        Some(w) => Some(
            effnet::load_pretrained(&w.parse()?, None, &Device::flex())
                .with_context(|| format!("--weights {w}"))?,
        ),
        None => None,
    };
    let cfg = match &loaded {
        Some(pre) => pre.config.clone(),
        None => EfficientNetConfig::from_name_or_file(&a.model)?,
    };
    let r = settings(&a, &cfg, &device)?;
    let native = use_native(&a, r.precision)?;
    if (a.weights.is_some() || a.int8) && (a.train || !native) {
        anyhow::bail!("--weights and --int8 time inference on the native engine (cpu, f32 input)");
    }
    let mut engine = if native { "native" } else { "burn" };
    let (first, mut times, params) = if a.train {
        time_training(&cfg, &r, &device, a.optimizer)?
    } else if native {
        let n = crate::native_bench::NativeModel::new(&cfg, &r, loaded, a.int8)?;
        if n.is_int8() {
            engine = "native-int8";
        }
        n.time(&r)?
    } else {
        time_inference(&cfg, &r, &device)
    };
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let measured = Measured {
        engine,
        median,
        first,
        // timm reports parameters in millions, rounded to 2 decimals.
        param_count: (params as f64 / 1e4).round() / 100.0,
    };
    report(&a, &cfg, &r, &measured);
    if a.train && r.profile {
        // Each layer on its own, forward and backward, plus optimiser and EMA.
        let reps = r.iters.clamp(1, 5);
        let split = effnet_train::profile::profile_training(
            &cfg,
            &device,
            r.batch,
            r.size,
            reps,
            r.precision,
        )?;
        println!("{}", split.to_markdown());
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's settings after defaults, refused when out of range or too large for memory.
fn settings(a: &BenchArgs, cfg: &EfficientNetConfig, device: &Device) -> anyhow::Result<Run> {
    let default_size = if a.train {
        cfg.train_size
    } else {
        cfg.eval_size
    };
    let r = Run {
        batch: a.batch_size,
        size: a.img_size.unwrap_or(default_size),
        warmup: a.warmup,
        iters: a.iters,
        no_fold: a.no_fold,
        profile: a.profile,
        precision: a.runtime.precision.get()?,
    };
    if !r.precision.supported_on(device) {
        anyhow::bail!(
            "--precision {} is not supported on {}",
            r.precision,
            a.runtime.device
        );
    }
    if r.batch == 0 || r.size < 32 || r.iters == 0 {
        anyhow::bail!("--batch-size and --iters must be >= 1 and --img-size >= 32");
    }
    let workload = if a.train {
        effnet_model::Workload::Training
    } else {
        effnet_model::Workload::Inference
    };
    effnet_model::check_fits(cfg, r.batch, r.size, workload)?;
    Ok(r)
}

/// What one benchmark measured.
struct Measured {
    engine: &'static str,
    /// Median seconds per iteration.
    median: f64,
    /// Seconds of the first (untimed) iteration.
    first: f64,
    /// Parameters in millions.
    param_count: f64,
}

/// Prints the result as a line, or as timm benchmark.py's JSON record with `--json`.
fn report(a: &BenchArgs, cfg: &EfficientNetConfig, r: &Run, m: &Measured) {
    let ips = r.batch as f64 / m.median;
    let prefix = if a.train { "train" } else { "infer" };
    if a.json {
        let mut rec = serde_json::Map::new();
        rec.insert("model".into(), cfg.name.clone().into());
        rec.insert("device".into(), a.runtime.device.clone().into());
        rec.insert("engine".into(), m.engine.into());
        rec.insert("precision".into(), r.precision.name().into());
        for (key, value) in [
            (
                "samples_per_sec",
                serde_json::json!((ips * 100.0).round() / 100.0),
            ),
            (
                "step_time",
                serde_json::json!((m.median * 1e6).round() / 1e3),
            ),
            ("batch_size", serde_json::json!(r.batch)),
            ("img_size", serde_json::json!(r.size)),
        ] {
            rec.insert(format!("{prefix}_{key}"), value);
        }
        rec.insert("param_count".into(), m.param_count.into());
        rec.insert("first_iter_s".into(), m.first.into());
        rec.insert("iters".into(), r.iters.into());
        println!("{}", serde_json::Value::Object(rec));
    } else {
        println!(
            "{prefix} {} on {} ({}, {}): batch_size {} img_size {} param_count {}M: \
             {:.1} samples/s, step_time {:.1} ms (median of {}); first iteration {:.2} s",
            cfg.name,
            a.runtime.device,
            m.engine,
            r.precision,
            r.batch,
            r.size,
            m.param_count,
            ips,
            m.median * 1e3,
            r.iters,
            m.first
        );
    }
}

/// Whether inference runs on the native CPU executor (`--engine`, default native on cpu in f32;
/// half precision runs on burn).
fn use_native(a: &BenchArgs, precision: ComputePrecision) -> anyhow::Result<bool> {
    use crate::args::EngineArg;
    let cpu = (a.runtime.device == "cpu" || a.runtime.device == "flex") && !precision.is_half();
    match a.runtime.engine {
        Some(EngineArg::Native) if precision.is_half() => anyhow::bail!(
            "--engine native computes in f32 only; --precision {precision} needs --engine burn"
        ),
        Some(EngineArg::Native) if !cpu => anyhow::bail!("--engine native runs on the cpu only"),
        Some(EngineArg::Native) => Ok(!a.train),
        Some(EngineArg::Burn) => Ok(false),
        None => Ok(cpu && !a.train),
    }
}

/// Runs `step` for warm-up and timed iterations: (first-iteration seconds, timed seconds).
fn time_loop(a: &Run, mut step: impl FnMut()) -> (f64, Vec<f64>) {
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

fn random_input(a: &Run, device: &Device) -> Tensor<4> {
    Tensor::<4>::random(
        [a.batch, 3, a.size, a.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    )
}

/// (first-iteration seconds, timed seconds, trainable parameters).
type Timing = (f64, Vec<f64>, usize);

fn time_inference(cfg: &EfficientNetConfig, a: &Run, device: &Device) -> Timing {
    let mut model = cfg.init(device);
    let params = model.num_trainable_params();
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
    let (first, times) = time_loop(a, || {
        let y = model.forward_inference_with(x.clone(), a.precision);
        // Reading back forces the whole graph to run on asynchronous devices.
        let _ = y.slice([0..1, 0..1]).into_data();
    });
    (first, times, params)
}

fn time_training(
    cfg: &EfficientNetConfig,
    a: &Run,
    device: &Device,
    optimizer: OptimArg,
) -> anyhow::Result<Timing> {
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::GradientsParams;
    use effnet_train::optim::{OptimImpl, build_optimizer};
    let device = device.clone().autodiff();
    let mut model = Some(cfg.init(&device));
    let params = model.as_ref().map_or(0, |m| m.num_trainable_params());
    let (section, lr) = optimizer.section();
    let mut optim = build_optimizer(&section, &device, OptimImpl::Auto)?;
    let x = random_input(a, &device);
    let y = Tensor::<1, Int>::arange(0..a.batch as i64, &device)
        .remainder_scalar(cfg.num_classes as i64);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let (first, times) = time_loop(a, || {
        let Some(m) = model.take() else { return };
        let loss = loss_fn.forward(m.forward_with(x.clone(), a.precision), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(lr, m, grads, 0.0));
        let _ = loss.into_data();
    });
    Ok((first, times, params))
}
