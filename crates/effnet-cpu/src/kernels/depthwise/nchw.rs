//! Depthwise convolution (groups = channels, one `kh×kw` filter per channel) on NCHW planes:
//! forward, backward data and backward weight.
//!
//! Each plane is first copied into a zero-bordered scratch plane (`ph = (oh−1)·sy + kh` rows of
//! `pw = (ow−1)·sx + kw`), so that every tap is a whole output row against a shifted input row:
//! no border tests in the inner loops, which run along a row and vectorise even for the 4- and
//! 8-wide planes of a network's last stages. The weight gradient keeps one row of partial sums
//! per tap and adds them up once per plane.
//!
//! Planes narrower than a vector (the 4- to 14-wide maps of a network's last stages) run
//! channel-blocked instead: 16 channels of an image are transposed into pixel-major order (one
//! vector of 16 channels per pixel) in a small zero-bordered buffer, so that every tap is one
//! vector multiply-add per output pixel; the result is transposed back.

use rayon::prelude::*;

use crate::isa::{Isa, fmadd, multiversion};
use crate::kernels::conv::nchw::{Conv2dShape, parts};

fn check(s: &Conv2dShape, x: usize, w: usize, y: usize, what: &str) {
    assert!(s.cin == s.cout, "{what}: depthwise needs cin == cout");
    assert_eq!(x, s.batch * s.in_image(), "{what}: input size");
    assert_eq!(w, s.cout * s.kh * s.kw, "{what}: weight size");
    assert_eq!(y, s.batch * s.out_image(), "{what}: output size");
}

/// The zero-bordered plane geometry: rows, columns.
fn padded(s: &Conv2dShape) -> (usize, usize) {
    (
        (s.oh - 1) * s.stride[0] + s.kh,
        (s.ow - 1) * s.stride[1] + s.kw,
    )
}

/// The input rows and columns of the padded plane that hold image values:
/// `(first row, rows, first column, columns)` (the rest is zero; parts of the image that no
/// output reads are left out).
fn inside(s: &Conv2dShape) -> (usize, usize, usize, usize) {
    let (ph, pw) = padded(s);
    let [pt, pl] = s.pad;
    let rows = s.h.min(ph.saturating_sub(pt));
    let cols = s.w.min(pw.saturating_sub(pl));
    (pt.min(ph), rows, pl.min(pw), cols)
}

/// Copies plane `xp` into the zeroed padded plane `buf`.
fn pad_plane(s: &Conv2dShape, xp: &[f32], buf: &mut [f32]) {
    let (_, pw) = padded(s);
    let (r0, rows, c0, cols) = inside(s);
    for y in 0..rows {
        let dst = &mut buf[(r0 + y) * pw + c0..(r0 + y) * pw + c0 + cols];
        dst.copy_from_slice(&xp[y * s.w..y * s.w + cols]);
    }
}

/// Runs `f(plane_index, chunk, scratch)` over `data` cut in planes of `plane` values, in `parts`
/// groups, each with its own zeroed scratch of `scratch` values.
fn planes(
    data: &mut [f32],
    plane: usize,
    parts: usize,
    scratch: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) {
    let count = data.len() / plane.max(1);
    let group = count.div_ceil(parts.max(1)).max(1);
    let run = |(g, chunk): (usize, &mut [f32])| {
        let mut buf = vec![0.0; scratch];
        for (i, p) in chunk.chunks_exact_mut(plane).enumerate() {
            f(g * group + i, p, &mut buf);
        }
    };
    if parts <= 1 {
        data.chunks_mut(group * plane).enumerate().for_each(run);
    } else {
        data.par_chunks_mut(group * plane).enumerate().for_each(run);
    }
}

/// `y = depthwise(x, w) + bias`: `x` `[batch][c][h][w]`, `w` `[c][1][kh][kw]`, `y`
/// `[batch][c][oh][ow]`.
pub fn depthwise_forward(
    isa: Isa,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) {
    check(s, x.len(), w.len(), y.len(), "depthwise_forward");
    if blocked(s) {
        return blocked_forward(isa, s, x, w, bias, y, threads);
    }
    let (taps, inp, out) = (s.kh * s.kw, s.h * s.w, s.out_pixels());
    let (ph, pw) = padded(s);
    planes(
        y,
        out,
        parts(s.batch * s.cin, threads),
        ph * pw,
        |i, yp, buf| {
            let c = i % s.cin;
            pad_plane(s, &x[i * inp..(i + 1) * inp], buf);
            let b = bias.map_or(0.0, |b| b[c]);
            plane_forward(isa, s, buf, &w[c * taps..(c + 1) * taps], b, yp);
        },
    );
}

/// `dx` of [`depthwise_forward`] from `dy`.
pub fn depthwise_backward_data(
    isa: Isa,
    s: &Conv2dShape,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    threads: usize,
) {
    check(s, dx.len(), w.len(), dy.len(), "depthwise_backward_data");
    if blocked(s) {
        return blocked_backward_data(isa, s, w, dy, dx, threads);
    }
    let (taps, inp, out) = (s.kh * s.kw, s.h * s.w, s.out_pixels());
    let (ph, pw) = padded(s);
    planes(
        dx,
        inp,
        parts(s.batch * s.cin, threads),
        ph * pw,
        |i, dxp, buf| {
            let c = i % s.cin;
            buf.fill(0.0);
            plane_backward_data(
                isa,
                s,
                &dy[i * out..(i + 1) * out],
                &w[c * taps..(c + 1) * taps],
                buf,
            );
            // Crop the padded gradient back to the image (rows no output read get zero).
            let (r0, rows, c0, cols) = inside(s);
            dxp.fill(0.0);
            for y in 0..rows {
                dxp[y * s.w..y * s.w + cols]
                    .copy_from_slice(&buf[(r0 + y) * pw + c0..(r0 + y) * pw + c0 + cols]);
            }
        },
    );
}

/// `dw` of [`depthwise_forward`] from `x` and `dy`, into `dw` `[c][1][kh][kw]`.
pub fn depthwise_backward_weight(
    isa: Isa,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    threads: usize,
) {
    check(s, x.len(), dw.len(), dy.len(), "depthwise_backward_weight");
    if blocked(s) {
        return blocked_backward_weight(isa, s, x, dy, dw, threads);
    }
    let (taps, inp, out) = (s.kh * s.kw, s.h * s.w, s.out_pixels());
    let (ph, pw) = padded(s);
    // Scratch: the padded plane, then one row of partial sums per tap.
    let scratch = ph * pw + taps * s.ow;
    planes(dw, taps, parts(s.cin, threads), scratch, |c, dwc, buf| {
        let (plane, acc) = buf.split_at_mut(ph * pw);
        acc.fill(0.0);
        for n in 0..s.batch {
            let i = n * s.cin + c;
            pad_plane(s, &x[i * inp..(i + 1) * inp], plane);
            plane_backward_weight(isa, s, plane, &dy[i * out..(i + 1) * out], acc);
        }
        for (t, d) in dwc.iter_mut().enumerate() {
            *d = acc[t * s.ow..(t + 1) * s.ow].iter().sum();
        }
    });
}

multiversion! {
    /// One output plane from its padded input plane: `yp = bias + Σ taps w·x`.
    fn plane_forward(s: &Conv2dShape, xp: &[f32], wc: &[f32], bias: f32, yp: &mut [f32]) {
        let [sy, sx] = s.stride;
        let (_, pw) = padded(s);
        let ow = s.ow;
        for (oy, out) in yp.chunks_exact_mut(ow).enumerate() {
            out.fill(bias);
            for ky in 0..s.kh {
                let row = &xp[(oy * sy + ky) * pw..(oy * sy + ky + 1) * pw];
                for kx in 0..s.kw {
                    let wv = wc[ky * s.kw + kx];
                    if sx == 1 {
                        for (o, v) in out.iter_mut().zip(&row[kx..kx + ow]) {
                            *o = fmadd::<FMA>(wv, *v, *o);
                        }
                    } else {
                        for (ox, o) in out.iter_mut().enumerate() {
                            *o = fmadd::<FMA>(wv, row[ox * sx + kx], *o);
                        }
                    }
                }
            }
        }
    }
}

multiversion! {
    /// Scatters one output-gradient plane through the taps into the padded plane `dxp`.
    fn plane_backward_data(s: &Conv2dShape, dyp: &[f32], wc: &[f32], dxp: &mut [f32]) {
        let [sy, sx] = s.stride;
        let (_, pw) = padded(s);
        let ow = s.ow;
        for (oy, g) in dyp.chunks_exact(ow).enumerate() {
            for ky in 0..s.kh {
                let row = &mut dxp[(oy * sy + ky) * pw..(oy * sy + ky + 1) * pw];
                for kx in 0..s.kw {
                    let wv = wc[ky * s.kw + kx];
                    if sx == 1 {
                        for (d, v) in row[kx..kx + ow].iter_mut().zip(g) {
                            *d = fmadd::<FMA>(wv, *v, *d);
                        }
                    } else {
                        for (ox, v) in g.iter().enumerate() {
                            let d = &mut row[ox * sx + kx];
                            *d = fmadd::<FMA>(wv, *v, *d);
                        }
                    }
                }
            }
        }
    }
}

multiversion! {
    /// Adds one plane's products to the per-tap partial-sum rows `acc` (`taps × ow`).
    fn plane_backward_weight(s: &Conv2dShape, xp: &[f32], dyp: &[f32], acc: &mut [f32]) {
        let [sy, sx] = s.stride;
        let (_, pw) = padded(s);
        let ow = s.ow;
        for (oy, g) in dyp.chunks_exact(ow).enumerate() {
            for ky in 0..s.kh {
                let row = &xp[(oy * sy + ky) * pw..(oy * sy + ky + 1) * pw];
                for kx in 0..s.kw {
                    let t = ky * s.kw + kx;
                    let a = &mut acc[t * ow..(t + 1) * ow];
                    if sx == 1 {
                        for ((d, v), x) in a.iter_mut().zip(g).zip(&row[kx..kx + ow]) {
                            *d = fmadd::<FMA>(*v, *x, *d);
                        }
                    } else {
                        for (ox, (d, v)) in a.iter_mut().zip(g).enumerate() {
                            *d = fmadd::<FMA>(*v, row[ox * sx + kx], *d);
                        }
                    }
                }
            }
        }
    }
}

/// Channels per block of the channel-blocked path (one AVX-512 vector).
const LANES: usize = 16;

/// Whether the planes are narrow enough for the channel-blocked path.
fn blocked(s: &Conv2dShape) -> bool {
    s.ow < LANES
}

/// Copies channels `c0..c0 + lanes` of image `xn` (`[c][h][w]`) into the pixel-major padded
/// block `buf` (`[ph·pw][LANES]`, border and unused lanes left as they are: zero).
fn block_in(s: &Conv2dShape, xn: &[f32], c0: usize, lanes: usize, buf: &mut [f32]) {
    let (_, pw) = padded(s);
    let (r0, rows, col0, cols) = inside(s);
    let plane = s.h * s.w;
    for l in 0..lanes {
        let src = &xn[(c0 + l) * plane..(c0 + l + 1) * plane];
        for y in 0..rows {
            let base = ((r0 + y) * pw + col0) * LANES + l;
            for (x, v) in src[y * s.w..y * s.w + cols].iter().enumerate() {
                buf[base + x * LANES] = *v;
            }
        }
    }
}

/// The filters of channels `c0..c0 + lanes` as `[tap][LANES]` (unused lanes zero).
fn block_weights(s: &Conv2dShape, w: &[f32], c0: usize, lanes: usize) -> Vec<f32> {
    let taps = s.kh * s.kw;
    let mut wb = vec![0.0; taps * LANES];
    for l in 0..lanes {
        for t in 0..taps {
            wb[t * LANES + l] = w[(c0 + l) * taps + t];
        }
    }
    wb
}

/// Runs `f(image, first channel, lanes)` for every block of 16 channels of every image, in
/// parallel over the blocks when `threads > 1`.
fn for_blocks(s: &Conv2dShape, threads: usize, f: impl Fn(usize, usize, usize) + Sync + Send) {
    let per_image = s.cin.div_ceil(LANES);
    let blocks = s.batch * per_image;
    let run = |b: usize| {
        let (n, cb) = (b / per_image, b % per_image);
        let c0 = cb * LANES;
        f(n, c0, LANES.min(s.cin - c0));
    };
    if parts(blocks, threads) <= 1 {
        (0..blocks).for_each(run);
    } else {
        (0..blocks).into_par_iter().for_each(run);
    }
}

/// A pointer to an output that rayon tasks share, each writing its own channels' planes.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes a disjoint set of planes (its image's channel block).
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// # Safety
    /// `start + len` must lie inside the buffer and no other live slice may overlap it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

fn blocked_forward(
    isa: Isa,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) {
    let (ph, pw) = padded(s);
    let (p, out) = (s.out_pixels(), Out(y.as_mut_ptr()));
    for_blocks(s, threads, |n, c0, lanes| {
        let mut buf = vec![0.0; ph * pw * LANES];
        block_in(
            s,
            &x[n * s.in_image()..(n + 1) * s.in_image()],
            c0,
            lanes,
            &mut buf,
        );
        let wb = block_weights(s, w, c0, lanes);
        let mut b = [0.0; LANES];
        if let Some(bias) = bias {
            b[..lanes].copy_from_slice(&bias[c0..c0 + lanes]);
        }
        let mut yb = vec![0.0; p * LANES];
        block_forward(isa, s, &buf, &wb, &b, &mut yb);
        for l in 0..lanes {
            // SAFETY: plane (n, c0 + l) of `y` is written by this block only.
            let dst = unsafe { out.slice((n * s.cout + c0 + l) * p, p) };
            for (o, d) in dst.iter_mut().enumerate() {
                *d = yb[o * LANES + l];
            }
        }
    });
}

fn blocked_backward_data(
    isa: Isa,
    s: &Conv2dShape,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    threads: usize,
) {
    let (ph, pw) = padded(s);
    let (p, plane, out) = (s.out_pixels(), s.h * s.w, Out(dx.as_mut_ptr()));
    let (r0, rows, col0, cols) = inside(s);
    for_blocks(s, threads, |n, c0, lanes| {
        let mut gb = vec![0.0; p * LANES];
        for l in 0..lanes {
            let src = &dy[(n * s.cout + c0 + l) * p..(n * s.cout + c0 + l + 1) * p];
            for (o, v) in src.iter().enumerate() {
                gb[o * LANES + l] = *v;
            }
        }
        let wb = block_weights(s, w, c0, lanes);
        let mut buf = vec![0.0; ph * pw * LANES];
        block_backward_data(isa, s, &gb, &wb, &mut buf);
        for l in 0..lanes {
            // SAFETY: plane (n, c0 + l) of `dx` is written by this block only.
            let dst = unsafe { out.slice((n * s.cin + c0 + l) * plane, plane) };
            dst.fill(0.0);
            for y in 0..rows {
                let base = ((r0 + y) * pw + col0) * LANES + l;
                for (x, d) in dst[y * s.w..y * s.w + cols].iter_mut().enumerate() {
                    *d = buf[base + x * LANES];
                }
            }
        }
    });
}

fn blocked_backward_weight(
    isa: Isa,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    threads: usize,
) {
    let (ph, pw) = padded(s);
    let (p, taps) = (s.out_pixels(), s.kh * s.kw);
    let blocks = s.cin.div_ceil(LANES);
    let one = |cb: usize| -> Vec<f32> {
        let (c0, lanes) = (cb * LANES, LANES.min(s.cin - cb * LANES));
        let mut acc = vec![0.0; taps * LANES];
        let mut buf = vec![0.0; ph * pw * LANES];
        let mut gb = vec![0.0; p * LANES];
        for n in 0..s.batch {
            block_in(
                s,
                &x[n * s.in_image()..(n + 1) * s.in_image()],
                c0,
                lanes,
                &mut buf,
            );
            for l in 0..lanes {
                let src = &dy[(n * s.cout + c0 + l) * p..(n * s.cout + c0 + l + 1) * p];
                for (o, v) in src.iter().enumerate() {
                    gb[o * LANES + l] = *v;
                }
            }
            block_backward_weight(isa, s, &buf, &gb, &mut acc);
        }
        acc
    };
    let sums: Vec<Vec<f32>> = if parts(blocks, threads) <= 1 {
        (0..blocks).map(one).collect()
    } else {
        (0..blocks).into_par_iter().map(one).collect()
    };
    for (cb, acc) in sums.iter().enumerate() {
        let (c0, lanes) = (cb * LANES, LANES.min(s.cin - cb * LANES));
        for l in 0..lanes {
            for t in 0..taps {
                dw[(c0 + l) * taps + t] = acc[t * LANES + l];
            }
        }
    }
}

multiversion! {
    /// One channel block's output `[oh·ow][LANES]` from its padded input block.
    fn block_forward(s: &Conv2dShape, xb: &[f32], wb: &[f32], bias: &[f32; LANES], yb: &mut [f32]) {
        let [sy, sx] = s.stride;
        let (_, pw) = padded(s);
        for (o, acc) in yb.chunks_exact_mut(LANES).enumerate() {
            let (oy, ox) = (o / s.ow, o % s.ow);
            let mut a = *bias;
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let xi = ((oy * sy + ky) * pw + ox * sx + kx) * LANES;
                    let xv = &xb[xi..xi + LANES];
                    let wv = &wb[(ky * s.kw + kx) * LANES..(ky * s.kw + kx + 1) * LANES];
                    for l in 0..LANES {
                        a[l] = fmadd::<FMA>(wv[l], xv[l], a[l]);
                    }
                }
            }
            acc.copy_from_slice(&a);
        }
    }
}

multiversion! {
    /// Scatters one channel block's output gradient `[oh·ow][LANES]` into the padded block.
    fn block_backward_data(s: &Conv2dShape, gb: &[f32], wb: &[f32], dxb: &mut [f32]) {
        let [sy, sx] = s.stride;
        let (_, pw) = padded(s);
        for (o, g) in gb.chunks_exact(LANES).enumerate() {
            let (oy, ox) = (o / s.ow, o % s.ow);
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let xi = ((oy * sy + ky) * pw + ox * sx + kx) * LANES;
                    let wv = &wb[(ky * s.kw + kx) * LANES..(ky * s.kw + kx + 1) * LANES];
                    let d = &mut dxb[xi..xi + LANES];
                    for l in 0..LANES {
                        d[l] = fmadd::<FMA>(wv[l], g[l], d[l]);
                    }
                }
            }
        }
    }
}

multiversion! {
    /// Adds one image's products to the channel block's per-tap sums `acc` (`[tap][LANES]`).
    fn block_backward_weight(s: &Conv2dShape, xb: &[f32], gb: &[f32], acc: &mut [f32]) {
        let [sy, sx] = s.stride;
        let (_, pw) = padded(s);
        for (o, g) in gb.chunks_exact(LANES).enumerate() {
            let (oy, ox) = (o / s.ow, o % s.ow);
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let xi = ((oy * sy + ky) * pw + ox * sx + kx) * LANES;
                    let xv = &xb[xi..xi + LANES];
                    let t = ky * s.kw + kx;
                    let a = &mut acc[t * LANES..(t + 1) * LANES];
                    for l in 0..LANES {
                        a[l] = fmadd::<FMA>(g[l], xv[l], a[l]);
                    }
                }
            }
        }
    }
}
