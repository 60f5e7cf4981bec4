//! Training throughput of effnet's train step (forward, soft-target CE, backward, AdamW) on
//! random data, for comparison with PyTorch in `scripts/bench_train_cpu.sh`.
//!
//! `cargo run --release -p effnet-train --example bench_train -- [model] [batch] [size] [steps] [device]`

use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_model::{EfficientNetConfig, parse_device};
use effnet_train::config::{OptimKind, OptimSection};
use effnet_train::optim::build_optimizer;
use effnet_train::train_step;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let name = arg(0, "efficientnetv2_b0");
    let batch: usize = arg(1, "16").parse()?;
    let size: usize = arg(2, "128").parse()?;
    let steps: usize = arg(3, "5").parse()?;
    let device = parse_device(&arg(4, "cpu")).map_err(anyhow::Error::msg)?;
    let ad = device.clone().autodiff();
    device.seed(0);
    let cfg = EfficientNetConfig::from_name_or_file(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut model = cfg.init(&ad);
    let mut optim = build_optimizer(&OptimSection {
        name: OptimKind::Adamw,
        lr_base: 1e-3,
        lr_base_batch: 256,
        weight_decay: 0.01,
        no_decay_bn_bias: true,
        momentum: 0.9,
        rho: 0.9,
        eps: 1e-8,
        betas: [0.9, 0.999],
        nesterov: true,
        lr: None,
    })?;
    let classes = cfg.num_classes;
    let mut run = |n: usize, model: &mut Option<effnet_model::EfficientNet>| -> f64 {
        let t0 = std::time::Instant::now();
        let mut loss = 0.0;
        for i in 0..n {
            let x =
                Tensor::<4>::random([batch, 3, size, size], Distribution::Normal(0.0, 1.0), &ad);
            let labels: Vec<f32> = (0..batch * classes)
                .map(|k| f32::from(k % classes == (k / classes + i) % classes))
                .collect();
            let y = Tensor::<2>::from_data(TensorData::new(labels, [batch, classes]), &ad);
            let m = model.take().expect("model");
            let (m, l) = train_step(m, &mut optim, x, y, 1e-3, 0.0, false);
            *model = Some(m);
            loss = l;
        }
        let _ = device.sync();
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "  {n} steps, last loss {loss:.4}, {:.1} ms/step",
            1e3 * secs / n as f64
        );
        (n * batch) as f64 / secs
    };
    let mut holder = Some(model);
    run(2, &mut holder);
    let ips = run(steps, &mut holder);
    model = holder.take().expect("model");
    let _ = model.num_params();
    println!("effnet {name} train b{batch} r{size}: {ips:.2} img/s");
    Ok(())
}
