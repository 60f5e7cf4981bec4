//! The recipe flags `train` and `warmup` share: `-c/--config`, `--set KEY=VALUE` and every
//! shorthand, spelled as timm's train.py spells it, each the alias of one recipe key (its help
//! says which). Flags become `key=value` overrides on the recipe; an error the recipe reports
//! about a key a flag set names the flag too.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use effnet_train::TrainConfig;

use crate::args::PrecisionArgs;

/// Recipe overrides, timm's train.py names first.
#[derive(Args, Debug, Clone, Default)]
pub struct RecipeArgs {
    /// Recipe TOML (e.g. configs/train/efficientnetv2_s.toml); without one, timm's defaults
    /// scaled by the model (-m). With --resume: the run folder's config.toml.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// Override any recipe key: `--set optim.lr_base=0.01 --set progressive.mode=automl`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Model: preset, alias or model TOML (`model.arch`).
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Epochs (`train.epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size (`train.batch_size`).
    #[arg(short = 'b', long, visible_alias = "batch")]
    pub batch_size: Option<usize>,
    /// Absolute peak learning rate, used as is for any batch size (`optim.lr`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning rate for a batch of 256, scaled linearly to the batch size (`optim.lr_base`).
    #[arg(long)]
    pub lr_base: Option<f64>,
    /// Training and evaluation image size (`progressive.size = [N, N]`, `data.eval_size`).
    #[arg(long = "img-size", visible_alias = "size", value_name = "N")]
    pub img_size: Option<usize>,
    /// Loader threads (`data.workers`).
    #[arg(short = 'j', long)]
    pub workers: Option<usize>,
    /// Seed (`seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: cpu, wgpu, cuda[:N] (`device`).
    #[arg(long)]
    pub device: Option<String>,
    /// Compute precision (`train.precision`; f16 adds dynamic loss scaling).
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Start from these weights: a .bpk, `bundled` or hf-hub:owner/name (`model.init_weights`).
    #[arg(long, visible_alias = "initial-checkpoint", value_name = "WEIGHTS")]
    pub init_weights: Option<String>,
    /// timm's --pretrained: start from the bundled ImageNet weights
    /// (`model.init_weights = "bundled"`).
    #[arg(long, conflicts_with = "init_weights")]
    pub pretrained: bool,
    /// Optimizer: sgd (Nesterov), momentum (SGD without Nesterov), adamw, rmsproptf
    /// (`optim.name`, `optim.nesterov`).
    #[arg(long, value_name = "NAME")]
    pub opt: Option<String>,
    /// Optimizer epsilon (`optim.eps`).
    #[arg(long)]
    pub opt_eps: Option<f64>,
    /// Optimizer momentum (`optim.momentum`).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (`optim.weight_decay`).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// LR schedule: cosine, step (timm's; the staircase), exponential, constant (`sched.name`).
    #[arg(long, value_name = "NAME")]
    pub sched: Option<String>,
    /// Warmup epochs (`sched.warmup_epochs`).
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// LR at the start of warmup (`sched.warmup_lr`).
    #[arg(long)]
    pub warmup_lr: Option<f64>,
    /// Lowest LR of the cosine (`sched.min_lr`).
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// Epochs between LR decays of the staircase (`sched.decay_epochs`).
    #[arg(long)]
    pub decay_epochs: Option<f64>,
    /// LR decay factor of the staircase (`sched.decay_rate`).
    #[arg(long)]
    pub decay_rate: Option<f64>,
    /// Label smoothing (`train.label_smoothing`).
    #[arg(long)]
    pub smoothing: Option<f64>,
    /// Classifier dropout in every stage (`progressive.dropout = [P, P]`).
    #[arg(long)]
    pub drop: Option<f64>,
    /// Stochastic depth rate (`model.drop_path`).
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Mixup alpha in every stage (`progressive.mixup = [A, A]`).
    #[arg(long)]
    pub mixup: Option<f64>,
    /// CutMix alpha (`train.cutmix = true`; alone: `progressive.mixup = [A, A]` and
    /// `train.mixup_switch_prob = 1`, CutMix only). One alpha serves both, so with --mixup it
    /// must be the same.
    #[arg(long)]
    pub cutmix: Option<f64>,
    /// RandAugment: a timm string such as rand-m9-mstd0.5, automl, or none
    /// (`data.randaugment`).
    #[arg(long, value_name = "POLICY")]
    pub aa: Option<String>,
    /// Random erasing probability (`data.reprob`).
    #[arg(long)]
    pub reprob: Option<f64>,
    /// Keep an EMA of the weights and evaluate it too (`ema.enabled = true`).
    #[arg(long)]
    pub model_ema: bool,
    /// EMA decay per step (`ema.decay`; implies --model-ema).
    #[arg(long)]
    pub model_ema_decay: Option<f64>,
    /// Batches whose gradients are summed before each optimizer step
    /// (`train.grad_accum_steps`).
    #[arg(long)]
    pub grad_accum_steps: Option<usize>,
    /// Global gradient-norm clipping threshold (`train.clip_grad`).
    #[arg(long)]
    pub clip_grad: Option<f64>,
    /// Run folder name under --output (`name`).
    #[arg(long)]
    pub experiment: Option<String>,
}

/// One recipe key set from the command line, and the flag that set it.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Dotted recipe key.
    pub key: &'static str,
    /// TOML literal.
    pub value: String,
    /// The flag as typed (`--epochs 1`), for error messages.
    pub flag: String,
}

/// The flag that sets each recipe key (the first flag for a key set by several), so an error
/// about a key can name the flag that fixes it.
pub const FLAG_OF_KEY: &[(&str, &str)] = &[
    ("model.arch", "-m"),
    ("train.epochs", "--epochs"),
    ("train.batch_size", "-b"),
    ("optim.lr", "--lr"),
    ("optim.lr_base", "--lr-base"),
    ("progressive.size", "--img-size"),
    ("data.eval_size", "--img-size"),
    ("data.workers", "-j"),
    ("seed", "--seed"),
    ("device", "--device"),
    ("train.precision", "--precision"),
    ("model.init_weights", "--init-weights"),
    ("optim.name", "--opt"),
    ("optim.eps", "--opt-eps"),
    ("optim.momentum", "--momentum"),
    ("optim.weight_decay", "--weight-decay"),
    ("sched.name", "--sched"),
    ("sched.warmup_epochs", "--warmup-epochs"),
    ("sched.warmup_lr", "--warmup-lr"),
    ("sched.min_lr", "--min-lr"),
    ("sched.decay_epochs", "--decay-epochs"),
    ("sched.decay_rate", "--decay-rate"),
    ("train.label_smoothing", "--smoothing"),
    ("progressive.dropout", "--drop"),
    ("model.drop_path", "--drop-path"),
    ("progressive.mixup", "--mixup"),
    ("train.cutmix", "--cutmix"),
    ("data.randaugment", "--aa"),
    ("data.reprob", "--reprob"),
    ("ema.enabled", "--model-ema"),
    ("ema.decay", "--model-ema-decay"),
    ("train.grad_accum_steps", "--grad-accum-steps"),
    ("train.clip_grad", "--clip-grad"),
    ("name", "--experiment"),
];

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn float(x: &f64) -> String {
    format!("{x:?}")
}

fn int(x: &usize) -> String {
    x.to_string()
}

fn both(x: &f64) -> String {
    format!("[{x:?}, {x:?}]")
}

/// The overrides being collected, each with the flag that asked for it.
#[derive(Default)]
struct Collect(Vec<Override>);

impl Collect {
    /// `key = fmt(value)` when the flag was given.
    fn flag<T: std::fmt::Display>(
        &mut self,
        key: &'static str,
        flag: &str,
        value: &Option<T>,
        fmt: impl Fn(&T) -> String,
    ) {
        if let Some(v) = value {
            self.push(key, fmt(v), format!("{flag} {v}"));
        }
    }

    fn push(&mut self, key: &'static str, value: String, flag: String) {
        self.0.push(Override { key, value, flag });
    }
}

impl RecipeArgs {
    /// Every flag given, as recipe overrides (after `--set`, so flags win).
    pub fn overrides(&self) -> Result<Vec<Override>> {
        let mut c = Collect::default();
        self.run_flags(&mut c)?;
        self.optimiser_flags(&mut c)?;
        self.regularisation_flags(&mut c)?;
        Ok(c.0)
    }

    /// Model, data, loop length and where the run lives.
    fn run_flags(&self, c: &mut Collect) -> Result<()> {
        let img_size = |s: &usize| format!("[{s}, {s}]");
        c.flag("model.arch", "-m", &self.model, |s| quoted(s));
        c.flag("train.epochs", "--epochs", &self.epochs, int);
        c.flag("train.batch_size", "-b", &self.batch_size, int);
        c.flag("optim.lr", "--lr", &self.lr, float);
        c.flag("optim.lr_base", "--lr-base", &self.lr_base, float);
        c.flag("progressive.size", "--img-size", &self.img_size, img_size);
        c.flag("data.eval_size", "--img-size", &self.img_size, int);
        c.flag("data.workers", "-j", &self.workers, int);
        c.flag("seed", "--seed", &self.seed, u64::to_string);
        c.flag("device", "--device", &self.device, |s| quoted(s));
        let precision = self.precision.requested()?;
        c.flag("train.precision", "--precision", &precision, |p| {
            quoted(p.name())
        });
        c.flag(
            "model.init_weights",
            "--init-weights",
            &self.init_weights,
            |s| quoted(s),
        );
        if self.pretrained {
            let bundled = quoted(effnet::BUNDLED_SPEC);
            c.push("model.init_weights", bundled, "--pretrained".into());
        }
        c.flag("name", "--experiment", &self.experiment, |s| quoted(s));
        Ok(())
    }

    /// The optimiser and the learning-rate schedule.
    fn optimiser_flags(&self, c: &mut Collect) -> Result<()> {
        if let Some(opt) = &self.opt {
            let flag = format!("--opt {opt}");
            let (name, nesterov) = match opt.to_ascii_lowercase().as_str() {
                "sgd" | "nesterov" => ("sgd", Some(true)),
                "momentum" => ("sgd", Some(false)),
                "adamw" => ("adamw", None),
                "rmsproptf" => ("rmsproptf", None),
                other => {
                    bail!("--opt {other}: effnet has sgd (Nesterov), momentum, adamw and rmsproptf")
                }
            };
            c.push("optim.name", quoted(name), flag.clone());
            if let Some(n) = nesterov {
                c.push("optim.nesterov", n.to_string(), flag);
            }
        }
        c.flag("optim.eps", "--opt-eps", &self.opt_eps, float);
        c.flag("optim.momentum", "--momentum", &self.momentum, float);
        c.flag(
            "optim.weight_decay",
            "--weight-decay",
            &self.weight_decay,
            float,
        );
        if let Some(s) = &self.sched {
            let name = match s.to_ascii_lowercase().as_str() {
                "cosine" => "cosine",
                "step" | "exponential" => "exponential",
                "constant" => "constant",
                other => bail!(
                    "--sched {other}: effnet has cosine, step (exponential staircase) and constant"
                ),
            };
            c.push("sched.name", quoted(name), format!("--sched {s}"));
        }
        c.flag(
            "sched.warmup_epochs",
            "--warmup-epochs",
            &self.warmup_epochs,
            float,
        );
        c.flag("sched.warmup_lr", "--warmup-lr", &self.warmup_lr, float);
        c.flag("sched.min_lr", "--min-lr", &self.min_lr, float);
        c.flag(
            "sched.decay_epochs",
            "--decay-epochs",
            &self.decay_epochs,
            float,
        );
        c.flag("sched.decay_rate", "--decay-rate", &self.decay_rate, float);
        Ok(())
    }

    /// Regularisation, augmentation, EMA and the gradient.
    fn regularisation_flags(&self, c: &mut Collect) -> Result<()> {
        c.flag(
            "train.label_smoothing",
            "--smoothing",
            &self.smoothing,
            float,
        );
        c.flag("progressive.dropout", "--drop", &self.drop, both);
        c.flag("model.drop_path", "--drop-path", &self.drop_path, float);
        self.mixing(c)?;
        c.flag("data.randaugment", "--aa", &self.aa, |s| quoted(s));
        c.flag("data.reprob", "--reprob", &self.reprob, float);
        if self.model_ema || self.model_ema_decay.is_some() {
            c.push("ema.enabled", "true".into(), "--model-ema".into());
        }
        c.flag(
            "ema.decay",
            "--model-ema-decay",
            &self.model_ema_decay,
            float,
        );
        let accum = &self.grad_accum_steps;
        c.flag("train.grad_accum_steps", "--grad-accum-steps", accum, int);
        c.flag("train.clip_grad", "--clip-grad", &self.clip_grad, float);
        Ok(())
    }

    /// `--mixup` and `--cutmix`: one alpha for both (as automl's recipes have it).
    fn mixing(&self, c: &mut Collect) -> Result<()> {
        match (self.mixup, self.cutmix) {
            (Some(m), Some(x)) if m != x => bail!(
                "--mixup {m} --cutmix {x}: effnet uses one alpha for both (pass the same value, \
                 or --set train.mixup_switch_prob=P to weigh them)"
            ),
            (Some(m), x) => {
                c.push("progressive.mixup", both(&m), format!("--mixup {m}"));
                if let Some(x) = x {
                    c.push(
                        "train.cutmix",
                        (x > 0.0).to_string(),
                        format!("--cutmix {x}"),
                    );
                }
            }
            (None, Some(x)) => {
                let flag = format!("--cutmix {x}");
                c.push("progressive.mixup", both(&x), flag.clone());
                c.push("train.cutmix", (x > 0.0).to_string(), flag.clone());
                c.push("train.mixup_switch_prob", "1.0".into(), flag);
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// `--set` values and the flags' overrides as `key=value` strings, flags last.
    pub fn assignments(&self, overrides: &[Override]) -> Vec<String> {
        let mut v = self.set.clone();
        v.extend(overrides.iter().map(|o| format!("{}={}", o.key, o.value)));
        v
    }

    /// The recipe: `path` (the `--config` file, or a resumed run's config.toml) with the
    /// overrides, or the model-scaled defaults without one. Errors about a key a flag set name
    /// the flag.
    pub fn load(&self, path: Option<&std::path::Path>) -> Result<TrainConfig> {
        let overrides = self.overrides()?;
        let all = self.assignments(&overrides);
        let result = match path {
            Some(p) => TrainConfig::load(p, &all),
            None => match &self.model {
                Some(arch) => TrainConfig::for_model(arch, &all),
                None => bail!(
                    "-m MODEL or -c RECIPE is needed (or --resume RUN_DIR): e.g. \
                     `-m efficientnetv2_b0` trains with timm's defaults scaled by the model"
                ),
            },
        };
        result.map_err(|e| name_flags(e, &overrides))
    }
}

/// Adds to a recipe error the flags that set the keys it names, and the flags (or `--set`
/// keys) that change the other keys it names.
pub fn name_flags(e: anyhow::Error, overrides: &[Override]) -> anyhow::Error {
    let text = format!("{e:#}");
    let keys = keys_in(&text);
    let mut given: Vec<&str> = Vec::new();
    for o in overrides {
        if keys.contains(&o.key) && !given.contains(&o.flag.as_str()) {
            given.push(&o.flag);
        }
    }
    if given.is_empty() {
        return e;
    }
    let fixes: Vec<String> = keys
        .iter()
        .filter(|k| !overrides.iter().any(|o| o.key == **k))
        .map(|k| match FLAG_OF_KEY.iter().find(|(key, _)| key == k) {
            Some((_, flag)) => format!("{flag} (`{k}`)"),
            None => format!("--set {k}=..."),
        })
        .collect();
    let fix = if fixes.is_empty() {
        String::new()
    } else {
        format!("; or change {}", fixes.join(", "))
    };
    anyhow::anyhow!("{}: {text}{fix}", given.join(" "))
}

/// The recipe keys a message names (`sched.warmup_epochs`, `train.epochs`...), in order.
fn keys_in(text: &str) -> Vec<&'static str> {
    let mut found: Vec<(usize, &'static str)> = FLAG_OF_KEY
        .iter()
        .map(|(k, _)| *k)
        .chain(["optim.nesterov", "train.mixup_switch_prob"])
        .filter(|k| k.contains('.'))
        .filter_map(|k| text.find(k).map(|at| (at, k)))
        .collect();
    found.sort();
    found.dedup_by_key(|(_, k)| *k);
    found.into_iter().map(|(_, k)| k).collect()
}

/// Every recipe key (dotted), from a serialised default recipe plus the keys it leaves out
/// when unset.
fn recipe_keys() -> Vec<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&key, t, out),
                _ => out.push(key),
            }
        }
    }
    let mut keys: Vec<String> = [
        "name",
        "optim.lr",
        "model.init_weights",
        "model.num_classes",
        "data.eval_batch_size",
        "train.max_steps_per_epoch",
        "checkpoint.every_steps",
    ]
    .map(String::from)
    .to_vec();
    let text = TrainConfig::for_model("efficientnetv2_b0", &[]).and_then(|c| c.to_toml());
    if let Ok(Ok(table)) = text.map(|t| t.parse::<toml::Table>()) {
        walk("", &table, &mut keys);
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The recipe key a flag that `train` does not have stands for (`--mixup-prob` is
/// `train.mixup_prob`), when exactly one key ends with its name.
pub fn recipe_key_for_flag(flag: &str) -> Option<String> {
    let name = flag
        .split('=')
        .next()?
        .trim_start_matches('-')
        .replace('-', "_");
    if name.is_empty() {
        return None;
    }
    let keys = recipe_keys();
    let matches: Vec<&String> = keys
        .iter()
        .filter(|k| k.rsplit('.').next() == Some(name.as_str()) || k.replace('.', "_") == name)
        .collect();
    match matches.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// Prints a command-line error; for an unknown flag of `train` or `warmup` that names a recipe
/// key, says which key and how to set it (`--set KEY=VALUE`) instead of clap's closest flag.
pub fn explain_unknown_flag(e: clap::Error) -> std::process::ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let recipe_command = std::env::args()
        .nth(1)
        .is_some_and(|c| c == "train" || c == "warmup");
    if recipe_command
        && e.kind() == ErrorKind::UnknownArgument
        && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
        && let Some(key) = recipe_key_for_flag(arg)
    {
        let flag = arg.split('=').next().unwrap_or(arg);
        eprintln!(
            "error: unexpected argument '{flag}': it is the recipe key `{key}`; pass \
             --set {key}=VALUE"
        );
        return std::process::ExitCode::from(2);
    }
    e.exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_about_a_flag_key_name_the_flag_and_the_fix() {
        let args = RecipeArgs {
            epochs: Some(1),
            ..Default::default()
        };
        let ov = args.overrides().unwrap();
        let e = anyhow::anyhow!("sched.warmup_epochs = 1 must be in [0, train.epochs = 1)");
        let text = name_flags(e, &ov).to_string();
        assert!(
            text.starts_with("--epochs 1: sched.warmup_epochs"),
            "{text}"
        );
        assert!(
            text.contains("--warmup-epochs (`sched.warmup_epochs`)"),
            "{text}"
        );
        // Errors about keys no flag set are left alone.
        let e = anyhow::anyhow!("optim.rho = 2 is outside [0, 1)");
        assert_eq!(
            name_flags(e, &ov).to_string(),
            "optim.rho = 2 is outside [0, 1)"
        );
    }

    #[test]
    fn unknown_flags_find_their_recipe_key() {
        assert_eq!(
            recipe_key_for_flag("--mixup-prob").as_deref(),
            Some("train.mixup_prob")
        );
        assert_eq!(
            recipe_key_for_flag("--rho=0.8").as_deref(),
            Some("optim.rho")
        );
        assert_eq!(recipe_key_for_flag("--no-such-thing"), None);
    }

    #[test]
    fn timm_flags_set_their_keys() {
        let args = RecipeArgs {
            opt: Some("momentum".into()),
            sched: Some("step".into()),
            cutmix: Some(1.0),
            pretrained: true,
            ..Default::default()
        };
        let set = args.assignments(&args.overrides().unwrap());
        for want in [
            "optim.name=\"sgd\"",
            "optim.nesterov=false",
            "sched.name=\"exponential\"",
            "progressive.mixup=[1.0, 1.0]",
            "train.cutmix=true",
            "train.mixup_switch_prob=1.0",
            "model.init_weights=\"bundled\"",
        ] {
            assert!(set.iter().any(|s| s == want), "{want} in {set:?}");
        }
        let bad = RecipeArgs {
            opt: Some("lamb".into()),
            ..Default::default()
        };
        assert!(
            bad.overrides()
                .unwrap_err()
                .to_string()
                .contains("--opt lamb")
        );
    }
}
