//! Anti-aliased downsampling (timm `BlurPool2d` with constant padding, `aa_layer='blurpc'`): a
//! fixed 3×3 binomial blur `[1, 2, 1]ᵀ[1, 2, 1] / 16` per channel at the block's stride, after a
//! depthwise conv that then runs at stride 1. It has no parameters.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

/// Depthwise binomial blur at `stride`, zero padding 1.
#[derive(Module, Debug)]
pub struct BlurPool {
    /// Channels blurred.
    pub channels: usize,
    /// Downsampling stride.
    pub stride: usize,
}

/// The 3×3 binomial filter, row-major.
pub const BLUR_FILTER: [f32; 9] = [
    1.0 / 16.0,
    2.0 / 16.0,
    1.0 / 16.0,
    2.0 / 16.0,
    4.0 / 16.0,
    2.0 / 16.0,
    1.0 / 16.0,
    2.0 / 16.0,
    1.0 / 16.0,
];

impl BlurPool {
    /// A blur over `channels` channels downsampling by `stride`.
    pub fn new(channels: usize, stride: usize) -> Self {
        Self { channels, stride }
    }

    /// Blurs and subsamples `x` (`[B, C, H, W]` → `[B, C, ⌈H/s⌉, ⌈W/s⌉]` for odd sizes).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = self.channels;
        let dtype: FloatDType = x.dtype().into();
        let filter: Vec<f32> = (0..c).flat_map(|_| BLUR_FILTER).collect();
        let weight = Tensor::<4>::from_data(TensorData::new(filter, [c, 1, 3, 3]), &x.device());
        let options = ConvOptions::new([self.stride; 2], [1, 1], [1, 1], c);
        conv2d(x, weight.cast(dtype), None, options)
    }
}
