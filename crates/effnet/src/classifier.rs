//! [`Classifier`]: a model, its preprocessing and its class names, ready to predict.

use std::path::Path;

use burn::prelude::*;
use effnet_data::Preprocess;
use effnet_model::{ComputePrecision, EfficientNet, EfficientNetConfig, ModelError, Pretrained};
use image::RgbImage;
use rayon::prelude::*;

use crate::Error;
use crate::bundled::bundled_pretrained;
use crate::labels::default_labels;
use crate::source::WeightsSource;

/// Which code runs a [`Classifier`]'s forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Engine {
    /// The dedicated CPU executor ([`effnet_cpu`]) on the CPU device, burn elsewhere.
    #[default]
    Auto,
    /// The dedicated CPU executor (CPU device only).
    Native,
    /// burn's forward on the classifier's device.
    Burn,
}

/// An error when any logit is NaN or infinite, saying how many of the `batch` images it hit.
fn check_logits(logits: &[f32], batch: usize) -> Result<(), ModelError> {
    let per = (logits.len() / batch.max(1)).max(1);
    let bad = logits
        .chunks(per)
        .filter(|row| row.iter().any(|v| !v.is_finite()))
        .count();
    if bad == 0 {
        return Ok(());
    }
    Err(ModelError::NonFiniteOutput(format!(
        "the model produced NaN or infinite logits for {bad} of {batch} images \
         (weights or inputs out of range); no prediction printed"
    )))
}

/// Softmax of one row of finite logits, computed in f64.
fn softmax_row(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// One ranked class.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Class index in the model's output.
    pub index: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability.
    pub prob: f32,
}

/// effnet's own CPU executor: f32, or int8 for int8 weights.
enum NativeEngine {
    F32(Box<effnet_cpu::Executor>),
    Int8(Box<effnet_cpu::Int8Executor>),
}

impl NativeEngine {
    fn forward(
        &self,
        x: &[f32],
        batch: usize,
        size: usize,
    ) -> Result<Vec<f32>, effnet_cpu::CpuError> {
        let nchw = effnet_cpu::Layout::Nchw;
        match self {
            NativeEngine::F32(e) => e.forward(x, batch, size, size, nchw),
            NativeEngine::Int8(e) => e.forward(x, batch, size, size, nchw),
        }
    }

    fn num_classes(&self) -> usize {
        match self {
            NativeEngine::F32(e) => e.num_classes(),
            NativeEngine::Int8(e) => e.num_classes(),
        }
    }
}

/// A model with the preprocessing it was trained with and its class names.
pub struct Classifier {
    model: EfficientNet,
    config: EfficientNetConfig,
    preprocess: Preprocess,
    labels: Vec<String>,
    device: Device,
    native: Option<NativeEngine>,
    /// The int8 model of int8 weights (run by the native engine; `model` holds its weights
    /// dequantised for burn).
    int8: Option<Box<effnet_cpu::quant::QuantModel>>,
    precision: ComputePrecision,
}

impl Classifier {
    /// The bundled ImageNet EfficientNet-Lite0, no files or network needed (cargo feature
    /// `bundled`; without it this is an error).
    pub fn bundled(device: &Device) -> Result<Self, Error> {
        Ok(Self::from_pretrained(bundled_pretrained(device)?, device))
    }

    /// Loads the weights a user names: `bundled`, an effnet `.bpk`, a PyTorch
    /// `.pth`/`.safetensors` (with `arch`), or `hf-hub:owner/name[@revision]`. `arch` is a
    /// preset name, an alias of one or a model TOML; it is checked against `.bpk` files.
    ///
    /// ```no_run
    /// # use effnet::{Classifier, Device};
    /// let c = Classifier::load("v2s.pth", Some("efficientnet_v2_s"), &Device::flex())?;
    /// # Ok::<(), effnet::Error>(())
    /// ```
    pub fn load(weights: &str, arch: Option<&str>, device: &Device) -> Result<Self, Error> {
        Self::load_source(&weights.parse()?, arch, device)
    }

    /// [`load`](Self::load) from an already parsed source.
    pub fn load_source(
        source: &WeightsSource,
        arch: Option<&str>,
        device: &Device,
    ) -> Result<Self, Error> {
        let pre = crate::source::load_pretrained(source, arch, device)?;
        Ok(Self::from_pretrained(pre, device))
    }

    /// Weights from an effnet `.bpk` (as written by `effnet import` or `effnet train`), or a
    /// training run folder (its `best.bpk`).
    pub fn from_file(path: &Path, device: &Device) -> Result<Self, Error> {
        let pre = crate::files::load_file(path, None, device)?;
        Ok(Self::from_pretrained(pre, device))
    }

    /// Wraps an already loaded model (int8 weights run on the native engine's int8 executor).
    pub fn from_pretrained(pre: Pretrained, device: &Device) -> Self {
        let labels = pre
            .labels
            .filter(|l| l.len() == pre.config.num_classes)
            .unwrap_or_else(|| default_labels(pre.config.num_classes));
        let mut c = Self::new(pre.model, pre.config, pre.preprocess, labels, device);
        if let Some(q) = pre.int8 {
            c.native = (c.device == Device::flex())
                .then(|| effnet_cpu::Int8Executor::new((*q).clone()).ok())
                .flatten()
                .map(|e| NativeEngine::Int8(Box::new(e)));
            c.int8 = Some(q);
        }
        c
    }

    /// Assembles a classifier from parts (e.g. a freshly trained model). BatchNorm is folded into
    /// the convs: a classifier only predicts (fine-tune the [`EfficientNet`] itself instead).
    pub fn new(
        model: EfficientNet,
        config: EfficientNetConfig,
        preprocess: Preprocess,
        labels: Vec<String>,
        device: &Device,
    ) -> Self {
        let model = model.fold_batchnorm();
        // The native CPU executor when it supports the model; burn otherwise.
        let native = (*device == Device::flex())
            .then(|| effnet_model::native::executor(&model, &config).ok())
            .flatten()
            .map(|e| NativeEngine::F32(Box::new(e)));
        Self {
            model,
            config,
            preprocess,
            labels,
            device: device.clone(),
            native,
            int8: None,
            precision: ComputePrecision::F32,
        }
    }

    /// Chooses the engine that runs the forward pass (default [`Engine::Auto`]: the native
    /// executor on the CPU). [`Engine::Native`] fails off the CPU or for unsupported models.
    pub fn with_engine(mut self, engine: Engine) -> Result<Self, Error> {
        match engine {
            Engine::Burn => self.native = None,
            Engine::Auto | Engine::Native if self.native.is_some() => {}
            Engine::Auto => {}
            Engine::Native if self.device != Device::flex() => {
                return Err(Error::Usage(
                    "the native engine runs on the cpu device only".into(),
                ));
            }
            Engine::Native if self.precision.is_half() => {
                return Err(Error::Usage(format!(
                    "the native engine computes in f32 only; precision {} needs the burn engine \
                     (engine auto or burn)",
                    self.precision
                )));
            }
            Engine::Native => {
                let usage =
                    |e: effnet_cpu::CpuError| Error::Usage(format!("the native engine: {e}"));
                self.native = Some(match &self.int8 {
                    Some(q) => NativeEngine::Int8(Box::new(
                        effnet_cpu::Int8Executor::new((**q).clone()).map_err(usage)?,
                    )),
                    None => NativeEngine::F32(Box::new(
                        effnet_model::native::executor(&self.model, &self.config).map_err(usage)?,
                    )),
                });
            }
        }
        Ok(self)
    }

    /// Computes in `precision` (mixed precision, timm's `--amp`): f32 weights cast per layer,
    /// BatchNorm and the logits in f32. The native CPU executor is f32-only, so a half precision
    /// switches [`Engine::Auto`] to burn; a device without that float type is an error.
    pub fn with_precision(mut self, precision: ComputePrecision) -> Result<Self, Error> {
        if !precision.supported_on(&self.device) {
            return Err(Error::Usage(format!(
                "precision {precision} is not supported on this device"
            )));
        }
        if precision.is_half() {
            self.native = None;
        }
        self.precision = precision;
        Ok(self)
    }

    /// The compute precision of the forward pass.
    pub fn precision(&self) -> ComputePrecision {
        self.precision
    }

    /// The int8 model, for int8 weights (the native engine runs it; burn runs its weights
    /// dequantised).
    pub fn int8(&self) -> Option<&effnet_cpu::quant::QuantModel> {
        self.int8.as_deref()
    }

    /// What computes the forward pass, for reports: `native f32 (avx512)`,
    /// `native int8 (avx512-vnni)` or `burn`.
    pub fn engine_name(&self) -> String {
        match &self.native {
            Some(NativeEngine::F32(e)) => format!("native f32 ({})", e.isa().name()),
            Some(NativeEngine::Int8(e)) => format!("native int8 ({})", e.kernel().name()),
            None => "burn".into(),
        }
    }

    /// The engine in use: [`Engine::Native`] or [`Engine::Burn`].
    pub fn engine(&self) -> Engine {
        if self.native.is_some() {
            Engine::Native
        } else {
            Engine::Burn
        }
    }

    /// Overrides the preprocessing (size, crop, interpolation, mean, std).
    pub fn with_preprocess(mut self, preprocess: Preprocess) -> Self {
        self.preprocess = preprocess;
        self
    }

    /// Overrides the class names.
    pub fn with_labels(mut self, labels: Vec<String>) -> Self {
        self.labels = labels;
        self
    }

    /// The preprocessing in use.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The model description.
    pub fn config(&self) -> &EfficientNetConfig {
        &self.config
    }

    /// The class names.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The classes' WordNet ids when the model is an ImageNet-1k classifier (its class names are
    /// ImageNet's, as for the bundled weights, imported 1000-class weights and timm's Hub
    /// weights); `None` for other class lists.
    pub fn class_ids(&self) -> Option<Vec<String>> {
        crate::labels::imagenet_class_ids(&self.labels)
    }

    /// The network, with BatchNorm folded into the convs.
    pub fn model(&self) -> &EfficientNet {
        &self.model
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Preprocesses images (in parallel) into one `[B, 3, crop, crop]` tensor.
    pub fn batch_tensor(&self, images: &[RgbImage]) -> Tensor<4> {
        let c = self.preprocess.crop;
        let buf = self.batch_values(images);
        Tensor::from_data(TensorData::new(buf, [images.len(), 3, c, c]), &self.device)
    }

    /// Preprocesses images (in parallel) into `[B][3][crop][crop]` values.
    fn batch_values(&self, images: &[RgbImage]) -> Vec<f32> {
        let c = self.preprocess.crop;
        let per = 3 * c * c;
        let mut buf = vec![0f32; images.len() * per];
        buf.par_chunks_mut(per)
            .zip(images.par_iter())
            .for_each(|(out, img)| self.preprocess.apply_into(img, out));
        buf
    }

    /// Raw logits `[B, classes]` for a batch of images: the native executor on the CPU
    /// (see [`Engine`]), burn's forward otherwise (CPU batches split across threads).
    pub fn logits(&self, images: &[RgbImage]) -> Result<Tensor<2>, Error> {
        match &self.native {
            Some(exec) => self.native_logits(exec, images),
            None => {
                Ok((self.model).forward_inference_with(self.batch_tensor(images), self.precision))
            }
        }
    }

    /// Width of the embedding ([`embed`](Self::embed)): the features before the classifier.
    pub fn num_features(&self) -> usize {
        self.model.classifier.weight.dims()[0]
    }

    /// Image embeddings: the pooled features the classifier reads (timm's
    /// `forward_head(forward_features(x), pre_logits=True)`), one row of
    /// [`num_features`](Self::num_features) values per image, for retrieval, clustering or a
    /// new head. Computed by burn on the classifier's device, in f32.
    pub fn embed(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>, Error> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let features = self.model.forward_features(self.batch_tensor(images));
        let pooled = self.model.forward_head(features, true);
        let values = (pooled.into_data().convert::<f32>())
            .try_into_vec::<f32>()
            .map_err(|e| Error::Inference(format!("reading embeddings: {e:?}")))?;
        Ok(values
            .chunks(self.num_features())
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Logits `[B * classes]` of an already preprocessed `[B, 3, size, size]` batch (as an eval
    /// loader produces it), on the classifier's engine.
    pub fn logits_values(
        &self,
        values: Vec<f32>,
        batch: usize,
        size: usize,
    ) -> Result<Vec<f32>, Error> {
        let read_err = |e: String| Error::Inference(format!("computing logits: {e}"));
        let logits = match &self.native {
            Some(exec) => exec
                .forward(&values, batch, size)
                .map_err(|e| read_err(e.to_string())),
            None => {
                let x = Tensor::from_data(
                    TensorData::new(values, [batch, 3, size, size]),
                    &self.device,
                );
                (self
                    .model
                    .forward_inference_with(x, self.precision)
                    .into_data())
                .try_to_vec::<f32>()
                .map_err(|e| read_err(format!("{e:?}")))
            }
        }?;
        check_logits(&logits, batch)?;
        Ok(logits)
    }

    fn native_logits(&self, exec: &NativeEngine, images: &[RgbImage]) -> Result<Tensor<2>, Error> {
        let (b, c) = (images.len(), self.preprocess.crop);
        let classes = exec.num_classes();
        let values = exec
            .forward(&self.batch_values(images), b, c)
            .map_err(|e| Error::Inference(format!("native engine: {e}")))?;
        Ok(Tensor::from_data(
            TensorData::new(values, [b, classes]),
            &self.device,
        ))
    }

    /// Top-`k` classes for each image of a batch; a forward producing NaN or infinite logits
    /// (weights or an input out of range) is an error, not a ranking.
    pub fn predict_batch(
        &self,
        images: &[RgbImage],
        k: usize,
    ) -> Result<Vec<Vec<Prediction>>, Error> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let logits: Vec<f32> = (self.logits(images)?.into_data().convert::<f32>())
            .try_into_vec()
            .map_err(|e| Error::Inference(format!("reading logits: {e:?}")))?;
        self.rank_logits(&logits, images.len(), k)
    }

    /// Top-`k` classes of each of `batch` rows of logits read back by the caller (as a browser
    /// reads them asynchronously): the same ranking as [`predict_batch`](Self::predict_batch),
    /// NaN check and f64 softmax included.
    pub fn rank_logits(
        &self,
        logits: &[f32],
        batch: usize,
        k: usize,
    ) -> Result<Vec<Vec<Prediction>>, Error> {
        check_logits(logits, batch)?;
        let n = (logits.len() / batch.max(1)).max(1);
        Ok(logits
            .chunks(n)
            .map(|row| self.top_k(&softmax_row(row), k))
            .collect())
    }

    /// Top-`k` classes of one image.
    pub fn predict(&self, image: &RgbImage, k: usize) -> Result<Vec<Prediction>, Error> {
        let mut all = self.predict_batch(std::slice::from_ref(image), k)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Top-`k` classes of any decoded image (grayscale, alpha, 16-bit... are converted to RGB).
    pub fn predict_image(
        &self,
        image: &image::DynamicImage,
        k: usize,
    ) -> Result<Vec<Prediction>, Error> {
        self.predict(&image.to_rgb8(), k)
    }

    /// Top-`k` classes of an encoded image file's bytes (JPEG, PNG, WebP, BMP; e.g. from an
    /// upload), decoded under the process's decoding limits.
    pub fn predict_bytes(&self, bytes: &[u8], k: usize) -> Result<Vec<Prediction>, Error> {
        let image = effnet_data::decode_rgb(bytes, "<image bytes>")?;
        self.predict(&image, k)
    }

    /// The `k` most probable classes of one image's probabilities, named with this model's
    /// labels; ties rank the lower index first. Public so that callers which read the
    /// probabilities back themselves (asynchronously, in a browser) rank them the same way.
    pub fn top_k(&self, probs: &[f32], k: usize) -> Vec<Prediction> {
        let mut idx: Vec<usize> = (0..probs.len()).collect();
        idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        idx.into_iter()
            .take(k)
            .map(|i| Prediction {
                index: i,
                label: self.labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
                prob: probs[i],
            })
            .collect()
    }
}
