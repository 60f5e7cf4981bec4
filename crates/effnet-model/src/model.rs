//! The network: stem, stages of blocks, head and classifier, built from an [`EfficientNetConfig`].

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::blocks::{Block, LayerSettings, NormAct, conv_bn_act, fold_bn};
use crate::config::{Activation, EfficientNetConfig, NormKind};
use crate::error::ModelError;
use crate::precision::{self, ComputePrecision};

/// One feature map of the backbone (timm's `feature_info` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureInfo {
    /// The map is the output after this many stages (0: the stem).
    pub stages: usize,
    /// Total stride relative to the input.
    pub reduction: usize,
    /// Channels of the map.
    pub num_chs: usize,
    /// timm's module name for the same point (`bn1` for the stem, `blocks.S` for a stage).
    pub module: String,
}

/// An EfficientNet / EfficientNetV2 / Lite network. Field names follow timm
/// (`conv_stem`, `bn1`, `blocks.S.J`, `conv_head`, `bn2`, `classifier`).
#[derive(Module, Debug)]
pub struct EfficientNet {
    /// 3×3 stride-2 stem conv.
    pub conv_stem: Conv2d,
    /// Stem BatchNorm.
    pub bn1: Option<BatchNorm>,
    /// Stem norm of a GroupNorm / LayerNorm / EvoNorm network (then `bn1` is absent).
    pub norm1: Option<NormAct>,
    /// Stages, each a list of blocks.
    pub blocks: Vec<Vec<Block>>,
    /// 1×1 head conv.
    pub conv_head: Conv2d,
    /// Head BatchNorm.
    pub bn2: Option<BatchNorm>,
    /// Head norm of a GroupNorm / LayerNorm / EvoNorm network (then `bn2` is absent).
    pub norm2: Option<NormAct>,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// Final linear layer.
    pub classifier: Linear,
    /// Activation.
    #[module(skip)]
    pub act: Activation,
}

impl EfficientNetConfig {
    /// Builds the network with fresh (torchvision-style) initialisation on `device`.
    pub fn init(&self, device: &Device) -> EfficientNet {
        let layers = LayerSettings {
            padding: self.padding,
            bn_eps: self.bn_eps,
            bn_momentum: self.bn_momentum,
            act: self.activation,
            norm: self.norm,
            norm_group_size: self.norm_group_size,
            attention: self.attention,
            blur_pool: self.blur_pool,
        };
        let stem = self.stem_out();
        let specs = self.resolved_blocks();
        let blocks: Vec<Vec<Block>> = (specs.iter())
            .map(|stage| {
                stage
                    .iter()
                    .map(|b| Block::new(b, &layers, device))
                    .collect()
            })
            .collect();
        let last = (specs.iter().flatten().last()).map_or(stem, |b| b.out_channels);
        let head = self.head_out();
        let batch = self.norm == NormKind::Batch;
        let norm = |c: usize| {
            let (k, g, eps) = (self.norm, self.norm_group_size, self.bn_eps);
            (!batch).then(|| NormAct::new(k, c, g, eps, Some(self.activation), device))
        };
        EfficientNet {
            conv_stem: layers.conv(3, stem, 3, 2, 1, device),
            bn1: batch.then(|| layers.bn(stem, device)),
            norm1: norm(stem),
            blocks,
            conv_head: layers.conv(last, head, 1, 1, 1, device),
            bn2: batch.then(|| layers.bn(head, device)),
            norm2: norm(head),
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: new_classifier(head, self.num_classes, device),
            act: self.activation,
        }
    }
}

fn new_classifier(features: usize, classes: usize, device: &Device) -> Linear {
    let range = 1.0 / (classes as f64).sqrt();
    let mut linear = LinearConfig::new(features, classes)
        .with_initializer(Initializer::Uniform {
            min: -range,
            max: range,
        })
        .init(device);
    linear.bias = Some(Param::from_tensor(Tensor::zeros([classes], device)));
    linear
}

impl EfficientNet {
    /// Image batch `[B, 3, H, W]` to logits `[B, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.forward_features(x), false)
    }

    /// [`forward`](Self::forward) computing in `precision` (mixed precision, see
    /// [`crate::precision`]): the input is cast to it, parameters stay f32 and are cast per
    /// layer, BatchNorm runs in f32, and the logits come back in f32.
    pub fn forward_with(&self, x: Tensor<4>, precision: ComputePrecision) -> Tensor<2> {
        let x = x.cast(precision.float_dtype());
        self.forward(x).cast(FloatDType::F32)
    }

    /// [`forward_inference`](Self::forward_inference) computing in `precision` (see
    /// [`forward_with`](Self::forward_with)); logits in f32.
    pub fn forward_inference_with(&self, x: Tensor<4>, precision: ComputePrecision) -> Tensor<2> {
        let x = x.cast(precision.float_dtype());
        self.forward_inference(x).cast(FloatDType::F32)
    }

    /// [`forward`](Self::forward) with the batch split into `parts` sub-batches run on rayon
    /// threads. burn's CPU backend keeps only about one core busy per forward; splitting the
    /// batch keeps all of them busy (1.45x on 2 cores for V2-S batch 8). Same result as `forward`.
    pub fn forward_split(&self, x: Tensor<4>, parts: usize) -> Tensor<2> {
        use rayon::prelude::*;
        let b = x.dims()[0];
        let parts = parts.clamp(1, b.max(1));
        if parts == 1 {
            return self.forward(x);
        }
        let chunk = b.div_ceil(parts);
        let starts: Vec<usize> = (0..b).step_by(chunk).collect();
        let outs: Vec<Tensor<2>> = starts
            .into_par_iter()
            .map(|s| self.forward(x.clone().narrow(0, s, chunk.min(b - s))))
            .collect();
        Tensor::cat(outs, 0)
    }

    /// Inference forward that uses every core: on the CPU backend the batch is split across the
    /// rayon threads ([`forward_split`](Self::forward_split)); other devices run it whole.
    pub fn forward_inference(&self, x: Tensor<4>) -> Tensor<2> {
        if x.device() == Device::flex() {
            self.forward_split(x, rayon::current_num_threads())
        } else {
            self.forward(x)
        }
    }

    /// Everything up to and including the head conv + BN + activation: `[B, F, H/32, W/32]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.forward_stages(self.forward_stem(x), 0..self.blocks.len());
        if let Some(norm) = &self.norm2 {
            return norm.forward(crate::ops::conv2d(&self.conv_head, x));
        }
        conv_bn_act(&self.conv_head, &self.bn2, Some(self.act), x)
    }

    fn forward_stem(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(norm) = &self.norm1 {
            return norm.forward(crate::ops::conv2d(&self.conv_stem, x));
        }
        conv_bn_act(&self.conv_stem, &self.bn1, Some(self.act), x)
    }

    fn forward_stages(&self, mut x: Tensor<4>, stages: std::ops::Range<usize>) -> Tensor<4> {
        for block in self.blocks[stages].iter().flatten() {
            x = block.forward(x);
        }
        x
    }

    /// The maps a detection or segmentation head can use (timm's `feature_info`): the output of
    /// the last stage at each resolution, strides 2, 4, 8, 16, 32 for every preset.
    pub fn feature_info(&self) -> Vec<FeatureInfo> {
        let stem_channels = self.conv_stem.weight.dims()[0];
        let mut reduction = self.conv_stem.stride[0];
        let mut points = vec![(0, reduction, stem_channels)];
        for (i, stage) in self.blocks.iter().enumerate() {
            reduction *= stage.iter().map(Block::stride).product::<usize>();
            let channels = stage.last().map(Block::out_channels).unwrap_or(0);
            points.push((i + 1, reduction, channels));
        }
        // A point is kept when the next one is coarser (or it is the last).
        let next_coarser = |k: usize| points.get(k + 1).is_none_or(|n| n.1 > points[k].1);
        (0..points.len())
            .filter(|&k| next_coarser(k))
            .map(|k| {
                let (stages, reduction, num_chs) = points[k];
                FeatureInfo {
                    stages,
                    reduction,
                    num_chs,
                    module: match stages {
                        0 => "bn1".to_string(),
                        n => format!("blocks.{}", n - 1),
                    },
                }
            })
            .collect()
    }

    /// Backbone use (timm's `features_only=True, out_indices=...`): the feature maps listed in
    /// [`feature_info`](Self::feature_info) at `out_indices`, finest first; the head conv and
    /// classifier are not run. An index past the list is an error naming the valid range.
    pub fn forward_feature_maps(
        &self,
        x: Tensor<4>,
        out_indices: &[usize],
    ) -> Result<Vec<Tensor<4>>, ModelError> {
        let info = self.feature_info();
        if let Some(bad) = out_indices.iter().find(|&&i| i >= info.len()) {
            return Err(ModelError::Config(format!(
                "feature index {bad} out of range: this model has {} feature maps (0..={})",
                info.len(),
                info.len() - 1
            )));
        }
        let mut wanted: Vec<usize> = out_indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut maps = Vec::with_capacity(wanted.len());
        let mut x = self.forward_stem(x);
        let mut done = 0;
        for i in wanted {
            let stages = info[i].stages;
            x = self.forward_stages(x, done..stages);
            done = stages;
            maps.push(x.clone());
        }
        Ok(maps)
    }

    /// Global average pool, dropout and classifier; `pre_logits` stops after the pool.
    pub fn forward_head(&self, features: Tensor<4>, pre_logits: bool) -> Tensor<2> {
        let pooled: Tensor<2> = crate::ops::global_avg_pool(features).flatten(1, 3);
        if pre_logits {
            return pooled;
        }
        precision::linear(&self.classifier, self.dropout.forward(pooled))
    }

    /// Replaces the classifier with a freshly initialised one for `num_classes` (fine-tuning).
    pub fn reset_classifier(mut self, num_classes: usize) -> Self {
        let device = self.classifier.weight.device();
        let [features, _] = self.classifier.weight.dims();
        self.classifier = new_classifier(features, num_classes, &device);
        self
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// Trainable parameters, excluding BatchNorm running statistics (matches PyTorch's count).
    pub fn num_trainable_params(&self) -> usize {
        let running: usize = self.batch_norms().map(|bn| 2 * bn.gamma.dims()[0]).sum();
        self.num_params() - running
    }

    /// Folds every BatchNorm into its conv for inference: same outputs, fewer memory passes.
    /// The result cannot be trained further or loaded with BN weights again.
    pub fn fold_batchnorm(mut self) -> Self {
        fold_bn(&mut self.conv_stem, &mut self.bn1);
        for block in self.blocks.iter_mut().flatten() {
            block.fold_batchnorm();
        }
        fold_bn(&mut self.conv_head, &mut self.bn2);
        self
    }

    /// Whether [`fold_batchnorm`](Self::fold_batchnorm) has been applied (or there is no
    /// BatchNorm to fold) and no block keeps one: the model is ready for inference engines.
    pub fn is_folded(&self) -> bool {
        self.batch_norms().next().is_none()
    }

    /// Sets the dropout rate (progressive learning changes it between stages).
    pub fn set_dropout(mut self, prob: f64) -> Self {
        self.dropout.prob = prob;
        self
    }

    /// Stochastic-depth rates of every block, in order.
    pub fn drop_path_rates(&self) -> Vec<f64> {
        self.blocks
            .iter()
            .flatten()
            .map(Block::drop_path_rate)
            .collect()
    }

    fn batch_norms(&self) -> impl Iterator<Item = &BatchNorm> {
        let blocks = self.blocks.iter().flatten();
        [&self.bn1, &self.bn2]
            .into_iter()
            .chain(blocks.flat_map(|b| b.layers().batch_norms()))
            .flatten()
    }
}
