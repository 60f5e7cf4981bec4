//! Running a [`QuantModel`] in int8: `u8` activations (int8 + 128) between layers, int8
//! weights packed once for the CPU's int8 GEMM microkernel, int32 accumulators requantised in
//! the GEMM and depthwise epilogues (bias, zero points, activation, fused residual of the
//! projections, rounding). Squeeze-excitation gates are computed in f32 from the int8
//! depthwise output's channel sums and applied to it in one requantising pass; the classifier
//! returns f32 logits from its int32 sums.
//!
//! Threads as in the f32 [`Executor`](super::Executor): whole images per thread when the batch
//! allows, else each layer split over row tiles (or, for small images, over output panels).

use std::cell::RefCell;
use std::sync::Mutex;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;
#[cfg(target_arch = "wasm32")]
use web_time::Instant;

use rayon::prelude::*;

use super::{LayerKind, Layout, Profile};
use crate::error::CpuError;
use crate::isa::Isa;
use crate::kernels::int8::{
    self as k8, DwWeights, GemmOut, Int8Kernel, PackedI8, Requant, Residual, column_sums_i8,
};
use crate::kernels::{self, ConvGeom};
use crate::plan::{Pad, SqueezeExcite};
use crate::quant::{QConv, QDepthwise, QParams, QuantModel};

/// A dense conv ready to run: packed weights and its epilogue.
struct Dense {
    k: usize,
    stride: usize,
    pad: Pad,
    cin: usize,
    cout: usize,
    packed: PackedI8,
    req: Requant,
    /// Multiplier of the fused residual (projections of blocks with a skip).
    residual: Option<f32>,
    /// The input's `u8` zero point (im2col's padding).
    zp_in: u8,
}

impl Dense {
    /// `q` requantised into `out` (its own output unless a residual with parameters
    /// `residual` is fused, which needs `q.act == None`).
    fn new(
        kernel: Int8Kernel,
        q: &QConv,
        out: QParams,
        residual: Option<QParams>,
    ) -> Result<Self, CpuError> {
        let colsum = column_sums_i8(&q.weight, q.cout);
        let req = Requant::new(
            q.input.scale,
            q.input.zero_point_u8(),
            &q.weight_scale,
            &colsum,
            &q.bias,
            q.act,
            out.scale,
            out.zero_point_u8(),
        );
        let (req, residual) = match residual {
            Some(r) => {
                if q.act != kernels::Act::None {
                    return Err(CpuError::Unsupported(
                        "a residual fused after an activation".into(),
                    ));
                }
                let (req, m) = req.with_residual(r.scale, r.zero_point_u8(), out.scale);
                (req, Some(m))
            }
            None => (req, None),
        };
        let kdim = q.k * q.k * q.cin;
        Ok(Self {
            k: q.k,
            stride: q.stride,
            pad: q.pad,
            cin: q.cin,
            cout: q.cout,
            packed: PackedI8::new(kernel, &q.weight, kdim, q.cout),
            req,
            residual,
            zp_in: q.input.zero_point_u8() as u8,
        })
    }

    /// Whether the activations can be the GEMM's rows as they are (1×1, stride 1, rows of a
    /// multiple of 4 bytes).
    fn direct(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.cin.is_multiple_of(4)
    }

    fn geometry(&self, h: usize, w: usize) -> ConvGeom {
        self.pad.geometry(h, w, self.cin, self.k, self.stride)
    }
}

/// A depthwise conv ready to run.
struct Dw {
    k: usize,
    stride: usize,
    pad: Pad,
    c: usize,
    weight: DwWeights,
    req: Requant,
    zp_in: u8,
    /// Output scale and `u8` zero point (for the SE channel means).
    out: (f32, i32),
}

impl Dw {
    fn new(kernel: Int8Kernel, q: &QDepthwise) -> Self {
        let colsum = column_sums_i8(&q.weight, q.c);
        Self {
            k: q.k,
            stride: q.stride,
            pad: q.pad,
            c: q.c,
            weight: DwWeights::new(kernel, &q.weight, q.k, q.c),
            req: Requant::new(
                q.input.scale,
                q.input.zero_point_u8(),
                &q.weight_scale,
                &colsum,
                &q.bias,
                q.act,
                q.output.scale,
                q.output.zero_point_u8(),
            ),
            zp_in: q.input.zero_point_u8() as u8,
            out: (q.output.scale, q.output.zero_point_u8()),
        }
    }
}

/// Squeeze-excitation: f32 gates from dequantised weights, applied requantising into `out`.
struct Se {
    f32: SqueezeExcite,
    out: (f32, i32),
}

/// An elementwise residual add `out = a + x` in int8 (blocks whose last conv has an
/// activation): multipliers of `a` and `x` and the offset, in output steps.
struct Add {
    ma: f32,
    mx: f32,
    offset: f32,
}

impl Add {
    fn new(a: QParams, x: QParams, out: QParams) -> Self {
        let (ma, mx) = (a.scale / out.scale, x.scale / out.scale);
        let offset = out.zero_point_u8() as f32
            - ma * a.zero_point_u8() as f32
            - mx * x.zero_point_u8() as f32;
        Self { ma, mx, offset }
    }
}

struct Block {
    conv: Option<Dense>,
    dw: Option<Dw>,
    se: Option<Se>,
    project: Option<Dense>,
    /// The residual add after a last conv with an activation.
    add: Option<Add>,
}

/// The model prepared for one int8 kernel.
struct Layers {
    input: QParams,
    stem: Dense,
    blocks: Vec<Block>,
    head: Dense,
    /// Head output scale and `u8` zero point.
    head_out: (f32, i32),
    pool: QParams,
    fc: PackedI8,
    /// Logits = acc·fc_mul + fc_add.
    fc_mul: Vec<f32>,
    fc_add: Vec<f32>,
}

impl Layers {
    fn new(kernel: Int8Kernel, q: &QuantModel) -> Result<Self, CpuError> {
        let mut blocks = Vec::with_capacity(q.blocks.len());
        let mut x = q.stem.output;
        for b in &q.blocks {
            let last_conv = b.dw.is_none() && b.project.is_none();
            let conv = match &b.conv {
                Some(c) => Some(Dense::new(kernel, c, c.output, None)?),
                None => None,
            };
            let add = (b.skip && last_conv)
                .then(|| b.conv.as_ref().map(|c| Add::new(c.output, x, b.output)))
                .flatten();
            let project = match &b.project {
                Some(p) if b.skip => Some(Dense::new(kernel, p, b.output, Some(x))?),
                Some(p) => Some(Dense::new(kernel, p, p.output, None)?),
                None => None,
            };
            blocks.push(Block {
                conv,
                dw: b.dw.as_ref().map(|d| Dw::new(kernel, d)),
                se: b.se.as_ref().map(|s| Se {
                    f32: s.dequantized(),
                    out: (s.output.scale, s.output.zero_point_u8()),
                }),
                project,
                add,
            });
            x = b.output;
        }
        let fc = &q.fc;
        let colsum = column_sums_i8(&fc.weight, fc.cout);
        let zp = q.pool.zero_point_u8();
        let (mut fc_mul, mut fc_add) = (Vec::new(), Vec::new());
        for ((w, b), sum) in fc.weight_scale.iter().zip(&fc.bias).zip(&colsum) {
            let s = q.pool.scale as f64 * *w as f64;
            fc_mul.push(s as f32);
            fc_add.push((s * (*b as f64 - zp as f64 * *sum as f64)) as f32);
        }
        Ok(Self {
            input: q.input,
            stem: Dense::new(kernel, &q.stem, q.stem.output, None)?,
            blocks,
            head: Dense::new(kernel, &q.head, q.head.output, None)?,
            head_out: (q.head.output.scale, q.head.output.zero_point_u8()),
            pool: q.pool,
            fc: PackedI8::new(kernel, &fc.weight, fc.cin, fc.cout),
            fc_mul,
            fc_add,
        })
    }
}

/// Largest buffers one image needs.
struct Sizes {
    act: usize,
    channels: usize,
}

impl Sizes {
    fn of(l: &Layers, h: usize, w: usize) -> Self {
        let mut s = Sizes {
            act: 3 * h * w,
            channels: l.head.cout,
        };
        let g = l.stem.geometry(h, w);
        let (mut h, mut w) = (g.oh, g.ow);
        s.act = s.act.max(h * w * l.stem.cout);
        for b in &l.blocks {
            if let Some(c) = &b.conv {
                let g = c.geometry(h, w);
                (h, w) = (g.oh, g.ow);
                s.act = s.act.max(h * w * c.cout);
            }
            if let Some(d) = &b.dw {
                let g = d.pad.geometry(h, w, d.c, d.k, d.stride);
                (h, w) = (g.oh, g.ow);
                s.act = s.act.max(h * w * d.c);
                s.channels = s.channels.max(d.c);
            }
            if let Some(p) = &b.project {
                s.act = s.act.max(h * w * p.cout);
            }
        }
        s.act = s.act.max(h * w * l.head.cout);
        s
    }
}

/// Most row tiles per thread of a depthwise conv (each with its own SE partial sums).
const DW_TILES_PER_THREAD: usize = 4;

/// Preallocated buffers for one image size.
struct Arena {
    size: (usize, usize),
    x: Vec<u8>,
    y: Vec<u8>,
    m1: Vec<u8>,
    m2: Vec<u8>,
    partial: Vec<i32>,
    sums: Vec<i32>,
    mean: Vec<f32>,
    hidden: Vec<f32>,
    gates: Vec<f32>,
    gate_mul: Vec<f32>,
    gate_add: Vec<f32>,
    pooled: Vec<u8>,
    acc: Vec<i32>,
}

impl Arena {
    fn new(l: &Layers, h: usize, w: usize, threads: usize) -> Self {
        let s = Sizes::of(l, h, w);
        let c = s.channels;
        Self {
            size: (h, w),
            x: vec![0; s.act],
            y: vec![0; s.act],
            m1: vec![0; s.act],
            m2: vec![0; s.act],
            partial: vec![0; DW_TILES_PER_THREAD * threads.max(1) * c],
            sums: vec![0; c],
            mean: vec![0.0; c],
            hidden: vec![0.0; c],
            gates: vec![0.0; c],
            gate_mul: vec![0.0; c],
            gate_add: vec![0.0; c],
            pooled: vec![0; l.fc.kp()],
            acc: vec![0; l.fc.n()],
        }
    }
}

thread_local! {
    /// im2col scratch of the current thread, grown on demand and kept.
    static COL: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// How the current image may use threads.
#[derive(Clone, Copy)]
struct Ctx {
    isa: Isa,
    threads: usize,
}

/// Runs an int8 [`QuantModel`] on CPU buffers; like [`Executor`](super::Executor), cheap to
/// share between threads.
pub struct Int8Executor {
    model: QuantModel,
    isa: Isa,
    kernel: Int8Kernel,
    layers: Layers,
    arenas: Mutex<Vec<Arena>>,
}

impl Int8Executor {
    /// Prepares a validated model for this CPU ([`Isa::detect`]).
    pub fn new(model: QuantModel) -> Result<Self, CpuError> {
        Self::with_isa(model, Isa::detect())
    }

    /// Prepares `model` for an instruction set (e.g. [`Isa::scalar`] to test the fallback).
    pub fn with_isa(model: QuantModel, isa: Isa) -> Result<Self, CpuError> {
        model.validate()?;
        let kernel = Int8Kernel::for_isa(isa);
        let layers = Layers::new(kernel, &model)?;
        Ok(Self {
            model,
            isa,
            kernel,
            layers,
            arenas: Mutex::new(Vec::new()),
        })
    }

    /// The instruction set of the loops around the GEMM.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The int8 GEMM microkernel in use.
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    /// The model.
    pub fn model(&self) -> &QuantModel {
        &self.model
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    /// Logits `[B][classes]` for a batch of preprocessed `h`×`w` RGB images in `layout`.
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

    /// Like [`forward`](Self::forward), images one after the other, with the seconds spent
    /// per [`LayerKind`].
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
            .for_each(|(img, logits)| self.image(serial, img, h, w, layout, logits, None));
        let tiled = Ctx {
            isa: self.isa,
            threads,
        };
        let rest = input[whole * per..]
            .chunks(per)
            .zip(out[whole * classes..].chunks_mut(classes));
        rayon::scope(|_| {
            for (img, logits) in rest {
                self.image(tiled, img, h, w, layout, logits, prof.as_deref_mut());
            }
        });
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn image(
        &self,
        ctx: Ctx,
        img: &[f32],
        h: usize,
        w: usize,
        layout: Layout,
        logits: &mut [f32],
        prof: Option<&mut Profile>,
    ) {
        let tiles = DW_TILES_PER_THREAD * ctx.threads;
        let found = {
            let mut pool = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
            let pos = pool
                .iter()
                .position(|a| a.size == (h, w) && a.partial.len() >= tiles * a.sums.len());
            pos.map(|i| pool.swap_remove(i))
        };
        let mut arena = found.unwrap_or_else(|| {
            Arena::new(
                &self.layers,
                h,
                w,
                rayon::current_num_threads().max(ctx.threads),
            )
        });
        self.forward_image(ctx, &mut arena, img, layout, logits, prof);
        let mut pool = self.arenas.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(arena);
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
        let l = &self.layers;
        let (h, w) = a.size;
        let mut lap = |kind: LayerKind, t: Instant| {
            if let Some(p) = prof.as_deref_mut() {
                p.add(kind, t);
            }
        };
        let t = Instant::now();
        let inv = 1.0 / l.input.scale;
        let zp = l.input.zero_point_u8() as f32;
        let planar = layout == Layout::Nchw;
        k8::quantize_image(ctx.isa, img, planar, inv, zp, &mut a.x[..3 * h * w]);
        let (mut h, mut w) = dense(ctx, &l.stem, &a.x, h, w, &mut a.y, None);
        std::mem::swap(&mut a.x, &mut a.y);
        lap(LayerKind::Stem, t);
        for b in &l.blocks {
            (h, w) = block(ctx, a, b, h, w, &mut lap);
            std::mem::swap(&mut a.x, &mut a.y);
        }
        let t = Instant::now();
        let (h, w) = dense(ctx, &l.head, &a.x, h, w, &mut a.m1, None);
        let c = l.head.cout;
        let sums = &mut a.sums[..c];
        sums.fill(0);
        k8::column_sums_u8(ctx.isa, &a.m1[..h * w * c], sums);
        let (scale, zp) = l.head_out;
        let inv_pool = 1.0 / l.pool.scale;
        let zp_pool = l.pool.zero_point_u8() as f32;
        let n = (h * w) as f32;
        for (q, s) in a.pooled.iter_mut().zip(sums.iter()) {
            let mean = scale * (*s as f32 / n - zp as f32);
            *q = k8::round_u8((mean * inv_pool + zp_pool).clamp(0.0, 255.0));
        }
        let acc = &mut a.acc[..];
        k8::gemm(
            &a.pooled,
            l.fc.kp(),
            1,
            &l.fc,
            GemmOut::I32(acc),
            ctx.threads,
        );
        for (((y, acc), m), b) in logits
            .iter_mut()
            .zip(acc.iter())
            .zip(&l.fc_mul)
            .zip(&l.fc_add)
        {
            *y = *acc as f32 * m + b;
        }
        lap(LayerKind::Head, t);
    }
}

/// Runs one block from `a.x` (`h`×`w`) into `a.y`; returns the output size.
fn block(
    ctx: Ctx,
    a: &mut Arena,
    b: &Block,
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
        sums,
        mean,
        hidden,
        gates,
        gate_mul,
        gate_add,
        ..
    } = a;
    let mut cur: &[u8] = &x[..];
    if let Some(c) = &b.conv {
        let t = Instant::now();
        let last = b.dw.is_none() && b.project.is_none();
        let dst = if last && b.add.is_none() {
            &mut *y
        } else {
            &mut *m1
        };
        (h, w) = dense(ctx, c, cur, h, w, dst, None);
        let kind = if c.k > 1 {
            LayerKind::FusedConv
        } else {
            LayerKind::Expand
        };
        lap(kind, t);
        if last {
            if let Some(add) = &b.add {
                let n = h * w * c.cout;
                add_u8(ctx, &m1[..n], &x[..n], add, &mut y[..n]);
            }
            return (h, w);
        }
        cur = &m1[..];
    }
    if let Some(d) = &b.dw {
        let t = Instant::now();
        let g = d.pad.geometry(h, w, d.c, d.k, d.stride);
        let out = &mut m2[..g.oh * g.ow * d.c];
        let want_sums =
            b.se.is_some()
                .then_some((&mut partial[..], &mut sums[..d.c]));
        depthwise(ctx, d, g, cur, out, want_sums);
        (h, w) = (g.oh, g.ow);
        lap(LayerKind::Depthwise, t);
        if let Some(se) = &b.se {
            let t = Instant::now();
            let c = d.c;
            let (s_in, zp_in) = d.out;
            let n = (h * w) as f32;
            for (m, s) in mean[..c].iter_mut().zip(sums.iter()) {
                *m = s_in * (*s as f32 / n - zp_in as f32);
            }
            let f = &se.f32;
            let sq = f.b_reduce.len();
            kernels::se_gates(
                ctx.isa,
                &mean[..c],
                &f.w_reduce,
                &f.b_reduce,
                &f.w_expand,
                &f.b_expand,
                f.act,
                &mut hidden[..sq],
                &mut gates[..c],
            );
            let (s_out, zp_out) = se.out;
            for ((m, ad), g) in gate_mul[..c]
                .iter_mut()
                .zip(&mut gate_add[..c])
                .zip(&gates[..c])
            {
                *m = s_in * g / s_out;
                *ad = zp_out as f32 - zp_in as f32 * *m;
            }
            scale_pixels(ctx, &mut m2[..h * w * c], &gate_mul[..c], &gate_add[..c]);
            lap(LayerKind::SqueezeExcite, t);
        }
        cur = &m2[..];
    }
    if let Some(p) = &b.project {
        let t = Instant::now();
        let res = p.residual.map(|mul| (&x[..], mul));
        (h, w) = dense(ctx, p, cur, h, w, y, res);
        lap(LayerKind::Project, t);
    }
    (h, w)
}

/// `out = round(a·ma + x·mx + offset)` clamped to `u8`, split over the threads.
fn add_u8(ctx: Ctx, a: &[u8], x: &[u8], add: &Add, out: &mut [u8]) {
    let run = |(o, (a, x)): (&mut [u8], (&[u8], &[u8]))| {
        for ((o, a), x) in o.iter_mut().zip(a).zip(x) {
            let y = *a as f32 * add.ma + *x as f32 * add.mx + add.offset;
            *o = k8::round_u8(y.clamp(0.0, 255.0));
        }
    };
    let chunk = out.len().div_ceil(ctx.threads).max(1);
    if ctx.threads > 1 {
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(x.par_chunks(chunk)))
            .for_each(run);
    } else {
        run((out, (a, x)));
    }
}

/// Applies the SE gates' per-channel affine map to every pixel, in row blocks over the threads.
fn scale_pixels(ctx: Ctx, pixels: &mut [u8], mul: &[f32], add: &[f32]) {
    let c = mul.len();
    if ctx.threads > 1 {
        let rows = (pixels.len() / c).div_ceil(ctx.threads).max(1);
        pixels
            .par_chunks_mut(rows * c)
            .for_each(|p| k8::scale_channels_u8(ctx.isa, p, mul, add));
    } else {
        k8::scale_channels_u8(ctx.isa, pixels, mul, add);
    }
}

/// Pixels per GEMM tile.
fn tile_pixels(kdim: usize) -> usize {
    (262_144 / kdim.max(1)).clamp(64, 2048)
}

/// `out` (`total` rows of `row_len` values) cut into `n` tiles of near-equal row counts, each
/// with its first row.
fn split_rows<T>(
    mut out: &mut [T],
    row_len: usize,
    total: usize,
    n: usize,
) -> Vec<(usize, &mut [T])> {
    let mut tiles = Vec::with_capacity(n);
    for i in 0..n {
        let (r0, r1) = (i * total / n, (i + 1) * total / n);
        let (head, rest) = std::mem::take(&mut out).split_at_mut((r1 - r0) * row_len);
        tiles.push((r0, head));
        out = rest;
    }
    tiles
}

/// A dense conv over row tiles (im2col where needed); returns the output size.
fn dense(
    ctx: Ctx,
    c: &Dense,
    input: &[u8],
    h: usize,
    w: usize,
    out: &mut [u8],
    residual: Option<(&[u8], f32)>,
) -> (usize, usize) {
    let g = c.geometry(h, w);
    let pixels = g.oh * g.ow;
    let out = &mut out[..pixels * c.cout];
    let kp = c.packed.kp();
    let small = ctx.threads > 1 && pixels < ctx.threads * 128;
    let gemm_threads = if small { ctx.threads } else { 1 };
    let tile = |oy0: usize, dst: &mut [u8]| {
        let m = dst.len() / c.cout;
        let p0 = oy0 * g.ow;
        let res = residual.map(|(r, mul)| Residual {
            x: &r[p0 * c.cout..(p0 + m) * c.cout],
            mul,
        });
        let go = GemmOut::U8 {
            dst,
            req: &c.req,
            residual: res,
        };
        if c.direct() {
            let lhs = &input[p0 * c.cin..(p0 + m) * c.cin];
            k8::gemm(lhs, c.cin, m, &c.packed, go, gemm_threads);
        } else {
            COL.with_borrow_mut(|col| {
                if col.len() < m * kp {
                    col.resize(m * kp, 0);
                }
                let col = &mut col[..m * kp];
                k8::im2col_u8(ctx.isa, input, g, oy0, m / g.ow, c.zp_in, kp, col);
                k8::gemm(col, kp, m, &c.packed, go, gemm_threads);
            });
        }
    };
    let rows = (tile_pixels(kp) / g.ow).max(1);
    let row_len = g.ow * c.cout;
    if small {
        tile(0, out);
    } else if ctx.threads > 1 {
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

/// Depthwise conv over row tiles; with `sums`, also the channel sums of the `u8` output
/// (per-tile partials in the first buffer, reduced into the second).
fn depthwise(
    ctx: Ctx,
    d: &Dw,
    g: ConvGeom,
    input: &[u8],
    out: &mut [u8],
    sums: Option<(&mut [i32], &mut [i32])>,
) {
    let n = if ctx.threads > 1 {
        (DW_TILES_PER_THREAD * ctx.threads).min(g.oh)
    } else {
        1
    };
    let run = |oy0: usize, dst: &mut [u8], s: Option<&mut [i32]>| {
        k8::depthwise(ctx.isa, &d.weight, input, &d.req, g, oy0, d.zp_in, dst, s);
    };
    let tiles = split_rows(out, g.ow * d.c, g.oh, n);
    match sums {
        Some((partial, total)) => {
            let partial = &mut partial[..n * d.c];
            partial.fill(0);
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
            total.fill(0);
            for p in partial.chunks_exact(d.c) {
                total.iter_mut().zip(p).for_each(|(t, p)| *t += p);
            }
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
