//! Matrix products of the dense convs.
//!
//! On x86-64 with AVX2+FMA or AVX-512 the executor's own GEMM runs on weights packed once when
//! the executor is built ([`Packed`]): panels of `NR` output channels, `k` rows each, zero-padded
//! to whole panels and 64-byte aligned. The activations (`lhs`, row-major pixels × channels) are
//! read in place. A register-blocked microkernel computes `MR` pixels × `NR` channels, starting
//! from the bias, blocked over `k` for L1; the activation and residual are applied to each tile
//! right after its last store, while it is in L1. Elsewhere (NEON) the `gemm` crate runs on the
//! unpacked weights, and the portable fallback is a plain loop.
//!
//! One file per instruction set: [`avx512`] and [`avx2`] hold the packed microkernels, `neon`
//! the `gemm`-crate path, `scalar` the plain loop; this module packs, splits the work over
//! threads and drives the tiles.

// The packed microkernels exist for x86-64 only; elsewhere (NEON, wasm32) the plain and
// `gemm`-crate paths run and the packing code is compiled but unused.
#![cfg_attr(
    not(target_arch = "x86_64"),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::ops::Range;

use rayon::prelude::*;

use crate::isa::{Isa, Level};
use crate::kernels::{self, Act, ConvGeom};

mod neon;
mod scalar;
pub(crate) mod strided;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

pub(crate) use neon::matmul;
pub use scalar::matmul_plain;

/// Output channels per packed panel for `isa`, or `None` when it has no packed microkernel.
pub fn panel_width(isa: Isa) -> Option<usize> {
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
/// channels cost 32 + 16, not 64), and 24 wide in 32-wide panels when they fit in 24 (a
/// zmm and a ymm, which this double-pumped AVX-512 runs in 3/4 of the time of two zmm:
/// 24-channel convs of V2-S and Lite0).
fn width(p: usize, n: usize, nr: usize) -> usize {
    let left = n - p * nr;
    match left {
        _ if left <= nr / 2 => nr / 2,
        _ if nr == 32 && left <= 24 => 24,
        _ => nr,
    }
}

/// Packed floats of a `[k][n]` matrix in panels of `nr`.
fn data_len(k: usize, n: usize, nr: usize) -> usize {
    let panels = n.div_ceil(nr);
    (panels - 1) * k * nr + k * width(panels - 1, n, nr)
}

/// A `[k][n]` weight matrix and its bias packed into panels of `nr` columns (panel `p` at
/// `p·k·nr`, row-major `[k][width]`) for one instruction set's microkernel.
#[derive(Clone, Debug)]
pub struct Packed {
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
pub struct PackedRef<'a> {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) nr: usize,
    data: &'a [f32],
    bias: &'a [f32],
}

impl Packed {
    /// Packs row-major `weight[k][n]` and `bias[n]` for `isa`; `None` without a microkernel.
    pub fn new(isa: Isa, weight: &[f32], bias: &[f32], k: usize, n: usize) -> Option<Self> {
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
    pub fn view(&self) -> PackedRef<'_> {
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
        // Every panel is `stride` floats but the last, which may be narrower.
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
pub struct Epilogue<'a> {
    /// Activation after the bias.
    pub act: Act,
    /// Added after the activation; row-major like the output.
    pub residual: Option<&'a [f32]>,
}

/// The output pointer shared by threads that write disjoint column panels.
#[derive(Clone, Copy)]
pub(crate) struct DstPtr(pub(crate) *mut f32);
// SAFETY: only used by `gemm_packed` and `conv_packed`, whose workers write disjoint panels of one buffer.
unsafe impl Send for DstPtr {}
// SAFETY: as above.
unsafe impl Sync for DstPtr {}

impl DstPtr {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst[m×n] = act(lhs[m×k] · W + bias) (+ residual)` with packed `w`; `lhs` rows are `lda`
/// apart. With `threads > 1` the column panels are split over rayon threads.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed(
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
            run_panels(isa, dst, lhs, lda, rows.len(), w, epi, None, range)
        }
    };
    let panels = w.panels();
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

/// Runs `run` on `panels` column panels, split into ranges over up to `threads` rayon threads
/// (the direct conv, whose rows index a padded slab, splits by panels only).
pub(crate) fn split_panels(panels: usize, threads: usize, run: impl Fn(Range<usize>) + Sync) {
    let parts = threads.min(panels).max(1);
    if parts == 1 {
        run(0..panels);
    } else {
        (0..parts)
            .into_par_iter()
            .for_each(|t| run(t * panels / parts..(t + 1) * panels / parts));
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
/// Depth per block: the tile's sums are stored and reloaded only between blocks. The weight
/// panel slice (`KC × 128` bytes) streams from L2 at a few bytes per cycle, so it need not
/// fit L1; an `MC × KC` block of `lhs` (576 KiB) stays in L2.
const KC: usize = 1024;

/// Runs the microkernels over `panels` of the output.
///
/// # Safety
/// `dst` must point to `m × w.n` writable floats that nothing else accesses meanwhile except
/// other calls on disjoint panel ranges; `isa` must have a packed microkernel matching `w`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn run_panels(
    isa: Isa,
    dst: *mut f32,
    lhs: &[f32],
    lda: usize,
    m: usize,
    w: PackedRef<'_>,
    epi: Epilogue<'_>,
    direct: Option<&ConvGeom>,
    panels: Range<usize>,
) {
    let job = Job {
        dst,
        lhs,
        lda,
        m,
        w,
        epi,
        direct,
        panels,
    };
    match isa.level() {
        // SAFETY: AVX-512 was detected when the `Isa` was made; the caller's contract covers
        // `dst`.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512::run(&job) },
        // SAFETY: as above, for AVX2+FMA.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { avx2::run(&job) },
        _ => unreachable!("no packed microkernel for {}", isa.name()),
    }
}

/// One call's operands, as the ISA-specific drivers see them.
struct Job<'a> {
    dst: *mut f32,
    /// Row-major pixels × `k` (`lda` apart), or a padded slab of input rows (`direct`).
    lhs: &'a [f32],
    lda: usize,
    m: usize,
    w: PackedRef<'a>,
    epi: Epilogue<'a>,
    /// A direct k×k conv on a slab from [`pad_slab`] instead of a plain product.
    direct: Option<&'a ConvGeom>,
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
    /// Where its `kc` activations of each pixel are.
    lhs: Lhs,
}

/// The activations of one tile: `segs` runs of `seg_len` contiguous values per pixel, the
/// runs `seg_stride` apart, the pixels `lda` apart (one run for a plain product; one per
/// kernel row for a direct conv).
#[derive(Clone, Copy)]
struct Lhs {
    a: *const f32,
    lda: usize,
    segs: usize,
    seg_stride: usize,
    seg_len: usize,
}

impl Job<'_> {
    /// Calls `tile` for every (pixel block, depth block, panel, MR rows) in cache order.
    #[inline(always)]
    fn for_each_tile(&self, mr: usize, mut tile: impl FnMut(&Tile, usize)) {
        if let Some(g) = self.direct {
            return self.for_each_direct_tile(g, mr, tile);
        }
        let k = self.w.k;
        for i0 in (0..self.m).step_by(MC) {
            let mc = MC.min(self.m - i0);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                for p in self.panels.clone() {
                    let mut i = i0;
                    while i < i0 + mc {
                        let rows = mr.min(i0 + mc - i);
                        let lhs = Lhs {
                            a: self.lhs[i * self.lda + k0..].as_ptr(),
                            lda: self.lda,
                            segs: 1,
                            seg_stride: 0,
                            seg_len: kc,
                        };
                        tile(&Tile { i, p, k0, kc, lhs }, rows);
                        i += rows;
                    }
                }
            }
        }
    }

    /// The tiles of a direct conv: per output row of the slab, runs of up to `mr` pixels
    /// (a tile stays in one row), all `k` in one depth block.
    #[inline(always)]
    fn for_each_direct_tile(&self, g: &ConvGeom, mr: usize, mut tile: impl FnMut(&Tile, usize)) {
        let (c, s) = (g.c, g.stride);
        let slab_w = (g.ow - 1) * s + g.k;
        for y in 0..self.m / g.ow {
            for p in self.panels.clone() {
                let mut ox = 0;
                while ox < g.ow {
                    let rows = mr.min(g.ow - ox);
                    let lhs = Lhs {
                        a: self.lhs[(y * s * slab_w + ox * s) * c..].as_ptr(),
                        lda: s * c,
                        segs: g.k,
                        seg_stride: slab_w * c,
                        seg_len: g.k * c,
                    };
                    let (i, kc) = (y * g.ow + ox, self.w.k);
                    tile(
                        &Tile {
                            i,
                            p,
                            k0: 0,
                            kc,
                            lhs,
                        },
                        rows,
                    );
                    ox += rows;
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

/// Calls `$kernel::<R>` for the `R = $rows` given at run time (1..=MR).
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($rows:expr, $kernel:ident::<_, $w:literal, $h:literal> $args:tt; $($r:literal)*) => {
        match $rows {
            $($r => $kernel::<$r, $w, $h> $args,)*
            _ => unreachable!(),
        }
    };
    ($rows:expr, $kernel:ident::<_, $w:literal> $args:tt; $($r:literal)*) => {
        match $rows {
            $($r => $kernel::<$r, $w> $args,)*
            _ => unreachable!(),
        }
    };
}
#[cfg(target_arch = "x86_64")]
use by_rows;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::test_util::{gemm_reference as reference, values};

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
                (15, 1100, 40, 1103),
                (23, 50, 56, 50),
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
        for (isa, n) in [Isa::best(), Isa::avx2().unwrap_or(Isa::best())]
            .into_iter()
            .flat_map(|isa| [(isa, 45), (isa, 56)])
        {
            let k = 37;
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
