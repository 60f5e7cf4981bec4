//! # effnet-web
//!
//! The effnet classifier as the web page (`web/`) uses it: weights and images arrive as bytes
//! (fetched or dropped on the page), and results leave as JSON. [`WebClassifier`] is plain Rust,
//! tested natively; on `wasm32` the same type is exported to JavaScript by `wasm-bindgen`
//! (`EffnetClassifier` in the generated `effnet_web.js`, see `web/app.js`).
//!
//! The forward pass is [`effnet::Classifier`]'s: the dedicated CPU executor (`effnet-cpu`,
//! single-threaded in the browser), or burn's wgpu backend on the browser's WebGPU device
//! ([`WebClassifier::on_device`], [`WebClassifier::classify_async`]), with the preprocessing
//! stored in the weights file (resize, center crop, mean/std), exactly as `effnet infer` runs it.

use std::path::Path;

use effnet::{Classifier, Device, Engine, Prediction};
use serde::Serialize;

#[cfg(target_arch = "wasm32")]
mod wasm;

/// One ranked class, as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranked {
    /// Class index in the model's output.
    pub index: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability.
    pub prob: f32,
}

impl From<Prediction> for Ranked {
    fn from(p: Prediction) -> Self {
        Self {
            index: p.index,
            label: p.label,
            prob: p.prob,
        }
    }
}

/// What [`WebClassifier::classify`] returns (serialised to JSON for the page).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    /// The decoded image's width in pixels.
    pub width: u32,
    /// The decoded image's height in pixels.
    pub height: u32,
    /// The top classes, most probable first.
    pub top: Vec<Ranked>,
}

/// Facts about the loaded model, for the page's status line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Architecture name stored in the weights (e.g. `efficientnet_lite0`).
    pub model: String,
    /// Number of classes.
    pub classes: usize,
    /// Which code runs the forward pass (`effnet-cpu` or `burn`).
    pub engine: &'static str,
    /// Shorter side after resizing, before the center crop.
    pub resize: usize,
    /// Network input side.
    pub crop: usize,
    /// Resize filter.
    pub interpolation: String,
    /// Per-channel mean (0..1 scale).
    pub mean: [f32; 3],
    /// Per-channel std (0..1 scale).
    pub std: [f32; 3],
}

/// A classifier loaded from an effnet `.bpk` held in memory (f32 or f16 weights).
pub struct WebClassifier {
    inner: Classifier,
}

impl WebClassifier {
    /// Loads effnet `.bpk` weights from bytes onto the CPU. The preprocessing and class names
    /// are the ones stored in the file. Errors are one line, naming what is wrong.
    pub fn new(weights: &[u8]) -> Result<Self, String> {
        let device = Device::flex();
        let pre = effnet::reexports::effnet_model::load_native_bytes(
            Path::new("weights"),
            weights.to_vec(),
            &device,
        )
        .map_err(|e| e.to_string())?;
        let inner = Classifier::from_pretrained(pre, &device);
        Ok(Self { inner })
    }

    /// Decodes an image file's bytes (JPEG, PNG, WebP, BMP) and returns its top `k` classes.
    /// `name` names the image in errors.
    pub fn classify(&self, image: &[u8], name: &str, k: usize) -> Result<Classification, String> {
        let rgb = decode(image, name)?;
        let top = (self.inner.predict(&rgb, k.max(1))).map_err(|e| format!("{name}: {e}"))?;
        classification(&rgb, top, name)
    }

    /// [`classify`](Self::classify) as JSON: `{"width", "height", "top": [{"index", "label",
    /// "prob"}]}`.
    pub fn classify_json(&self, image: &[u8], name: &str, k: usize) -> Result<String, String> {
        let c = self.classify(image, name, k)?;
        serde_json::to_string(&c).map_err(|e| e.to_string())
    }

    /// The model's name, class count, engine and preprocessing.
    pub fn info(&self) -> ModelInfo {
        let p = self.inner.preprocess();
        ModelInfo {
            model: self.inner.config().name.clone(),
            classes: self.inner.labels().len(),
            engine: match self.inner.engine() {
                Engine::Native => "effnet-cpu",
                _ => "burn",
            },
            resize: p.resize,
            crop: p.crop,
            interpolation: format!("{:?}", p.interpolation).to_lowercase(),
            mean: p.mean,
            std: p.std,
        }
    }

    /// Loads weights onto `device` (e.g. a WebGPU device from
    /// `Device::wgpu_options().init_async()`); off the CPU the forward pass is burn's.
    pub fn on_device(weights: &[u8], device: &Device) -> Result<Self, String> {
        let pre = effnet::reexports::effnet_model::load_native_bytes(
            Path::new("weights"),
            weights.to_vec(),
            device,
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            inner: Classifier::from_pretrained(pre, device),
        })
    }

    /// [`classify`](Self::classify) with an asynchronous read-back of the probabilities, as a
    /// GPU device in a browser requires (WebGPU cannot block the page's thread).
    pub async fn classify_async(
        &self,
        image: &[u8],
        name: &str,
        k: usize,
    ) -> Result<Classification, String> {
        use effnet::reexports::burn::tensor::activation::softmax;
        let rgb = decode(image, name)?;
        let logits =
            (self.inner.logits(std::slice::from_ref(&rgb))).map_err(|e| format!("{name}: {e}"))?;
        let data = softmax(logits, 1)
            .into_data_async()
            .await
            .map_err(|e| format!("{name}: reading the probabilities back: {e:?}"))?;
        let probs: Vec<f32> = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{name}: reading the probabilities back: {e:?}"))?;
        classification(&rgb, self.inner.top_k(&probs, k.max(1)), name)
    }

    /// The classifier underneath.
    pub fn classifier(&self) -> &Classifier {
        &self.inner
    }
}

/// Decodes an image file's bytes; errors are one line naming `name`.
fn decode(image: &[u8], name: &str) -> Result<effnet::reexports::image::RgbImage, String> {
    effnet::reexports::effnet_data::decode_rgb(image, name)
        .map_err(|e| effnet::reexports::effnet_data::one_line(&e.to_string()))
}

/// The page's result for one decoded image, refusing non-finite probabilities.
fn classification(
    rgb: &effnet::reexports::image::RgbImage,
    top: Vec<Prediction>,
    name: &str,
) -> Result<Classification, String> {
    if top.iter().any(|p| !p.prob.is_finite()) {
        return Err(format!(
            "{name}: the model produced non-finite probabilities"
        ));
    }
    Ok(Classification {
        width: rgb.width(),
        height: rgb.height(),
        top: top.into_iter().map(Ranked::from).collect(),
    })
}
