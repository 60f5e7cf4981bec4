//! Matrix products of the dense convs.
//!
//! On x86-64 with AVX2+FMA or AVX-512 the executor's own GEMM runs on weights packed once when
//! the executor is built ([`Packed`]): panels of `NR` output channels, `k` rows each, zero-padded
//! to whole panels and 64-byte aligned. The activations (`lhs`, row-major pixels × channels) are
//! read in place. A register-blocked microkernel computes `MR` pixels × `NR` channels, starting
//! from the bias, blocked over `k` for L1; the activation and residual are applied to each tile
//! right after its last store, while it is in L1. Elsewhere (NEON) the `gemm` crate runs on the
//! unpacked weights, and the portable fallback is a plain loop.

// The packed microkernels exist for x86-64 only; elsewhere (NEON, wasm32) the plain and
// `gemm`-crate paths run and the packing code is compiled but unused.
#![cfg_attr(
    not(target_arch = "x86_64"),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::ops::Range;

use rayon::prelude::*;

use crate::isa::{Isa, Level};
use crate::kernels::{self, Act};

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, all row-major, on up to `threads` rayon threads (the
/// path for instruction sets without a packed microkernel).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    isa: Isa,
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) {
    assert!(dst.len() == m * n && lhs.len() == m * k && rhs.len() >= k * n);
    if isa.is_scalar() {
        kernels::matmul_plain(isa, dst, lhs, &rhs[..k * n], k, n);
        return;
    }
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the slices hold m×n, m×k and k×n row-major values (checked above), and the
    // strides below describe exactly those layouts; dst does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Output channels per packed panel for `isa`, or `None` when it has no packed microkernel.
pub(crate) fn panel_width(isa: Isa) -> Option<usize> {
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => Some(32),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => Some(16),
        _ => None,
    }
}

/// Widest panel of any microkernel (for sizing scratch buffers).
pub(crate) const MAX_NR: usize = 32;

/// Floats per 64-byte cache line: packed panels start on a line.
const ALIGN: usize = 16;

/// Index of the first 64-byte-aligned float in `v`.
fn aligned_start(v: &[f32]) -> usize {
    v.as_ptr().align_offset(64).min(ALIGN)
}

/// Width of panel `p` of an `n`-column matrix packed in panels of `nr`: `nr`, except that
/// the last is only half as wide when the columns left fit in half a panel (so that e.g. 40
/// channels cost 32 + 16, not 64).
fn width(p: usize, n: usize, nr: usize) -> usize {
    let left = n - p * nr;
    if left <= nr / 2 { nr / 2 } else { nr }
}

/// Packed floats of a `[k][n]` matrix in panels of `nr`.
fn data_len(k: usize, n: usize, nr: usize) -> usize {
    let panels = n.div_ceil(nr);
    (panels - 1) * k * nr + k * width(panels - 1, n, nr)
}

/// A `[k][n]` weight matrix and its bias packed into panels of `nr` columns (panel `p` at
/// `p·k·nr`, row-major `[k][width]`) for one instruction set's microkernel.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    k: usize,
    n: usize,
    nr: usize,
    /// `ALIGN` spare floats, then `panels × k × nr` values from [`aligned_start`].
    data: Vec<f32>,
    /// `panels × nr` (zero-padded).
    bias: Vec<f32>,
}

/// A borrowed view of packed weights (the executor's own or SE-scaled scratch).
#[derive(Clone, Copy)]
pub(crate) struct PackedRef<'a> {
    k: usize,
    n: usize,
    nr: usize,
    data: &'a [f32],
    bias: &'a [f32],
}

impl Packed {
    /// Packs row-major `weight[k][n]` and `bias[n]` for `isa`; `None` without a microkernel.
    pub(crate) fn new(isa: Isa, weight: &[f32], bias: &[f32], k: usize, n: usize) -> Option<Self> {
        let nr = panel_width(isa)?;
        assert!(weight.len() == k * n && bias.len() == n);
        let panels = n.div_ceil(nr);
        let mut data = vec![0f32; Self::buffer_len(k, n, nr)];
        let start = aligned_start(&data);
        for p in 0..panels {
            let cols = p * nr..(p * nr + nr).min(n);
            let wp = width(p, n, nr);
            for kk in 0..k {
                let dst = &mut data[start + p * k * nr + kk * wp..][..cols.len()];
                dst.copy_from_slice(&weight[kk * n..][cols.clone()]);
            }
        }
        let mut padded = vec![0f32; panels * nr];
        padded[..n].copy_from_slice(bias);
        Some(Self {
            k,
            n,
            nr,
            data,
            bias: padded,
        })
    }

    /// Floats a buffer needs to hold a packed `[k][n]` matrix (alignment slack included).
    pub(crate) fn buffer_len(k: usize, n: usize, nr: usize) -> usize {
        data_len(k, n, nr) + ALIGN
    }

    /// Borrowed view.
    pub(crate) fn view(&self) -> PackedRef<'_> {
        let start = aligned_start(&self.data);
        PackedRef {
            k: self.k,
            n: self.n,
            nr: self.nr,
            data: &self.data[start..start + data_len(self.k, self.n, self.nr)],
            bias: &self.bias,
        }
    }

    /// Writes these weights with row `kk` scaled by `gates[kk]` into `scratch` (at least
    /// [`buffer_len`](Self::buffer_len) floats) and returns the view of the result: the SE
    /// gate folded into the projection. Panels are split over `threads` (at batch 1 this
    /// copy is as long as a 7×7 layer's GEMM is short).
    pub(crate) fn scaled<'a>(
        &'a self,
        isa: Isa,
        gates: &[f32],
        scratch: &'a mut [f32],
        threads: usize,
    ) -> PackedRef<'a> {
        assert_eq!(gates.len(), self.k);
        let src = self.view();
        let len = src.data.len();
        let start = aligned_start(scratch);
        let dst = &mut scratch[start..start + len];
        let stride = self.k * self.nr;
        // Every panel is `stride` floats but the last, which may be half as wide.
        let scale = |(p, (d, s)): (usize, (&mut [f32], &[f32]))| {
            kernels::scale_rows(isa, d, s, gates, width(p, self.n, self.nr));
        };
        if threads > 1 {
            let panels = dst.par_chunks_mut(stride).zip(src.data.par_chunks(stride));
            panels.enumerate().for_each(scale);
        } else {
            let panels = dst.chunks_mut(stride).zip(src.data.chunks(stride));
            panels.enumerate().for_each(scale);
        }
        PackedRef { data: dst, ..src }
    }
}

impl PackedRef<'_> {
    /// Number of output-channel panels.
    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(self.nr)
    }
}

/// What happens to a finished output tile.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// Activation after the bias.
    pub act: Act,
    /// Added after the activation; row-major like the output.
    pub residual: Option<&'a [f32]>,
}

/// The output pointer shared by threads that write disjoint column panels.
#[derive(Clone, Copy)]
struct DstPtr(*mut f32);
// SAFETY: only used by `gemm_packed`, whose workers write disjoint panels of one buffer.
unsafe impl Send for DstPtr {}
// SAFETY: as above.
unsafe impl Sync for DstPtr {}

impl DstPtr {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst[m×n] = act(lhs[m×k] · W + bias) (+ residual)` with packed `w`; `lhs` rows are `lda`
/// apart. With `threads > 1` the column panels are split over rayon threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(
    isa: Isa,
    dst: &mut [f32],
    lhs: &[f32],
    lda: usize,
    m: usize,
    w: PackedRef<'_>,
    epi: Epilogue<'_>,
    threads: usize,
) {
    let (k, n) = (w.k, w.n);
    assert!(m == 0 || (lda >= k && lhs.len() >= (m - 1) * lda + k));
    assert_eq!(dst.len(), m * n);
    if let Some(r) = epi.residual {
        assert_eq!(r.len(), m * n);
    }
    if m == 0 {
        return;
    }
    let panels = w.panels();
    let ptr = DstPtr(dst.as_mut_ptr());
    let run = |(rows, range): Block| {
        let epi = Epilogue {
            residual: epi.residual.map(|r| &r[rows.start * n..rows.end * n]),
            ..epi
        };
        // SAFETY: `dst` holds m×n values (checked above) and outlives this call; the blocks
        // of all workers are disjoint (`Split`), so no element is written twice at once, and
        // `rows` is inside `0..m`, so the offset pointer and `lhs` rows stay in bounds.
        unsafe {
            let dst = ptr.get().add(rows.start * n);
            let lhs = &lhs[rows.start * lda..];
            run_panels(isa, dst, lhs, lda, rows.len(), w, epi, range)
        }
    };
    let parts = threads.min(panels * m.div_ceil(SPLIT_ROWS)).max(1);
    if parts == 1 {
        run((0..m, 0..panels));
    } else {
        let split = Split::new(w, m, parts);
        (0..parts)
            .into_par_iter()
            .for_each(|t| split.blocks(t).into_iter().flatten().for_each(run));
    }
}

/// Rows of a panel split between two workers come in multiples of this (of every `MR`).
const SPLIT_ROWS: usize = 12;

/// Output rows × column panels that one worker computes.
type Block = (Range<usize>, Range<usize>);

/// Equal shares of a product's work for `parts` workers. The work is laid out panel after
/// panel, each `m` rows × its width, and cut into `parts` equal lengths; a cut inside a panel
/// falls on a multiple of [`SPLIT_ROWS`]. Whole panels alone would leave e.g. 5 panels (160
/// channels) at 3 + 2 on two threads; halves of one panel balance them at the price of
/// reading its weights twice.
struct Split {
    m: usize,
    parts: usize,
    /// Column offset of each panel, and of the end (`panels + 1` entries).
    starts: Vec<usize>,
}

impl Split {
    fn new(w: PackedRef<'_>, m: usize, parts: usize) -> Self {
        let panels = w.panels();
        let mut starts: Vec<usize> = (0..panels).map(|p| p * w.nr).collect();
        starts.push(starts[panels - 1] + width(panels - 1, w.n, w.nr));
        Self { m, parts, starts }
    }

    /// Where the work of the first `t` workers ends, as (panel, row).
    fn cut(&self, t: usize) -> (usize, usize) {
        let total = self.starts[self.starts.len() - 1] * self.m;
        let at = total * t / self.parts;
        let p = self.starts.partition_point(|&s| s * self.m <= at) - 1;
        if p + 1 == self.starts.len() {
            return (p, 0);
        }
        // `off` column-rows into panel p: the nearest allowed row (a multiple of SPLIT_ROWS,
        // or the end).
        let wp = self.starts[p + 1] - self.starts[p];
        let off = at - self.starts[p] * self.m;
        let down = off / wp / SPLIT_ROWS * SPLIT_ROWS;
        let up = (down + SPLIT_ROWS).min(self.m);
        let rows = if off - down * wp <= up * wp - off {
            down
        } else {
            up
        };
        if rows >= self.m {
            (p + 1, 0)
        } else {
            (p, rows)
        }
    }

    /// Worker `t`'s blocks: the tail of a cut panel, whole panels, the head of a cut panel.
    fn blocks(&self, t: usize) -> [Option<Block>; 3] {
        let ((p0, r0), (p1, r1)) = (self.cut(t), self.cut(t + 1));
        let m = self.m;
        if p0 == p1 {
            return [(r0 < r1).then_some((r0..r1, p0..p0 + 1)), None, None];
        }
        let full = if r0 > 0 { p0 + 1 } else { p0 };
        [
            (r0 > 0).then_some((r0..m, p0..p0 + 1)),
            (full < p1).then_some((0..m, full..p1)),
            (r1 > 0).then_some((0..r1, p1..p1 + 1)),
        ]
    }
}

/// Pixels per L2 block of `lhs` (a multiple of every `MR`).
const MC: usize = 144;
/// Depth per L1 block: a 32-wide panel slice is `KC × 128` bytes.
const KC: usize = 256;

/// Runs the microkernels over `panels` of the output.
///
/// # Safety
/// `dst` must point to `m × w.n` writable floats that nothing else accesses meanwhile except
/// other calls on disjoint panel ranges; `isa` must have a packed microkernel matching `w`.
#[allow(clippy::too_many_arguments)]
unsafe fn run_panels(
    isa: Isa,
    dst: *mut f32,
    lhs: &[f32],
    lda: usize,
    m: usize,
    w: PackedRef<'_>,
    epi: Epilogue<'_>,
    panels: Range<usize>,
) {
    let job = Job {
        dst,
        lhs,
        lda,
        m,
        w,
        epi,
        panels,
    };
    match isa.level() {
        // SAFETY: AVX-512 was detected when the `Isa` was made; the caller's contract covers
        // `dst`.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::avx512(&job) },
        // SAFETY: as above, for AVX2+FMA.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::avx2(&job) },
        _ => unreachable!("no packed microkernel for {}", isa.name()),
    }
}

/// One call's operands, as the ISA-specific drivers see them.
struct Job<'a> {
    dst: *mut f32,
    lhs: &'a [f32],
    lda: usize,
    m: usize,
    w: PackedRef<'a>,
    epi: Epilogue<'a>,
    panels: Range<usize>,
}

/// Where one microkernel call starts and what it covers.
struct Tile {
    /// First pixel.
    i: usize,
    /// Column panel.
    p: usize,
    /// First `k` of this depth block and its length.
    k0: usize,
    kc: usize,
}

impl Job<'_> {
    /// Calls `tile` for every (pixel block, depth block, panel, MR rows) in cache order.
    #[inline(always)]
    fn for_each_tile(&self, mr: usize, mut tile: impl FnMut(&Tile, usize)) {
        let k = self.w.k;
        for i0 in (0..self.m).step_by(MC) {
            let mc = MC.min(self.m - i0);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                for p in self.panels.clone() {
                    let mut i = i0;
                    while i < i0 + mc {
                        let rows = mr.min(i0 + mc - i);
                        tile(&Tile { i, p, k0, kc }, rows);
                        i += rows;
                    }
                }
            }
        }
    }

    /// Valid columns of panel `p`.
    fn cols(&self, p: usize) -> usize {
        self.w.nr.min(self.w.n - p * self.w.nr)
    }

    /// Applies the activation and residual to `rows` finished rows of panel `p` from pixel `i`.
    ///
    /// # Safety
    /// As for [`run_panels`]; the rows must be in range.
    #[inline(always)]
    unsafe fn finish<const FMA: bool>(&self, t: &Tile, rows: usize) {
        let (n, nr) = (self.w.n, self.w.nr);
        let cols = self.cols(t.p);
        for r in 0..rows {
            let at = (t.i + r) * n + t.p * nr;
            // SAFETY: `at + cols <= m × n` (row in range, panel columns inside n), and this
            // thread owns panel `p`.
            let row = unsafe { std::slice::from_raw_parts_mut(self.dst.add(at), cols) };
            let res = self.epi.residual.map(|res| &res[at..at + cols]);
            kernels::act_residual::<FMA>(row, self.epi.act, res);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86-64 microkernels: AVX-512 (12 pixels × 32 channels, 24 zmm accumulators) and
    //! AVX2+FMA (6 pixels × 16 channels, 12 ymm accumulators).

    use std::arch::x86_64::*;

    use super::{Job, Tile};
    use crate::kernels::Act;

    /// Calls `$kernel::<R>` for the `R = $rows` given at run time (1..=MR).
    macro_rules! by_rows {
        ($rows:expr, $kernel:ident::<_, $w:literal> $args:tt; $($r:literal)*) => {
            match $rows {
                $($r => $kernel::<$r, $w> $args,)*
                _ => unreachable!(),
            }
        };
    }

    /// Drives the AVX-512 microkernel over a job.
    ///
    /// # Safety
    /// AVX-512F must be available; the job's `dst` as in `run_panels`.
    pub(super) unsafe fn avx512(job: &Job<'_>) {
        // SAFETY: the caller's contract; every tile is inside the job.
        job.for_each_tile(12, |t, rows| unsafe { step512(job, t, rows) });
    }

    /// One AVX-512 microkernel call and, after the last depth block, the epilogue.
    ///
    /// # Safety
    /// AVX-512F; `t` and `rows` inside the job.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn step512(job: &Job<'_>, t: &Tile, rows: usize) {
        let cols = job.cols(t.p);
        let m0 = lane_mask16(cols);
        let m1 = lane_mask16(cols.saturating_sub(16));
        // SAFETY: the caller's contract.
        unsafe {
            if cols > 16 {
                by_rows!(rows, tile512::<_, 2>(job, t, m0, m1); 1 2 3 4 5 6 7 8 9 10 11 12);
            } else {
                by_rows!(rows, tile512::<_, 1>(job, t, m0, m1); 1 2 3 4 5 6 7 8 9 10 11 12);
            }
            // ReLU/ReLU6/identity and the residual were applied in registers by the tile.
            if t.k0 + t.kc == job.w.k && job.epi.act == Act::Silu {
                job.finish::<true>(t, rows);
            }
        }
    }

    /// Mask of the first `n` (≤ 16) lanes.
    #[inline(always)]
    fn lane_mask16(n: usize) -> __mmask16 {
        if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
    }

    /// `R` pixels × 32 channels over one depth block: starts from the bias on the first block,
    /// from the stored partial sums otherwise; stores the valid lanes (`m0`, `m1`).
    ///
    /// # Safety
    /// AVX-512F; rows `t.i..t.i + R` < m, panel `t.p` and depth block inside the job.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn tile512<const R: usize, const W: usize>(
        job: &Job<'_>,
        t: &Tile,
        m0: __mmask16,
        m1: __mmask16,
    ) {
        let (n, k, lda) = (job.w.n, job.w.k, job.lda);
        let masks = [m0, m1];
        // SAFETY (whole body): `dst` rows t.i..t.i+R of m and columns p·32.. are inside the
        // m×n output or masked off; `lhs` rows t.i..t.i+R hold k0+kc ≤ k values each at lda
        // apart (checked by `gemm_packed`); panel p starts at p·k·32 floats from a 64-byte
        // aligned start and is `W`·16 wide (`width`); the bias has 32 per panel; the
        // residual has the output's m×n shape (checked by `gemm_packed`), read masked alike.
        unsafe {
            let c = job.dst.add(t.i * n + t.p * 32);
            let b = job.w.data.as_ptr().add(t.p * k * 32 + t.k0 * W * 16);
            let a = job.lhs.as_ptr().add(t.i * lda + t.k0);
            let mut acc = [[_mm512_setzero_ps(); W]; R];
            if t.k0 == 0 {
                let bias = job.w.bias.as_ptr().add(t.p * 32);
                let bv: [__m512; W] = std::array::from_fn(|v| _mm512_loadu_ps(bias.add(16 * v)));
                acc.iter_mut().for_each(|r| *r = bv);
            } else {
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_maskz_loadu_ps(masks[v], c.add(r * n + 16 * v));
                    }
                }
            }
            for kk in 0..t.kc {
                let bv: [__m512; W] =
                    std::array::from_fn(|v| _mm512_load_ps(b.add((kk * W + v) * 16)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(r * lda + kk));
                    for (acc, bv) in acc.iter_mut().zip(&bv) {
                        *acc = _mm512_fmadd_ps(av, *bv, *acc);
                    }
                }
            }
            if t.k0 + t.kc == k && job.epi.act != Act::Silu {
                // Last depth block: clamp and add the residual before the only store (SiLU
                // is left to `finish`: its polynomial would crowd out the accumulators).
                let (lo, hi) = match job.epi.act {
                    Act::Relu => (0.0, f32::INFINITY),
                    Act::Relu6 => (0.0, 6.0),
                    _ => (f32::NEG_INFINITY, f32::INFINITY),
                };
                if job.epi.act != Act::None {
                    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
                    for acc in acc.iter_mut() {
                        for acc in acc.iter_mut() {
                            *acc = _mm512_min_ps(_mm512_max_ps(*acc, lo), hi);
                        }
                    }
                }
                if let Some(res) = job.epi.residual {
                    let res = res.as_ptr().add(t.i * n + t.p * 32);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        for (v, acc) in acc.iter_mut().enumerate() {
                            let x = _mm512_maskz_loadu_ps(masks[v], res.add(r * n + 16 * v));
                            *acc = _mm512_add_ps(*acc, x);
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(c.add(r * n + 16 * v), masks[v], *acc);
                }
            }
        }
    }

    /// Drives the AVX2 microkernel over a job.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; the job's `dst` as in `run_panels`.
    pub(super) unsafe fn avx2(job: &Job<'_>) {
        // SAFETY: the caller's contract; every tile is inside the job.
        job.for_each_tile(6, |t, rows| unsafe { step256(job, t, rows) });
    }

    /// One AVX2 microkernel call and, after the last depth block, the epilogue.
    ///
    /// # Safety
    /// AVX2+FMA; `t` and `rows` inside the job.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn step256(job: &Job<'_>, t: &Tile, rows: usize) {
        let cols = job.cols(t.p);
        let m0 = lane_mask8(cols);
        let m1 = lane_mask8(cols.saturating_sub(8));
        // SAFETY: the caller's contract.
        unsafe {
            if cols > 8 {
                by_rows!(rows, tile256::<_, 2>(job, t, m0, m1); 1 2 3 4 5 6);
            } else {
                by_rows!(rows, tile256::<_, 1>(job, t, m0, m1); 1 2 3 4 5 6);
            }
            if t.k0 + t.kc == job.w.k {
                job.finish::<true>(t, rows);
            }
        }
    }

    /// Mask of the first `n` (≤ 8) lanes, as `maskload`/`maskstore` want it.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lane_mask8(n: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes)
    }

    /// `R` pixels × 16 channels over one depth block (see [`tile512`]).
    ///
    /// # Safety
    /// AVX2+FMA; rows `t.i..t.i + R` < m, panel `t.p` and depth block inside the job.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile256<const R: usize, const W: usize>(
        job: &Job<'_>,
        t: &Tile,
        m0: __m256i,
        m1: __m256i,
    ) {
        let (n, k, lda) = (job.w.n, job.w.k, job.lda);
        let masks = [m0, m1];
        // SAFETY (whole body): as in `tile512`, with 16-wide panels of `W` vectors of 8.
        unsafe {
            let c = job.dst.add(t.i * n + t.p * 16);
            let b = job.w.data.as_ptr().add(t.p * k * 16 + t.k0 * W * 8);
            let a = job.lhs.as_ptr().add(t.i * lda + t.k0);
            let mut acc = [[_mm256_setzero_ps(); W]; R];
            if t.k0 == 0 {
                let bias = job.w.bias.as_ptr().add(t.p * 16);
                let bv: [__m256; W] = std::array::from_fn(|v| _mm256_loadu_ps(bias.add(8 * v)));
                acc.iter_mut().for_each(|r| *r = bv);
            } else {
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_maskload_ps(c.add(r * n + 8 * v), masks[v]);
                    }
                }
            }
            for kk in 0..t.kc {
                let bv: [__m256; W] =
                    std::array::from_fn(|v| _mm256_load_ps(b.add((kk * W + v) * 8)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*a.add(r * lda + kk));
                    for (acc, bv) in acc.iter_mut().zip(&bv) {
                        *acc = _mm256_fmadd_ps(av, *bv, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, acc) in acc.iter().enumerate() {
                    _mm256_maskstore_ps(c.add(r * n + 8 * v), masks[v], *acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn reference(
        lhs: &[f32],
        lda: usize,
        w: &[f32],
        bias: &[f32],
        m: usize,
        k: usize,
        act: Act,
        res: Option<&[f32]>,
    ) -> Vec<f32> {
        let n = bias.len();
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias[j] as f64;
                for t in 0..k {
                    s += lhs[i * lda + t] as f64 * w[t * n + j] as f64;
                }
                let y = kernels::act_reference(s as f32, act);
                out[i * n + j] = y + res.map_or(0.0, |r| r[i * n + j]);
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1999) as f32 - 999.0) / 700.0)
            .collect()
    }

    #[test]
    fn packed_gemm_matches_reference_for_odd_sizes_acts_residual_and_threads() {
        let isas: Vec<Isa> = [Some(Isa::best()), Isa::avx2()]
            .into_iter()
            .flatten()
            .collect();
        for isa in isas.into_iter().filter(|i| panel_width(*i).is_some()) {
            for (m, k, n, lda) in [
                (1, 1, 1, 1),
                (13, 7, 5, 9),
                (29, 300, 40, 300),
                (150, 27, 33, 27),
                (7, 600, 1000, 611),
                (300, 64, 24, 64),
                (37, 70, 80, 70),
                (50, 300, 64, 301),
                (20, 30, 48, 30),
            ] {
                for (act, with_res) in [
                    (Act::Silu, false),
                    (Act::None, true),
                    (Act::Relu6, false),
                    (Act::Relu, true),
                ] {
                    let lhs = values((m - 1) * lda + k, 1);
                    let w = values(k * n, 2);
                    let bias = values(n, 3);
                    let res = with_res.then(|| values(m * n, 4));
                    let want = reference(&lhs, lda, &w, &bias, m, k, act, res.as_deref());
                    let packed = Packed::new(isa, &w, &bias, k, n).unwrap();
                    for threads in [1, 2, 3] {
                        let mut out = vec![f32::NAN; m * n];
                        let epi = Epilogue {
                            act,
                            residual: res.as_deref(),
                        };
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        pool.install(|| {
                            gemm_packed(isa, &mut out, &lhs, lda, m, packed.view(), epi, threads)
                        });
                        let d = out
                            .iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                            .fold(0.0, f32::max);
                        let what = format!("{} m{m} k{k} n{n} {act:?} t{threads}", isa.name());
                        assert!(d < 2e-5, "{what}: {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn split_balances_panels_over_rows() {
        let isa = Isa::best();
        if panel_width(isa) != Some(32) {
            return;
        }
        // 160 channels = 5 panels of 32 on 2 threads: 2.5 panels each, the cut at row 96.
        let (k, n, m) = (8, 160, 196);
        let packed = Packed::new(isa, &values(k * n, 1), &values(n, 2), k, n).unwrap();
        let split = Split::new(packed.view(), m, 2);
        let cells = |t| -> usize {
            let blocks = split.blocks(t).into_iter().flatten();
            blocks.map(|(r, p)| r.len() * p.len()).sum()
        };
        assert_eq!((cells(0), cells(1)), (2 * m + 96, 2 * m + 100));
        assert_eq!(split.blocks(1)[0], Some((96..m, 2..3)));
    }

    #[test]
    fn scaled_packed_weights_equal_packing_scaled_weights() {
        for isa in [Isa::best(), Isa::avx2().unwrap_or(Isa::best())] {
            let (k, n) = (37, 45);
            let w = values(k * n, 5);
            let bias = values(n, 6);
            let gates = values(k, 7);
            let Some(packed) = Packed::new(isa, &w, &bias, k, n) else {
                continue;
            };
            let mut scaled_w = w.clone();
            for (row, g) in scaled_w.chunks_exact_mut(n).zip(&gates) {
                row.iter_mut().for_each(|v| *v *= g);
            }
            let want = Packed::new(isa, &scaled_w, &bias, k, n).unwrap();
            let mut scratch = vec![0f32; Packed::buffer_len(k, n, packed.nr)];
            let got = packed.scaled(isa, &gates, &mut scratch, 1);
            assert_eq!(got.data, want.view().data);
            assert_eq!(got.bias, want.view().bias);
        }
    }
}
