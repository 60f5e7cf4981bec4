//! `effnet`: a thin command line over the effnet crates.

mod args;
mod bench;
mod eval;
mod export;
mod import;
mod infer;
mod models;
mod native_bench;
mod recipe;
mod train;
mod warmup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// EfficientNet / EfficientNetV2 inference, evaluation, import, export, benchmarking and
/// training, with timm's names for models, flags and output formats.
#[derive(Parser)]
#[command(name = "effnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images (files or folders) and print the top-k ImageNet classes.
    Infer(infer::InferArgs),
    /// Convert PyTorch (torchvision / timm / lukemelas) weights into effnet's .bpk format.
    Import(import::ImportArgs),
    /// Export weights as ONNX, or as a .bpk at another precision (f16).
    Export(export::ExportArgs),
    /// Time inference on random inputs (img/s).
    Bench(bench::BenchArgs),
    /// Train on an ImageNet-format folder tree, from a recipe (configs/train/) or timm's
    /// defaults scaled by the model (-m); timm's train.py flags set recipe keys.
    Train(train::TrainArgs),
    /// Top-1/top-5 of weights on a labelled folder tree (WordNet-id or class-name folders),
    /// with timm validate.py's result record.
    Eval(eval::EvalArgs),
    /// Compile and autotune GPU kernels for every shape a recipe (or model and size) uses,
    /// into the on-disk cache later runs reuse ($EFFNET_CACHE_DIR, default
    /// ~/.cache/effnet/cubecl).
    Warmup(warmup::WarmupArgs),
    /// List the architectures (timm's names, wildcards as in timm's list_models) with their
    /// parameter counts, engines, pretrained tags and aliases.
    Models(models::ModelsArgs),
}

fn main() -> ExitCode {
    // Library panics (e.g. a GPU driver failing) become one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!(
            "error: internal failure: {}",
            msg.lines().next().unwrap_or("")
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return recipe::explain_unknown_flag(e),
    };
    let result = match cli.command {
        Command::Infer(a) => infer::run(a),
        Command::Import(a) => import::run(a),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Warmup(a) => warmup::run(a),
        Command::Models(a) => models::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", effnet_data::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
