//! Global-context attention (GCNet; timm `GlobalContext` with its defaults: attention pooling,
//! scaling fusion): a 1×1 conv scores every pixel, the softmax of the scores pools the map into
//! one context vector, and a conv → LayerNorm → act → conv MLP of it gates the channels like SE.
//! `gc_efficientnetv2_rw_t` uses it in place of squeeze-excitation.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

use super::{LayerKeys, activate, timm_keys};
use crate::config::Activation;
use crate::precision;

/// timm's `ConvMlp` with a LayerNorm: 1×1 conv → LayerNorm (eps 1e-6) → act → 1×1 conv.
#[derive(Module, Debug)]
pub struct ContextMlp {
    /// Reduce.
    pub fc1: Conv2d,
    /// LayerNorm over the hidden channels.
    pub norm: LayerNorm,
    /// Expand.
    pub fc2: Conv2d,
    /// Activation between the convs.
    #[module(skip)]
    pub act: Activation,
}

/// Attention-pooled context gating the channels of its input.
#[derive(Module, Debug)]
pub struct GlobalContext {
    /// 1×1 conv to one score per pixel.
    pub conv_attn: Conv2d,
    /// The MLP producing the channel gate.
    pub mlp_scale: ContextMlp,
}

fn conv1x1(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [1, 1])
        .with_initializer(Initializer::KaimingNormal {
            gain: 1.0,
            fan_out_only: false,
        })
        .init(device)
}

impl GlobalContext {
    /// Global context over `channels` with a `hidden`-wide MLP using `act`.
    pub fn new(channels: usize, hidden: usize, act: Activation, device: &Device) -> Self {
        Self {
            conv_attn: conv1x1(channels, 1, device),
            mlp_scale: ContextMlp {
                fc1: conv1x1(channels, hidden, device),
                norm: LayerNormConfig::new(hidden).with_epsilon(1e-6).init(device),
                fc2: conv1x1(hidden, channels, device),
                act,
            },
        }
    }

    /// Gates `x` channel-wise with its attention-pooled context.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let scores = precision::conv(&self.conv_attn, x.clone()).reshape([b, 1, h * w]);
        let attn = softmax(scores, 2); // [B, 1, HW]
        let flat = x.clone().reshape([b, c, h * w]);
        let context = flat.matmul(attn.swap_dims(1, 2)).reshape([b, c, 1, 1]);
        let m = &self.mlp_scale;
        let y = precision::conv(&m.fc1, context);
        let hidden = y.dims()[1];
        let y = m
            .norm
            .forward(y.reshape([b, hidden]))
            .reshape([b, hidden, 1, 1]);
        let y = precision::conv(&m.fc2, activate(y, m.act));
        x * sigmoid(y)
    }

    /// Its layers under timm's names (timm calls the attention module `se`).
    pub fn key_table() -> Vec<LayerKeys> {
        vec![
            timm_keys("gc.conv_attn", "se.conv_attn"),
            timm_keys("gc.mlp_scale.fc1", "se.mlp_scale.fc1"),
            timm_keys("gc.mlp_scale.norm", "se.mlp_scale.norm"),
            timm_keys("gc.mlp_scale.fc2", "se.mlp_scale.fc2"),
        ]
    }
}
