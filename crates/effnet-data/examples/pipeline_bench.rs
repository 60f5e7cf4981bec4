//! Training-pipeline throughput: decode + RandomResizedCrop(224) + flip + RandAugment + normalise,
//! over a folder of JPEGs, on 1 thread and on N threads. Run via scripts/bench_data_pipeline.sh,
//! which times timm's PIL pipeline on the same files in the same run and prints the ratio.
//!
//! Usage: pipeline_bench <jpeg-dir> [seconds-per-case] [threads] [randaugment-spec]

use std::path::PathBuf;
use std::time::Instant;

use effnet_data::loader::sample_rng;
use effnet_data::{RandAugment, TrainTransform, collect_images, load_rgb};
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .map_or("/tmp/effnet-bench-jpegs", String::as_str),
    );
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let spec = args.get(4).map_or("rand-m9-mstd0.5", String::as_str);
    let (files, errs) = collect_images(std::slice::from_ref(&dir));
    if files.is_empty() {
        eprintln!("no images under {} ({errs:?})", dir.display());
        std::process::exit(2);
    }
    let ra = match RandAugment::parse_timm(spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let tf = TrainTransform::imagenet(224, Some(ra));
    let per = 3 * 224 * 224;
    let one = |i: usize, out: &mut [f32]| {
        let path = &files[i % files.len()];
        match load_rgb(path) {
            Ok(img) => {
                let mut rng = sample_rng(0, 0, i as u64);
                tf.apply_into(&img, &mut rng, out);
            }
            Err(e) => eprintln!("{e}"),
        }
    };
    // Stage breakdown on one thread (decode only) so regressions are easy to place.
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < secs.min(1.0) {
        let _ = load_rgb(&files[n % files.len()]);
        n += 1;
    }
    let decode = n as f64 / t.elapsed().as_secs_f64();
    println!("decode_only_1thread {decode:.1} img/s");
    if std::env::var_os("STAGES").is_some() {
        stages(&files, &tf);
    }
    for nt in [1, threads] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(nt)
            .build()
            .expect("thread pool");
        let chunk = 16 * nt;
        let mut bufs = vec![0f32; chunk * per];
        let t = Instant::now();
        let mut done = 0usize;
        while t.elapsed().as_secs_f64() < secs {
            pool.install(|| {
                bufs.par_chunks_mut(per)
                    .enumerate()
                    .for_each(|(k, slot)| one(done + k, slot))
            });
            done += chunk;
        }
        let rate = done as f64 / t.elapsed().as_secs_f64();
        println!("effnet_pipeline threads={nt} {rate:.1} img/s");
    }
}

/// Per-stage timings on one thread (set STAGES=1), to see where a regression sits.
fn stages(files: &[PathBuf], tf: &TrainTransform) {
    use effnet_data::randaugment::RaOp;
    use effnet_data::transforms::{random_resized_crop_box, resized_crop};
    let imgs: Vec<_> = files
        .iter()
        .take(16)
        .filter_map(|f| load_rgb(f).ok())
        .collect();
    let n = 400;
    let t = Instant::now();
    let mut crops = Vec::new();
    for i in 0..n {
        let img = &imgs[i % imgs.len()];
        let mut rng = sample_rng(0, 0, i as u64);
        let b = random_resized_crop_box(img.width(), img.height(), tf.scale, tf.ratio, &mut rng);
        crops.push(resized_crop(img, b, 224, tf.interpolation));
    }
    println!(
        "stage rrc {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = Instant::now();
    for i in 0..n {
        let img = &imgs[i % imgs.len()];
        let mut rng = sample_rng(0, 0, i as u64);
        let b = random_resized_crop_box(img.width(), img.height(), tf.scale, tf.ratio, &mut rng);
        let c = effnet_data::transforms::crop(img, b);
        let _ = effnet_data::resize(&c, 224, 224, tf.interpolation);
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!("stage rrc_via_resize {ms:.3} ms");
    let ra = tf.randaugment.clone().expect("ra");
    for op in ra.ops.clone() {
        let t = Instant::now();
        for (i, c) in crops.iter().enumerate().take(100) {
            let mut rng = sample_rng(1, 0, i as u64);
            let _ = ra.apply_op(c.clone(), op, 9.0, &mut rng);
        }
        println!(
            "stage op {op:?} {:.3} ms",
            t.elapsed().as_secs_f64() * 1e3 / 100.0
        );
    }
    let _ = RaOp::Invert;
    let mut out = vec![0f32; 3 * 224 * 224];
    let t = Instant::now();
    for c in crops.iter().take(100) {
        effnet_data::preprocess::normalize_into(c, tf.mean, tf.std, &mut out);
    }
    println!(
        "stage normalize {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3 / 100.0
    );
}
