//! Running a [`Plan`]: per-image forward over preallocated buffers, threads over the batch or
//! over spatial tiles.

use std::cell::RefCell;
use std::sync::Mutex;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;
// std's clock panics on wasm32-unknown-unknown; web-time reads the browser's `performance.now()`.
#[cfg(target_arch = "wasm32")]
use web_time::Instant;

use rayon::prelude::*;

use crate::error::CpuError;
use crate::isa::Isa;
use crate::kernels;
use crate::kernels::conv::{conv_packed, direct_fits};
use crate::kernels::gemm::{Epilogue, MAX_NR, Packed, PackedRef, gemm_packed, matmul};
use plan::{BlockPlan, Conv, Plan, SqueezeExcite};

pub mod int8;
pub mod plan;

/// Memory layout of an input batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[B][3][H][W]` (PyTorch / burn).
    Nchw,
    /// `[B][H][W][3]` (channels-last).
    Nhwc,
}

/// Kinds of layers, for the time split of [`Executor::profile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Input transpose + stem conv.
    Stem,
    /// Full k×k convs of Fused-MBConv blocks.
    FusedConv,
    /// 1×1 expansion GEMMs.
    Expand,
    /// Depthwise convs (with activation and SE pooling).
    Depthwise,
    /// Squeeze-excitation gates (and gate-scaled projection weights).
    SqueezeExcite,
    /// 1×1 projection GEMMs (with residual).
    Project,
    /// Head conv, global pool, classifier.
    Head,
}

impl LayerKind {
    /// All kinds, in network order.
    pub const ALL: [LayerKind; 7] = [
        LayerKind::Stem,
        LayerKind::FusedConv,
        LayerKind::Expand,
        LayerKind::Depthwise,
        LayerKind::SqueezeExcite,
        LayerKind::Project,
        LayerKind::Head,
    ];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Stem => "stem",
            LayerKind::FusedConv => "fused kxk conv",
            LayerKind::Expand => "1x1 expand",
            LayerKind::Depthwise => "depthwise",
            LayerKind::SqueezeExcite => "squeeze-excite",
            LayerKind::Project => "1x1 project",
            LayerKind::Head => "head+pool+fc",
        }
    }
}

/// Seconds spent per [`LayerKind`].
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Seconds, indexed like [`LayerKind::ALL`].
    pub seconds: [f64; 7],
}

impl Profile {
    fn add(&mut self, kind: LayerKind, since: Instant) {
        self.seconds[kind as usize] += since.elapsed().as_secs_f64();
    }
}

/// How the current image may use threads.
#[derive(Clone, Copy)]
struct Ctx {
    isa: Isa,
    /// Threads available to split this image's layers over (1 = run serially).
    threads: usize,
}

/// Pixels per GEMM tile: enough rows to amortise packing, few enough to stay in cache.
fn tile_pixels(kdim: usize) -> usize {
    (131_072 / kdim.max(1)).clamp(64, 1024)
}

/// Preallocated activations for one image size.
struct Arena {
    size: (usize, usize),
    x: Vec<f32>,
    y: Vec<f32>,
    m1: Vec<f32>,
    m2: Vec<f32>,
    partial: Vec<f32>,
    mean: Vec<f32>,
    hidden: Vec<f32>,
    gates: Vec<f32>,
    /// Zeros, the bias of all but the first partial product of a split SE matrix-vector.
    zeros: Vec<f32>,
    scaled: Vec<f32>,
    pooled: Vec<f32>,
}

/// Most channels a depthwise may split its SE sums over, per thread.
const DW_TILES_PER_THREAD: usize = 4;

impl Arena {
    fn new(plan: &Plan, h: usize, w: usize, threads: usize) -> Self {
        let s = Sizes::of(plan, h, w);
        let tiles = DW_TILES_PER_THREAD * threads.max(1);
        Self {
            size: (h, w),
            x: vec![0.0; s.act],
            y: vec![0.0; s.act],
            m1: vec![0.0; s.act],
            m2: vec![0.0; s.act],
            partial: vec![0.0; tiles * s.channels],
            mean: vec![0.0; s.channels],
            hidden: vec![0.0; s.channels],
            gates: vec![0.0; s.channels],
            zeros: vec![0.0; s.channels],
            scaled: vec![0.0; s.se_weights],
            pooled: vec![0.0; plan.head.cout],
        }
    }
}

/// Largest buffers one image needs.
struct Sizes {
    act: usize,
    channels: usize,
    se_weights: usize,
}

impl Sizes {
    fn of(plan: &Plan, h: usize, w: usize) -> Self {
        let mut s = Sizes {
            act: 3 * h * w,
            channels: 1,
            se_weights: 0,
        };
        let g = plan
            .stem
            .pad
            .geometry(h, w, 3, plan.stem.k, plan.stem.stride);
        let (mut h, mut w) = (g.oh, g.ow);
        s.act = s.act.max(h * w * plan.stem.cout);
        for b in &plan.blocks {
            if let Some(c) = &b.conv {
                let g = c.pad.geometry(h, w, c.cin, c.k, c.stride);
                (h, w) = (g.oh, g.ow);
                s.act = s.act.max(h * w * c.cout);
            }
            if let Some(d) = &b.dw {
                let g = d.pad.geometry(h, w, d.c, d.k, d.stride);
                (h, w) = (g.oh, g.ow);
                s.act = s.act.max(h * w * d.c);
                s.channels = s.channels.max(d.c);
            }
            if let (Some(_), Some(p)) = (&b.se, &b.project) {
                let packed = Packed::buffer_len(p.cin, p.cout, MAX_NR);
                s.se_weights = s.se_weights.max(packed.max(p.cin * p.cout));
            }
            if let Some(p) = &b.project {
                s.act = s.act.max(h * w * p.cout);
            }
        }
        s.act = s.act.max(h * w * plan.head.cout);
        s
    }
}

thread_local! {
    /// im2col scratch of the current thread, grown on demand and kept.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The dense convs' weights packed once for the instruction set's GEMM microkernel.
struct Packs {
    stem: Packed,
    /// (conv, projection) of every block.
    blocks: Vec<(Option<Packed>, Option<Packed>)>,
    head: Packed,
    /// The classifier as a one-row GEMM, split over output panels.
    fc: Packed,
}

impl Packs {
    /// `None` when `isa` has no packed microkernel (the `gemm` crate or the plain loop run).
    fn new(isa: Isa, plan: &Plan) -> Option<Self> {
        let pack = |c: &Conv| Packed::new(isa, &c.weight, &c.bias, c.k * c.k * c.cin, c.cout);
        let opt = |c: &Option<Conv>| c.as_ref().and_then(pack);
        Some(Self {
            stem: pack(&plan.stem)?,
            blocks: plan
                .blocks
                .iter()
                .map(|b| (opt(&b.conv), opt(&b.project)))
                .collect(),
            head: pack(&plan.head)?,
            fc: Packed::new(
                isa,
                &plan.fc_weight,
                &plan.fc_bias,
                plan.head.cout,
                plan.num_classes(),
            )?,
        })
    }
}

/// Weights of one dense conv as the GEMM takes them.
#[derive(Clone, Copy)]
enum Weights<'a> {
    /// Row-major `[k·k·cin][cout]` (bias and activation applied after the product).
    Plain(&'a [f32]),
    /// Packed for the microkernel, bias inside.
    Packed(PackedRef<'a>),
}

impl<'a> Weights<'a> {
    fn of(c: &'a Conv, packed: Option<&'a Packed>) -> Self {
        match packed {
            Some(p) => Weights::Packed(p.view()),
            None => Weights::Plain(&c.weight),
        }
    }
}

/// Runs a compiled EfficientNet on CPU buffers. Cheap to share between threads; activation
/// buffers are kept between calls (one set per concurrently running image).
pub struct Executor {
    plan: Plan,
    isa: Isa,
    packs: Option<Packs>,
    arenas: Mutex<Vec<Arena>>,
}

impl Executor {
    /// Wraps a validated plan, with the instruction set from [`Isa::detect`].
    pub fn new(plan: Plan) -> Result<Self, CpuError> {
        plan.validate()?;
        let isa = Isa::detect();
        Ok(Self {
            packs: Packs::new(isa, &plan),
            plan,
            isa,
            arenas: Mutex::new(Vec::new()),
        })
    }

    /// Forces an instruction set (e.g. [`Isa::scalar`] to test the fallback).
    pub fn with_isa(mut self, isa: Isa) -> Self {
        self.isa = isa;
        self.packs = Packs::new(isa, &self.plan);
        self
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The compiled plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.plan.num_classes()
    }

    /// Logits `[B][classes]` for a batch of `h`×`w` RGB images in `layout`. Uses every rayon
    /// thread: whole images per thread when the batch allows, spatial tiles otherwise.
    pub fn forward(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
        layout: Layout,
    ) -> Result<Vec<f32>, CpuError> {
        self.run(input, batch, h, w, layout, None)
    }

    /// Like [`forward`](Self::forward) (images one after the other, layers split over the
    /// threads), also returning the seconds spent per [`LayerKind`].
    pub fn profile(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
        layout: Layout,
    ) -> Result<(Vec<f32>, Profile), CpuError> {
        let mut p = Profile::default();
        let y = self.run(input, batch, h, w, layout, Some(&mut p))?;
        Ok((y, p))
    }

    fn run(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
        layout: Layout,
        mut prof: Option<&mut Profile>,
    ) -> Result<Vec<f32>, CpuError> {
        let per = 3 * h * w;
        if h == 0 || w == 0 || input.len() != batch * per {
            return Err(CpuError::Shape(format!(
                "input has {} values, expected {batch}x3x{h}x{w}",
                input.len()
            )));
        }
        let classes = self.num_classes();
        let mut out = vec![0f32; batch * classes];
        let threads = rayon::current_num_threads().max(1);
        // Whole images per thread for the part of the batch that divides evenly.
        let whole = if prof.is_none() && threads > 1 {
            batch - batch % threads
        } else {
            0
        };
        let serial = Ctx {
            isa: self.isa,
            threads: 1,
        };
        input[..whole * per]
            .par_chunks(per)
            .zip(out[..whole * classes].par_chunks_mut(classes))
            .for_each(|(img, logits)| {
                self.image_with_arena(serial, img, h, w, layout, logits, None)
            });
        let tiled = Ctx {
            isa: self.isa,
            threads,
        };
        let rest = input[whole * per..]
            .chunks(per)
            .zip(out[whole * classes..].chunks_mut(classes));
        // On a pool thread, so that each layer's split is a cheap `join` in which this thread
        // takes part, rather than a hand-over to the pool and back per layer.
        rayon::scope(|_| {
            for (img, logits) in rest {
                self.image_with_arena(tiled, img, h, w, layout, logits, prof.as_deref_mut());
            }
        });
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn image_with_arena(
        &self,
        ctx: Ctx,
        img: &[f32],
        h: usize,
        w: usize,
        layout: Layout,
        logits: &mut [f32],
        prof: Option<&mut Profile>,
    ) {
        let found = {
            let mut pool = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
            let pos = pool
                .iter()
                .position(|a| a.size == (h, w) && a.partial.len() >= self.partial_len(ctx, h, w));
            pos.map(|i| pool.swap_remove(i))
        };
        let mut arena =
            found.unwrap_or_else(|| Arena::new(&self.plan, h, w, rayon::current_num_threads()));
        self.forward_image(ctx, &mut arena, img, layout, logits, prof);
        let mut pool = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(arena);
    }

    fn partial_len(&self, ctx: Ctx, h: usize, w: usize) -> usize {
        DW_TILES_PER_THREAD * ctx.threads * Sizes::of(&self.plan, h, w).channels
    }

    fn forward_image(
        &self,
        ctx: Ctx,
        a: &mut Arena,
        img: &[f32],
        layout: Layout,
        logits: &mut [f32],
        mut prof: Option<&mut Profile>,
    ) {
        let (h, w) = a.size;
        let mut lap = |kind: LayerKind, t: Instant| {
            if let Some(p) = prof.as_deref_mut() {
                p.add(kind, t);
            }
        };
        let t = Instant::now();
        to_nhwc(ctx, img, h, w, layout, &mut a.x[..3 * h * w]);
        let stem = &self.plan.stem;
        let ws = Weights::of(stem, self.packs.as_ref().map(|p| &p.stem));
        let (mut h, mut w) = conv(ctx, stem, ws, &a.x, h, w, &mut a.y, None);
        std::mem::swap(&mut a.x, &mut a.y);
        lap(LayerKind::Stem, t);
        for (i, b) in self.plan.blocks.iter().enumerate() {
            let packs = self.packs.as_ref().map(|p| &p.blocks[i]);
            (h, w) = self.block(ctx, a, b, packs, h, w, &mut lap);
            std::mem::swap(&mut a.x, &mut a.y);
        }
        let t = Instant::now();
        let head = &self.plan.head;
        let wh = Weights::of(head, self.packs.as_ref().map(|p| &p.head));
        conv(ctx, head, wh, &a.x, h, w, &mut a.m1, None);
        let pixels = h * w;
        a.pooled.fill(0.0);
        kernels::column_sums(ctx.isa, &a.m1[..pixels * head.cout], &mut a.pooled);
        let inv = 1.0 / pixels as f32;
        a.pooled.iter_mut().for_each(|v| *v *= inv);
        match &self.packs {
            Some(p) => {
                let epi = Epilogue {
                    act: kernels::Act::None,
                    residual: None,
                };
                let k = head.cout;
                gemm_packed(
                    ctx.isa,
                    logits,
                    &a.pooled,
                    k,
                    1,
                    p.fc.view(),
                    epi,
                    ctx.threads,
                );
            }
            None => kernels::vec_mat(
                ctx.isa,
                &a.pooled,
                &self.plan.fc_weight,
                &self.plan.fc_bias,
                logits,
            ),
        }
        lap(LayerKind::Head, t);
    }

    /// Runs one block from `a.x` (`h`×`w`) into `a.y`; returns the output size.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        ctx: Ctx,
        a: &mut Arena,
        b: &BlockPlan,
        packs: Option<&(Option<Packed>, Option<Packed>)>,
        mut h: usize,
        mut w: usize,
        lap: &mut impl FnMut(LayerKind, Instant),
    ) -> (usize, usize) {
        let Arena {
            x,
            y,
            m1,
            m2,
            partial,
            mean,
            hidden,
            gates,
            zeros,
            scaled,
            ..
        } = a;
        let mut cur: &[f32] = x;
        if let Some(c) = &b.conv {
            let t = Instant::now();
            // Straight to the output when the conv ends the block (Fused-MBConv, expansion 1).
            let last = b.dw.is_none() && b.project.is_none();
            let dst = if last { &mut *y } else { &mut *m1 };
            let wc = Weights::of(c, packs.and_then(|p| p.0.as_ref()));
            (h, w) = conv(ctx, c, wc, x, h, w, dst, residual(b.skip && last, x));
            lap(
                if c.k > 1 {
                    LayerKind::FusedConv
                } else {
                    LayerKind::Expand
                },
                t,
            );
            if last {
                return (h, w);
            }
            cur = m1;
        }
        let packed_project = packs.and_then(|p| p.1.as_ref());
        let mut rhs = b.project.as_ref().map(|p| Weights::of(p, packed_project));
        if let Some(d) = &b.dw {
            let t = Instant::now();
            let g = d.pad.geometry(h, w, d.c, d.k, d.stride);
            let sums = b.se.as_ref().map(|_| (&mut partial[..], &mut mean[..d.c]));
            depthwise(ctx, d, g, cur, &mut m2[..g.oh * g.ow * d.c], sums);
            (h, w) = (g.oh, g.ow);
            lap(LayerKind::Depthwise, t);
            if let (Some(se), Some(p)) = (&b.se, &b.project) {
                let t = Instant::now();
                let c = d.c;
                let inv = 1.0 / (h * w) as f32;
                mean[..c].iter_mut().for_each(|v| *v *= inv);
                let sq = se.b_reduce.len();
                let scratch = (&mut partial[..], &zeros[..]);
                se_gates(
                    ctx,
                    se,
                    &mean[..c],
                    &mut hidden[..sq],
                    &mut gates[..c],
                    scratch,
                );
                let pixels = &mut m2[..h * w * c];
                rhs = Some(gated_projection(
                    ctx,
                    p,
                    packed_project,
                    &gates[..c],
                    pixels,
                    scaled,
                ));
                lap(LayerKind::SqueezeExcite, t);
            }
            cur = m2;
        }
        if let (Some(p), Some(rhs)) = (&b.project, rhs) {
            let t = Instant::now();
            (h, w) = conv(ctx, p, rhs, cur, h, w, y, residual(b.skip, x));
            lap(LayerKind::Project, t);
        }
        (h, w)
    }
}

/// Squeeze-excitation gates of `mean`. On several threads both products are split by rows
/// of their weights into partial sums (in `scratch.0`; `scratch.1` are zeros): the weights
/// come from memory once per image (0.8 MB per block in V2-S's last stage), so one core
/// reading them alone takes as long as a 7x7 layer's GEMM.
fn se_gates(
    ctx: Ctx,
    se: &SqueezeExcite,
    mean: &[f32],
    hidden: &mut [f32],
    gates: &mut [f32],
    scratch: (&mut [f32], &[f32]),
) {
    if ctx.threads == 1 {
        let (wr, br, we, be) = (&se.w_reduce, &se.b_reduce, &se.w_expand, &se.b_expand);
        kernels::se_gates(ctx.isa, mean, wr, br, we, be, se.act, hidden, gates);
        return;
    }
    let (partial, zeros) = scratch;
    split_vec_mat(
        ctx,
        mean,
        &se.w_reduce,
        &se.b_reduce,
        hidden,
        partial,
        zeros,
    );
    kernels::bias_act(ctx.isa, hidden, &zeros[..hidden.len()], se.act, None);
    split_vec_mat(
        ctx,
        hidden,
        &se.w_expand,
        &se.b_expand,
        gates,
        partial,
        zeros,
    );
    gates
        .iter_mut()
        .for_each(|g| *g = kernels::sigmoid_fast::<false>(*g));
}

/// `out = bias + x · w` like [`kernels::vec_mat`], with the rows of `w` split over the
/// threads into partial sums in `partial` (`zeros` as the others' bias), added after.
fn split_vec_mat(
    ctx: Ctx,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
    partial: &mut [f32],
    zeros: &[f32],
) {
    let n = out.len();
    let parts = ctx.threads.min(x.len()).max(1);
    let partial = &mut partial[..parts * n];
    partial.par_chunks_mut(n).enumerate().for_each(|(t, p)| {
        let rows = t * x.len() / parts..(t + 1) * x.len() / parts;
        let b = if t == 0 { bias } else { &zeros[..n] };
        let w = &w[rows.start * n..rows.end * n];
        kernels::vec_mat(ctx.isa, &x[rows], w, b, p);
    });
    out.fill(0.0);
    kernels::column_sums(ctx.isa, partial, out);
}

/// Folds the squeeze-excitation gates into the projection: the block's pixels are scaled in
/// place when there are fewer of them than output channels (7x7 stages), else the projection
/// weights are scaled into `scaled`.
fn gated_projection<'a>(
    ctx: Ctx,
    p: &'a Conv,
    packed: Option<&'a Packed>,
    gates: &[f32],
    pixels: &mut [f32],
    scaled: &'a mut [f32],
) -> Weights<'a> {
    let c = gates.len();
    match packed {
        _ if pixels.len() / c < p.cout => {
            scale_pixels(ctx, pixels, gates);
            Weights::of(p, packed)
        }
        Some(pp) => Weights::Packed(pp.scaled(ctx.isa, gates, scaled, ctx.threads)),
        None => {
            let scaled = &mut scaled[..p.cin * p.cout];
            kernels::scale_rows(ctx.isa, scaled, &p.weight, gates, p.cout);
            Weights::Plain(scaled)
        }
    }
}

/// Scales every pixel's channels by `gates`, in row blocks over the threads.
fn scale_pixels(ctx: Ctx, pixels: &mut [f32], gates: &[f32]) {
    let c = gates.len();
    if ctx.threads > 1 {
        let rows = (pixels.len() / c).div_ceil(ctx.threads).max(1);
        pixels
            .par_chunks_mut(rows * c)
            .for_each(|p| kernels::scale_columns(ctx.isa, p, gates));
    } else {
        kernels::scale_columns(ctx.isa, pixels, gates);
    }
}

/// The block input as residual when the block has a skip connection.
fn residual(skip: bool, x: &[f32]) -> Option<&[f32]> {
    if skip { Some(x) } else { None }
}

/// Copies one image into `[h][w][3]`; from NCHW in row blocks over the threads (the gather
/// takes as long as a small layer).
fn to_nhwc(ctx: Ctx, img: &[f32], h: usize, w: usize, layout: Layout, out: &mut [f32]) {
    match layout {
        Layout::Nhwc => out.copy_from_slice(img),
        Layout::Nchw => {
            let plane = h * w;
            let gather = |p0: usize, out: &mut [f32]| {
                for (p, px) in out.chunks_exact_mut(3).enumerate() {
                    for (c, v) in px.iter_mut().enumerate() {
                        *v = img[c * plane + p0 + p];
                    }
                }
            };
            if ctx.threads > 1 {
                split_rows(out, 3 * w, h, ctx.threads.min(h))
                    .into_par_iter()
                    .for_each(|(y0, o)| gather(y0 * w, o));
            } else {
                gather(0, out);
            }
        }
    }
}

/// Dense conv as GEMM tiles over output rows, bias + activation (+ residual) fused into each
/// tile while it is in cache. `rhs` are `c`'s weights (or their SE-gated copy).
#[allow(clippy::too_many_arguments)]
fn conv(
    ctx: Ctx,
    c: &Conv,
    rhs: Weights<'_>,
    input: &[f32],
    h: usize,
    w: usize,
    out: &mut [f32],
    residual: Option<&[f32]>,
) -> (usize, usize) {
    let g = c.pad.geometry(h, w, c.cin, c.k, c.stride);
    let kdim = c.k * c.k * c.cin;
    let pixels = g.oh * g.ow;
    let out = &mut out[..pixels * c.cout];
    // Small images: one tile, the GEMM itself split over the threads.
    let small = ctx.threads > 1 && pixels < ctx.threads * 128;
    let gemm_threads = if small { ctx.threads } else { 1 };
    let tile = |oy0: usize, dst: &mut [f32]| {
        let m = dst.len() / c.cout;
        let p0 = oy0 * g.ow;
        let res = residual.map(|r| &r[p0 * c.cout..(p0 + m) * c.cout]);
        let product = |dst: &mut [f32], lhs: &[f32]| match rhs {
            Weights::Packed(pw) => {
                let epi = Epilogue {
                    act: c.act,
                    residual: res,
                };
                gemm_packed(ctx.isa, dst, lhs, kdim, m, pw, epi, gemm_threads);
            }
            Weights::Plain(rhs) => {
                matmul(ctx.isa, dst, lhs, rhs, m, kdim, c.cout, gemm_threads);
                kernels::bias_act(ctx.isa, dst, &c.bias, c.act, res);
            }
        };
        if c.is_pointwise() {
            product(dst, &input[p0 * kdim..(p0 + m) * kdim]);
        } else if let (Weights::Packed(pw), true) = (rhs, direct_fits(&g)) {
            let epi = Epilogue {
                act: c.act,
                residual: res,
            };
            COL.with_borrow_mut(|slab| {
                conv_packed(ctx.isa, dst, input, &g, oy0, pw, epi, slab, gemm_threads)
            });
        } else {
            COL.with_borrow_mut(|col| {
                if col.len() < m * kdim {
                    col.resize(m * kdim, 0.0);
                }
                let col = &mut col[..m * kdim];
                kernels::im2col(ctx.isa, input, g, oy0, m / g.ow, col);
                product(dst, col);
            });
        }
    };
    let rows = (tile_pixels(kdim) / g.ow).max(1);
    let row_len = g.ow * c.cout;
    if small {
        tile(0, out);
    } else if ctx.threads > 1 {
        // Equal tiles, a multiple of the threads, at least two per thread (for stealing).
        let per = g.oh.div_ceil(ctx.threads * rows).max(2);
        let n = (ctx.threads * per).min(g.oh);
        split_rows(out, row_len, g.oh, n)
            .into_par_iter()
            .for_each(|(oy0, d)| tile(oy0, d));
    } else {
        out.chunks_mut(rows * row_len)
            .enumerate()
            .for_each(|(i, d)| tile(i * rows, d));
    }
    (g.oh, g.ow)
}

/// `out` (`total` rows of `row_len` floats) cut into `n` tiles of near-equal row counts, each
/// with its first row: tiles of a fixed height would leave e.g. 56 rows of 12 as 5 tiles,
/// 3 + 2 on two threads.
fn split_rows(
    mut out: &mut [f32],
    row_len: usize,
    total: usize,
    n: usize,
) -> Vec<(usize, &mut [f32])> {
    let mut tiles = Vec::with_capacity(n);
    for i in 0..n {
        let (r0, r1) = (i * total / n, (i + 1) * total / n);
        let (head, rest) = std::mem::take(&mut out).split_at_mut((r1 - r0) * row_len);
        tiles.push((r0, head));
        out = rest;
    }
    tiles
}

/// Depthwise conv over row tiles; with `sums`, also the per-channel sums of the output
/// (per-tile partials in the first buffer, reduced into the second).
fn depthwise(
    ctx: Ctx,
    d: &plan::Depthwise,
    g: kernels::ConvGeom,
    input: &[f32],
    out: &mut [f32],
    sums: Option<(&mut [f32], &mut [f32])>,
) {
    // Near-equal row tiles, a multiple of the threads where the rows allow.
    let n = if ctx.threads > 1 {
        (DW_TILES_PER_THREAD * ctx.threads).min(g.oh)
    } else {
        1
    };
    let run = |oy0: usize, dst: &mut [f32], s: Option<&mut [f32]>| {
        kernels::depthwise(ctx.isa, input, &d.weight, &d.bias, d.act, g, oy0, dst, s);
    };
    let tiles = split_rows(out, g.ow * d.c, g.oh, n);
    match sums {
        Some((partial, total)) => {
            let partial = &mut partial[..n * d.c];
            partial.fill(0.0);
            if ctx.threads > 1 {
                tiles
                    .into_par_iter()
                    .zip(partial.par_chunks_mut(d.c))
                    .for_each(|((oy0, dst), s)| run(oy0, dst, Some(s)));
            } else {
                for ((oy0, dst), s) in tiles.into_iter().zip(partial.chunks_mut(d.c)) {
                    run(oy0, dst, Some(s));
                }
            }
            total.fill(0.0);
            kernels::column_sums(ctx.isa, partial, total);
        }
        None if ctx.threads > 1 => {
            tiles
                .into_par_iter()
                .for_each(|(oy0, dst)| run(oy0, dst, None));
        }
        None => {
            for (oy0, dst) in tiles {
                run(oy0, dst, None);
            }
        }
    }
}
