//! The JavaScript face of [`WebClassifier`](crate::WebClassifier) (wasm32 only).

use wasm_bindgen::prelude::*;

use crate::WebClassifier;

/// An EfficientNet classifier living in the page: `new EffnetClassifier(weightsBytes)`, then
/// `classify(imageBytes, name, k)` returns the top-`k` as a JSON string.
#[wasm_bindgen]
pub struct EffnetClassifier {
    inner: WebClassifier,
}

#[wasm_bindgen]
impl EffnetClassifier {
    /// Loads effnet `.bpk` weights (f32 or f16); throws an `Error` with one line on bad bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(weights: &[u8]) -> Result<EffnetClassifier, JsError> {
        let inner = WebClassifier::new(weights).map_err(|e| JsError::new(&e))?;
        Ok(Self { inner })
    }

    /// Top-`k` classes of an image file's bytes as JSON (`{"width","height","top":[...]}`);
    /// throws an `Error` with one line when the bytes are not a readable image.
    pub fn classify(&self, image: &[u8], name: &str, k: usize) -> Result<String, JsError> {
        self.inner
            .classify_json(image, name, k)
            .map_err(|e| JsError::new(&e))
    }

    /// The model's name, classes, engine and preprocessing as JSON.
    pub fn info(&self) -> Result<String, JsError> {
        serde_json::to_string(&self.inner.info()).map_err(|e| JsError::new(&e.to_string()))
    }
}
