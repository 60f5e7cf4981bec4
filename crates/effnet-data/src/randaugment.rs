//! RandAugment with both published op sets:
//!
//! * **automl** (`efficientnetv2/autoaugment.py`, what the EfficientNetV2 paper trained with): 16 ops, one
//!   picked uniformly per layer and always applied, magnitude on a 0..10 scale that may exceed 10, fill 128,
//!   absolute translate (100 px at m=10), Cutout, nearest-neighbour geometry.
//! * **timm** (`rand-mM-nN-mstdS[-inc1]`): 15 ops chosen with replacement, each applied with p=0.5, the
//!   magnitude jittered by N(0, mstd) and clipped to [0, 10] (or `mmax`), fill = dataset mean, relative
//!   translate (45% of the size at m=10), bilinear/bicubic geometry.
//!
//! The pixel operations themselves live in [`ops`] and reproduce Pillow's results bit for bit
//! (checked against Pillow/timm fixtures), since both references are defined as "equivalent of PIL";
//! automl's TF-specific quirks (Contrast's mean, TF grey weights, nearest sampling) are kept.

use image::RgbImage;
use rand::Rng;

use crate::resize::Interpolation;

pub mod ops;

/// One augmentation operation (names as in the reference implementations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaOp {
    /// Stretch each channel to the full 0..255 range.
    AutoContrast,
    /// Per-channel histogram equalisation.
    Equalize,
    /// `255 - v`.
    Invert,
    /// Rotate about the centre by ±(m/10)·30°.
    Rotate,
    /// Keep `int(m/10·4)` most significant bits.
    Posterize,
    /// Invert values at or above `int(m/10·256)`.
    Solarize,
    /// Add `int(m/10·110)` to values below 128.
    SolarizeAdd,
    /// Saturation blend with the grey image, factor (m/10)·1.8 + 0.1.
    Color,
    /// Blend with the mean grey, factor (m/10)·1.8 + 0.1.
    Contrast,
    /// Blend with black, factor (m/10)·1.8 + 0.1.
    Brightness,
    /// Blend with the 3x3 smoothed image, factor (m/10)·1.8 + 0.1.
    Sharpness,
    /// x' = x + s·y, s = ±(m/10)·0.3.
    ShearX,
    /// y' = y + s·x, s = ±(m/10)·0.3.
    ShearY,
    /// Horizontal shift (automl: absolute pixels; timm: fraction of the width).
    TranslateX,
    /// Vertical shift (automl: absolute pixels; timm: fraction of the height).
    TranslateY,
    /// automl only: fill a square of side `2·int(m/10·40)` at a random centre.
    Cutout,
    /// timm `inc1`: bits `4 - int(m/10·4)`, stronger with m.
    PosterizeIncreasing,
    /// timm `inc1`: threshold `256 - int(m/10·256)`.
    SolarizeIncreasing,
    /// timm `inc1`: factor `max(0.1, 1 ± (m/10)·0.9)`.
    ColorIncreasing,
    /// timm `inc1`: factor `max(0.1, 1 ± (m/10)·0.9)`.
    ContrastIncreasing,
    /// timm `inc1`: factor `max(0.1, 1 ± (m/10)·0.9)`.
    BrightnessIncreasing,
    /// timm `inc1`: factor `max(0.1, 1 ± (m/10)·0.9)`.
    SharpnessIncreasing,
}

/// The automl op list, in automl's order.
pub const AUTOML_OPS: [RaOp; 16] = [
    RaOp::AutoContrast,
    RaOp::Equalize,
    RaOp::Invert,
    RaOp::Rotate,
    RaOp::Posterize,
    RaOp::Solarize,
    RaOp::Color,
    RaOp::Contrast,
    RaOp::Brightness,
    RaOp::Sharpness,
    RaOp::ShearX,
    RaOp::ShearY,
    RaOp::TranslateX,
    RaOp::TranslateY,
    RaOp::Cutout,
    RaOp::SolarizeAdd,
];

/// timm's default `rand` op list.
pub const TIMM_OPS: [RaOp; 15] = [
    RaOp::AutoContrast,
    RaOp::Equalize,
    RaOp::Invert,
    RaOp::Rotate,
    RaOp::Posterize,
    RaOp::Solarize,
    RaOp::SolarizeAdd,
    RaOp::Color,
    RaOp::Contrast,
    RaOp::Brightness,
    RaOp::Sharpness,
    RaOp::ShearX,
    RaOp::ShearY,
    RaOp::TranslateX,
    RaOp::TranslateY,
];

/// timm's `inc1` op list (severity grows with magnitude for every op).
pub const TIMM_INCREASING_OPS: [RaOp; 15] = [
    RaOp::AutoContrast,
    RaOp::Equalize,
    RaOp::Invert,
    RaOp::Rotate,
    RaOp::PosterizeIncreasing,
    RaOp::SolarizeIncreasing,
    RaOp::SolarizeAdd,
    RaOp::ColorIncreasing,
    RaOp::ContrastIncreasing,
    RaOp::BrightnessIncreasing,
    RaOp::SharpnessIncreasing,
    RaOp::ShearX,
    RaOp::ShearY,
    RaOp::TranslateX,
    RaOp::TranslateY,
];

/// Which reference's sampling and magnitude rules to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaFlavor {
    /// Google automl `efficientnetv2/autoaugment.py`.
    Automl,
    /// timm `auto_augment.py` `rand-...` strings.
    Timm,
}

/// RandAugment settings; [`apply`](RandAugment::apply) draws everything from the caller's RNG so a
/// sample's augmentation depends only on its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct RandAugment {
    /// Sampling / magnitude rules.
    pub flavor: RaFlavor,
    /// Candidate ops (picked uniformly, with replacement).
    pub ops: Vec<RaOp>,
    /// Ops applied per image (N).
    pub num_layers: usize,
    /// Magnitude (M) on the 0..10 scale; progressive learning raises it with the image size.
    pub magnitude: f64,
    /// timm: std of the Gaussian magnitude noise; `f64::INFINITY` = uniform in [0, M]; 0 = none.
    pub magnitude_std: f64,
    /// Upper clip for the (noisy) magnitude; automl does not clip (`f64::INFINITY`).
    pub magnitude_max: f64,
    /// Probability that a picked op is applied (timm 0.5, automl 1.0).
    pub prob: f64,
    /// Colour of pixels uncovered by geometric ops (and Cutout).
    pub fill: [u8; 3],
    /// Resampling for rotate/shear/translate; `None` = random bilinear or bicubic per op (timm default).
    pub interpolation: Option<Interpolation>,
    /// Translate at m=10 as a fraction of the image side (timm's `translate_pct`), used when
    /// `translate_const` is `None`.
    pub translate_pct: f64,
    /// Translate at m=10 in pixels (automl's `translate_const` = 100).
    pub translate_const: Option<f64>,
    /// Cutout half-size at m=10 in pixels (automl's `cutout_const` = 40).
    pub cutout_const: f64,
}

impl RandAugment {
    /// Most operations applied to one image: more only multiplies the time per image (a huge
    /// count stalls training as surely as a hang).
    pub const MAX_LAYERS: usize = 100;

    /// automl's RandAugment as EfficientNetV2 trains with it (`randaug`, N=`num_layers`, M=`magnitude`).
    /// Geometry is nearest-neighbour with Pillow's pixel-centre convention (TF addons samples at
    /// integer coordinates, which can shift the result by one pixel).
    pub fn automl(num_layers: usize, magnitude: f64) -> Self {
        Self {
            flavor: RaFlavor::Automl,
            ops: AUTOML_OPS.to_vec(),
            num_layers,
            magnitude,
            magnitude_std: 0.0,
            magnitude_max: f64::INFINITY,
            prob: 1.0,
            fill: [128, 128, 128],
            interpolation: Some(Interpolation::Nearest),
            translate_pct: 0.0,
            translate_const: Some(100.0),
            cutout_const: 40.0,
        }
    }

    /// Parses a timm config string such as `rand-m9-mstd0.5`, `rand-m9-n3-mstd0.5-inc1`,
    /// `rand-m7-mstd101` (uniform magnitude) or `rand-m12-mmax15-p0.7`. Fill defaults to the
    /// ImageNet mean and geometry to bilinear; [`with_fill`](Self::with_fill) and the
    /// `interpolation` field change them.
    pub fn parse_timm(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split('-');
        if parts.next() != Some("rand") {
            return Err(format!(
                "RandAugment spec '{spec}' must start with 'rand' (e.g. rand-m9-mstd0.5)"
            ));
        }
        let mut ra = Self {
            flavor: RaFlavor::Timm,
            ops: TIMM_OPS.to_vec(),
            num_layers: 2,
            magnitude: 10.0,
            magnitude_std: 0.0,
            magnitude_max: 10.0,
            prob: 0.5,
            fill: mean_fill(crate::IMAGENET_MEAN),
            interpolation: Some(Interpolation::Bilinear),
            translate_pct: 0.45,
            translate_const: None,
            cutout_const: 40.0,
        };
        for part in parts {
            let split = part
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .ok_or_else(|| {
                    format!("RandAugment spec '{spec}': section '{part}' has no value")
                })?;
            let (key, val) = part.split_at(split);
            let num: f64 = val
                .parse()
                .map_err(|_| format!("RandAugment spec '{spec}': bad number in '{part}'"))?;
            let bad = |what: &str| format!("RandAugment spec '{spec}': {what} in '{part}'");
            match key {
                "m" => ra.magnitude = num,
                "n" => {
                    if !(0.0..=Self::MAX_LAYERS as f64).contains(&num) || num.fract() != 0.0 {
                        return Err(bad(&format!(
                            "n must be a whole number <= {}",
                            Self::MAX_LAYERS
                        )));
                    }
                    ra.num_layers = num as usize;
                }
                "mstd" => ra.magnitude_std = if num > 100.0 { f64::INFINITY } else { num },
                "mmax" => ra.magnitude_max = num.trunc(),
                "p" => {
                    if !(0.0..=1.0).contains(&num) {
                        return Err(bad("p must be in [0, 1]"));
                    }
                    ra.prob = num;
                }
                "inc" => {
                    ra.ops = if num != 0.0 {
                        TIMM_INCREASING_OPS.to_vec()
                    } else {
                        TIMM_OPS.to_vec()
                    }
                }
                _ => {
                    return Err(bad("unknown section (expected m, n, mstd, mmax, p or inc)"));
                }
            }
        }
        Ok(ra)
    }

    /// Same policy at another magnitude (progressive learning raises M with the image size).
    pub fn with_magnitude(mut self, m: f64) -> Self {
        self.magnitude = m;
        self
    }

    /// Sets the fill colour from a 0..1 channel mean, rounded like timm's `img_mean`.
    pub fn with_fill(mut self, mean: [f32; 3]) -> Self {
        self.fill = mean_fill(mean);
        self
    }

    /// Augments `img` with N random ops drawn from `rng`.
    pub fn apply(&self, img: RgbImage, rng: &mut impl Rng) -> RgbImage {
        let mut img = img;
        if self.ops.is_empty() {
            return img;
        }
        for _ in 0..self.num_layers {
            let op = self.ops[rng.random_range(0..self.ops.len())];
            if self.prob < 1.0 && rng.random::<f64>() > self.prob {
                continue;
            }
            let m = self.sample_magnitude(rng);
            img = self.apply_op(img, op, m, rng);
        }
        img
    }

    /// The magnitude used for one op application: M, plus timm's noise, clipped to [0, max].
    pub fn sample_magnitude(&self, rng: &mut impl Rng) -> f64 {
        let mut m = self.magnitude;
        if self.magnitude_std == f64::INFINITY {
            m *= rng.random::<f64>();
        } else if self.magnitude_std > 0.0 {
            m += self.magnitude_std * standard_normal(rng);
        }
        m.min(self.magnitude_max).max(0.0)
    }

    fn resample(&self, rng: &mut impl Rng) -> Interpolation {
        match self.interpolation {
            Some(i) => i,
            None => {
                if rng.random::<bool>() {
                    Interpolation::Bilinear
                } else {
                    Interpolation::Bicubic
                }
            }
        }
    }

    /// Applies `op` at magnitude `m` (already noised/clipped), drawing signs and positions from `rng`.
    pub fn apply_op(&self, mut img: RgbImage, op: RaOp, m: f64, rng: &mut impl Rng) -> RgbImage {
        let level = m / 10.0;
        let automl = self.flavor == RaFlavor::Automl;
        let negate = |v: f64, rng: &mut dyn rand::RngCore| {
            if rng.random::<f64>() < 0.5 { -v } else { v }
        };
        let enhance = level * 1.8 + 0.1;
        let increasing = |rng: &mut dyn rand::RngCore| (1.0 + negate(level * 0.9, rng)).max(0.1);
        match op {
            RaOp::AutoContrast => ops::auto_contrast(&mut img),
            RaOp::Equalize => ops::equalize(&mut img),
            RaOp::Invert => ops::invert(&mut img),
            RaOp::Posterize => ops::posterize(&mut img, (level * 4.0) as i64),
            RaOp::PosterizeIncreasing => ops::posterize(&mut img, 4 - (level * 4.0) as i64),
            RaOp::Solarize => {
                let t = (level * 256.0) as i64;
                ops::solarize(&mut img, if automl { t } else { t.min(256) })
            }
            RaOp::SolarizeIncreasing => {
                ops::solarize(&mut img, 256 - ((level * 256.0) as i64).min(256))
            }
            RaOp::SolarizeAdd => {
                let a = (level * 110.0) as i64;
                ops::solarize_add(&mut img, if automl { a } else { a.min(128) }, 128)
            }
            RaOp::Color => self.color(&mut img, enhance),
            RaOp::ColorIncreasing => {
                let f = increasing(rng);
                self.color(&mut img, f)
            }
            RaOp::Contrast => self.contrast(&mut img, enhance),
            RaOp::ContrastIncreasing => {
                let f = increasing(rng);
                self.contrast(&mut img, f)
            }
            RaOp::Brightness => ops::brightness(&mut img, enhance),
            RaOp::BrightnessIncreasing => ops::brightness(&mut img, increasing(rng)),
            RaOp::Sharpness => ops::sharpness(&mut img, enhance),
            RaOp::SharpnessIncreasing => ops::sharpness(&mut img, increasing(rng)),
            RaOp::Rotate => {
                let deg = negate(level * 30.0, rng);
                let interp = self.resample(rng);
                return ops::rotate(&img, deg, interp, self.fill);
            }
            RaOp::ShearX | RaOp::ShearY => {
                let s = negate(level * 0.3, rng);
                let interp = self.resample(rng);
                return if op == RaOp::ShearX {
                    ops::affine(&img, [1.0, s, 0.0, 0.0, 1.0, 0.0], interp, self.fill)
                } else {
                    ops::affine(&img, [1.0, 0.0, 0.0, s, 1.0, 0.0], interp, self.fill)
                };
            }
            RaOp::TranslateX | RaOp::TranslateY => {
                let (w, h) = img.dimensions();
                let side = if op == RaOp::TranslateX { w } else { h } as f64;
                let px = match self.translate_const {
                    Some(c) => level * c,
                    None => level * self.translate_pct * side,
                };
                let px = negate(px, rng);
                let interp = self.resample(rng);
                return if op == RaOp::TranslateX {
                    ops::affine(&img, [1.0, 0.0, px, 0.0, 1.0, 0.0], interp, self.fill)
                } else {
                    ops::affine(&img, [1.0, 0.0, 0.0, 0.0, 1.0, px], interp, self.fill)
                };
            }
            RaOp::Cutout => {
                let pad = (level * self.cutout_const) as i64;
                let (w, h) = img.dimensions();
                let cy = rng.random_range(0..h.max(1)) as i64;
                let cx = rng.random_range(0..w.max(1)) as i64;
                ops::cutout(&mut img, cx, cy, pad, self.fill);
            }
        }
        img
    }

    fn color(&self, img: &mut RgbImage, f: f64) {
        if self.flavor == RaFlavor::Automl {
            ops::color_tf(img, f)
        } else {
            ops::color(img, f)
        }
    }

    fn contrast(&self, img: &mut RgbImage, f: f64) {
        if self.flavor == RaFlavor::Automl {
            ops::contrast_automl(img, f)
        } else {
            ops::contrast(img, f)
        }
    }
}

/// timm's `img_mean`: `min(255, round(255·mean))` per channel.
pub fn mean_fill(mean: [f32; 3]) -> [u8; 3] {
    mean.map(|m| round_half_even(255.0 * m as f64).clamp(0.0, 255.0) as u8)
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// A standard normal draw (Box-Muller), since rand 0.9 has no Normal without `rand_distr`.
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_timm_reads_every_section() {
        let ra = RandAugment::parse_timm("rand-m9-n3-mstd0.5-inc1-mmax12-p0.7").unwrap();
        assert_eq!(ra.flavor, RaFlavor::Timm);
        assert_eq!(ra.magnitude, 9.0);
        assert_eq!(ra.num_layers, 3);
        assert_eq!(ra.magnitude_std, 0.5);
        assert_eq!(ra.magnitude_max, 12.0);
        assert_eq!(ra.prob, 0.7);
        assert_eq!(ra.ops, TIMM_INCREASING_OPS.to_vec());
        assert_eq!(ra.fill, [124, 116, 104]);
        let uni = RandAugment::parse_timm("rand-m7-mstd101").unwrap();
        assert!(uni.magnitude_std.is_infinite());
        assert_eq!(uni.ops.len(), 15);
        assert_eq!(uni.num_layers, 2);
        assert!(RandAugment::parse_timm("augmix-m9").is_err());
        assert!(RandAugment::parse_timm("rand-q4").is_err());
        assert!(RandAugment::parse_timm("rand-mx").is_err());
    }

    #[test]
    fn automl_has_sixteen_ops_and_no_clip() {
        let ra = RandAugment::automl(2, 15.0);
        assert_eq!(ra.ops.len(), 16);
        assert!(ra.ops.contains(&RaOp::Cutout));
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        assert_eq!(ra.sample_magnitude(&mut rng), 15.0);
        let t = RandAugment::parse_timm("rand-m15").unwrap();
        assert_eq!(
            t.sample_magnitude(&mut rng),
            10.0,
            "timm clips to 10 without mmax"
        );
    }

    use rand::SeedableRng;

    #[test]
    fn magnitude_noise_has_requested_spread() {
        let ra = RandAugment::parse_timm("rand-m5-mstd1").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = 20000;
        let xs: Vec<f64> = (0..n).map(|_| ra.sample_magnitude(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 5.0).abs() < 0.05, "mean {mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.05, "std {}", var.sqrt());
    }
}
