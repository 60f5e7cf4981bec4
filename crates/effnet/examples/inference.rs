//! Classify images with the bundled EfficientNet-Lite0 in a few lines.
//!
//! `cargo run --release --example inference -- tests/data/photos/coffee.png [more images]`

use effnet::{Classifier, Device, load_rgb};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        return Err("usage: inference IMAGE...".into());
    }
    let classifier = Classifier::bundled(&Device::flex())?;
    for path in paths {
        let image = load_rgb(path.as_ref())?;
        let top = classifier.predict(&image, 5)?;
        let line: Vec<String> = top
            .iter()
            .map(|p| format!("{} {:.1}%", p.label, 100.0 * p.prob))
            .collect();
        println!("{path}: {}", line.join(", "));
    }
    Ok(())
}
