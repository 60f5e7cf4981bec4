//! The training loop: progressive stages, mixup/cutmix with soft targets, stochastic depth and
//! dropout, EMA, per-iteration LR, evaluation of raw and EMA weights, checkpoints and outputs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use effnet_data::loader::batch_rng;
use effnet_data::{ImageFolder, LoaderConfig, Mixup, Preprocess, eval_batches, smooth_one_hot};
use effnet_model::{
    EfficientNet, EfficientNetConfig, load_native, parse_device, save_native_labeled,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::checkpoint::{self, EpochRow, Snapshot, TrainState};
use crate::config::TrainConfig;
use crate::data::{eval_preprocess, images_tensor, open_splits, train_transform};
use crate::ema::{ModelEma, copy_weights};
use crate::loss::{TopK, soft_target_cross_entropy};
use crate::optim::{build_optimizer, clip_grad_norm};
use crate::output;
use crate::schedule::{ProgressiveSchedule, learning_rate, scaled_lr};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<()> = OnceLock::new();

/// Installs the Ctrl-C handler once per process: the first Ctrl-C asks the loop to checkpoint and
/// stop after the current step; a second one exits immediately.
pub fn install_ctrlc() {
    HANDLER.get_or_init(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without checkpoint");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: stopping after this step and writing a checkpoint...");
        });
    });
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Run folder.
    pub run_dir: PathBuf,
    /// Finished epochs.
    pub history: Vec<EpochRow>,
    /// Best validation top-1 (raw or EMA).
    pub best_top1: f64,
    /// Whether the best weights are the EMA ones.
    pub best_is_ema: bool,
    /// Optimiser steps done.
    pub global_step: u64,
    /// Stopped before the last epoch (Ctrl-C or the test hook), with a checkpoint written.
    pub interrupted: bool,
}

/// SplitMix64, to derive independent per-step seeds from the run seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the network the recipe asks for, on the plain device, with `num_classes` outputs.
pub fn build_model(
    cfg: &TrainConfig,
    num_classes: usize,
    device: &Device,
) -> Result<(EfficientNet, EfficientNetConfig)> {
    let m = &cfg.model;
    if m.init_weights.is_empty() {
        let mut mc = EfficientNetConfig::from_name_or_file(&m.arch)
            .map_err(|e| anyhow::anyhow!("model.arch = '{}': {e}", m.arch))?;
        mc.num_classes = num_classes;
        if m.drop_path >= 0.0 {
            mc.drop_path = m.drop_path;
        }
        mc.validate()
            .map_err(|e| anyhow::anyhow!("model.arch = '{}': {e}", m.arch))?;
        return Ok((mc.init(device), mc));
    }
    let path = Path::new(&m.init_weights);
    let pre = load_native(path, device)
        .with_context(|| format!("model.init_weights = {}", path.display()))?;
    let mut mc = pre.config.clone();
    // Rebuild with this recipe's stochastic depth (a per-block constant), then copy the weights.
    if m.drop_path >= 0.0 {
        mc.drop_path = m.drop_path;
    }
    let mut model = copy_weights(mc.init(device), &pre.model);
    if mc.num_classes != num_classes {
        model = model.reset_classifier(num_classes);
        // The model's head init is torchvision's U(±1/sqrt(classes)), sized for 1000 classes; for
        // a handful of classes on pretrained features it starts with logits in the tens. Use
        // U(±1/sqrt(features)) (PyTorch's Linear default, as timm's reset_classifier) instead.
        let [features, classes] = model.classifier.weight.dims();
        let scale = (classes as f64 / features as f64).sqrt();
        model.classifier.weight = model.classifier.weight.map(|w| w.mul_scalar(scale));
        mc.num_classes = num_classes;
    }
    Ok((model, mc))
}

/// Top-1/top-5 and loss of `model` (inference copy) on `ds`.
pub fn evaluate(
    model: &EfficientNet,
    ds: &ImageFolder,
    pre: &Preprocess,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<TopK> {
    let classes = model.num_classes();
    let mut k = TopK::default();
    for batch in eval_batches(ds, pre, batch_size, workers) {
        for (p, why) in &batch.skipped {
            eprintln!("warning: skipped {}: {why}", p.display());
        }
        let b = batch.labels.len();
        if b == 0 {
            continue;
        }
        if let Some(bad) = batch.labels.iter().find(|&&l| l >= classes) {
            bail!("label {bad} but the model has only {classes} classes");
        }
        let x = images_tensor(batch.images, b, batch.size, device);
        let logits: Vec<f32> = model
            .forward_inference(x)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
        k.add(&logits, &batch.labels, classes);
    }
    Ok(k)
}

/// One optimisation step: forward, soft-target cross entropy, backward, optional global-norm
/// clipping, optimiser update. Returns the updated model and the loss; a non-finite loss leaves
/// the weights untouched (`poison` forces a NaN loss, for the divergence test hook).
pub fn train_step(
    model: EfficientNet,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<2>,
    lr: f64,
    clip_grad: f64,
    poison: bool,
) -> (EfficientNet, f64) {
    let mut loss = soft_target_cross_entropy(model.forward(x), y);
    if poison {
        loss = loss.mul_scalar(f64::NAN);
    }
    let loss_val = loss.clone().into_scalar::<f32>() as f64;
    if !loss_val.is_finite() {
        return (model, loss_val);
    }
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if clip_grad > 0.0 {
        clip_grad_norm(&model, &mut grads, clip_grad);
    }
    (optim.step(lr, model, grads), loss_val)
}

/// Runs (or resumes, when `resume` and `run_dir` holds a checkpoint) a training run.
pub fn train(cfg: &TrainConfig, data: &Path, run_dir: &Path, resume: bool) -> Result<TrainOutcome> {
    let device = parse_device(&cfg.device).map_err(|e| anyhow::anyhow!("device: {e}"))?;
    let ad = device.clone().autodiff();
    let splits = open_splits(data, cfg)?;
    let n_classes = splits.train.classes.len();
    if cfg.model.num_classes != 0 && cfg.model.num_classes != n_classes {
        bail!(
            "model.num_classes = {} but the training split has {} classes",
            cfg.model.num_classes,
            n_classes
        );
    }
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create run folder {}", run_dir.display()))?;
    device.seed(cfg.seed);
    let (init_model, model_cfg) = build_model(cfg, n_classes, &device)?;
    let eval_size = if cfg.data.eval_size > 0 {
        cfg.data.eval_size
    } else {
        model_cfg.eval_size
    };
    let preprocess = eval_preprocess(cfg, eval_size)?;
    let eval_bs = if cfg.data.eval_batch_size > 0 {
        cfg.data.eval_batch_size
    } else {
        cfg.train.batch_size
    };
    let mut optim = build_optimizer(&cfg.optim)?;
    let (mut model, mut ema, mut state) = if resume {
        let l = checkpoint::load(run_dir, &device, optim)?;
        optim = l.optim;
        output::truncate_log(run_dir, l.state.global_step)?;
        println!(
            "resuming {} at epoch {} step {} (global step {})",
            l.dir.display(),
            l.state.epoch,
            l.state.step_in_epoch,
            l.state.global_step
        );
        let ema = match (cfg.ema.enabled, l.ema) {
            (true, Some(e)) => {
                let mut m = ModelEma::new(e, cfg.ema.decay, cfg.ema.warmup, cfg.ema.warmup_power);
                m.updates = l.state.ema_updates;
                Some(m)
            }
            (true, None) => bail!("the checkpoint has no EMA weights but ema.enabled = true"),
            _ => None,
        };
        // `train()` moves the parameters onto the autodiff device as tracked leaves.
        (l.model.train(), ema, l.state)
    } else {
        let model = init_model.train();
        let ema = cfg.ema.enabled.then(|| {
            ModelEma::new(
                model.valid(),
                cfg.ema.decay,
                cfg.ema.warmup,
                cfg.ema.warmup_power,
            )
        });
        let state = TrainState {
            seed: cfg.seed,
            best_top1: -1.0,
            ..Default::default()
        };
        output::write_summary(run_dir, &[])?;
        (model, ema, state)
    };
    checkpoint::write_atomic(&run_dir.join("config.toml"), cfg.to_toml()?.as_bytes())?;
    splits
        .train
        .save_classes(&run_dir.join("classes.txt"))
        .context("writing classes.txt")?;
    println!("{}", splits.train.report());
    println!("{}", splits.val.report());
    println!(
        "model {} ({:.2} M params, {} classes), run folder {}",
        model_cfg.name,
        model.num_trainable_params() as f64 / 1e6,
        n_classes,
        run_dir.display()
    );

    let schedule =
        ProgressiveSchedule::new(&cfg.progressive, cfg.train.epochs, cfg.train.batch_size);
    let base_tf = train_transform(cfg)?;
    install_ctrlc();
    let save_ckpt = |model: &EfficientNet,
                     ema: &Option<ModelEma>,
                     optim: &ModuleOptimizer,
                     state: &TrainState|
     -> Result<PathBuf> {
        let snap = Snapshot {
            model: &model.valid(),
            ema: ema.as_ref().map(|e| &e.model),
            optim,
            state,
            config: &model_cfg,
            preprocess: &preprocess,
        };
        checkpoint::save(run_dir, &snap, cfg.checkpoint.keep_last)
            .with_context(|| format!("writing a checkpoint in {}", run_dir.display()))
    };

    for epoch in state.epoch..cfg.train.epochs {
        let started = Instant::now();
        let stage = schedule.stage_at(epoch).clone();
        state.stage = stage.index;
        model = model.set_dropout(stage.dropout);
        let magnitude = base_tf.randaugment.as_ref().map(|_| stage.randaugment);
        let tf = base_tf.at_stage(stage.image_size, magnitude);
        let lcfg = LoaderConfig {
            batch_size: stage.batch_size,
            workers: cfg.data.workers,
            shuffle: true,
            seed: cfg.seed,
            drop_last: true,
            prefetch: 2,
        };
        let batches = effnet_data::train_batches(&splits.train, &tf, &lcfg, epoch as u64);
        let mut n_batches = batches.num_batches();
        if cfg.train.max_steps_per_epoch > 0 {
            n_batches = n_batches.min(cfg.train.max_steps_per_epoch);
        }
        if n_batches == 0 {
            bail!(
                "the training split has {} images, fewer than one batch of {}",
                splits.train.len(),
                stage.batch_size
            );
        }
        let lr_peak = scaled_lr(cfg.optim.lr_base, stage.batch_size, cfg.optim.lr_base_batch);
        let mixup = Mixup {
            mixup_alpha: stage.mixup,
            cutmix_alpha: if cfg.train.cutmix { stage.mixup } else { 0.0 },
            cutmix_minmax: None,
            prob: cfg.train.mixup_prob,
            switch_prob: cfg.train.mixup_switch_prob,
            label_smoothing: cfg.train.label_smoothing,
            num_classes: n_classes,
        };
        let bar = ProgressBar::with_draw_target(
            Some(n_batches as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, cfg.train.epochs));
        bar.set_position(state.step_in_epoch as u64);
        let skip = state.step_in_epoch;
        // LR of the last step already done (what the epoch row reports if none is left).
        let done = skip.saturating_sub(1) as f64 / n_batches as f64;
        let mut lr = learning_rate(&cfg.sched, lr_peak, cfg.train.epochs, epoch as f64 + done);
        let mut images_done = 0usize;
        let t_train = Instant::now();
        for (i, batch) in batches.enumerate().take(n_batches).skip(skip) {
            for (p, why) in &batch.skipped {
                eprintln!("warning: skipped {}: {why}", p.display());
            }
            let b = batch.labels.len();
            let t = epoch as f64 + i as f64 / n_batches as f64;
            lr = learning_rate(&cfg.sched, lr_peak, cfg.train.epochs, t);
            state.global_step += 1;
            state.step_in_epoch = i + 1;
            if b > 0 {
                ad.seed(mix(cfg.seed ^ mix(state.global_step)));
                let mut images = batch.images;
                let targets = if mixup.enabled() {
                    let mut rng = batch_rng(cfg.seed, epoch as u64, i as u64);
                    mixup.apply(&mut images, &batch.labels, batch.size, &mut rng)
                } else {
                    smooth_one_hot(&batch.labels, n_classes, cfg.train.label_smoothing)
                };
                let x = images_tensor(images, b, batch.size, &ad);
                let y = Tensor::<2>::from_data(TensorData::new(targets, [b, n_classes]), &ad);
                let poison = cfg.testing.nan_at_step as u64 == state.global_step;
                let (next, loss_val) =
                    train_step(model, &mut optim, x, y, lr, cfg.train.clip_grad, poison);
                model = next;
                if !loss_val.is_finite() {
                    bar.abandon();
                    let last = checkpoint::latest(run_dir)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| "none yet".into());
                    bail!(
                        "loss is {loss_val} at epoch {} step {} (global step {}, lr {lr:.3e}): \
                         training diverged; weights were not updated. Last good checkpoint: {last}. \
                         Lower optim.lr_base or set train.clip_grad and resume.",
                        epoch,
                        i,
                        state.global_step
                    );
                }
                if let Some(e) = ema.as_mut() {
                    e.update(&model.valid());
                    state.ema_updates = e.updates;
                }
                state.epoch_loss_sum += loss_val;
                images_done += b;
                let ips = images_done as f64 / t_train.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("loss {loss_val:.4} lr {lr:.2e} {ips:.1} img/s"));
                output::append_log(
                    run_dir,
                    &json!({"kind": "step", "step": state.global_step, "epoch": epoch,
                            "iter": i, "loss": loss_val, "lr": lr, "img_size": batch.size,
                            "batch": b}),
                )?;
            }
            bar.set_position((i + 1) as u64);
            let every = cfg.checkpoint.every_steps as u64;
            let stop_hook = cfg.testing.stop_after_steps as u64 == state.global_step;
            let interrupted = INTERRUPTED.load(Ordering::SeqCst) || stop_hook;
            if interrupted || (every > 0 && state.global_step % every == 0 && i + 1 < n_batches) {
                save_ckpt(&model, &ema, &optim, &state)?;
            }
            if interrupted {
                bar.abandon();
                println!(
                    "stopped at epoch {epoch} step {} (global step {}); resume with --resume {}",
                    i + 1,
                    state.global_step,
                    run_dir.display()
                );
                return Ok(TrainOutcome {
                    run_dir: run_dir.to_path_buf(),
                    history: state.history.clone(),
                    best_top1: state.best_top1,
                    best_is_ema: state.best_is_ema,
                    global_step: state.global_step,
                    interrupted: true,
                });
            }
        }
        bar.finish_and_clear();
        let train_secs = t_train.elapsed().as_secs_f64();
        let raw = evaluate(
            &model.valid(),
            &splits.val,
            &preprocess,
            eval_bs,
            cfg.data.workers,
            &device,
        )?;
        let ema_k = match &ema {
            Some(e) => Some(evaluate(
                &e.model,
                &splits.val,
                &preprocess,
                eval_bs,
                cfg.data.workers,
                &device,
            )?),
            None => None,
        };
        let row = EpochRow {
            epoch,
            stage: stage.index,
            img_size: stage.image_size,
            train_loss: state.epoch_loss_sum / n_batches as f64,
            eval_loss: raw.loss(),
            eval_top1: raw.top1_pct(),
            eval_top5: raw.top5_pct(),
            ema_top1: ema_k.map(|k| k.top1_pct()),
            ema_top5: ema_k.map(|k| k.top5_pct()),
            lr,
            img_per_sec: images_done as f64 / train_secs.max(1e-9),
            epoch_secs: started.elapsed().as_secs_f64(),
        };
        println!(
            "epoch {:>3} stage {} size {:>3}  train_loss {:.4}  eval_loss {:.4}  top1 {:.2}  top5 {:.2}{}  lr {:.3e}  {:.1} img/s",
            epoch,
            stage.index,
            stage.image_size,
            row.train_loss,
            row.eval_loss,
            row.eval_top1,
            row.eval_top5,
            row.ema_top1
                .map(|t| format!("  ema_top1 {t:.2}"))
                .unwrap_or_default(),
            row.lr,
            row.img_per_sec
        );
        let (cand, cand_is_ema) = match row.ema_top1 {
            Some(e) if e > row.eval_top1 => (e, true),
            _ => (row.eval_top1, false),
        };
        if cand > state.best_top1 {
            state.best_top1 = cand;
            state.best_epoch = Some(epoch);
            state.best_is_ema = cand_is_ema;
            let best = if cand_is_ema {
                ema.as_ref()
                    .map(|e| e.model.clone())
                    .unwrap_or_else(|| model.valid())
            } else {
                model.valid()
            };
            save_native_labeled(
                &run_dir.join("best.bpk"),
                &best,
                &model_cfg,
                &preprocess,
                &format!(
                    "effnet train: best {} weights, epoch {epoch}, top-1 {cand:.2}",
                    if cand_is_ema { "EMA" } else { "raw" }
                ),
                Some(&splits.train.classes),
            )
            .context("writing best.bpk")?;
        }
        state.history.push(row.clone());
        state.epoch = epoch + 1;
        state.step_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        output::append_log(
            run_dir,
            &json!({"kind": "epoch", "step": state.global_step, "epoch": epoch,
                    "train_loss": row.train_loss, "eval_loss": row.eval_loss,
                    "eval_top1": row.eval_top1, "eval_top5": row.eval_top5,
                    "ema_top1": row.ema_top1,
                    "lr": row.lr, "img_size": row.img_size, "stage": row.stage}),
        )?;
        save_ckpt(&model, &ema, &optim, &state)?;
        output::write_summary(run_dir, &state.history)?;
        output::write_plots(run_dir, &state.history)?;
    }
    Ok(TrainOutcome {
        run_dir: run_dir.to_path_buf(),
        history: state.history.clone(),
        best_top1: state.best_top1,
        best_is_ema: state.best_is_ema,
        global_step: state.global_step,
        interrupted: false,
    })
}
