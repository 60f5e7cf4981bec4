//! The bundled Lite0 gives the reference predictions on real photos, and our preprocessing
//! reproduces PIL's resize + crop (fixtures: scripts/make_parity_fixtures.py).
#![cfg(feature = "bundled")]

use std::path::{Path, PathBuf};

use effnet::{Classifier, Device, load_rgb};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("tests/data/photos/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn resize_and_crop_match_pil() {
    let bytes = std::fs::read(root().join("tests/data/parity/lite0_io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let crops = st.tensor("crops_u8").unwrap();
    let per = 224 * 224 * 3;
    let reference = reference();
    let classifier = Classifier::bundled(&Device::flex()).unwrap();
    for (i, name) in reference["photos"].as_array().unwrap().iter().enumerate() {
        let img = load_rgb(
            &root()
                .join("tests/data/photos")
                .join(name.as_str().unwrap()),
        )
        .unwrap();
        let ours = classifier.preprocess().crop_image(&img);
        let want = &crops.data()[i * per..(i + 1) * per];
        let diffs: Vec<i32> = ours
            .as_raw()
            .iter()
            .zip(want)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .collect();
        let n = diffs.iter().filter(|d| **d != 0).count();
        let max = diffs.iter().max().copied().unwrap_or(0);
        let mean = diffs.iter().sum::<i32>() as f64 / per as f64;
        println!("{name}: {n} of {per} bytes differ, max {max}, mean {mean:.4}");
        if name.as_str().unwrap().ends_with(".png") {
            // Lossless input: the resampling itself must be bit-exact.
            assert_eq!(n, 0, "{name}: {n} of {per} bytes differ from PIL");
        } else {
            // JPEG: the image crate's IDCT/upsampling differs from libjpeg-turbo by a level or two.
            assert!(max <= 3 && mean < 0.05, "{name}: max {max}, mean {mean}");
        }
    }
}

#[test]
fn bundled_lite0_matches_reference_top5_on_photos() {
    let reference = reference();
    let classifier = Classifier::bundled(&Device::flex()).unwrap();
    let names: Vec<&str> = reference["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let images: Vec<_> = names
        .iter()
        .map(|n| load_rgb(&root().join("tests/data/photos").join(n)).unwrap())
        .collect();
    let preds = classifier.predict_batch(&images, 5).unwrap();
    for (name, pred) in names.iter().zip(&preds) {
        let want = reference["top5"][name].as_array().unwrap();
        assert_eq!(
            pred[0].label,
            want[0]["label"].as_str().unwrap(),
            "{name} top-1"
        );
        for (p, w) in pred.iter().zip(want) {
            assert_eq!(
                p.index as u64,
                w["index"].as_u64().unwrap(),
                "{name} ranking"
            );
            let wp = w["prob"].as_f64().unwrap() as f32;
            assert!(
                (p.prob - wp).abs() <= 0.01,
                "{name} {}: {} vs {wp}",
                p.label,
                p.prob
            );
        }
    }
    // The single-image path gives the same answer as the batch path.
    let one = classifier.predict(&images[0], 3).unwrap();
    assert_eq!(one[0].index, preds[0][0].index);
    assert!((one[0].prob - preds[0][0].prob).abs() < 1e-5);
}

#[test]
fn dynamic_image_api_converts_colour_types() {
    let classifier = Classifier::bundled(&Device::flex()).unwrap();
    let rgb = load_rgb(&root().join("tests/data/photos/coffee.png")).unwrap();
    let rgba = image::DynamicImage::ImageRgb8(rgb.clone()).to_rgba8();
    let from_rgba = (classifier.predict_image(&image::DynamicImage::ImageRgba8(rgba), 1)).unwrap();
    let from_rgb = classifier.predict(&rgb, 1).unwrap();
    assert_eq!(from_rgba[0].index, 967, "espresso");
    assert_eq!(from_rgba, from_rgb);
}

#[test]
fn bytes_embeddings_and_class_ids() {
    let classifier = Classifier::bundled(&Device::flex()).unwrap();
    let path = root().join("tests/data/photos/chelsea.png");
    let rgb = load_rgb(&path).unwrap();
    // An encoded file's bytes give what the decoded image gives; junk bytes are an error.
    let from_bytes = classifier
        .predict_bytes(&std::fs::read(&path).unwrap(), 3)
        .unwrap();
    assert_eq!(from_bytes, classifier.predict(&rgb, 3).unwrap());
    let junk = classifier.predict_bytes(b"not an image", 3).unwrap_err();
    assert!(junk.to_string().contains("<image bytes>"), "{junk}");
    // The embedding is what the classifier reads: its linear layer gives the logits.
    let images = [
        rgb.clone(),
        load_rgb(&root().join("tests/data/photos/coffee.png")).unwrap(),
    ];
    let rows = classifier.embed(&images).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.len() == classifier.num_features()));
    let fc = &classifier.model().classifier;
    let w: Vec<f32> = fc
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = (fc.bias.as_ref().unwrap().val().into_data().convert::<f32>())
        .try_to_vec::<f32>()
        .unwrap();
    let logits: Vec<f32> = (classifier
        .logits(&images)
        .unwrap()
        .into_data()
        .convert::<f32>())
    .try_to_vec::<f32>()
    .unwrap();
    let classes = b.len();
    for (n, row) in rows.iter().enumerate() {
        for j in [282, 967] {
            let from_embedding: f32 = b[j]
                + row
                    .iter()
                    .enumerate()
                    .map(|(i, e)| e * w[i * classes + j])
                    .sum::<f32>();
            let want = logits[n * classes + j];
            assert!(
                (from_embedding - want).abs() < 1e-3,
                "{n} {j}: {from_embedding} vs {want}"
            );
        }
    }
    // ImageNet-1k weights know their classes' WordNet ids.
    let ids = classifier.class_ids().expect("ImageNet ids");
    assert_eq!(ids[282], "n02123159");
}
