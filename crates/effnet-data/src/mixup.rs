//! Mixup and CutMix on a batch, with timm's `Mixup` rules (`mode='batch'`, `correct_lam=True`): one
//! λ per batch, the partner of sample i is sample B-1-i (the flipped batch), CutMix boxes from
//! `cut = int(side·sqrt(1-λ))` with λ recomputed from the clipped box, and label-smoothed soft targets.

use rand::Rng;

/// Mixup/CutMix settings; a new value per epoch lets progressive learning ramp `mixup_alpha`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixup {
    /// Beta(α, α) for mixup; 0 disables mixup.
    pub mixup_alpha: f64,
    /// Beta(α, α) for CutMix; 0 disables CutMix (unless `cutmix_minmax` is set).
    pub cutmix_alpha: f64,
    /// CutMix box side as a fraction range of the image side, instead of drawing λ (timm's
    /// `cutmix_minmax`; enables CutMix on its own).
    pub cutmix_minmax: Option<(f64, f64)>,
    /// Probability a batch is mixed at all.
    pub prob: f64,
    /// Probability of CutMix rather than mixup when both are enabled.
    pub switch_prob: f64,
    /// Label smoothing folded into the targets.
    pub label_smoothing: f64,
    /// Number of classes of the targets.
    pub num_classes: usize,
}

/// What [`Mixup::apply`] did to a batch (for logging and tests).
#[derive(Clone, Debug, PartialEq)]
pub struct MixInfo {
    /// Weight of each sample's own label (1 = untouched).
    pub lam: f64,
    /// CutMix box `(y0, y1, x0, x1)` if CutMix was used.
    pub cutmix_box: Option<(usize, usize, usize, usize)>,
}

impl Mixup {
    /// timm's defaults around the given alphas: prob 1, switch 0.5, smoothing 0.1.
    pub fn new(mixup_alpha: f64, cutmix_alpha: f64, num_classes: usize) -> Self {
        Self {
            mixup_alpha,
            cutmix_alpha,
            cutmix_minmax: None,
            prob: 1.0,
            switch_prob: 0.5,
            label_smoothing: 0.1,
            num_classes,
        }
    }

    /// Whether this configuration ever mixes.
    pub fn enabled(&self) -> bool {
        self.prob > 0.0
            && (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0 || self.cutmix_minmax.is_some())
    }

    /// Mixes `images` (B·3·size·size, CHW per sample) in place and returns soft targets
    /// (B·num_classes, rows sum to 1).
    pub fn apply(
        &self,
        images: &mut [f32],
        labels: &[usize],
        size: usize,
        rng: &mut impl Rng,
    ) -> Vec<f32> {
        self.apply_with_info(images, labels, size, rng).0
    }

    /// [`apply`](Self::apply), also returning λ and the CutMix box.
    pub fn apply_with_info(
        &self,
        images: &mut [f32],
        labels: &[usize],
        size: usize,
        rng: &mut impl Rng,
    ) -> (Vec<f32>, MixInfo) {
        let b = labels.len();
        let per = 3 * size * size;
        assert_eq!(images.len(), b * per, "images must be B x 3 x size x size");
        let (mut lam, use_cutmix) = self.draw_lambda(rng);
        let mut cutmix_box = None;
        if lam < 1.0 && b > 0 {
            let orig = images.to_vec();
            if use_cutmix {
                let (y0, y1, x0, x1) = self.cutmix_box(size, size, lam, rng);
                lam = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (size * size) as f64;
                cutmix_box = Some((y0, y1, x0, x1));
                for i in 0..b {
                    let j = b - 1 - i;
                    for c in 0..3 {
                        for y in y0..y1 {
                            let row = c * size * size + y * size;
                            let dst = i * per + row;
                            let src = j * per + row;
                            images[dst + x0..dst + x1].copy_from_slice(&orig[src + x0..src + x1]);
                        }
                    }
                }
            } else {
                let (l, m) = (lam as f32, (1.0 - lam) as f32);
                for i in 0..b {
                    let j = b - 1 - i;
                    let partner = &orig[j * per..(j + 1) * per];
                    for (v, p) in images[i * per..(i + 1) * per].iter_mut().zip(partner) {
                        *v = *v * l + *p * m;
                    }
                }
            }
        }
        let targets = mix_targets(labels, self.num_classes, lam, self.label_smoothing);
        (targets, MixInfo { lam, cutmix_box })
    }

    /// timm's `_params_per_batch`: (λ, use CutMix); λ = 1 means "leave the batch alone".
    fn draw_lambda(&self, rng: &mut impl Rng) -> (f64, bool) {
        let cutmix_alpha = if self.cutmix_minmax.is_some() {
            1.0
        } else {
            self.cutmix_alpha
        };
        if !self.enabled() || rng.random::<f64>() >= self.prob {
            return (1.0, false);
        }
        if self.mixup_alpha > 0.0 && cutmix_alpha > 0.0 {
            let cut = rng.random::<f64>() < self.switch_prob;
            let a = if cut { cutmix_alpha } else { self.mixup_alpha };
            (sample_beta(rng, a, a), cut)
        } else if self.mixup_alpha > 0.0 {
            (sample_beta(rng, self.mixup_alpha, self.mixup_alpha), false)
        } else {
            (sample_beta(rng, cutmix_alpha, cutmix_alpha), true)
        }
    }

    /// timm's `rand_bbox` / `rand_bbox_minmax`: `(y0, y1, x0, x1)`, clipped to the image.
    fn cutmix_box(
        &self,
        h: usize,
        w: usize,
        lam: f64,
        rng: &mut impl Rng,
    ) -> (usize, usize, usize, usize) {
        if let Some((lo, hi)) = self.cutmix_minmax {
            let rand_int = |rng: &mut dyn rand::RngCore, a: usize, b: usize| {
                if b > a { rng.random_range(a..b) } else { a }
            };
            let ch = rand_int(rng, (h as f64 * lo) as usize, (h as f64 * hi) as usize).min(h);
            let cw = rand_int(rng, (w as f64 * lo) as usize, (w as f64 * hi) as usize).min(w);
            let y0 = rand_int(rng, 0, h - ch);
            let x0 = rand_int(rng, 0, w - cw);
            return (y0, y0 + ch, x0, x0 + cw);
        }
        let r = (1.0 - lam).max(0.0).sqrt();
        let (ch, cw) = ((h as f64 * r) as i64, (w as f64 * r) as i64);
        let cy = rng.random_range(0..h.max(1)) as i64;
        let cx = rng.random_range(0..w.max(1)) as i64;
        let y0 = (cy - ch / 2).clamp(0, h as i64) as usize;
        let y1 = (cy + ch / 2).clamp(0, h as i64) as usize;
        let x0 = (cx - cw / 2).clamp(0, w as i64) as usize;
        let x1 = (cx + cw / 2).clamp(0, w as i64) as usize;
        (y0, y1, x0, x1)
    }
}

/// One-hot targets with label smoothing: `1 - s + s/C` on the label, `s/C` elsewhere.
pub fn smooth_one_hot(labels: &[usize], num_classes: usize, smoothing: f64) -> Vec<f32> {
    let off = smoothing / num_classes as f64;
    let on = 1.0 - smoothing + off;
    let mut t = vec![off as f32; labels.len() * num_classes];
    for (i, &l) in labels.iter().enumerate() {
        t[i * num_classes + l] = on as f32;
    }
    t
}

/// timm's `mixup_target`: `λ·onehot_s(y) + (1-λ)·onehot_s(flip(y))`.
pub fn mix_targets(labels: &[usize], num_classes: usize, lam: f64, smoothing: f64) -> Vec<f32> {
    let a = smooth_one_hot(labels, num_classes, smoothing);
    if lam >= 1.0 {
        return a;
    }
    let flipped: Vec<usize> = labels.iter().rev().copied().collect();
    let b = smooth_one_hot(&flipped, num_classes, smoothing);
    a.iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64 * lam + *y as f64 * (1.0 - lam)) as f32)
        .collect()
}

/// Mean soft-target cross-entropy `-Σ t·log_softmax(z)` over rows of `logits` (B·C), computed with
/// a max shift for stability; the reference for the trainer's tensor version.
pub fn soft_target_cross_entropy(logits: &[f32], targets: &[f32], num_classes: usize) -> f32 {
    assert_eq!(logits.len(), targets.len());
    let rows = logits.len() / num_classes.max(1);
    if rows == 0 {
        return 0.0;
    }
    let mut total = 0f64;
    for (z, t) in logits
        .chunks_exact(num_classes)
        .zip(targets.chunks_exact(num_classes))
    {
        let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        total += z
            .iter()
            .zip(t)
            .map(|(&zi, &ti)| -(ti as f64) * (zi as f64 - lse))
            .sum::<f64>();
    }
    (total / rows as f64) as f32
}

/// Beta(a, b) from two Gamma draws.
pub fn sample_beta(rng: &mut impl Rng, a: f64, b: f64) -> f64 {
    let x = sample_gamma(rng, a);
    let y = sample_gamma(rng, b);
    if x + y == 0.0 { 0.5 } else { x / (x + y) }
}

/// Gamma(shape, 1) by Marsaglia-Tsang (with the `U^(1/a)` boost for shape < 1).
pub fn sample_gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return sample_gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = crate::randaugment::standard_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}
