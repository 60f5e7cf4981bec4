//! The `train` / `eval` subcommands without the main CLI, for smoke runs of this crate alone:
//! `cargo run --release -p effnet-train --example train -- train --config configs/train/tiny_cpu.toml --data data/digits`

use clap::{Parser, Subcommand};
use effnet_train::{EvalArgs, TrainArgs};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train from a recipe.
    Train(TrainArgs),
    /// Evaluate native weights.
    Eval(EvalArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Train(a) => a.run(),
        Cmd::Eval(a) => a.run(),
    }
}
