//! The library without the CLI: train a recipe with a reporter that prints one line per epoch.
//! `cargo run --release -p effnet-train --example train -- configs/train/tiny_cpu.toml data/digits runs/example`

use std::path::Path;

use effnet_train::{EpochRow, Reporter, StopHandle, TrainConfig, Trainer};

/// Prints each finished epoch.
struct EpochLines;

impl Reporter for EpochLines {
    fn epoch_finished(&mut self, r: &EpochRow, epochs: usize, _new_best: bool) {
        println!(
            "epoch {}/{epochs}: train_loss {:.4} top1 {:.2}",
            r.epoch, r.train_loss, r.eval_top1
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [recipe, data, run] = args.as_slice() else {
        anyhow::bail!("usage: train RECIPE.toml DATA_DIR RUN_DIR");
    };
    let cfg = TrainConfig::load(Path::new(recipe), &[])?;
    let mut trainer = Trainer::new(&cfg, Path::new(data), Path::new(run), Box::new(EpochLines))?;
    let out = trainer.run(&StopHandle::new())?;
    println!("best top-1 {:.2}", out.best_top1);
    Ok(())
}
