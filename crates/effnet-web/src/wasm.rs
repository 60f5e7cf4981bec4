//! The JavaScript face of [`WebClassifier`](crate::WebClassifier) (wasm32 only).

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::WebClassifier;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Runs when the module is instantiated. A Rust panic in wasm reaches the page only as
/// "RuntimeError: unreachable"; this hook logs the panic's own message to the console and
/// leaves its first line in `globalThis.effnetPanic`, where the page's error line reads it.
#[wasm_bindgen(start)]
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        console_error(&format!("effnet: {message}"));
        let first = message.lines().next().unwrap_or_default();
        let _ = js_sys::Reflect::set(
            &js_sys::global(),
            &JsValue::from_str("effnetPanic"),
            &JsValue::from_str(first),
        );
    }));
}

/// An EfficientNet classifier living in the page: `new EffnetClassifier(weightsBytes)`, then
/// `classify(imageBytes, name, k)` returns the top-`k` as a JSON string.
#[wasm_bindgen]
pub struct EffnetClassifier {
    // Shared with the futures of `classify_async`, which outlive the `&self` borrow.
    inner: Rc<WebClassifier>,
}

#[wasm_bindgen]
impl EffnetClassifier {
    /// Loads effnet `.bpk` weights (f32 or f16); throws an `Error` with one line on bad bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(weights: &[u8]) -> Result<EffnetClassifier, JsError> {
        let inner = WebClassifier::new(weights).map_err(|e| JsError::new(&e))?;
        Ok(Self {
            inner: Rc::new(inner),
        })
    }

    /// Top-`k` classes of an image file's bytes as JSON (`{"width","height","top":[...]}`);
    /// throws an `Error` with one line when the bytes are not a readable image.
    pub fn classify(&self, image: &[u8], name: &str, k: usize) -> Result<String, JsError> {
        self.inner
            .classify_json(image, name, k)
            .map_err(|e| JsError::new(&e))
    }

    /// Loads the weights onto the browser's WebGPU device (burn's wgpu backend); rejects when
    /// the browser offers no adapter, so the page can fall back to the CPU.
    pub async fn webgpu(weights: Vec<u8>) -> Result<EffnetClassifier, JsError> {
        let device = effnet::Device::wgpu_options()
            .init_async()
            .await
            .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
        let inner = WebClassifier::on_device(&weights, &device).map_err(|e| JsError::new(&e))?;
        Ok(Self {
            inner: Rc::new(inner),
        })
    }

    /// Like `classify`, with the asynchronous read-back WebGPU needs: a `Promise` of the JSON
    /// (rejected with an `Error` of one line).
    pub fn classify_async(&self, image: Vec<u8>, name: String, k: usize) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let c = inner
                .classify_async(&image, &name, k)
                .await
                .map_err(|e| JsValue::from(JsError::new(&e)))?;
            serde_json::to_string(&c)
                .map(|s| JsValue::from_str(&s))
                .map_err(|e| JsValue::from(JsError::new(&e.to_string())))
        })
    }

    /// The model's name, classes, engine and preprocessing as JSON.
    pub fn info(&self) -> Result<String, JsError> {
        serde_json::to_string(&self.inner.info()).map_err(|e| JsError::new(&e.to_string()))
    }
}
