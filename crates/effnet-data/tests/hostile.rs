//! Hostile files and folder trees: truncated JPEGs at many cut points, headers claiming gigapixel
//! images, directory symlink loops, unreadable files counted at scan time, one-line errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use effnet_data::{
    DataError, DecodeLimits, ImageFolder, Interpolation, Preprocess, check_mean_std,
    collect_images, load_rgb, load_rgb_with, probe_image,
};
use image::{DynamicImage, ImageFormat, RgbImage};

fn photo(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/photos")
        .join(name);
    std::fs::read(p).expect("committed photo")
}

/// Fractions of the file kept when cutting it, from 10 % to 99.9 %.
const CUTS: &[f64] = &[0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999];

fn cut(bytes: &[u8], frac: f64) -> &[u8] {
    let n = ((bytes.len() as f64 * frac) as usize).min(bytes.len() - 1);
    &bytes[..n]
}

fn assert_truncated(r: Result<impl std::fmt::Debug, DataError>, what: &str) {
    let e = r.expect_err(what).to_string();
    assert!(
        e.contains("corrupt or truncated image") || e.contains("cannot decode image"),
        "{what}: {e}"
    );
    assert!(!e.contains('\n'), "{what}: one line: {e:?}");
}

#[test]
fn truncated_jpegs_are_errors_at_every_cut_point() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["china.jpg", "flower.jpg"] {
        let bytes = photo(name);
        let whole = dir.path().join(name);
        std::fs::write(&whole, &bytes).unwrap();
        assert!(load_rgb(&whole).is_ok(), "{name} itself decodes");
        assert!(probe_image(&whole).is_ok(), "{name} itself probes");
        for &f in CUTS {
            let p = dir.path().join(format!("{name}-{f}.jpg"));
            std::fs::write(&p, cut(&bytes, f)).unwrap();
            let what = format!("{name} cut at {f}");
            assert_truncated(load_rgb(&p), &what);
            assert_truncated(probe_image(&p), &what);
            let e = load_rgb(&p).unwrap_err().to_string();
            assert!(e.contains("corrupt or truncated image"), "{what}: {e}");
            assert!(
                e.starts_with(&p.display().to_string()),
                "names the file: {e}"
            );
        }
    }
}

#[test]
fn truncated_png_webp_and_bmp_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
    }));
    for (fmt, ext) in [
        (ImageFormat::Png, "png"),
        (ImageFormat::WebP, "webp"),
        (ImageFormat::Bmp, "bmp"),
    ] {
        let whole = dir.path().join(format!("whole.{ext}"));
        img.save_with_format(&whole, fmt).unwrap();
        assert!(load_rgb(&whole).is_ok(), "{ext} decodes");
        let bytes = std::fs::read(&whole).unwrap();
        for &f in CUTS {
            let p = dir.path().join(format!("cut-{f}.{ext}"));
            std::fs::write(&p, cut(&bytes, f)).unwrap();
            let e = load_rgb(&p).expect_err(&format!("{ext} cut at {f}"));
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small valid PNG whose IHDR then claims `w × h` (CRC fixed up, so only the size is a lie).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(RgbImage::new(16, 16))
        .write_to(&mut buf, ImageFormat::Png)
        .unwrap();
    let mut png = buf.into_inner();
    // Signature (8), IHDR length (4), "IHDR" (4), width, height at 16..24, CRC over 12..29.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A small valid JPEG whose SOF header then claims `w × h` (at most 65535).
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(RgbImage::new(16, 16))
        .write_to(&mut buf, ImageFormat::Jpeg)
        .unwrap();
    let mut jpg = buf.into_inner();
    let sof = jpg
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline SOF0");
    // FF C0, length (2), precision (1), height (2), width (2).
    jpg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpg
}

/// Peak resident memory of this process so far, where Linux reports it.
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[test]
fn headers_claiming_gigapixels_fail_fast_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("huge.png");
    std::fs::write(&png, png_claiming(60000, 60000)).unwrap();
    let jpg = dir.path().join("huge.jpg");
    std::fs::write(&jpg, jpeg_claiming(65000, 65000)).unwrap();
    for (p, dims) in [(&png, "60000x60000"), (&jpg, "65000x65000")] {
        let t = Instant::now();
        let e = load_rgb(p).unwrap_err().to_string();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "fast: {:?}",
            t.elapsed()
        );
        assert!(e.contains(dims) && e.contains("limit"), "{e}");
        assert!(e.contains(&p.display().to_string()), "{e}");
        let e = probe_image(p).unwrap_err().to_string();
        assert!(e.contains(dims), "{e}");
    }
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 2 << 30, "peak memory {peak} bytes");
    }
}

#[test]
fn decode_limits_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("small.png");
    RgbImage::new(40, 30).save(&p).unwrap();
    let tight = DecodeLimits {
        max_pixels: 1000,
        ..DecodeLimits::default()
    };
    let e = load_rgb_with(&p, &tight).unwrap_err().to_string();
    assert!(e.contains("40x30") && e.contains("limit"), "{e}");
    let roomy = DecodeLimits {
        max_pixels: 1200,
        ..DecodeLimits::default()
    };
    assert!(load_rgb_with(&p, &roomy).is_ok());
    assert_eq!(DecodeLimits::default().max_pixels, 100_000_000);
    assert_eq!(
        effnet_data::image_io::parse_pixel_count("250M"),
        Ok(250_000_000)
    );
    assert_eq!(
        effnet_data::image_io::parse_pixel_count("1.5gp"),
        Ok(1_500_000_000)
    );
    assert!(effnet_data::image_io::parse_pixel_count("nan").is_err());
    assert!(effnet_data::image_io::parse_pixel_count("-5").is_err());
}

fn save_png(path: &Path, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(12, 10, image::Rgb([seed, 100, 200]))
        .save(path)
        .unwrap();
}

#[cfg(unix)]
#[test]
fn directory_symlink_loops_are_not_followed() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    save_png(&root.join("a.png"), 1);
    save_png(&root.join("sub/b.png"), 2);
    // One loop: sub/up -> .. (the root).
    symlink("..", root.join("sub/up")).unwrap();
    let (files, errors) = collect_images(std::slice::from_ref(&root));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(files.len(), 2, "each image once: {files:?}");

    // Two loops (exponential without the visited set): sub/deeper/back -> ../.. too.
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    save_png(&root.join("sub/deeper/c.png"), 3);
    symlink("../..", root.join("sub/deeper/back")).unwrap();
    symlink(".", root.join("self")).unwrap();
    let t = Instant::now();
    let (files, _) = collect_images(std::slice::from_ref(&root));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(files.len(), 3, "each image once: {files:?}");
    // A symlink to a folder outside the tree is still followed (once).
    let outside = dir.path().join("outside");
    save_png(&outside.join("d.png"), 4);
    symlink(&outside, root.join("linked")).unwrap();
    symlink(&outside, root.join("linked_again")).unwrap();
    let (files, _) = collect_images(std::slice::from_ref(&root));
    assert_eq!(files.len(), 4, "{files:?}");
}

#[cfg(unix)]
#[test]
fn dataset_scan_does_not_follow_loops_into_other_classes() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("train");
    for i in 0..3 {
        save_png(&root.join(format!("cat/{i}.png")), i);
        save_png(&root.join(format!("dog/{i}.png")), 10 + i);
    }
    symlink("..", root.join("cat/loop")).unwrap();
    symlink("../../dog", root.join("dog/self")).unwrap();
    symlink("../dog", root.join("cat/dogs")).unwrap();
    let ds = ImageFolder::scan(&root).unwrap();
    assert_eq!(
        ds.class_counts(),
        vec![("cat".to_string(), 3), ("dog".to_string(), 3)]
    );
}

fn pattern_tree(root: &Path, classes: &[&str], n: u8) {
    for (ci, c) in classes.iter().enumerate() {
        for i in 0..n {
            let p = root.join(c).join(format!("img{i}.jpg"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([(x * 6) as u8 + i, (y * 8) as u8, ci as u8 * 90])
            })
            .save(&p)
            .unwrap();
        }
    }
}

#[test]
fn unreadable_files_are_counted_at_scan_time_not_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("train");
    pattern_tree(&root, &["cat", "dog"], 4);
    let good = std::fs::read(root.join("cat/img0.jpg")).unwrap();
    std::fs::write(root.join("cat/trunc.jpg"), &good[..good.len() * 9 / 10]).unwrap();
    std::fs::write(root.join("dog/zero.png"), b"").unwrap();
    std::fs::write(root.join("dog/text.webp"), b"not a webp").unwrap();
    let ds = ImageFolder::scan(&root).unwrap();
    assert_eq!(ds.len(), 8, "only readable files are samples");
    assert_eq!(ds.unreadable_count(), 3);
    let names: Vec<String> = ds
        .unreadable
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["trunc.jpg", "text.webp", "zero.png"]);
    assert!(
        ds.unreadable[0].1.contains("truncated"),
        "{:?}",
        ds.unreadable
    );
    let warnings = ds.unreadable_warnings();
    assert_eq!(warnings.len(), 3);
    assert!(warnings[0].starts_with("warning: skipping ") && warnings[0].contains("trunc.jpg"));
    assert!(
        ds.report().contains("3 unreadable"),
        "the scan report counts them: {}",
        ds.report()
    );
}

#[test]
fn a_class_whose_images_are_all_corrupt_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("train");
    pattern_tree(&root, &["cat", "dog", "fish"], 3);
    let good = std::fs::read(root.join("fish/img0.jpg")).unwrap();
    for i in 0..3 {
        let p = root.join(format!("fish/img{i}.jpg"));
        std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    }
    let e = ImageFolder::scan(&root).unwrap_err().to_string();
    assert!(
        e.contains("'fish'") && e.contains("all 3 image file(s) are unreadable"),
        "{e}"
    );
}

#[test]
fn errors_stay_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad\nname\r.jpg");
    std::fs::write(&p, b"\xFF\xD8 not really").unwrap();
    let e = load_rgb(&p).unwrap_err().to_string();
    assert!(!e.contains('\n') && !e.contains('\r'), "{e:?}");
    let e = DataError::Image {
        path: PathBuf::from("x.png"),
        reason: "decoder said:\nline two".into(),
    };
    assert_eq!(e.to_string(), "x.png: decoder said: line two");
}

#[test]
fn non_finite_or_zero_normalisation_is_rejected() {
    let ok = [0.5f32; 3];
    assert!(check_mean_std(&ok, &ok).is_ok());
    for bad in [f32::NAN, f32::INFINITY, 0.0, -1.0] {
        assert!(check_mean_std(&ok, &[0.5, bad, 0.5]).is_err(), "std {bad}");
    }
    assert!(check_mean_std(&[f32::NAN, 0.5, 0.5], &ok).is_err());
    let mut p = Preprocess::imagenet(224, 0.875, Interpolation::Bilinear);
    assert!(p.validate().is_ok());
    p.std[2] = 0.0;
    assert!(p.validate().is_err());
    let huge = Preprocess::imagenet(100_000, 0.875, Interpolation::Bilinear);
    assert!(huge.validate().unwrap_err().contains("100000"));
}

#[test]
fn extreme_aspect_ratio_images_are_cropped_without_huge_resizes() {
    let p = Preprocess::imagenet(224, 0.875, Interpolation::Bicubic);
    let long = RgbImage::from_fn(200_000, 2, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
    let t = Instant::now();
    let out = p.crop_image(&long);
    assert_eq!(out.dimensions(), (224, 224));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let tall = RgbImage::new(3, 90_000);
    assert_eq!(p.crop_image(&tall).dimensions(), (224, 224));
}
