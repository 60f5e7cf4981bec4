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
use effnet_train::{EpochRow, Reporter, StopHandle, TestHooks, TrainConfig, Trainer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::DecodeArgs;
use crate::recipe::RecipeArgs;

/// Train an EfficientNet on an ImageNet-format folder tree, from a TOML recipe or timm's defaults
/// scaled by the model (progressive learning, RandAugment, mixup, EMA).
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Dataset root holding the train/ and val/ class folders.
    #[arg(value_name = "DATA", required_unless_present = "data_flag")]
    pub data: Option<PathBuf>,
    /// The dataset root, as a flag (timm's `--data-dir`).
    #[arg(
        long = "data",
        alias = "data-dir",
        value_name = "DIR",
        conflicts_with = "data"
    )]
    pub data_flag: Option<PathBuf>,
    /// Parent folder of run folders.
    #[arg(short = 'o', long, default_value = "runs")]
    pub output: PathBuf,
    /// Continue the run in this folder from its latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Steps between log lines when stderr is not a terminal (CI, nohup, Slurm).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_interval: u64,
}

impl TrainArgs {
    fn data(&self) -> &Path {
        self.data
            .as_deref()
            .or(self.data_flag.as_deref())
            .unwrap_or(Path::new("."))
    }

    /// The recipe, the run folder and whether it resumes.
    fn resolve(&self) -> Result<(TrainConfig, PathBuf, bool)> {
        if let Some(run) = &self.resume {
            let saved = run.join("config.toml");
            let path = self.recipe.config.clone().unwrap_or(saved);
            return Ok((self.recipe.load(Some(&path))?, run.clone(), true));
        }
        let cfg = self.recipe.load(self.recipe.config.as_deref())?;
        let name = cfg.name.clone().unwrap_or_else(|| default_run_name(&cfg));
        Ok((cfg, self.output.join(name), false))
    }
}

/// Runs `effnet train`: 0 when done, 128 + signal number when stopped by a signal.
pub fn run(args: TrainArgs) -> Result<ExitCode> {
    args.decode.apply()?;
    let (cfg, run_dir, resume) = args.resolve()?;
    let stop = StopHandle::new();
    let signal = install_signals(&stop)?;
    let reporter = Box::new(CliReporter::new(args.log_interval));
    let hooks = TestHooks::from_env()?;
    let mut trainer = if resume {
        Trainer::resume(&cfg, args.data(), &run_dir, reporter)?
    } else {
        Trainer::new(&cfg, args.data(), &run_dir, reporter)?
    };
    trainer.set_test_hooks(hooks);
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
        match info.resumed_at {
            Some((epoch, _, _)) if epoch > info.epochs => println!(
                "{}: already finished ({} of {} epochs done); nothing to train. Pass --epochs N \
                 (more than {}) to train it longer",
                info.run_dir.display(),
                epoch - 1,
                info.epochs,
                info.epochs
            ),
            Some((epoch, step, global)) => println!(
                "resuming {} at epoch {epoch} step {step} (global step {global})",
                info.run_dir.display()
            ),
            None => {}
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
                e.epoch, e.epochs, e.steps, e.img_size, e.stage
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
            "epoch {}/{epochs}  size {}  images {}  train_loss {:.4}  eval_loss {:.4}  top1 {:.2}  top5 {:.2}{}  lr {:.3e}  {:.1} img/s{}",
            r.epoch,
            r.img_size,
            r.images,
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
