//! The page's API against the library: same weights bytes, same photo bytes, same answer as
//! `effnet::Classifier` reading the files, and one-line errors for bad input.

use std::path::PathBuf;

use effnet::{Classifier, Device};
use effnet_web::WebClassifier;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn weights_path() -> PathBuf {
    root().join("weights/efficientnet_lite0.bpk")
}

fn web() -> WebClassifier {
    let bytes = std::fs::read(weights_path()).expect("bundled weights in the repository");
    WebClassifier::new(&bytes).expect("weights load")
}

#[test]
fn chelsea_matches_the_library() {
    let web = web();
    let photo = root().join("tests/data/photos/chelsea.png");
    let got = web
        .classify(&std::fs::read(&photo).unwrap(), "chelsea.png", 5)
        .unwrap();
    let lib = Classifier::from_file(&weights_path(), &Device::flex()).unwrap();
    let want = (lib.predict(&effnet::load_rgb(&photo).unwrap(), 5)).unwrap();
    assert_eq!(got.top.len(), 5);
    assert_eq!(got.top[0].label, "tiger cat");
    for (g, w) in got.top.iter().zip(&want) {
        assert_eq!(g.index, w.index);
        assert!((g.prob - w.prob).abs() < 1e-6, "{} vs {}", g.prob, w.prob);
    }
    let img = image::open(&photo).unwrap();
    assert_eq!((got.width, got.height), (img.width(), img.height()));
    let json: serde_json::Value = serde_json::from_str(
        &web.classify_json(&std::fs::read(&photo).unwrap(), "c", 3)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["top"][0]["label"], "tiger cat");
    assert_eq!(json["top"].as_array().unwrap().len(), 3);
}

#[test]
fn info_reports_the_stored_preprocessing() {
    let info = web().info();
    let lib = Classifier::from_file(&weights_path(), &Device::flex()).unwrap();
    let p = lib.preprocess();
    assert_eq!(info.model, lib.config().name);
    assert_eq!(info.classes, 1000);
    assert_eq!(info.engine, "effnet-cpu");
    assert_eq!((info.resize, info.crop), (p.resize, p.crop));
    assert_eq!((info.mean, info.std), (p.mean, p.std));
}

#[test]
fn bad_images_are_one_line_errors() {
    let web = web();
    for (bytes, name) in [
        (&b""[..], "empty.png"),
        (&b"not an image at all"[..], "notes.txt"),
        (&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..], "cut.png"),
    ] {
        let e = web.classify(bytes, name, 5).unwrap_err();
        assert!(e.contains(name), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn bad_weights_are_one_line_errors() {
    for bytes in [&b""[..], &b"garbage garbage garbage"[..]] {
        let e = WebClassifier::new(bytes).err().expect("an error");
        assert!(!e.is_empty() && !e.contains('\n'), "{e}");
    }
}

#[test]
fn async_read_back_gives_the_same_answer() {
    use std::task::{Context, Poll, Waker};
    let web = web();
    let bytes = std::fs::read(root().join("tests/data/photos/chelsea.png")).unwrap();
    let sync = web.classify(&bytes, "chelsea.png", 5).unwrap();
    let mut fut = std::pin::pin!(web.classify_async(&bytes, "chelsea.png", 5));
    let mut cx = Context::from_waker(Waker::noop());
    // On the CPU the read-back is ready at once; a bounded poll loop keeps a bug from hanging.
    let got = (0..1000)
        .find_map(|_| match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
        .expect("the CPU read-back completes")
        .unwrap();
    assert_eq!(got, sync);
    let e = (0..1000)
        .find_map(
            |_| match std::pin::pin!(web.classify_async(b"nope", "x.jpg", 5)).poll(&mut cx) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => None,
            },
        )
        .unwrap()
        .unwrap_err();
    assert!(e.contains("x.jpg") && !e.contains('\n'), "{e}");
}
