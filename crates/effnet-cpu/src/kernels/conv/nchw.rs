//! Training convs: dense (groups = 1) convolution on NCHW images as matrix products, per image
//! `n`:
//!
//! * forward: `Y[n] = W · cols(X[n])` (`W` is `[cout][cin·kh·kw]`, `cols` the im2col matrix
//!   `[cin·kh·kw][oh·ow]`; a 1×1 stride-1 conv uses `X[n]` itself);
//! * backward data: `dX[n] = col2im(Wᵀ · dY[n])`;
//! * backward weight: `dW = Σₙ dY[n] · cols(X[n])ᵀ`.
//!
//! Threads split the batch (each image's product on one thread; the weight gradient summed from
//! per-thread partials), or, when there are fewer images than threads, each product.
//!
//! Small images (the last stages of a network: 4×4 to 16×16) run the whole batch as one product
//! instead, on `[cin·kh·kw][batch·oh·ow]` matrices: per-image products there are too thin to be
//! efficient, and each would pack the weights again.

use rayon::prelude::*;

use crate::isa::Isa;
use crate::kernels::gemm::strided::{View, gemm};

/// Largest batch im2col matrix (values) run as one product.
const BATCHED_MAX: usize = 4 << 20;

/// Whether the batch runs as one product (see the module doc).
fn batched(s: &Conv2dShape) -> bool {
    s.batch > 1 && s.out_pixels() < 1024 && s.patch() * s.batch * s.out_pixels() <= BATCHED_MAX
}

/// `[n][c][p]` → `[c][n·p]`.
fn to_cnp(src: &[f32], n: usize, c: usize, p: usize, dst: &mut [f32]) {
    dst.par_chunks_exact_mut(n * p)
        .enumerate()
        .for_each(|(ci, row)| {
            for (ni, part) in row.chunks_exact_mut(p).enumerate() {
                let start = (ni * c + ci) * p;
                part.copy_from_slice(&src[start..start + p]);
            }
        });
}

/// `[c][n·p]` → `[n][c][p]`.
fn from_cnp(src: &[f32], n: usize, c: usize, p: usize, dst: &mut [f32]) {
    dst.par_chunks_exact_mut(c * p)
        .enumerate()
        .for_each(|(ni, img)| {
            for (ci, part) in img.chunks_exact_mut(p).enumerate() {
                let start = ci * n * p + ni * p;
                part.copy_from_slice(&src[start..start + p]);
            }
        });
}

/// The batch's im2col matrix `[cin·kh·kw][batch·oh·ow]` (image `n` in columns `n·oh·ow..`).
fn batch_cols(s: &Conv2dShape, x: &[f32]) -> Vec<f32> {
    let (p, np) = (s.out_pixels(), s.batch * s.out_pixels());
    let mut cols = vec![0.0; s.patch() * np];
    if s.is_pointwise() {
        to_cnp(x, s.batch, s.cin, p, &mut cols);
    } else {
        for n in 0..s.batch {
            let xn = &x[n * s.in_image()..(n + 1) * s.in_image()];
            im2col_at(s, xn, &mut cols, np, n * p);
        }
    }
    cols
}

/// How the batch is run: `parts` groups of images in parallel, each product on `inner` threads.
fn split(batch: usize, threads: usize) -> (usize, usize) {
    if batch >= threads {
        (parts(batch, threads), 1)
    } else {
        (1, threads.max(1))
    }
}

/// Runs `f(image, out_chunk)` for every image, `out` split per image of `per_image` values.
fn per_image(
    out: &mut [f32],
    per_image: usize,
    parts: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if parts <= 1 || per_image == 0 {
        for (n, chunk) in out.chunks_exact_mut(per_image.max(1)).enumerate() {
            f(n, chunk);
        }
        return;
    }
    let batch = out.len() / per_image;
    let group = batch.div_ceil(parts);
    out.par_chunks_mut(group * per_image)
        .enumerate()
        .for_each(|(g, chunk)| {
            for (i, img) in chunk.chunks_exact_mut(per_image).enumerate() {
                f(g * group + i, img);
            }
        });
}

/// `Y = conv(X, W) + bias`: `x` `[batch][cin][h][w]`, `w` `[cout][cin][kh][kw]`, `y`
/// `[batch][cout][oh][ow]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward(
    isa: Isa,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    threads: usize,
) {
    assert_eq!(
        x.len(),
        s.batch * s.in_image(),
        "conv2d_forward: input size"
    );
    assert_eq!(w.len(), s.cout * s.patch(), "conv2d_forward: weight size");
    assert_eq!(
        y.len(),
        s.batch * s.out_image(),
        "conv2d_forward: output size"
    );
    let (p, k) = (s.out_pixels(), s.patch());
    if batched(s) {
        let np = s.batch * p;
        let cols = batch_cols(s, x);
        let mut out = vec![0.0; s.cout * np];
        if let Some(b) = bias {
            for (row, &bv) in out.chunks_exact_mut(np).zip(b) {
                row.fill(bv);
            }
        }
        let (lhs, rhs) = (View::rows(w, k), View::rows(&cols, np));
        gemm(
            isa,
            s.cout,
            np,
            k,
            &mut out,
            bias.is_some(),
            lhs,
            rhs,
            threads,
        );
        from_cnp(&out, s.batch, s.cout, p, y);
        return;
    }
    let (groups, inner) = split(s.batch, threads);
    per_image(y, s.out_image(), groups, |n, yn| {
        let xn = &x[n * s.in_image()..(n + 1) * s.in_image()];
        if let Some(b) = bias {
            for (row, &bv) in yn.chunks_exact_mut(p).zip(b) {
                row.fill(bv);
            }
        }
        let acc = bias.is_some();
        if s.is_pointwise() {
            gemm(
                isa,
                s.cout,
                p,
                k,
                yn,
                acc,
                View::rows(w, k),
                View::rows(xn, p),
                inner,
            );
        } else {
            let mut cols = vec![0.0; k * p];
            im2col(s, xn, &mut cols);
            gemm(
                isa,
                s.cout,
                p,
                k,
                yn,
                acc,
                View::rows(w, k),
                View::rows(&cols, p),
                inner,
            );
        }
    });
}

/// `dX` of [`conv2d_forward`] from `dy` `[batch][cout][oh][ow]`, into `dx` `[batch][cin][h][w]`.
pub fn conv2d_backward_data(
    isa: Isa,
    s: &Conv2dShape,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    threads: usize,
) {
    assert_eq!(
        dx.len(),
        s.batch * s.in_image(),
        "conv2d_backward_data: dx size"
    );
    assert_eq!(
        w.len(),
        s.cout * s.patch(),
        "conv2d_backward_data: weight size"
    );
    assert_eq!(
        dy.len(),
        s.batch * s.out_image(),
        "conv2d_backward_data: dy size"
    );
    let (p, k) = (s.out_pixels(), s.patch());
    if batched(s) {
        let np = s.batch * p;
        let mut dyg = vec![0.0; s.cout * np];
        to_cnp(dy, s.batch, s.cout, p, &mut dyg);
        let mut dcols = vec![0.0; k * np];
        let (lhs, rhs) = (View::transposed(w, k), View::rows(&dyg, np));
        gemm(isa, k, np, s.cout, &mut dcols, false, lhs, rhs, threads);
        if s.is_pointwise() {
            from_cnp(&dcols, s.batch, s.cin, p, dx);
        } else {
            dx.fill(0.0);
            for (n, dxn) in dx.chunks_exact_mut(s.in_image()).enumerate() {
                col2im_at(s, &dcols, dxn, np, n * p);
            }
        }
        return;
    }
    let (groups, inner) = split(s.batch, threads);
    per_image(dx, s.in_image(), groups, |n, dxn| {
        let dyn_ = &dy[n * s.out_image()..(n + 1) * s.out_image()];
        let wt = View::transposed(w, k);
        if s.is_pointwise() {
            gemm(
                isa,
                s.cin,
                p,
                s.cout,
                dxn,
                false,
                wt,
                View::rows(dyn_, p),
                inner,
            );
        } else {
            let mut cols = vec![0.0; k * p];
            gemm(
                isa,
                k,
                p,
                s.cout,
                &mut cols,
                false,
                wt,
                View::rows(dyn_, p),
                inner,
            );
            dxn.fill(0.0);
            col2im(s, &cols, dxn);
        }
    });
}

/// `dW` of [`conv2d_forward`] from `x` and `dy`, into `dw` `[cout][cin][kh][kw]`.
pub fn conv2d_backward_weight(
    isa: Isa,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    threads: usize,
) {
    assert_eq!(
        x.len(),
        s.batch * s.in_image(),
        "conv2d_backward_weight: input size"
    );
    assert_eq!(
        dw.len(),
        s.cout * s.patch(),
        "conv2d_backward_weight: dw size"
    );
    assert_eq!(
        dy.len(),
        s.batch * s.out_image(),
        "conv2d_backward_weight: dy size"
    );
    let (p, k) = (s.out_pixels(), s.patch());
    if batched(s) {
        let np = s.batch * p;
        let mut dyg = vec![0.0; s.cout * np];
        to_cnp(dy, s.batch, s.cout, p, &mut dyg);
        let cols = batch_cols(s, x);
        let (lhs, rhs) = (View::rows(&dyg, np), View::transposed(&cols, np));
        gemm(isa, s.cout, k, np, dw, false, lhs, rhs, threads);
        return;
    }
    let (groups, inner) = split(s.batch, threads);
    // Images of one group accumulate into one partial gradient.
    let group_grad = |images: std::ops::Range<usize>, acc: &mut [f32]| {
        let mut cols = if s.is_pointwise() {
            Vec::new()
        } else {
            vec![0.0; k * p]
        };
        for (i, n) in images.enumerate() {
            let xn = &x[n * s.in_image()..(n + 1) * s.in_image()];
            let dyn_ = &dy[n * s.out_image()..(n + 1) * s.out_image()];
            let c = if s.is_pointwise() {
                xn
            } else {
                im2col(s, xn, &mut cols);
                &cols
            };
            let lhs = View::rows(dyn_, p);
            gemm(
                isa,
                s.cout,
                k,
                p,
                acc,
                i > 0,
                lhs,
                View::transposed(c, p),
                inner,
            );
        }
    };
    if groups <= 1 {
        group_grad(0..s.batch, dw);
        return;
    }
    let per = s.batch.div_ceil(groups);
    let partials: Vec<Vec<f32>> = (0..s.batch.div_ceil(per))
        .into_par_iter()
        .map(|g| {
            let mut acc = vec![0.0; dw.len()];
            group_grad(g * per..((g + 1) * per).min(s.batch), &mut acc);
            acc
        })
        .collect();
    dw.copy_from_slice(&partials[0]);
    for part in &partials[1..] {
        for (d, v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
}

/// The im2col matrix of one image: row `(ci·kh + ky)·kw + kx`, column `oy·ow + ox` holds
/// `x[ci][oy·sy + ky − pt][ox·sx + kx − pl]` (zero outside the image).
fn im2col(s: &Conv2dShape, x: &[f32], cols: &mut [f32]) {
    im2col_at(s, x, cols, s.out_pixels(), 0);
}

/// [`im2col`] into columns `col0..col0 + oh·ow` of a matrix with rows of `ld` values.
fn im2col_at(s: &Conv2dShape, x: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
    let (p, plane) = (s.out_pixels(), s.h * s.w);
    let [sy, sx] = s.stride;
    let [pt, pl] = s.pad;
    for ci in 0..s.cin {
        let src = &x[ci * plane..(ci + 1) * plane];
        for ky in 0..s.kh {
            let (ylo, yhi) = Conv2dShape::valid(ky, pt, sy, s.h, s.oh);
            for kx in 0..s.kw {
                let (xlo, xhi) = Conv2dShape::valid(kx, pl, sx, s.w, s.ow);
                let r = (ci * s.kh + ky) * s.kw + kx;
                let row = &mut cols[r * ld + col0..r * ld + col0 + p];
                for oy in 0..s.oh {
                    let out = &mut row[oy * s.ow..(oy + 1) * s.ow];
                    if oy < ylo || oy >= yhi || xlo >= xhi {
                        out.fill(0.0);
                        continue;
                    }
                    let iy = oy * sy + ky - pt;
                    let line = &src[iy * s.w..(iy + 1) * s.w];
                    out[..xlo].fill(0.0);
                    out[xhi..].fill(0.0);
                    if sx == 1 {
                        let off = xlo + kx - pl;
                        out[xlo..xhi].copy_from_slice(&line[off..off + (xhi - xlo)]);
                    } else {
                        for (ox, o) in out.iter_mut().enumerate().take(xhi).skip(xlo) {
                            *o = line[ox * sx + kx - pl];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the im2col-shaped `cols` back onto the image `dx` (the transpose of [`im2col`]).
fn col2im(s: &Conv2dShape, cols: &[f32], dx: &mut [f32]) {
    col2im_at(s, cols, dx, s.out_pixels(), 0);
}

/// [`col2im`] from columns `col0..col0 + oh·ow` of a matrix with rows of `ld` values.
fn col2im_at(s: &Conv2dShape, cols: &[f32], dx: &mut [f32], ld: usize, col0: usize) {
    let (p, plane) = (s.out_pixels(), s.h * s.w);
    let [sy, sx] = s.stride;
    let [pt, pl] = s.pad;
    for ci in 0..s.cin {
        let dst = &mut dx[ci * plane..(ci + 1) * plane];
        for ky in 0..s.kh {
            let (ylo, yhi) = Conv2dShape::valid(ky, pt, sy, s.h, s.oh);
            for kx in 0..s.kw {
                let (xlo, xhi) = Conv2dShape::valid(kx, pl, sx, s.w, s.ow);
                if xlo >= xhi {
                    continue;
                }
                let r = (ci * s.kh + ky) * s.kw + kx;
                let row = &cols[r * ld + col0..r * ld + col0 + p];
                for oy in ylo..yhi {
                    let iy = oy * sy + ky - pt;
                    let line = &mut dst[iy * s.w..(iy + 1) * s.w];
                    let src = &row[oy * s.ow..(oy + 1) * s.ow];
                    if sx == 1 {
                        let off = xlo + kx - pl;
                        let n = xhi - xlo;
                        for (d, v) in line[off..off + n].iter_mut().zip(&src[xlo..xhi]) {
                            *d += v;
                        }
                    } else {
                        for (ox, v) in src.iter().enumerate().take(xhi).skip(xlo) {
                            line[ox * sx + kx - pl] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Geometry of a 2-D convolution on NCHW tensors (dilation 1). The padding after the last
/// row/column is implied by the output size, so asymmetric ("same") padding needs nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Padding before the first row and column.
    pub pad: [usize; 2],
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Conv2dShape {
    /// The output size a conv with padding `pad_begin`/`pad_end` gives (PyTorch's rule).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        [batch, cin, h, w]: [usize; 4],
        cout: usize,
        [kh, kw]: [usize; 2],
        stride: [usize; 2],
        pad_begin: [usize; 2],
        pad_end: [usize; 2],
    ) -> Self {
        let out = |n: usize, k: usize, s: usize, a: usize, b: usize| (n + a + b - k) / s + 1;
        Self {
            batch,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            stride,
            pad: pad_begin,
            oh: out(h, kh, stride[0], pad_begin[0], pad_end[0]),
            ow: out(w, kw, stride[1], pad_begin[1], pad_end[1]),
        }
    }

    /// Input values of one image.
    pub fn in_image(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// Output values of one image.
    pub fn out_image(&self) -> usize {
        self.cout * self.oh * self.ow
    }

    /// Output pixels of one image.
    pub fn out_pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// Rows of the im2col matrix (`cin·kh·kw`, the reduction length of a dense conv).
    pub fn patch(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Whether the conv reads its input as it is (1×1, stride 1, no padding): no im2col.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.oh == self.h
            && self.ow == self.w
    }

    /// Output index range `lo..hi` along one axis whose tap `t` lands inside the input (size
    /// `n`, padding `pad`, stride `s`, `out` outputs).
    #[inline(always)]
    pub(crate) fn valid(t: usize, pad: usize, s: usize, n: usize, out: usize) -> (usize, usize) {
        // o·s + t − pad ∈ [0, n)  ⇔  o ≥ ceil((pad − t)/s)  and  o·s < n + pad − t.
        let lo = pad.saturating_sub(t).div_ceil(s);
        let hi = if n + pad > t {
            (n + pad - t).div_ceil(s).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// How many parts to split `items` into on `threads` threads (at least one).
pub(crate) fn parts(items: usize, threads: usize) -> usize {
    threads.clamp(1, items.max(1))
}
