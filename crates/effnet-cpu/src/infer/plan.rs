//! The compiled network: weights rearranged for channels-last kernels, burn-free.

use crate::error::CpuError;
use crate::kernels::{Act, ConvGeom};

/// How a conv pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pad {
    /// TensorFlow "SAME": total `max((ceil(n/s)-1)·s + k - n, 0)`, the odd pixel after.
    Same,
    /// Fixed padding (top, left, bottom, right); torchvision's symmetric `(k-1)/2`.
    Explicit {
        /// Rows before.
        top: usize,
        /// Columns before.
        left: usize,
        /// Rows after.
        bottom: usize,
        /// Columns after.
        right: usize,
    },
}

/// (pad before, output size) along one axis.
fn same_axis(n: usize, k: usize, s: usize) -> (usize, usize) {
    let out = n.div_ceil(s);
    let total = ((out.max(1) - 1) * s + k).saturating_sub(n);
    (total / 2, out)
}

impl Pad {
    /// Geometry of a `k`×`k` stride-`s` conv over an `h`×`w`×`c` input.
    pub fn geometry(self, h: usize, w: usize, c: usize, k: usize, stride: usize) -> ConvGeom {
        let (pad_top, oh, pad_left, ow) = match self {
            Pad::Same => {
                let (pt, oh) = same_axis(h, k, stride);
                let (pl, ow) = same_axis(w, k, stride);
                (pt, oh, pl, ow)
            }
            Pad::Explicit {
                top,
                left,
                bottom,
                right,
            } => {
                let out =
                    |n: usize, a: usize, b: usize| ((n + a + b).saturating_sub(k)) / stride + 1;
                (top, out(h, top, bottom), left, out(w, left, right))
            }
        };
        ConvGeom {
            h,
            w,
            c,
            oh,
            ow,
            k,
            stride,
            pad_top,
            pad_left,
        }
    }
}

/// A dense k×k conv (stem, Fused-MBConv, 1×1 expand/project, head) as a GEMM:
/// weights `[k·k·cin][cout]` in (ky, kx, cin) row order.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding rule.
    pub pad: Pad,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// `[k·k·cin][cout]`.
    pub weight: Vec<f32>,
    /// `[cout]`.
    pub bias: Vec<f32>,
    /// Activation after the bias.
    pub act: Act,
}

/// Checks that a burn-layout tensor has the expected element count.
fn check_len(what: &str, got: usize, want: usize) -> Result<(), CpuError> {
    if got == want {
        Ok(())
    } else {
        Err(CpuError::Shape(format!(
            "{what}: {got} values, expected {want}"
        )))
    }
}

impl Conv {
    /// From PyTorch/burn layout `[cout][cin][k][k]` and a bias (zeros when absent).
    pub fn from_oihw(
        oihw: &[f32],
        [cout, cin, kh, kw]: [usize; 4],
        bias: Option<Vec<f32>>,
        stride: usize,
        pad: Pad,
        act: Act,
    ) -> Result<Self, CpuError> {
        if kh != kw {
            return Err(CpuError::Unsupported(format!(
                "non-square {kh}x{kw} kernel"
            )));
        }
        check_len("conv weight", oihw.len(), cout * cin * kh * kw)?;
        let k = kh;
        let mut weight = vec![0f32; k * k * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                for ky in 0..k {
                    for kx in 0..k {
                        let src = ((co * cin + ci) * k + ky) * k + kx;
                        weight[((ky * k + kx) * cin + ci) * cout + co] = oihw[src];
                    }
                }
            }
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; cout]);
        check_len("conv bias", bias.len(), cout)?;
        Ok(Self {
            k,
            stride,
            pad,
            cin,
            cout,
            weight,
            bias,
            act,
        })
    }

    /// Whether the conv is a plain matrix product over pixels (1×1, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1
    }
}

/// A depthwise k×k conv with weights `[k·k][c]`.
#[derive(Clone, Debug)]
pub struct Depthwise {
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding rule.
    pub pad: Pad,
    /// Channels.
    pub c: usize,
    /// `[k·k][c]`.
    pub weight: Vec<f32>,
    /// `[c]`.
    pub bias: Vec<f32>,
    /// Activation after the bias.
    pub act: Act,
}

impl Depthwise {
    /// From burn layout `[c][1][k][k]`.
    pub fn from_oihw(
        oihw: &[f32],
        [c, one, kh, kw]: [usize; 4],
        bias: Option<Vec<f32>>,
        stride: usize,
        pad: Pad,
        act: Act,
    ) -> Result<Self, CpuError> {
        if one != 1 || kh != kw {
            return Err(CpuError::Unsupported(format!(
                "depthwise weight [{c}, {one}, {kh}, {kw}]"
            )));
        }
        check_len("depthwise weight", oihw.len(), c * kh * kw)?;
        let k = kh;
        let mut weight = vec![0f32; k * k * c];
        for ch in 0..c {
            for t in 0..k * k {
                weight[t * c + ch] = oihw[ch * k * k + t];
            }
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; c]);
        check_len("depthwise bias", bias.len(), c)?;
        Ok(Self {
            k,
            stride,
            pad,
            c,
            weight,
            bias,
            act,
        })
    }
}

/// Squeeze-excitation with transposed weights: reduce `[c][squeeze]`, expand `[squeeze][c]`.
#[derive(Clone, Debug)]
pub struct SqueezeExcite {
    /// `[c][squeeze]`.
    pub w_reduce: Vec<f32>,
    /// `[squeeze]`.
    pub b_reduce: Vec<f32>,
    /// `[squeeze][c]`.
    pub w_expand: Vec<f32>,
    /// `[c]`.
    pub b_expand: Vec<f32>,
    /// Activation between the two products.
    pub act: Act,
}

fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut dst = vec![0f32; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
    dst
}

impl SqueezeExcite {
    /// From the two 1×1 convs in burn layout: reduce `[squeeze][c]`, expand `[c][squeeze]`.
    pub fn from_convs(
        reduce: &[f32],
        b_reduce: Vec<f32>,
        expand: &[f32],
        b_expand: Vec<f32>,
        act: Act,
    ) -> Result<Self, CpuError> {
        let (sq, c) = (b_reduce.len(), b_expand.len());
        check_len("SE reduce weight", reduce.len(), sq * c)?;
        check_len("SE expand weight", expand.len(), sq * c)?;
        Ok(Self {
            w_reduce: transpose(reduce, sq, c),
            b_reduce,
            w_expand: transpose(expand, c, sq),
            b_expand,
            act,
        })
    }

    /// Channels gated.
    pub fn channels(&self) -> usize {
        self.b_expand.len()
    }
}

/// One block: optional dense conv (expand or Fused-MBConv), optional depthwise conv, optional
/// SE, optional 1×1 projection (no activation), optional residual.
#[derive(Clone, Debug)]
pub struct BlockPlan {
    /// Full k×k conv (Fused-MBConv) or 1×1 expansion.
    pub conv: Option<Conv>,
    /// Depthwise conv (MBConv).
    pub dw: Option<Depthwise>,
    /// Squeeze-excitation on the depthwise output.
    pub se: Option<SqueezeExcite>,
    /// 1×1 projection.
    pub project: Option<Conv>,
    /// Adds the block input to its output.
    pub skip: bool,
}

/// A whole network ready to execute.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Stem conv (with activation).
    pub stem: Conv,
    /// Blocks in order.
    pub blocks: Vec<BlockPlan>,
    /// 1×1 head conv (with activation).
    pub head: Conv,
    /// Classifier `[features][classes]`.
    pub fc_weight: Vec<f32>,
    /// Classifier bias `[classes]`.
    pub fc_bias: Vec<f32>,
}

impl Plan {
    /// Checks that every layer's channels match the previous layer's.
    pub fn validate(&self) -> Result<(), CpuError> {
        let mismatch = |what: String| Err(CpuError::Shape(what));
        if self.stem.cin != 3 {
            return mismatch(format!("stem takes {} channels, not 3", self.stem.cin));
        }
        let mut c = self.stem.cout;
        for (i, b) in self.blocks.iter().enumerate() {
            let cin = c;
            if let Some(conv) = &b.conv {
                if conv.cin != c {
                    return mismatch(format!(
                        "block {i} conv takes {} channels, gets {c}",
                        conv.cin
                    ));
                }
                c = conv.cout;
            }
            if let Some(dw) = &b.dw
                && dw.c != c
            {
                return mismatch(format!(
                    "block {i} depthwise has {} channels, gets {c}",
                    dw.c
                ));
            }
            if let Some(se) = &b.se
                && (se.channels() != c || b.project.is_none() || b.dw.is_none())
            {
                return mismatch(format!("block {i} SE over {} channels", se.channels()));
            }
            if let Some(p) = &b.project {
                if p.cin != c || !p.is_pointwise() {
                    return mismatch(format!(
                        "block {i} projection takes {} channels, gets {c}",
                        p.cin
                    ));
                }
                c = p.cout;
            }
            if b.skip && c != cin {
                return mismatch(format!("block {i} residual {cin} -> {c} channels"));
            }
        }
        if self.head.cin != c || !self.head.is_pointwise() {
            return mismatch(format!("head takes {} channels, gets {c}", self.head.cin));
        }
        let classes = self.fc_bias.len();
        if classes == 0 || self.fc_weight.len() != self.head.cout * classes {
            return mismatch(format!(
                "classifier has {} weights for {} features and {classes} classes",
                self.fc_weight.len(),
                self.head.cout
            ));
        }
        Ok(())
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.fc_bias.len()
    }
}
