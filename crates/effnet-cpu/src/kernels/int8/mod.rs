//! int8 kernels: the GEMM of the dense convs on unsigned 8-bit activations and signed 8-bit
//! weights with int32 accumulators, requantisation fused into its epilogue, and the depthwise,
//! im2col, input-quantisation and squeeze-excitation gating loops of the int8 executor.
//!
//! Activations are kept as `u8` (the int8 value + 128, so that x86's `vpdpbusd`, which multiplies
//! unsigned by signed bytes, takes them as they are); weights are `i8`, symmetric. A layer's
//! accumulator `Σ a·w` over the unsigned activations becomes the real output by one multiply-add
//! per output channel ([`Requant`]: the input zero point, the bias and both scales folded in),
//! followed by the activation, the residual and the rounding to the output's `u8` — all in
//! registers on the tile that was just computed.
//!
//! One file per instruction set for the GEMM microkernel: [`vnni512`] (AVX-512 VNNI `vpdpbusd`,
//! 12 pixels × 32 channels), [`avx2`] (`vpmaddwd` on 16-bit widened operands, 6 × 16),
//! `neon_dot` (`sdot`, 8 × 16) and [`scalar`]. The other loops are compiled per instruction set
//! by [`multiversion`] like the f32 kernels.

// `x.max(lo).min(hi)` rather than `clamp`: it vectorises, and a NaN becomes `lo` instead of a
// garbage byte.
#![allow(clippy::manual_clamp)]

use std::ops::Range;

use rayon::prelude::*;

use crate::isa::{Isa, fmadd, multiversion};
use crate::kernels::{Act, ConvGeom, exp_fast};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon_dot;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod vnni512;

/// The int8 GEMM microkernel an instruction set runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// Plain loops (any CPU; the reference of the others).
    Scalar,
    /// AVX2: 16-bit widened operands, `vpmaddwd` (x86-64 without AVX-512 VNNI).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd`, 64 multiply-adds per instruction.
    #[cfg(target_arch = "x86_64")]
    Vnni512,
    /// NEON with the dot-product extension: `sdot`.
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

impl Int8Kernel {
    /// The best int8 kernel for `isa` on this CPU (`isa` as [`Isa::detect`] chose it, so that
    /// `EFFNET_CPU_SIMD=scalar|avx2` select the int8 fallbacks too).
    pub fn for_isa(isa: Isa) -> Self {
        match isa.level() {
            #[cfg(target_arch = "x86_64")]
            crate::isa::Level::Avx512
                if is_x86_feature_detected!("avx512vnni")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl") =>
            {
                Int8Kernel::Vnni512
            }
            #[cfg(target_arch = "x86_64")]
            crate::isa::Level::Avx512 | crate::isa::Level::Avx2 => Int8Kernel::Avx2,
            #[cfg(target_arch = "aarch64")]
            crate::isa::Level::Neon if std::arch::is_aarch64_feature_detected!("dotprod") => {
                Int8Kernel::NeonDot
            }
            _ => Int8Kernel::Scalar,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Vnni512 => "avx512-vnni",
            #[cfg(target_arch = "aarch64")]
            Int8Kernel::NeonDot => "neon-dot",
        }
    }

    /// Whether this CPU runs the kernel (kernels of another instruction set can be named, but
    /// weights are only packed for one that runs).
    pub fn supported(self) -> bool {
        match self {
            Int8Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Vnni512 => Int8Kernel::for_isa(Isa::best()) == Int8Kernel::Vnni512,
            #[cfg(target_arch = "aarch64")]
            Int8Kernel::NeonDot => Int8Kernel::for_isa(Isa::best()) == Int8Kernel::NeonDot,
        }
    }

    /// Output channels per packed panel.
    fn panel_width(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Vnni512 => 32,
            _ => 16,
        }
    }
}

/// A `[k][n]` int8 weight matrix packed for one [`Int8Kernel`]: panels of `nr` output channels
/// (zero-padded), each `[kp/4][nr][4]` bytes (four consecutive `k` of a channel side by side,
/// as `vpdpbusd`/`sdot` take them), or for AVX2 `[kp/2][nr][2]` 16-bit pairs. `kp` is `k`
/// rounded up to 4: the activations' rows must be readable (not meaningful) up to `kp`.
#[derive(Clone, Debug)]
pub struct PackedI8 {
    kernel: Int8Kernel,
    k: usize,
    kp: usize,
    n: usize,
    nr: usize,
    bytes: Vec<i8>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pairs: Vec<i16>,
    /// `128·Σ_k w` per (padded) column: the start of NEON's accumulators, which see the
    /// activations as `a − 128`.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    colsum128: Vec<i32>,
}

impl PackedI8 {
    /// Packs row-major `weight[k][n]` for `kernel`.
    ///
    /// # Panics
    /// When this CPU does not run `kernel` ([`Int8Kernel::supported`]).
    pub fn new(kernel: Int8Kernel, weight: &[i8], k: usize, n: usize) -> Self {
        assert!(
            kernel.supported(),
            "the {} int8 kernel does not run on this CPU",
            kernel.name()
        );
        assert_eq!(weight.len(), k * n);
        let nr = kernel.panel_width();
        let kp = k.next_multiple_of(4);
        let panels = n.div_ceil(nr);
        let at = |kk: usize, j: usize| {
            if kk < k && j < n {
                weight[kk * n + j]
            } else {
                0
            }
        };
        let (mut bytes, mut pairs) = (Vec::new(), Vec::new());
        #[cfg(target_arch = "x86_64")]
        let wide = kernel == Int8Kernel::Avx2;
        #[cfg(not(target_arch = "x86_64"))]
        let wide = false;
        if wide {
            pairs.reserve(panels * kp * nr);
            for p in 0..panels {
                for k2 in (0..kp).step_by(2) {
                    for j in p * nr..(p + 1) * nr {
                        pairs.extend([at(k2, j) as i16, at(k2 + 1, j) as i16]);
                    }
                }
            }
        } else {
            bytes.reserve(panels * kp * nr);
            for p in 0..panels {
                for k4 in (0..kp).step_by(4) {
                    for j in p * nr..(p + 1) * nr {
                        bytes.extend((k4..k4 + 4).map(|kk| at(kk, j)));
                    }
                }
            }
        }
        #[cfg_attr(not(target_arch = "aarch64"), allow(unused_mut))]
        let mut colsum128 = vec![0i32; panels * nr];
        #[cfg(target_arch = "aarch64")]
        if kernel == Int8Kernel::NeonDot {
            for (s, c) in colsum128.iter_mut().zip(column_sums_i8(weight, n)) {
                *s = 128 * c;
            }
        }
        Self {
            kernel,
            k,
            kp,
            n,
            nr,
            bytes,
            pairs,
            colsum128,
        }
    }

    /// Depth (input values per output).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Depth rounded up to a multiple of 4: how far each activation row is read.
    pub fn kp(&self) -> usize {
        self.kp
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(self.nr)
    }
}

/// How an int32 accumulator becomes the layer's `u8` output: `y = acc·mul[c] + add[c]`, then
/// [`OutKind`]. `mul`/`add` are zero-padded to whole panels.
#[derive(Clone, Debug)]
pub struct Requant {
    /// Per output channel.
    pub mul: Vec<f32>,
    /// Per output channel.
    pub add: Vec<f32>,
    /// What follows the multiply-add.
    pub out: OutKind,
}

/// The rest of the epilogue after `acc·mul + add`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutKind {
    /// `y` is already in output steps (zero point included): clamped to `[lo, hi]` (inside
    /// `[0, 255]`; ReLU/ReLU6 bounds included) and rounded.
    Clamp {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// `y` is real: `silu(y) · inv_scale + zero_point`, clamped to `[0, 255]`, rounded.
    Silu {
        /// 1 / output scale.
        inv_scale: f32,
        /// Output zero point (`u8`).
        zero_point: f32,
    },
}

/// The most channels of any layer's epilogue arrays are padded to (whole 32-wide panels).
const PAD_TO: usize = 32;

impl Requant {
    /// The epilogue of a layer computing `real = in_scale·w_scale[c]·(acc − zp_in·Σw[c] + bias[c])`
    /// with activation `act` into a tensor of `out_scale`/`out_zp` (`u8` zero point), with the
    /// input's `u8` zero point `zp_in` and the weight column sums `colsum`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_scale: f32,
        zp_in: i32,
        w_scale: &[f32],
        colsum: &[i32],
        bias: &[i32],
        act: Act,
        out_scale: f32,
        out_zp: i32,
    ) -> Self {
        let n = w_scale.len();
        let silu = act == Act::Silu;
        let (mut mul, mut add) = (
            vec![0f32; n.next_multiple_of(PAD_TO)],
            vec![0f32; n.next_multiple_of(PAD_TO)],
        );
        for c in 0..n {
            let s = in_scale as f64 * w_scale[c] as f64;
            let offset = bias[c] as f64 - zp_in as f64 * colsum[c] as f64;
            let (m, a) = if silu {
                (s, s * offset)
            } else {
                (
                    s / out_scale as f64,
                    s * offset / out_scale as f64 + out_zp as f64,
                )
            };
            mul[c] = m as f32;
            add[c] = a as f32;
        }
        let out = if silu {
            OutKind::Silu {
                inv_scale: 1.0 / out_scale,
                zero_point: out_zp as f32,
            }
        } else {
            let zp = out_zp as f32;
            let (lo, hi) = match act {
                Act::Relu => (zp, 255.0),
                Act::Relu6 => (zp, zp + 6.0 / out_scale),
                _ => (0.0, 255.0),
            };
            OutKind::Clamp {
                lo: lo.max(0.0),
                hi: hi.min(255.0),
            }
        };
        Self { mul, add, out }
    }

    /// Adds a residual `real = r_scale·(r − r_zp)` (`u8` zero point) before the rounding: the
    /// returned multiplier applies to the residual's `u8` values, its offset is folded into `add`.
    /// Only for [`OutKind::Clamp`] epilogues without an activation (projections).
    pub fn with_residual(mut self, r_scale: f32, r_zp: i32, out_scale: f32) -> (Self, f32) {
        let m = r_scale / out_scale;
        let n = self.mul.len();
        for a in &mut self.add[..n] {
            *a -= r_zp as f32 * m;
        }
        (self, m)
    }
}

/// A `u8` tensor added to a GEMM's output before its rounding, times `mul`.
#[derive(Clone, Copy)]
pub struct Residual<'a> {
    /// Same shape as the output.
    pub x: &'a [u8],
    /// Multiplier of the `u8` values (their zero point is in the epilogue's `add`).
    pub mul: f32,
}

/// The scalar epilogue of one output value (the reference of the SIMD ones).
#[inline(always)]
pub fn requant_one(acc: i32, mul: f32, add: f32, out: OutKind, res: Option<(u8, f32)>) -> u8 {
    let mut y = acc as f32 * mul + add;
    if let Some((r, m)) = res {
        y += r as f32 * m;
    }
    let y = match out {
        OutKind::Clamp { lo, hi } => y.max(lo).min(hi),
        OutKind::Silu {
            inv_scale,
            zero_point,
        } => {
            let s = y / (1.0 + exp_fast::<false>(-y));
            (s * inv_scale + zero_point).max(0.0).min(255.0)
        }
    };
    round_u8(y)
}

/// 1.5·2^23: adding it rounds an f32 in [0, 2^22) to an integer (ties to even) in the low
/// mantissa bits, a conversion that vectorises (`as` saturates and does not).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `y` (in `[0, 255]`) rounded to the nearest `u8`, ties to even.
#[inline(always)]
pub(crate) fn round_u8(y: f32) -> u8 {
    (y + ROUND_MAGIC)
        .to_bits()
        .wrapping_sub(ROUND_MAGIC.to_bits()) as u8
}

/// Where a GEMM writes.
pub enum GemmOut<'a> {
    /// Requantised `u8`, optionally with a residual.
    U8 {
        /// `m × n` values.
        dst: &'a mut [u8],
        /// The epilogue.
        req: &'a Requant,
        /// Added before rounding.
        residual: Option<Residual<'a>>,
    },
    /// The raw int32 accumulators (`m × n`).
    I32(&'a mut [i32]),
}

/// The output pointer of one GEMM, shared by workers writing disjoint blocks.
#[derive(Clone, Copy)]
pub(crate) enum OutPtr {
    U8(*mut u8),
    I32(*mut i32),
}
// SAFETY: only used by `gemm`, whose workers write disjoint blocks of one buffer.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// One GEMM's operands as the microkernels see them.
pub(crate) struct Job<'a> {
    /// Activations: row `i` at `i·lda`, `kp` bytes readable per row.
    pub lhs: &'a [u8],
    pub lda: usize,
    pub w: &'a PackedI8,
    pub out: OutPtr,
    pub req: Option<&'a Requant>,
    pub residual: Option<Residual<'a>>,
}

impl Job<'_> {
    /// Valid columns of panel `p`.
    pub(crate) fn cols(&self, p: usize) -> usize {
        self.w.nr.min(self.w.n - p * self.w.nr)
    }

    /// Writes the finished accumulators `acc` (`cols` values) of row `i`, panel `p`, with the
    /// scalar epilogue.
    ///
    /// # Safety
    /// Row `i` < m and panel `p` belong to the calling worker.
    pub(crate) unsafe fn store_row(&self, i: usize, p: usize, acc: &[i32]) {
        let n = self.w.n;
        let c0 = p * self.w.nr;
        let cols = self.cols(p);
        match self.out {
            // SAFETY: the caller's contract: inside the m×n output, owned by this worker.
            OutPtr::I32(dst) => unsafe {
                std::ptr::copy_nonoverlapping(acc.as_ptr(), dst.add(i * n + c0), cols)
            },
            OutPtr::U8(dst) => {
                let req = self.req.expect("u8 output has an epilogue");
                for (j, &a) in acc[..cols].iter().enumerate() {
                    let c = c0 + j;
                    let res = self.residual.map(|r| (r.x[i * n + c], r.mul));
                    let v = requant_one(a, req.mul[c], req.add[c], req.out, res);
                    // SAFETY: as above.
                    unsafe { *dst.add(i * n + c) = v };
                }
            }
        }
    }
}

/// `out = lhs[m × k] · W` (the activations' rows `lda` apart, each readable up to `w.kp()`),
/// requantised or raw, on up to `threads` rayon threads (split over rows and panels).
pub fn gemm(lhs: &[u8], lda: usize, m: usize, w: &PackedI8, out: GemmOut<'_>, threads: usize) {
    let n = w.n;
    assert!(m == 0 || (lda >= w.k && lhs.len() >= (m - 1) * lda + w.kp));
    let (ptr, req, residual) = match out {
        GemmOut::U8 { dst, req, residual } => {
            assert_eq!(dst.len(), m * n);
            assert!(req.mul.len() >= n.next_multiple_of(w.nr) && req.add.len() == req.mul.len());
            if let Some(r) = &residual {
                assert_eq!(r.x.len(), m * n);
            }
            (OutPtr::U8(dst.as_mut_ptr()), Some(req), residual)
        }
        GemmOut::I32(dst) => {
            assert_eq!(dst.len(), m * n);
            (OutPtr::I32(dst.as_mut_ptr()), None, None)
        }
    };
    if m == 0 {
        return;
    }
    let job = Job {
        lhs,
        lda,
        w,
        out: ptr,
        req,
        residual,
    };
    let panels = w.panels();
    let run = |(rows, ps): (Range<usize>, Range<usize>)| {
        // SAFETY: the blocks of all workers are disjoint (rows × panels), inside m × n.
        unsafe { run_block(&job, rows, ps) }
    };
    let row_blocks = m.div_ceil(12);
    let parts = threads.min(panels * row_blocks).max(1);
    if parts == 1 {
        run((0..m, 0..panels));
    } else if panels >= parts {
        // Enough panels: each worker takes whole panels over all rows.
        (0..parts)
            .into_par_iter()
            .for_each(|t| run((0..m, t * panels / parts..(t + 1) * panels / parts)));
    } else {
        // Few panels: row blocks of multiples of 12 (every kernel's rows divide it).
        let per = row_blocks.div_ceil(parts.div_ceil(panels)) * 12;
        let blocks: Vec<_> = (0..panels)
            .flat_map(|p| {
                (0..m)
                    .step_by(per)
                    .map(move |i| (i..(i + per).min(m), p..p + 1))
            })
            .collect();
        blocks.into_par_iter().for_each(run);
    }
}

/// Runs the kernel over rows × panels.
///
/// # Safety
/// The block is inside the job's output and no other thread writes it.
unsafe fn run_block(job: &Job<'_>, rows: Range<usize>, panels: Range<usize>) {
    // SAFETY: (all arms) the caller's contract; the kernels were chosen by detection.
    unsafe {
        match job.w.kernel {
            Int8Kernel::Scalar => scalar::run(job, rows, panels),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Avx2 => avx2::run(job, rows, panels),
            #[cfg(target_arch = "x86_64")]
            Int8Kernel::Vnni512 => vnni512::run(job, rows, panels),
            #[cfg(target_arch = "aarch64")]
            Int8Kernel::NeonDot => neon_dot::run(job, rows, panels),
        }
    }
}

/// Column sums `Σ_k w[k][c]` of a row-major `[k][n]` int8 matrix (for the zero-point term).
pub fn column_sums_i8(weight: &[i8], n: usize) -> Vec<i32> {
    let mut s = vec![0i32; n];
    for row in weight.chunks_exact(n) {
        for (s, w) in s.iter_mut().zip(row) {
            *s += *w as i32;
        }
    }
    s
}

multiversion! {
    /// Quantises one image into `u8` NHWC: `q = round(x·inv_scale + zero_point)` clamped to
    /// `[0, 255]`; `img` is `[3][plane]` (NCHW) when `planar`, else already `[plane][3]`.
    pub fn quantize_image(img: &[f32], planar: bool, inv_scale: f32, zero_point: f32, out: &mut [u8]) {
        let plane = out.len() / 3;
        if planar {
            for (p, px) in out.chunks_exact_mut(3).enumerate() {
                for (c, q) in px.iter_mut().enumerate() {
                    // Multiply, then add (no FMA): the same rounding on every instruction set
                    // and in `QParams::quantize`.
                    let y = img[c * plane + p] * inv_scale + zero_point;
                    *q = round_u8(y.max(0.0).min(255.0));
                }
            }
        } else {
            for (q, x) in out.iter_mut().zip(img) {
                *q = round_u8((*x * inv_scale + zero_point).max(0.0).min(255.0));
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the few bytes of an im2col segment (3 to a few hundred): in
/// 16-byte moves and a byte tail instead of a `memcpy` call each.
#[inline(always)]
fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[u8; 16] = s.try_into().expect("16 bytes");
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

multiversion! {
    /// im2col on `u8` for output rows `oy0..oy0 + rows`: each output pixel becomes one row of
    /// `ldc` bytes, `k·k·c` of them ordered (ky, kx, channel) with `pad` (the input's zero
    /// point) where the kernel hangs over the border, the rest up to `ldc` also `pad`.
    pub fn im2col_u8(input: &[u8], g: ConvGeom, oy0: usize, rows: usize, pad: u8, ldc: usize, col: &mut [u8]) {
        let c = g.c;
        let kc = g.k * c;
        let mut dst = col.chunks_exact_mut(ldc);
        for oy in oy0..oy0 + rows {
            for ox in 0..g.ow {
                let Some(row) = dst.next() else { return };
                row[g.k * kc..].fill(pad);
                for ky in 0..g.k {
                    let seg = &mut row[ky * kc..(ky + 1) * kc];
                    let Some(iy) = g.tap(oy, ky, g.pad_top, g.h) else {
                        seg.fill(pad);
                        continue;
                    };
                    // The whole kernel row inside the image: one run of k·c bytes.
                    let ix0 = (ox * g.stride).wrapping_sub(g.pad_left);
                    if ox * g.stride >= g.pad_left && ix0 + g.k <= g.w {
                        copy_bytes(seg, &input[(iy * g.w + ix0) * c..][..kc]);
                        continue;
                    }
                    for kx in 0..g.k {
                        let px = &mut seg[kx * c..(kx + 1) * c];
                        match g.tap(ox, kx, g.pad_left, g.w) {
                            Some(ix) => copy_bytes(px, &input[(iy * g.w + ix) * c..][..c]),
                            None => px.fill(pad),
                        }
                    }
                }
            }
        }
    }
}

/// An int8 depthwise conv's weights `[k·k][c]`, and for AVX-512 VNNI also spread over int32
/// lanes as its kernel takes them (`vnni512::widen_dw_weights`).
#[derive(Clone, Debug)]
pub struct DwWeights {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    kernel: Int8Kernel,
    k: usize,
    c: usize,
    bytes: Vec<i8>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    dwords: Vec<i32>,
}

impl DwWeights {
    /// Prepares `[k·k][c]` weights for `kernel`.
    pub fn new(kernel: Int8Kernel, weight: &[i8], k: usize, c: usize) -> Self {
        assert_eq!(weight.len(), k * k * c);
        #[cfg(target_arch = "x86_64")]
        let dwords = if kernel == Int8Kernel::Vnni512 {
            vnni512::widen_dw_weights(weight, k * k, c)
        } else {
            Vec::new()
        };
        #[cfg(not(target_arch = "x86_64"))]
        let dwords = Vec::new();
        Self {
            kernel,
            k,
            c,
            bytes: weight.to_vec(),
            dwords,
        }
    }
}

/// int8 depthwise conv (see [`depthwise_u8`]) with the fastest kernel `w` was prepared for.
#[allow(clippy::too_many_arguments)]
pub fn depthwise(
    isa: Isa,
    w: &DwWeights,
    input: &[u8],
    req: &Requant,
    g: ConvGeom,
    oy0: usize,
    pad: u8,
    out: &mut [u8],
    sums: Option<&mut [i32]>,
) {
    assert!(g.k == w.k && g.c == w.c);
    #[cfg(target_arch = "x86_64")]
    if w.kernel == Int8Kernel::Vnni512 && Int8Kernel::for_isa(isa) == Int8Kernel::Vnni512 {
        // SAFETY: VNNI was detected (`for_isa`); the weights were widened for it and the
        // epilogue arrays are padded to 32 channels (`Requant::new`).
        unsafe { vnni512::depthwise(input, &w.dwords, req, &g, oy0, pad, out, sums) };
        return;
    }
    depthwise_u8(isa, input, &w.bytes, req, g, oy0, pad, out, sums);
}

/// Channels per register block of the int8 depthwise kernel.
const DW_BLOCK: usize = 32;

/// Depthwise int32 sums of channels `c0..c0 + B` of output pixel (`oy`, `ox`): taps over the
/// border read `pad` (the input's zero point, i.e. real 0).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dw_sums<const B: usize>(
    input: &[u8],
    weight: &[i8],
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    c0: usize,
    width: usize,
    pad: u8,
) -> [i32; B] {
    let c = g.c;
    let mut acc = [0i32; B];
    for ky in 0..g.k {
        let iy = g.tap(oy, ky, g.pad_top, g.h);
        for kx in 0..g.k {
            let wt = &weight[(ky * g.k + kx) * c + c0..][..width];
            match (iy, g.tap(ox, kx, g.pad_left, g.w)) {
                (Some(iy), Some(ix)) => {
                    let x = &input[(iy * g.w + ix) * c + c0..][..width];
                    for ((a, x), w) in acc.iter_mut().zip(x).zip(wt) {
                        *a += *x as i32 * *w as i32;
                    }
                }
                _ => {
                    for (a, w) in acc.iter_mut().zip(wt) {
                        *a += pad as i32 * *w as i32;
                    }
                }
            }
        }
    }
    acc
}

multiversion! {
    /// int8 depthwise k×k conv for output rows `oy0..oy0 + out.len()/(ow·c)` with the
    /// requantisation `req` (per channel), adding each channel's sum of the `u8` outputs to
    /// `sums` (for squeeze-excitation). `weight` is `[k·k][c]`, `input` the whole image, `pad`
    /// its `u8` zero point.
    pub fn depthwise_u8(
        input: &[u8],
        weight: &[i8],
        req: &Requant,
        g: ConvGeom,
        oy0: usize,
        pad: u8,
        out: &mut [u8],
        sums: Option<&mut [i32]>,
    ) {
        let c = g.c;
        let mut sums = sums;
        for (r, orow) in out.chunks_exact_mut(g.ow * c).enumerate() {
            let oy = oy0 + r;
            for (ox, opix) in orow.chunks_exact_mut(c).enumerate() {
                let mut c0 = 0;
                while c0 < c {
                    let width = DW_BLOCK.min(c - c0);
                    let acc = dw_sums::<DW_BLOCK>(input, weight, &g, oy, ox, c0, width, pad);
                    let dst = &mut opix[c0..c0 + width];
                    let (mul, add) = (&req.mul[c0..c0 + width], &req.add[c0..c0 + width]);
                    requant_block::<FMA>(&acc[..width], mul, add, req.out, dst);
                    c0 += width;
                }
                if let Some(s) = sums.as_deref_mut() {
                    for (s, y) in s.iter_mut().zip(opix.iter()) {
                        *s += *y as i32;
                    }
                }
            }
        }
    }
}

/// The epilogue of a row of accumulators (vectorisable form of [`requant_one`]).
#[inline(always)]
fn requant_block<const FMA: bool>(
    acc: &[i32],
    mul: &[f32],
    add: &[f32],
    out: OutKind,
    dst: &mut [u8],
) {
    match out {
        OutKind::Clamp { lo, hi } => {
            for (((d, a), m), b) in dst.iter_mut().zip(acc).zip(mul).zip(add) {
                *d = round_u8(fmadd::<FMA>(*a as f32, *m, *b).max(lo).min(hi));
            }
        }
        OutKind::Silu {
            inv_scale,
            zero_point,
        } => {
            for (((d, a), m), b) in dst.iter_mut().zip(acc).zip(mul).zip(add) {
                let y = fmadd::<FMA>(*a as f32, *m, *b);
                let s = y / (1.0 + exp_fast::<FMA>(-y));
                *d = round_u8(fmadd::<FMA>(s, inv_scale, zero_point).max(0.0).min(255.0));
            }
        }
    }
}

multiversion! {
    /// `q = round(x·mul[c] + add[c])` clamped to `[0, 255]` for every `mul.len()`-wide row of
    /// `pixels`, in place: the squeeze-excitation gate (`mul` = input scale · gate / output
    /// scale) applied to the depthwise output.
    pub fn scale_channels_u8(pixels: &mut [u8], mul: &[f32], add: &[f32]) {
        for row in pixels.chunks_exact_mut(mul.len()) {
            for ((q, m), a) in row.iter_mut().zip(mul).zip(add) {
                *q = round_u8(fmadd::<FMA>(*q as f32, *m, *a).max(0.0).min(255.0));
            }
        }
    }
}

multiversion! {
    /// Adds every `sums.len()`-wide row of `rows` into `sums`.
    pub fn column_sums_u8(rows: &[u8], sums: &mut [i32]) {
        let c = sums.len();
        for row in rows.chunks_exact(c) {
            for (s, y) in sums.iter_mut().zip(row) {
                *s += *y as i32;
            }
        }
    }
}

#[cfg(test)]
mod tests;
