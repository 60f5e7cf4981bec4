//! Calibration: the f32 network run over sample images with an observer on every tensor of the
//! BN-folded graph, and the [`QuantModel`] built from what was seen.
//!
//! The forward here ([`forward_observed`]) is a plain one (im2col + GEMM, the executor's
//! depthwise kernel, exact sigmoid) that hands every intermediate tensor to a hook: observers
//! record ranges and histograms, and tests use the same forward with fake quantisation as the
//! reference of the int8 executor.

use std::collections::HashMap;

use crate::error::CpuError;
use crate::infer::Layout;
use crate::isa::Isa;
use crate::kernels::{self, Act, ConvGeom};
use crate::plan::{Conv, Plan};
use crate::quant::{
    QBlock, QConv, QDepthwise, QParams, QSqueezeExcite, QuantModel, RangeMethod, WeightScales,
};

/// Before or after a layer's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The conv's output plus bias.
    Pre,
    /// After the activation.
    Post,
}

/// A tensor of the network, as the observer hook sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// The preprocessed image.
    Input,
    /// Stem conv output.
    Stem(Stage),
    /// Block `i`'s dense conv output.
    Conv(usize, Stage),
    /// Block `i`'s depthwise output.
    Dw(usize, Stage),
    /// Block `i`'s squeeze-excitation channel means.
    SePool(usize),
    /// Block `i`'s SE reduce output.
    SeReduce(usize, Stage),
    /// Block `i`'s SE expand output (the sigmoid's input).
    SeExpand(usize),
    /// Block `i`'s gated depthwise output.
    SeOut(usize),
    /// Block `i`'s projection output (before the residual add).
    Project(usize),
    /// Block `i`'s output after the residual add (only for blocks with one).
    BlockOut(usize),
    /// Head conv output.
    Head(Stage),
    /// Global average of the head output.
    Pool,
    /// The logits.
    Logits,
}

/// Receives every tensor of one image's forward pass, and may change it in place.
pub type Hook<'a> = dyn FnMut(Site, &mut [f32]) + 'a;

/// Runs `plan` on one `[h][w][3]` image, handing every tensor to `hook`; returns the logits.
pub fn forward_observed(
    isa: Isa,
    plan: &Plan,
    image: &[f32],
    h: usize,
    w: usize,
    hook: &mut Hook<'_>,
) -> Vec<f32> {
    let mut x = image.to_vec();
    hook(Site::Input, &mut x);
    let (mut x, mut h, mut w) = conv_observed(isa, &plan.stem, &x, h, w, Site::Stem, hook);
    for (i, b) in plan.blocks.iter().enumerate() {
        let input = x.clone();
        let mut cur = x;
        if let Some(c) = &b.conv {
            let site = |s| Site::Conv(i, s);
            (cur, h, w) = conv_observed(isa, c, &cur, h, w, site, hook);
        }
        if let Some(d) = &b.dw {
            let g = d.pad.geometry(h, w, d.c, d.k, d.stride);
            let mut y = vec![0f32; g.oh * g.ow * d.c];
            kernels::depthwise(isa, &cur, &d.weight, &d.bias, Act::None, g, 0, &mut y, None);
            hook(Site::Dw(i, Stage::Pre), &mut y);
            apply_act(isa, &mut y, d.c, d.act);
            hook(Site::Dw(i, Stage::Post), &mut y);
            (cur, h, w) = (y, g.oh, g.ow);
        }
        if let Some(se) = &b.se {
            let c = se.channels();
            let mut mean = vec![0f32; c];
            kernels::column_sums(isa, &cur, &mut mean);
            let inv = 1.0 / (h * w) as f32;
            mean.iter_mut().for_each(|v| *v *= inv);
            hook(Site::SePool(i), &mut mean);
            let mut hidden = vec![0f32; se.b_reduce.len()];
            kernels::vec_mat(isa, &mean, &se.w_reduce, &se.b_reduce, &mut hidden);
            hook(Site::SeReduce(i, Stage::Pre), &mut hidden);
            hidden
                .iter_mut()
                .for_each(|v| *v = kernels::act_reference(*v, se.act));
            hook(Site::SeReduce(i, Stage::Post), &mut hidden);
            let mut gates = vec![0f32; c];
            kernels::vec_mat(isa, &hidden, &se.w_expand, &se.b_expand, &mut gates);
            hook(Site::SeExpand(i), &mut gates);
            for (px, g) in cur.chunks_exact_mut(c).zip(std::iter::repeat(&gates)) {
                for (v, g) in px.iter_mut().zip(g) {
                    *v *= 1.0 / (1.0 + (-g).exp());
                }
            }
            hook(Site::SeOut(i), &mut cur);
        }
        if let Some(p) = &b.project {
            let site = |_| Site::Project(i);
            (cur, h, w) = conv_observed(isa, p, &cur, h, w, site, hook);
        }
        if b.skip {
            cur.iter_mut().zip(&input).for_each(|(y, x)| *y += x);
            hook(Site::BlockOut(i), &mut cur);
        }
        x = cur;
    }
    let (f, h, w) = conv_observed(isa, &plan.head, &x, h, w, Site::Head, hook);
    let mut pooled = vec![0f32; plan.head.cout];
    kernels::column_sums(isa, &f, &mut pooled);
    let inv = 1.0 / (h * w) as f32;
    pooled.iter_mut().for_each(|v| *v *= inv);
    hook(Site::Pool, &mut pooled);
    let mut logits = vec![0f32; plan.num_classes()];
    kernels::vec_mat(isa, &pooled, &plan.fc_weight, &plan.fc_bias, &mut logits);
    hook(Site::Logits, &mut logits);
    logits
}

/// Applies `act` to every value of `rows` (`c` channels each).
fn apply_act(isa: Isa, rows: &mut [f32], c: usize, act: Act) {
    if act != Act::None {
        let zeros = vec![0f32; c];
        kernels::bias_act(isa, rows, &zeros, act, None);
    }
}

/// One dense conv through im2col + GEMM, its output before and after the activation handed to
/// `hook` as `site(Stage::Pre)` and `site(Stage::Post)` (the latter only with an activation).
fn conv_observed(
    isa: Isa,
    c: &Conv,
    x: &[f32],
    h: usize,
    w: usize,
    site: impl Fn(Stage) -> Site,
    hook: &mut Hook<'_>,
) -> (Vec<f32>, usize, usize) {
    let g: ConvGeom = c.pad.geometry(h, w, c.cin, c.k, c.stride);
    let (m, kdim) = (g.oh * g.ow, c.k * c.k * c.cin);
    let mut y = vec![0f32; m * c.cout];
    let threads = rayon::current_num_threads();
    if c.is_pointwise() {
        kernels::gemm::matmul(isa, &mut y, x, &c.weight, m, kdim, c.cout, threads);
    } else {
        let mut col = vec![0f32; m * kdim];
        kernels::im2col(isa, x, g, 0, g.oh, &mut col);
        kernels::gemm::matmul(isa, &mut y, &col, &c.weight, m, kdim, c.cout, threads);
    }
    kernels::bias_act(isa, &mut y, &c.bias, Act::None, None);
    hook(site(Stage::Pre), &mut y);
    if c.act != Act::None {
        apply_act(isa, &mut y, c.cout, c.act);
        hook(site(Stage::Post), &mut y);
    }
    (y, g.oh, g.ow)
}

/// Bins of a [`Histogram`].
const BINS: usize = 4096;

/// Counts of values in `BINS` equal bins over `[-range, range]`; the range doubles (merging
/// bins) when a larger value comes.
#[derive(Clone, Debug)]
struct Histogram {
    range: f32,
    counts: Vec<u64>,
}

impl Histogram {
    fn new() -> Self {
        Self {
            range: 0.0,
            counts: vec![0; BINS],
        }
    }

    fn add(&mut self, xs: &[f32], max_abs: f32) {
        if max_abs > self.range {
            let mut r = if self.range > 0.0 {
                self.range
            } else {
                max_abs.max(1e-6)
            };
            while r < max_abs {
                r *= 2.0;
                self.double();
            }
            self.range = r;
        }
        let scale = BINS as f32 / (2.0 * self.range);
        for &x in xs {
            let i = ((x + self.range) * scale) as usize;
            self.counts[i.min(BINS - 1)] += 1;
        }
    }

    /// Doubles the range: old bin `i` lands in new bin `(i + BINS/2) / 2`.
    fn double(&mut self) {
        if self.range == 0.0 {
            return;
        }
        let mut merged = vec![0u64; BINS];
        for (i, n) in self.counts.iter().enumerate() {
            merged[(i + BINS / 2) / 2] += n;
        }
        self.counts = merged;
    }

    /// Centre of bin `i`.
    fn centre(&self, i: usize) -> f32 {
        -self.range + (i as f32 + 0.5) * 2.0 * self.range / BINS as f32
    }

    /// The value below which a fraction `q` of the counts lie (bin edge resolution).
    fn quantile(&self, q: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        let want = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return self.centre(i);
            }
        }
        self.range
    }
}

/// What was seen of one tensor.
#[derive(Clone, Debug)]
struct Stats {
    min: f32,
    max: f32,
    hist: Histogram,
}

impl Stats {
    fn new() -> Self {
        Self {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: Histogram::new(),
        }
    }

    fn add(&mut self, xs: &[f32]) {
        let (lo, hi) = xs
            .iter()
            .filter(|x| x.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if lo > hi {
            return;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        let finite: Vec<f32>;
        let xs = if xs.iter().all(|x| x.is_finite()) {
            xs
        } else {
            finite = xs.iter().copied().filter(|x| x.is_finite()).collect();
            &finite
        };
        self.hist.add(xs, lo.abs().max(hi.abs()));
    }

    /// The range `method` keeps.
    fn range(&self, method: RangeMethod) -> (f32, f32) {
        if self.min > self.max {
            return (0.0, 0.0);
        }
        match method {
            RangeMethod::MinMax => (self.min, self.max),
            RangeMethod::Percentile(p) => {
                let tail = (100.0 - p as f64) / 100.0;
                let lo = self.hist.quantile(tail).max(self.min);
                let hi = self.hist.quantile(1.0 - tail).min(self.max);
                (lo.min(hi), hi)
            }
            RangeMethod::Mse => self.mse_range(),
        }
    }

    /// The range `[f·min, f·max]` (f from 1 down to 0.2) whose quantisation has the least
    /// expected squared error over the histogram: clipping error outside, step²/12 inside.
    fn mse_range(&self) -> (f32, f32) {
        let h = &self.hist;
        let mut best = (f64::INFINITY, (self.min, self.max));
        for step in 0..=80 {
            let f = 1.0 - step as f32 * 0.01;
            let (lo, hi) = (self.min * f, self.max * f);
            let q = QParams::from_range(lo, hi);
            let (a, b) = q.range();
            let inside = (q.scale as f64).powi(2) / 12.0;
            let mut err = 0.0;
            for (i, &n) in h.counts.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let x = h.centre(i);
                let e = if x < a {
                    ((a - x) as f64).powi(2)
                } else if x > b {
                    ((x - b) as f64).powi(2)
                } else {
                    inside
                };
                err += n as f64 * e;
            }
            if err < best.0 {
                best = (err, (lo, hi));
            }
        }
        best.1
    }
}

/// Collects activation statistics over calibration images and builds the [`QuantModel`].
pub struct Calibrator {
    plan: Plan,
    isa: Isa,
    stats: HashMap<Site, Stats>,
    images: usize,
    scales: WeightScales,
}

impl Calibrator {
    /// Observes `plan` (BN-folded f32, as the f32 executor runs it).
    pub fn new(plan: Plan) -> Result<Self, CpuError> {
        plan.validate()?;
        Ok(Self {
            plan,
            isa: Isa::detect(),
            stats: HashMap::new(),
            images: 0,
            scales: WeightScales::PerChannel,
        })
    }

    /// Quantises weights with one scale per output channel (default) or per tensor.
    pub fn weight_scales(mut self, scales: WeightScales) -> Self {
        self.scales = scales;
        self
    }

    /// Images observed so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Runs a batch of `h`×`w` preprocessed images in `layout` and records every tensor;
    /// returns the logits `[B][classes]`.
    pub fn observe(
        &mut self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
        layout: Layout,
    ) -> Result<Vec<f32>, CpuError> {
        let per = 3 * h * w;
        if h == 0 || w == 0 || input.len() != batch * per {
            return Err(CpuError::Shape(format!(
                "calibration input has {} values, expected {batch}x3x{h}x{w}",
                input.len()
            )));
        }
        let mut logits = Vec::with_capacity(batch * self.plan.num_classes());
        for img in input.chunks_exact(per) {
            let nhwc = to_nhwc(img, h, w, layout);
            let stats = &mut self.stats;
            let mut hook = |site: Site, t: &mut [f32]| {
                stats.entry(site).or_insert_with(Stats::new).add(t);
            };
            logits.extend(forward_observed(
                self.isa, &self.plan, &nhwc, h, w, &mut hook,
            ));
            self.images += 1;
        }
        Ok(logits)
    }

    /// The observed range of `site` under `method`, as int8 parameters.
    fn qparams(&self, site: Site, method: RangeMethod) -> Result<QParams, CpuError> {
        let s = self.stats.get(&site).ok_or_else(|| {
            CpuError::Shape(format!(
                "no calibration data for {site:?}: observe an image first"
            ))
        })?;
        let (lo, hi) = s.range(method);
        Ok(QParams::from_range(lo, hi))
    }

    /// The int8 model with activation ranges chosen by `method`.
    pub fn finish(&self, method: RangeMethod) -> Result<QuantModel, CpuError> {
        let q = |site| self.qparams(site, method);
        let conv = |c: &Conv, input: QParams, site: &dyn Fn(Stage) -> Site| {
            let post = if c.act == Act::None {
                q(site(Stage::Pre))?
            } else {
                q(site(Stage::Post))?
            };
            let pre = if c.act == Act::Silu {
                q(site(Stage::Pre))?
            } else {
                post
            };
            Ok::<_, CpuError>(QConv::from_conv(c, self.scales, input, pre, post))
        };
        let input = q(Site::Input)?;
        let stem = conv(&self.plan.stem, input, &Site::Stem)?;
        let mut x = stem.output;
        let mut blocks = Vec::with_capacity(self.plan.blocks.len());
        for (i, b) in self.plan.blocks.iter().enumerate() {
            let mut cur = x;
            let qc = match &b.conv {
                Some(c) => {
                    let qc = conv(c, cur, &|s| Site::Conv(i, s))?;
                    cur = qc.output;
                    Some(qc)
                }
                None => None,
            };
            let dw = match &b.dw {
                Some(d) => {
                    let post = q(Site::Dw(i, Stage::Post))?;
                    let pre = if d.act == Act::Silu {
                        q(Site::Dw(i, Stage::Pre))?
                    } else {
                        post
                    };
                    let qd = QDepthwise::from_depthwise(d, self.scales, cur, pre, post);
                    cur = qd.output;
                    Some(qd)
                }
                None => None,
            };
            let se = match &b.se {
                Some(se) => {
                    let pool = q(Site::SePool(i))?;
                    let hidden_post = q(Site::SeReduce(i, Stage::Post))?;
                    let hidden_pre = if se.act == Act::Silu {
                        q(Site::SeReduce(i, Stage::Pre))?
                    } else {
                        hidden_post
                    };
                    let reduce = QConv::linear(
                        &se.w_reduce,
                        &se.b_reduce,
                        se.act,
                        self.scales,
                        [pool, hidden_pre, hidden_post],
                    )?;
                    let logit = q(Site::SeExpand(i))?;
                    let expand = QConv::linear(
                        &se.w_expand,
                        &se.b_expand,
                        Act::None,
                        self.scales,
                        [hidden_post, logit, logit],
                    )?;
                    let qse = QSqueezeExcite {
                        pool,
                        reduce,
                        expand,
                        gate: QParams::SIGMOID,
                        output: q(Site::SeOut(i))?,
                    };
                    cur = qse.output;
                    Some(qse)
                }
                None => None,
            };
            let project = match &b.project {
                Some(p) => {
                    let qp = conv(p, cur, &|_| Site::Project(i))?;
                    cur = qp.output;
                    Some(qp)
                }
                None => None,
            };
            let output = if b.skip { q(Site::BlockOut(i))? } else { cur };
            blocks.push(QBlock {
                conv: qc,
                dw,
                se,
                project,
                skip: b.skip,
                output,
            });
            x = output;
        }
        let head = conv(&self.plan.head, x, &Site::Head)?;
        let pool = q(Site::Pool)?;
        let logits = q(Site::Logits)?;
        let fc = QConv::linear(
            &self.plan.fc_weight,
            &self.plan.fc_bias,
            Act::None,
            self.scales,
            [pool, logits, logits],
        )?;
        let model = QuantModel {
            input,
            stem,
            blocks,
            head,
            pool,
            fc,
            method,
            calibration_images: self.images,
        };
        model.validate()?;
        Ok(model)
    }
}

/// One image as `[h][w][3]`.
pub fn to_nhwc(img: &[f32], h: usize, w: usize, layout: Layout) -> Vec<f32> {
    match layout {
        Layout::Nhwc => img.to_vec(),
        Layout::Nchw => {
            let plane = h * w;
            (0..plane)
                .flat_map(|p| (0..3).map(move |c| img[c * plane + p]))
                .collect()
        }
    }
}

/// Whether the int8 executor rounds `site` to int8 in `q` (and so the fake-quantised reference
/// must): the input, conv and depthwise outputs after their activation, gated SE outputs,
/// projections without a residual, block outputs and the pooled features. Projections with a
/// residual are requantised only after the add; SE internals and the logits stay f32.
pub fn executor_quantizes(q: &QuantModel, site: Site) -> Option<QParams> {
    let block = |i: usize| &q.blocks[i];
    match site {
        Site::Input => Some(q.input),
        Site::Stem(Stage::Post) => Some(q.stem.output),
        Site::Stem(Stage::Pre) if q.stem.act == Act::None => Some(q.stem.output),
        Site::Conv(i, s) => {
            // Also a conv that ends a residual block: the add is an int8 add of two tensors.
            let c = block(i).conv.as_ref()?;
            (s == Stage::Post || c.act == Act::None).then_some(c.output)
        }
        Site::Dw(i, s) => {
            let d = block(i).dw.as_ref()?;
            (s == Stage::Post || d.act == Act::None).then_some(d.output)
        }
        Site::SeOut(i) => block(i).se.as_ref().map(|s| s.output),
        Site::Project(i) => {
            let b = block(i);
            if b.skip {
                None
            } else {
                b.project.as_ref().map(|p| p.output)
            }
        }
        Site::BlockOut(i) => Some(block(i).output),
        Site::Head(Stage::Post) => Some(q.head.output),
        Site::Head(Stage::Pre) if q.head.act == Act::None => Some(q.head.output),
        Site::Pool => Some(q.pool),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_keeps_counts_when_its_range_grows() {
        let mut h = Histogram::new();
        let a: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        h.add(&a, 1.0);
        let b: Vec<f32> = (0..1000).map(|i| -(i as f32) / 100.0).collect();
        h.add(&b, 9.99);
        assert_eq!(h.counts.iter().sum::<u64>(), 2000);
        assert!(h.range >= 9.99);
        let median = h.quantile(0.5);
        assert!(median.abs() < 0.02, "{median}");
        assert!((h.quantile(0.25) + 5.0).abs() < 0.05);
    }

    #[test]
    fn percentile_and_mse_clip_rare_outliers_minmax_keeps_them() {
        let mut s = Stats::new();
        let mut xs: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        xs.push(40.0);
        s.add(&xs);
        assert_eq!(s.range(RangeMethod::MinMax), (0.0, 40.0));
        let (_, hi) = s.range(RangeMethod::Percentile(99.99));
        assert!(hi < 1.1, "{hi}");
        let (_, hi) = s.range(RangeMethod::Mse);
        assert!(hi < 40.0, "{hi}");
    }
}
