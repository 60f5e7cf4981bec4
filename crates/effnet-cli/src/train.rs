//! `effnet train`: flags (timm's names where timm has one) become recipe overrides; progress is
//! a bar on a terminal and timm-style log lines in a pipe; SIGINT, SIGTERM and SIGHUP ask the
//! trainer to checkpoint and stop, and the process then exits 130, 143 or 129.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use effnet_train::report::{EpochStart, EvalProgress, RunInfo, StepInfo};
use effnet_train::{EpochRow, Reporter, StopHandle, TrainConfig, Trainer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Train an EfficientNet from a TOML recipe (progressive learning, RandAugment, mixup, EMA).
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Recipe TOML (e.g. configs/train/efficientnetv2_s.toml). With --resume it defaults to the
    /// run folder's saved config.toml.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// Dataset root holding the train/ and val/ class folders.
    #[arg(long, alias = "data-dir")]
    pub data: PathBuf,
    /// Parent folder of run folders.
    #[arg(long, default_value = "runs")]
    pub output: PathBuf,
    /// Continue the run in this folder from its latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Override any recipe key: `--set optim.lr_base=0.01 --set progressive.mode=automl`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Model: preset name or model TOML (`model.arch`).
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Epochs (`train.epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size (`train.batch_size`).
    #[arg(short = 'b', long)]
    pub batch_size: Option<usize>,
    /// Absolute peak learning rate (`optim.lr`), used as is for any batch size.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning rate for a batch of 256, scaled linearly to the batch size (`optim.lr_base`).
    #[arg(long)]
    pub lr_base: Option<f64>,
    /// Training and evaluation image size (`progressive.size = [N, N]`, `data.eval_size = N`).
    #[arg(long)]
    pub img_size: Option<usize>,
    /// Loader threads (`data.workers`).
    #[arg(short = 'j', long)]
    pub workers: Option<usize>,
    /// Seed (`seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device (`device`: cpu, wgpu, cuda:0).
    #[arg(long)]
    pub device: Option<String>,
    /// Compute precision (`train.precision`): f32, bf16 or f16 (mixed precision: f32 master
    /// weights, optimiser state, BatchNorm and loss; f16 adds dynamic loss scaling).
    #[arg(long, value_name = "f32|bf16|f16")]
    pub precision: Option<String>,
    /// Start from these native weights, or `bundled` (`model.init_weights`).
    #[arg(long, alias = "initial-checkpoint")]
    pub init_weights: Option<String>,
    /// Run folder name under --output (`name`).
    #[arg(long)]
    pub experiment: Option<String>,
    /// Steps between log lines when stderr is not a terminal (CI, nohup, Slurm).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_interval: u64,
}

impl TrainArgs {
    /// All overrides as `key=value` strings, shorthand flags last so they win; an unknown
    /// `--precision` is an error.
    pub fn overrides(&self) -> Result<Vec<String>> {
        let mut v = self.set.clone();
        let q = |s: &str| format!("{s:?}");
        let mut push = |k: &str, val: Option<String>| {
            if let Some(val) = val {
                v.push(format!("{k}={val}"));
            }
        };
        push("model.arch", self.model.as_deref().map(q));
        push("train.epochs", self.epochs.map(|x| x.to_string()));
        push("train.batch_size", self.batch_size.map(|x| x.to_string()));
        push("optim.lr", self.lr.map(|x| format!("{x:e}")));
        push("optim.lr_base", self.lr_base.map(|x| format!("{x:e}")));
        push(
            "progressive.size",
            self.img_size.map(|s| format!("[{s}, {s}]")),
        );
        push("data.eval_size", self.img_size.map(|s| s.to_string()));
        push("data.workers", self.workers.map(|x| x.to_string()));
        push("seed", self.seed.map(|x| x.to_string()));
        push("device", self.device.as_deref().map(q));
        if self.precision.is_some() {
            let precision = crate::args::parse_precision(self.precision.as_deref())?;
            push("train.precision", Some(q(precision.name())));
        }
        push("model.init_weights", self.init_weights.as_deref().map(q));
        push("name", self.experiment.as_deref().map(q));
        Ok(v)
    }

    /// The recipe, the run folder and whether it resumes.
    fn resolve(&self) -> Result<(TrainConfig, PathBuf, bool)> {
        let overrides = self.overrides()?;
        if let Some(run) = &self.resume {
            let path = self
                .config
                .clone()
                .unwrap_or_else(|| run.join("config.toml"));
            return Ok((TrainConfig::load(&path, &overrides)?, run.clone(), true));
        }
        let path = self
            .config
            .clone()
            .context("--config is required (or --resume RUN_DIR)")?;
        let cfg = TrainConfig::load(&path, &overrides)?;
        let name = cfg.name.clone().unwrap_or_else(|| default_run_name(&cfg));
        Ok((cfg, self.output.join(name), false))
    }
}

/// Runs `effnet train`: 0 when done, 128 + signal number when stopped by a signal.
pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let (cfg, run_dir, resume) = args.resolve()?;
    let stop = StopHandle::new();
    let signal = install_signals(&stop)?;
    let reporter = Box::new(CliReporter::new(args.log_interval));
    let mut trainer = if resume {
        Trainer::resume(&cfg, &args.data, &run_dir, reporter)?
    } else {
        Trainer::new(&cfg, &args.data, &run_dir, reporter)?
    };
    let out = trainer.run(&stop)?;
    if out.interrupted {
        let sig = signal.load(Ordering::SeqCst);
        return Ok(if sig > 0 {
            ExitCode::from((128 + sig) as u8)
        } else {
            ExitCode::SUCCESS
        });
    }
    println!(
        "done: best top-1 {:.2} ({} weights) in {}",
        out.best_top1,
        if out.best_is_ema { "EMA" } else { "raw" },
        out.run_dir.join("best.bpk").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGINT, SIGTERM and SIGHUP request a stop (checkpoint, then exit 128 + signal); a second
/// signal exits at once without a checkpoint. Returns where the first signal's number lands.
fn install_signals(stop: &StopHandle) -> Result<Arc<AtomicI32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("signal handlers")?;
    let got = Arc::new(AtomicI32::new(0));
    let (stop, seen) = (stop.clone(), got.clone());
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if stop.is_requested() {
                eprintln!("\nsecond signal: exiting without checkpoint");
                std::process::exit(128 + sig);
            }
            seen.store(sig, Ordering::SeqCst);
            stop.request_stop();
            eprintln!(
                "\n{}: stopping after this step and writing a checkpoint...",
                name(sig)
            );
        }
    });
    Ok(got)
}

fn name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// Progress for people: an 80-column bar on a terminal, timm-style lines every `log_interval`
/// steps otherwise; run and epoch summaries on stdout.
pub struct CliReporter {
    tty: bool,
    log_interval: u64,
    bar: Option<ProgressBar>,
}

/// Width of the bar's `[====>   ]` part, chosen so the whole line fits 80 columns.
pub const BAR_WIDTH: usize = 16;

/// The bar's message (loss, LR, speed) in at most 30 columns.
pub fn bar_message(s: &StepInfo) -> String {
    format!(
        "loss {:.3} lr {:.1e} {:.0} img/s",
        s.loss, s.lr, s.img_per_sec
    )
}

/// The bar's prefix, `ep 3/100`.
pub fn bar_prefix(epoch: usize, epochs: usize) -> String {
    format!("ep {epoch}/{epochs}")
}

/// A timm-style log line for a step.
pub fn step_line(s: &StepInfo) -> String {
    let w = s.steps.to_string().len();
    format!(
        "Train: {}/{} [{:>w$}/{} ({:>3.0}%)]  Loss: {:.4} ({:.4})  LR: {:.3e}  {:.1} img/s  Data: {:.3}s",
        s.epoch,
        s.epochs,
        s.step,
        s.steps,
        100.0 * s.step as f64 / s.steps as f64,
        s.loss,
        s.loss_avg,
        s.lr,
        s.img_per_sec,
        s.data_secs
    )
}

impl CliReporter {
    /// Bar when stderr is a terminal, lines every `log_interval` steps otherwise.
    pub fn new(log_interval: u64) -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            log_interval,
            bar: None,
        }
    }

    fn new_bar(&self, e: &EpochStart) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(
            Some(e.steps as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        let template = format!("{{prefix}} [{{bar:{BAR_WIDTH}}}] {{pos}}/{{len}} {{msg}} {{eta}}");
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(bar_prefix(e.epoch, e.epochs));
        bar.set_position(e.done as u64);
        bar
    }
}

impl Reporter for CliReporter {
    fn run_started(&mut self, info: &RunInfo<'_>) {
        if let Some((epoch, step, global)) = info.resumed_at {
            println!(
                "resuming {} at epoch {epoch} step {step} (global step {global})",
                info.run_dir.display()
            );
        }
        println!("{}", info.train_report);
        println!("{}", info.val_report);
        println!(
            "model {} ({:.2} M params, {} classes), run folder {}",
            info.model,
            info.params as f64 / 1e6,
            info.classes,
            info.run_dir.display()
        );
    }

    fn epoch_started(&mut self, e: &EpochStart) {
        if self.tty {
            self.bar = Some(self.new_bar(e));
        } else {
            eprintln!(
                "Train: epoch {}/{}: {} steps, image size {}, stage {}",
                e.epoch,
                e.epochs,
                e.steps,
                e.img_size,
                e.stage + 1
            );
        }
    }

    fn step(&mut self, s: &StepInfo) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(bar_message(s));
                bar.set_position(s.step as u64);
            }
            None if (s.step as u64).is_multiple_of(self.log_interval) || s.step == s.steps => {
                eprintln!("{}", step_line(s));
            }
            None => {}
        }
    }

    fn eval_progress(&mut self, p: &EvalProgress<'_>) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if (p.done as u64).is_multiple_of(self.log_interval) || p.done == p.total || p.done == 1 {
            let line = format!(
                "Eval ({}): epoch {} [{:>w$}/{}]",
                p.which,
                p.epoch,
                p.done,
                p.total,
                w = p.total.to_string().len()
            );
            if self.tty {
                eprint!("\r{line}");
                if p.done == p.total {
                    eprint!("\r{}\r", " ".repeat(line.len()));
                }
            } else {
                eprintln!("{line}");
            }
        }
    }

    fn epoch_finished(&mut self, r: &EpochRow, epochs: usize, new_best: bool) {
        println!(
            "epoch {}/{epochs}  size {}  train_loss {:.4}  eval_loss {:.4}  top1 {:.2}  top5 {:.2}{}  lr {:.3e}  {:.1} img/s{}",
            r.epoch,
            r.img_size,
            r.train_loss,
            r.eval_loss,
            r.eval_top1,
            r.eval_top5,
            r.ema_top1
                .map(|t| format!("  ema_top1 {t:.2}"))
                .unwrap_or_default(),
            r.lr,
            r.img_per_sec,
            if new_best { "  *best" } else { "" }
        );
    }

    fn warning(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }

    fn stopped(&mut self, epoch: usize, step: usize, global_step: u64, run_dir: &Path) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        println!(
            "stopped at epoch {epoch} step {step} (global step {global_step}); checkpoint written; \
             resume with --resume {}",
            run_dir.display()
        );
    }
}

/// `<model>-<YYYYmmdd-HHMMSS>` like timm's output folders.
fn default_run_name(cfg: &TrainConfig) -> String {
    let arch = Path::new(&cfg.model.arch)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{arch}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widest bar line a run can draw: prefix, bar, position, message and ETA.
    #[test]
    fn bar_line_fits_80_columns() {
        let s = StepInfo {
            epoch: 999,
            epochs: 999,
            step: 99_999,
            steps: 99_999,
            global_step: 1,
            loss: 12.3456,
            loss_avg: 12.0,
            lr: 1.234e-3,
            img_per_sec: 99_999.0,
            data_secs: 0.0,
            batch: 1,
        };
        let eta = "59m"; // indicatif's {eta} is a compact "59m"/"3h"/"45s"
        let line = format!(
            "{} [{}] {}/{} {} {eta}",
            bar_prefix(s.epoch, s.epochs),
            "=".repeat(BAR_WIDTH),
            s.step,
            s.steps,
            bar_message(&s)
        );
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
    }

    #[test]
    fn step_lines_carry_timm_fields() {
        let s = StepInfo {
            epoch: 2,
            epochs: 6,
            step: 10,
            steps: 40,
            global_step: 50,
            loss: 1.5,
            loss_avg: 1.6,
            lr: 1e-3,
            img_per_sec: 321.0,
            data_secs: 0.012,
            batch: 32,
        };
        let l = step_line(&s);
        assert_eq!(
            l,
            "Train: 2/6 [10/40 ( 25%)]  Loss: 1.5000 (1.6000)  LR: 1.000e-3  321.0 img/s  Data: 0.012s"
        );
    }
}
