//! Parallel batch loading. Worker threads decode and transform samples while the caller trains on
//! earlier batches (bounded prefetch). Batches always come out in the same order with the same
//! content for a given (seed, epoch), whatever the number of workers: the epoch order is a seeded
//! shuffle and each sample draws its augmentation from its own RNG seeded by (seed, epoch, index).
//! Unreadable files are dropped from their batch and reported in [`Batch::skipped`] (the caller
//! decides how to warn: the library prints nothing); they never stop an epoch.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::dataset::ImageFolder;
use crate::error::DataError;
use crate::image_io::load_rgb;
use crate::preprocess::Preprocess;
use crate::transforms::TrainTransform;

/// A batch of normalised images ready for the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// `B × 3 × size × size` floats, CHW per sample, normalised.
    pub images: Vec<f32>,
    /// Class index per sample.
    pub labels: Vec<usize>,
    /// Image side.
    pub size: usize,
    /// Files of this batch that could not be read, with the reason; they are not in `images`.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Batch {
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether every sample of the batch was skipped.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How batches are formed and produced.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch (before skipped files are dropped).
    pub batch_size: usize,
    /// Worker threads decoding and transforming (0 is treated as 1).
    pub workers: usize,
    /// Shuffle the order each epoch (seeded by seed and epoch).
    pub shuffle: bool,
    /// Base seed of the shuffle and of every sample's augmentation.
    pub seed: u64,
    /// Drop the last incomplete batch (keeps batch shapes constant, e.g. for mixup).
    pub drop_last: bool,
    /// Finished batches allowed to wait for the consumer.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shuffle: true,
            seed: 0,
            drop_last: true,
            prefetch: 2,
        }
    }
}

/// SplitMix64 finaliser: spreads nearby (seed, epoch, index) triples over the seed space. The
/// one implementation in effnet (the trainer derives its per-step seeds with it too).
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed3(seed: u64, epoch: u64, index: u64, stream: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index) ^ stream)
}

/// The RNG of one sample's augmentation in one epoch.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(seed3(seed, epoch, index, 1))
}

/// An RNG for per-batch decisions (mixup λ, CutMix box) of batch `batch` in `epoch`.
pub fn batch_rng(seed: u64, epoch: u64, batch: u64) -> StdRng {
    StdRng::seed_from_u64(seed3(seed, epoch, batch, 2))
}

/// The sample order of an epoch: `0..n`, shuffled by (seed, epoch) when `shuffle`.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = StdRng::seed_from_u64(seed3(seed, epoch, 0, 3));
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
    }
    order
}

/// Batches of one training epoch: images transformed by `tf` (its size, RandAugment magnitude etc. are
/// this epoch's), in an order fixed by `cfg.seed` and `epoch`.
pub fn train_batches(
    ds: &ImageFolder,
    tf: &TrainTransform,
    cfg: &LoaderConfig,
    epoch: u64,
) -> BatchIter {
    let order = epoch_order(ds.samples.len(), cfg.shuffle, cfg.seed, epoch);
    let tf = Arc::new(tf.clone());
    let seed = cfg.seed;
    let size = tf.size;
    let job: SampleFn = Arc::new(move |index, path, out| {
        let img = load_rgb(path)?;
        let mut rng = sample_rng(seed, epoch, index as u64);
        tf.apply_into(&img, &mut rng, out);
        Ok(())
    });
    BatchIter::spawn(ds, order, size, cfg, job)
}

/// Batches for evaluation: dataset order, `pre` (resize + center crop + normalise), last batch kept.
pub fn eval_batches(
    ds: &ImageFolder,
    pre: &Preprocess,
    batch_size: usize,
    workers: usize,
) -> BatchIter {
    let order: Vec<usize> = (0..ds.samples.len()).collect();
    let pre = Arc::new(pre.clone());
    let size = pre.crop;
    let cfg = LoaderConfig {
        batch_size,
        workers,
        shuffle: false,
        seed: 0,
        drop_last: false,
        prefetch: 2,
    };
    let job: SampleFn = Arc::new(move |_, path, out| {
        let img = load_rgb(path)?;
        pre.apply_into(&img, out);
        Ok(())
    });
    BatchIter::spawn(ds, order, size, &cfg, job)
}

/// Per-sample work: dataset index, file, output slot.
type SampleFn = Arc<dyn Fn(usize, &PathBuf, &mut [f32]) -> Result<(), DataError> + Send + Sync>;

/// Iterator over batches produced by a background thread and its worker pool; dropping it stops
/// the workers after their current batch.
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    batches: usize,
    skipped: usize,
}

impl BatchIter {
    fn spawn(
        ds: &ImageFolder,
        order: Vec<usize>,
        size: usize,
        cfg: &LoaderConfig,
        job: SampleFn,
    ) -> Self {
        if size == 0 {
            eprintln!("warning: image size 0 requested; no batches produced");
            return Self {
                rx: None,
                handle: None,
                batches: 0,
                skipped: 0,
            };
        }
        let bs = cfg.batch_size.max(1);
        let mut batches: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        if cfg.drop_last && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        let n_batches = batches.len();
        let samples: Arc<Vec<(PathBuf, usize)>> = Arc::new(ds.samples.clone());
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let workers = cfg.workers.max(1);
        // Work on a few batches at once so workers do not idle at each batch boundary.
        let group = if workers > 1 {
            cfg.prefetch.clamp(1, 2)
        } else {
            1
        };
        let handle = std::thread::Builder::new()
            .name("effnet-loader".into())
            .spawn(move || produce(batches, samples, size, workers, group, job, tx))
            .ok();
        Self {
            rx: handle.as_ref().map(|_| rx),
            handle,
            batches: n_batches,
            skipped: 0,
        }
    }

    /// Number of batches this epoch will yield.
    pub fn num_batches(&self) -> usize {
        self.batches
    }

    /// Files skipped so far this epoch (sum of `Batch::skipped` over the batches yielded), for the
    /// end-of-epoch report.
    pub fn skipped_so_far(&self) -> usize {
        self.skipped
    }
}

fn produce(
    batches: Vec<Vec<usize>>,
    samples: Arc<Vec<(PathBuf, usize)>>,
    size: usize,
    workers: usize,
    group: usize,
    job: SampleFn,
    tx: SyncSender<Batch>,
) {
    let per = 3 * size * size;
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("effnet-data-{i}"))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: cannot start data workers ({e}); loading on one thread");
            match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                Ok(p) => p,
                Err(_) => return,
            }
        }
    };
    for chunk in batches.chunks(group) {
        let idx: Vec<usize> = chunk.iter().flatten().copied().collect();
        let mut buf = vec![0f32; idx.len() * per];
        let results: Vec<Result<(), (PathBuf, String)>> = pool.install(|| {
            buf.par_chunks_mut(per)
                .zip(idx.par_iter())
                .map(|(slot, &i)| run_sample(&job, i, &samples[i].0, slot))
                .collect()
        });
        let mut offset = 0;
        for b in chunk {
            let mut batch = Batch {
                images: Vec::with_capacity(b.len() * per),
                labels: Vec::with_capacity(b.len()),
                size,
                skipped: Vec::new(),
            };
            for (k, &i) in b.iter().enumerate() {
                match &results[offset + k] {
                    Ok(()) => {
                        let s = (offset + k) * per;
                        batch.images.extend_from_slice(&buf[s..s + per]);
                        batch.labels.push(samples[i].1);
                    }
                    Err((p, why)) => batch.skipped.push((p.clone(), why.clone())),
                }
            }
            offset += b.len();
            if tx.send(batch).is_err() {
                return; // consumer dropped the iterator
            }
        }
    }
}

/// Runs one sample, turning errors and decoder panics into a skip.
fn run_sample(
    job: &SampleFn,
    index: usize,
    path: &PathBuf,
    slot: &mut [f32],
) -> Result<(), (PathBuf, String)> {
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(index, path, slot)));
    let reason = match res {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(DataError::Image { reason, .. })) => reason,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "decoder panicked".to_string(),
    };
    Err((path.clone(), reason))
}

impl Iterator for BatchIter {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        let got = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        if let Some(b) = &got {
            self.skipped += b.skipped.len();
        }
        if got.is_none() {
            self.rx = None;
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
        got
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the channel makes the producer stop at its next send.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
