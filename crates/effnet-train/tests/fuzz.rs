//! Bounded-time fuzzing of every reader of untrusted bytes: the image loader, native `.bpk`
//! weights, PyTorch `.pth` and `.safetensors` import, model TOML and training TOML.
//!
//! Each target starts from a committed seed corpus (`tests/data/fuzz/`, plus the shipped configs
//! and parity weights) and applies proptest-generated mutations (bit flips, interesting values,
//! truncation, insertion, deletion, chunk copies, number swaps in text). A case passes when the
//! reader returns (Ok or an error) without panicking, quickly, with a one-line error for images.
//! A failure is shrunk by proptest to a minimal list of mutations and printed.
//!
//! Time per target: `EFFNET_FUZZ_SECS` (default 2; CI uses the default), seed: `EFFNET_FUZZ_SEED`
//! (default 0, so CI is reproducible). Long run, e.g.:
//! `EFFNET_FUZZ_SECS=600 EFFNET_FUZZ_SEED=7 cargo test --release --workspace --features effnet-cli/wgpu --test fuzz -- --test-threads 1`
//! Regenerate the corpus: `cargo test ... --test fuzz -- --ignored regenerate_corpus`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::prelude::*;
use effnet_data::{DecodeLimits, Interpolation, Preprocess};
use effnet_model::{EfficientNetConfig, Workload};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus_dir() -> PathBuf {
    repo().join("tests/data/fuzz")
}

fn read_seeds(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("seed {}: {e}", p.display())))
        .collect()
}

fn corpus_files(ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/data/fuzz")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// One mutation: (operation, position seed, value seed, position near the ends).
type Mutation = (u8, u32, u32, bool);

const INTERESTING_U32: [u32; 8] = [
    0,
    1,
    0x7F,
    0xFF,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
];
const INTERESTING_NUMBERS: [&str; 12] = [
    "0",
    "-1",
    "1",
    "65535",
    "4294967296",
    "18446744073709551615",
    "99999999999999999999",
    "1e308",
    "nan",
    "inf",
    "-inf",
    "0.0000001",
];

/// A position in `len` bytes; half of them within 4 KiB of either end, where headers live.
fn position(len: usize, seed: u32, near_ends: bool) -> usize {
    if len == 0 {
        return 0;
    }
    let s = seed as usize;
    if near_ends && len > 8192 {
        let off = s % 4096;
        if s & (1 << 31) != 0 {
            len - 1 - off
        } else {
            off
        }
    } else {
        s % len
    }
}

fn mutate(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for &(op, p, v, ends) in muts {
        let len = d.len();
        let at = position(len, p, ends);
        match op {
            0 if len > 0 => d[at] ^= 1 << (v % 8),
            1 if len > 0 => d[at] = v as u8,
            2 if len > 0 => d[at] = [0, 0xFF, 0x7F, 0x80][v as usize % 4],
            3 => d.truncate(at),
            4 => d.insert(at.min(len), v as u8),
            5 if len > 0 => {
                let end = (at + 1 + v as usize % 64).min(len);
                d.drain(at..end);
            }
            6 if len >= 4 => {
                let at = at.min(len - 4);
                let x = INTERESTING_U32[v as usize % INTERESTING_U32.len()];
                let bytes = if v & 8 != 0 {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                };
                d[at..at + 4].copy_from_slice(&bytes);
            }
            7 if len > 0 => {
                let n = (1 + v as usize % 256).min(len - at);
                let chunk = d[at..at + n].to_vec();
                let to = position(len, v.rotate_left(7), ends);
                d.splice(to..to, chunk);
            }
            8 => replace_number(&mut d, p as usize, v as usize),
            _ => {}
        }
    }
    d
}

/// Replaces the `nth` run of digits (mod their count) with an interesting number literal.
fn replace_number(d: &mut Vec<u8>, nth: usize, which: usize) {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < d.len() {
        if d[i].is_ascii_digit() {
            let start = i;
            while i < d.len() && (d[i].is_ascii_digit() || d[i] == b'.') {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return;
    }
    let (s, e) = runs[nth % runs.len()];
    let lit = INTERESTING_NUMBERS[which % INTERESTING_NUMBERS.len()];
    d.splice(s..e, lit.bytes());
}

fn fuzz_secs() -> f64 {
    std::env::var("EFFNET_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

fn fuzz_seed() -> u64 {
    std::env::var("EFFNET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A case slower than this is a finding (a hang in the making).
const SLOW: Duration = Duration::from_secs(10);

/// Runs `target` on mutated seeds for the configured time, in rounds of 16 proptest cases with
/// seeds derived from (target, EFFNET_FUZZ_SEED, round), so any failure can be replayed.
fn fuzz(target: &str, seeds: &[Vec<u8>], run: impl Fn(&[u8]) -> Result<(), String>) {
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let deadline = Instant::now() + Duration::from_secs_f64(fuzz_secs());
    let strategy = (
        0..seeds.len(),
        prop::collection::vec((0u8..9, any::<u32>(), any::<u32>(), any::<bool>()), 1..6),
    );
    let mut rounds = 0u64;
    // The seeds themselves must pass.
    for (i, s) in seeds.iter().enumerate() {
        run(s).unwrap_or_else(|e| panic!("{target}: seed {i} fails: {e}"));
    }
    while rounds == 0 || Instant::now() < deadline {
        let mut key = [0u8; 32];
        let tag = target
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        key[..8].copy_from_slice(&tag.to_le_bytes());
        key[8..16].copy_from_slice(&fuzz_seed().to_le_bytes());
        key[16..24].copy_from_slice(&rounds.to_le_bytes());
        let config = Config {
            cases: 16,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        let result = runner.run(&strategy, |(i, muts)| {
            let data = mutate(&seeds[i], &muts);
            let t = Instant::now();
            run(&data).map_err(TestCaseError::fail)?;
            if t.elapsed() > SLOW {
                return Err(TestCaseError::fail(format!("slow case: {:?}", t.elapsed())));
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!(
                "fuzz {target}: round {rounds} (EFFNET_FUZZ_SEED={}): {e}",
                fuzz_seed()
            );
        }
        rounds += 1;
    }
    eprintln!("fuzz {target}: {} cases without a finding", rounds * 16);
}

/// Limits tight enough that every case is fast, on the same code paths as the defaults.
fn fuzz_limits() -> DecodeLimits {
    DecodeLimits {
        max_pixels: 4_000_000,
        ..DecodeLimits::default()
    }
}

#[test]
fn fuzz_image_loader() {
    let seeds = read_seeds(
        &["jpg", "png", "webp", "bmp"]
            .iter()
            .flat_map(|e| corpus_files(e))
            .collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.img");
    let pre = Preprocess::imagenet(32, 0.875, Interpolation::Bicubic);
    fuzz("image", &seeds, |data| {
        std::fs::write(&path, data).map_err(|e| e.to_string())?;
        let probed = effnet_data::probe_image(&path);
        match effnet_data::load_rgb_with(&path, &fuzz_limits()) {
            Ok(img) => {
                // A decodable image must also probe cleanly and survive preprocessing.
                if let Err(e) = probed
                    && !e.to_string().contains("limit")
                {
                    return Err(format!("decodes but fails the probe: {e}"));
                }
                let out = pre.apply(&img);
                if out.iter().any(|v| !v.is_finite()) {
                    return Err("non-finite preprocessed value".into());
                }
            }
            Err(e) if e.to_string().contains('\n') => return Err(format!("multi-line: {e:?}")),
            Err(_) => {}
        }
        Ok(())
    });
}

fn tiny_config() -> EfficientNetConfig {
    let text = std::fs::read_to_string(corpus_dir().join("model_tiny.toml")).unwrap();
    EfficientNetConfig::from_toml(&text).unwrap()
}

#[test]
fn fuzz_native_bpk() {
    let seeds = read_seeds(&corpus_files("bpk"));
    let device = Device::flex();
    for s in &seeds {
        effnet_model::load_native_bytes(Path::new("seed.bpk"), s.clone(), &device)
            .expect("the seed loads");
    }
    fuzz("bpk", &seeds, |data| {
        let _ = effnet_model::load_native_bytes(Path::new("case.bpk"), data.to_vec(), &device);
        Ok(())
    });
}

#[test]
fn fuzz_pytorch_pth() {
    let seeds = read_seeds(&[repo().join("tests/data/parity/tv_v2_tiny.pth")]);
    let cfg = EfficientNetConfig::from_name_or_file(
        &repo()
            .join("tests/data/parity/tv_v2_tiny.toml")
            .display()
            .to_string(),
    )
    .unwrap();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.pth");
    effnet_model::import_pytorch(
        &repo().join("tests/data/parity/tv_v2_tiny.pth"),
        &cfg,
        &device,
    )
    .expect("the seed imports");
    fuzz("pth", &seeds, |data| {
        std::fs::write(&path, data).map_err(|e| e.to_string())?;
        let _ = effnet_model::import_pytorch(&path, &cfg, &device);
        Ok(())
    });
}

#[test]
fn fuzz_safetensors() {
    let mut files = corpus_files("safetensors");
    files.push(repo().join("tests/data/parity/timm_tf_v2_tiny.safetensors"));
    let seeds = read_seeds(&files);
    let cfg = EfficientNetConfig::from_name_or_file(
        &repo()
            .join("tests/data/parity/timm_tf_v2_tiny.toml")
            .display()
            .to_string(),
    )
    .unwrap();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.safetensors");
    let seed = repo().join("tests/data/parity/timm_tf_v2_tiny.safetensors");
    effnet_model::import_pytorch(&seed, &cfg, &device).expect("the seed imports");
    fuzz("safetensors", &seeds, |data| {
        std::fs::write(&path, data).map_err(|e| e.to_string())?;
        let _ = effnet_model::import_pytorch(&path, &cfg, &device);
        Ok(())
    });
}

fn toml_seeds(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn fuzz_model_toml() {
    let mut files = toml_seeds(&repo().join("configs/models"));
    files.push(corpus_dir().join("model_tiny.toml"));
    let seeds = read_seeds(&files);
    for s in &seeds {
        EfficientNetConfig::from_toml(&String::from_utf8_lossy(s)).expect("the seed parses");
    }
    let device = Device::flex();
    fuzz("model toml", &seeds, |data| {
        let text = String::from_utf8_lossy(data);
        let Ok(cfg) = EfficientNetConfig::from_toml(&text) else {
            return Ok(());
        };
        // A config that validates must build and run when small enough to try.
        let size = 32;
        if effnet_model::check_fits(&cfg, 1, size, Workload::Inference).is_ok()
            && effnet_model::budget::estimate_params(&cfg) < 3_000_000
            && cfg.block_count() < 64
        {
            let model = cfg.init(&device);
            let y = model.forward(Tensor::zeros([1, 3, size, size], &device));
            if y.dims() != [1, cfg.num_classes] {
                return Err(format!("output shape {:?}", y.dims()));
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_train_toml() {
    let mut files = toml_seeds(&repo().join("configs/train"));
    files.sort();
    let seeds = read_seeds(&files);
    for s in &seeds {
        effnet_train::TrainConfig::from_toml_with(
            &String::from_utf8_lossy(s),
            &["device=\"cpu\"".into()],
        )
        .expect("the seed parses");
    }
    let img = image::RgbImage::from_fn(20, 14, |x, y| image::Rgb([x as u8 * 12, y as u8 * 17, 77]));
    fuzz("train toml", &seeds, |data| {
        let text = String::from_utf8_lossy(data);
        let Ok(cfg) = effnet_train::TrainConfig::from_toml_with(&text, &["device=\"cpu\"".into()])
        else {
            return Ok(());
        };
        // A recipe that validates must give a schedule and per-stage transforms that run.
        let sched = effnet_train::ProgressiveSchedule::new(
            &cfg.progressive,
            cfg.train.epochs,
            cfg.train.batch_size,
        );
        let tf = effnet_train::data::train_transform(&cfg);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        for stage in sched.stages.iter().take(3) {
            let tf = tf.at_stage(16, Some(stage.randaugment));
            let mut out = vec![0f32; 3 * 16 * 16];
            tf.apply_into(&img, &mut rng, &mut out);
            if out.iter().any(|v| !v.is_finite()) {
                return Err(format!("non-finite value at stage {}", stage.index));
            }
        }
        Ok(())
    });
}

/// Writes the seed corpus (small files, committed): run with `-- --ignored regenerate_corpus`.
#[test]
#[ignore = "a generator, not a test: it rewrites the committed seed corpus"]
fn regenerate_corpus() {
    use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let rgb = RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, ((x ^ y) * 9) as u8])
    });
    let rgba = RgbaImage::from_fn(9, 7, |x, y| {
        image::Rgba([x as u8 * 20, y as u8 * 30, 90, 128])
    });
    let save = |img: DynamicImage, name: &str, fmt: ImageFormat| {
        img.save_with_format(dir.join(name), fmt).unwrap();
    };
    save(
        DynamicImage::ImageRgb8(rgb.clone()),
        "rgb.jpg",
        ImageFormat::Jpeg,
    );
    save(
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb.clone()).to_luma8()),
        "gray.jpg",
        ImageFormat::Jpeg,
    );
    save(
        DynamicImage::ImageRgb8(rgb.clone()),
        "rgb.png",
        ImageFormat::Png,
    );
    save(
        DynamicImage::ImageRgba16(DynamicImage::ImageRgba8(rgba.clone()).to_rgba16()),
        "rgba16.png",
        ImageFormat::Png,
    );
    save(
        DynamicImage::ImageRgba8(rgba),
        "rgba.webp",
        ImageFormat::WebP,
    );
    save(DynamicImage::ImageRgb8(rgb), "rgb.bmp", ImageFormat::Bmp);

    let model_toml = "name = \"fuzz_tiny\"\nstem_channels = 8\nhead_channels = 16\nnum_classes = 3\n\
        train_size = 32\neval_size = 32\n\n[[stages]]\nblock = \"fused\"\nrepeats = 1\nkernel = 3\n\
        stride = 2\nexpand = 2\nin_channels = 8\nout_channels = 8\n\n[[stages]]\nblock = \"mbconv\"\n\
        repeats = 1\nkernel = 3\nstride = 2\nexpand = 2\nin_channels = 8\nout_channels = 8\n\
        se_ratio = 0.25\n";
    std::fs::write(dir.join("model_tiny.toml"), model_toml).unwrap();
    let cfg = tiny_config();
    let device = Device::flex();
    let model = cfg.init(&device);
    let pre = effnet_model::weights::default_preprocess(&cfg);
    let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    effnet_model::save_native_labeled(
        &dir.join("tiny.bpk"),
        &model,
        &cfg,
        &pre,
        "fuzz corpus",
        Some(&labels),
    )
    .unwrap();
    // A hand-made safetensors file: 8-byte header length, JSON header, data.
    let header = r#"{"classifier.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"classifier.bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},"__metadata__":{"format":"pt"}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    st.extend((0..6u32).flat_map(|i| (i as f32).to_le_bytes()));
    std::fs::write(dir.join("tiny.safetensors"), st).unwrap();
}
