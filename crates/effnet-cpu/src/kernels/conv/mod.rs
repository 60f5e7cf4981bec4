//! Dense k×k convolutions (stem, Fused-MBConv) on NHWC images: the direct conv on packed
//! weights (no im2col, for up to 3×3×64) and im2col for the GEMM.

pub mod nchw;

use std::ops::Range;

use crate::isa::{Isa, multiversion};
use crate::kernels::ConvGeom;
use crate::kernels::gemm::{DstPtr, Epilogue, PackedRef, run_panels, split_panels};

/// Most taps × channels of a conv that [`conv_packed`] runs, in one depth block: its tiles
/// never reload their sums, and the weight panel streams from L2 (a few bytes per cycle).
const DIRECT_MAX_K: usize = 1024;

/// Whether [`conv_packed`] runs a conv of this geometry (the stem and the fused convs of the
/// family: up to 3×3×64).
pub(crate) fn direct_fits(g: &ConvGeom) -> bool {
    g.k * g.k * g.c <= DIRECT_MAX_K
}

/// The k×k conv `g` for output rows `oy0..oy0 + dst.len() / (ow·n)` with packed weights
/// (ordered tap row, tap column, channel, as im2col's), without im2col: the input rows it
/// needs are copied once, zero-padded, into `slab` and the microkernel reads each kernel
/// row's `k·c` values of a pixel straight from there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_packed(
    isa: Isa,
    dst: &mut [f32],
    input: &[f32],
    g: &ConvGeom,
    oy0: usize,
    w: PackedRef<'_>,
    epi: Epilogue<'_>,
    slab: &mut Vec<f32>,
    threads: usize,
) {
    assert!(direct_fits(g) && w.k == g.k * g.k * g.c);
    let m = dst.len() / w.n;
    assert!(dst.len() == m * w.n && m.is_multiple_of(g.ow) && oy0 + m / g.ow <= g.oh);
    if let Some(r) = epi.residual {
        assert_eq!(r.len(), m * w.n);
    }
    if m == 0 {
        return;
    }
    pad_slab(input, g, oy0, m / g.ow, slab);
    let lhs = &slab[..];
    let ptr = DstPtr(dst.as_mut_ptr());
    let run = |range: Range<usize>| {
        // SAFETY: `dst` holds m×n values (checked above); the slab holds the padded rows of
        // the `m / ow` output rows (`pad_slab`); workers get disjoint panel ranges.
        unsafe { run_panels(isa, ptr.get(), lhs, 0, m, w, epi, Some(g), range) }
    };
    split_panels(w.panels(), threads, run);
}

/// Copies the input rows that output rows `oy0..oy0 + rows` of `g` read into `slab`, as
/// `[(rows-1)·stride + k][(ow-1)·stride + k][c]` with the padding as zeros.
fn pad_slab(input: &[f32], g: &ConvGeom, oy0: usize, rows: usize, slab: &mut Vec<f32>) {
    let (c, s) = (g.c, g.stride);
    let (sh, sw) = ((rows - 1) * s + g.k, (g.ow - 1) * s + g.k);
    slab.clear();
    slab.resize(sh * sw * c, 0.0);
    let cols = g.w.min(sw.saturating_sub(g.pad_left));
    for (r, row) in slab.chunks_exact_mut(sw * c).enumerate() {
        let Some(iy) = (oy0 * s + r).checked_sub(g.pad_top).filter(|&y| y < g.h) else {
            continue;
        };
        row[g.pad_left * c..(g.pad_left + cols) * c]
            .copy_from_slice(&input[iy * g.w * c..(iy * g.w + cols) * c]);
    }
}

/// `dst.copy_from_slice(src)` for the few dozen channels of one im2col segment, in fixed
/// 8-float moves instead of a `memcpy` call per segment.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[f32; 8] = s.try_into().unwrap();
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

multiversion! {
    /// im2col for output rows `oy0..oy0 + rows`: each output pixel becomes one row of
    /// `k·k·c` values ordered (ky, kx, channel), zeros where the kernel hangs over the border.
    pub fn im2col(input: &[f32], g: ConvGeom, oy0: usize, rows: usize, col: &mut [f32]) {
        let c = g.c;
        let kc = g.k * c;
        let mut dst = col.chunks_exact_mut(g.k * kc);
        for oy in oy0..oy0 + rows {
            for ox in 0..g.ow {
                let Some(row) = dst.next() else { return };
                for ky in 0..g.k {
                    let seg = &mut row[ky * kc..(ky + 1) * kc];
                    let Some(iy) = g.tap(oy, ky, g.pad_top, g.h) else {
                        seg.fill(0.0);
                        continue;
                    };
                    for kx in 0..g.k {
                        let px = &mut seg[kx * c..(kx + 1) * c];
                        match g.tap(ox, kx, g.pad_left, g.w) {
                            Some(ix) => copy_short(px, &input[(iy * g.w + ix) * c..][..c]),
                            None => px.fill(0.0),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::{Packed, panel_width};
    use crate::kernels::test_util::{gemm_reference as reference, values};
    use crate::kernels::{self, Act};

    #[test]
    fn direct_conv_matches_im2col_reference_for_strides_paddings_and_row_tiles() {
        use crate::plan::Pad;
        let explicit = Pad::Explicit {
            top: 1,
            left: 1,
            bottom: 1,
            right: 1,
        };
        let isas: Vec<Isa> = [Some(Isa::best()), Isa::avx2()]
            .into_iter()
            .flatten()
            .filter(|i| panel_width(*i).is_some())
            .collect();
        for isa in isas {
            for (h, w, c, k, s, n, pad) in [
                (13, 10, 3, 3, 2, 32, Pad::Same),
                (16, 16, 3, 3, 2, 24, explicit),
                (11, 29, 24, 3, 1, 24, explicit),
                (9, 14, 5, 5, 2, 40, Pad::Same),
                (12, 7, 16, 3, 2, 48, Pad::Same),
                (10, 9, 64, 3, 1, 40, explicit),
            ] {
                let g = pad.geometry(h, w, c, k, s);
                assert!(direct_fits(&g));
                let (m, kdim) = (g.oh * g.ow, k * k * c);
                let input = values(h * w * c, 1);
                let wt = values(kdim * n, 2);
                let bias = values(n, 3);
                let mut col = vec![0f32; m * kdim];
                kernels::im2col(Isa::scalar(), &input, g, 0, g.oh, &mut col);
                let packed = Packed::new(isa, &wt, &bias, kdim, n).unwrap();
                for (act, with_res, threads) in [
                    (Act::Silu, false, 1),
                    (Act::Relu6, true, 3),
                    (Act::None, false, 1),
                ] {
                    let res = with_res.then(|| values(m * n, 4));
                    let want = reference(&col, kdim, &wt, &bias, m, kdim, act, res.as_deref());
                    let mut out = vec![f32::NAN; m * n];
                    // Two row tiles, as the executor splits the image.
                    let split = g.oh / 2 * g.ow * n;
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut slab = Vec::new();
                    for (oy0, range) in [(0, 0..split), (g.oh / 2, split..m * n)] {
                        let epi = Epilogue {
                            act,
                            residual: res.as_deref().map(|r| &r[range.clone()]),
                        };
                        let dst = &mut out[range];
                        pool.install(|| {
                            conv_packed(
                                isa,
                                dst,
                                &input,
                                &g,
                                oy0,
                                packed.view(),
                                epi,
                                &mut slab,
                                threads,
                            )
                        });
                    }
                    let d = out
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                        .fold(0.0, f32::max);
                    let what = format!("{} {h}x{w}x{c} k{k} s{s} n{n} {act:?}", isa.name());
                    assert!(d < 2e-5, "{what}: {d}");
                }
            }
        }
    }
}
