//! The `effnet` binary against hostile input: truncated JPEGs, images claiming gigapixels, absurd
//! sizes and model dimensions, NaN normalisation, directory symlink loops, newlines in names.
//! Every case must end with one-line `error:` messages and a non-zero exit, quickly.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{root, text};

/// Runs effnet, killing it (and failing the test) after `limit`.
fn effnet_within(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run effnet");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "effnet {args:?} still running after {limit:?}: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn effnet(args: &[&str]) -> Output {
    effnet_within(args, &[], Duration::from_secs(60))
}

/// Fails, exits 1 (not an abort or a panic), every stderr line an `error:` line, `needle` named.
fn assert_clean_error(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1, not a crash: {err}");
    assert!(!err.contains("internal failure"), "{err}");
    support::assert_clean_error(out, needle);
}

#[test]
fn truncated_jpegs_are_corrupt_not_classified() {
    let dir = tempfile::tempdir().unwrap();
    let jpg = std::fs::read(root().join("tests/data/photos/china.jpg")).unwrap();
    let cuts = [0.1, 0.5, 0.9, 0.99, 0.999];
    for f in cuts {
        let n = (jpg.len() as f64 * f) as usize;
        std::fs::write(dir.path().join(format!("cut{f}.jpg")), &jpg[..n]).unwrap();
    }
    std::fs::copy(
        root().join("tests/data/photos/coffee.png"),
        dir.path().join("good.png"),
    )
    .unwrap();
    let out = effnet(&["infer", dir.path().to_str().unwrap()]);
    let s = text(&out.stdout);
    assert_eq!(
        s.lines().count(),
        1,
        "only the good image is classified: {s}"
    );
    assert!(s.contains("good.png: espresso"), "{s}");
    assert_clean_error(&out, "5 of 6 inputs failed");
    let err = text(&out.stderr);
    for f in cuts {
        assert!(
            err.contains(&format!("cut{f}.jpg: corrupt or truncated image")),
            "{err}"
        );
    }
}

/// A 16×16 JPEG whose frame header claims 65000×65000.
fn jpeg_claiming_65000() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::new(16, 16))
        .write_to(&mut buf, image::ImageFormat::Jpeg)
        .unwrap();
    let mut jpg = buf.into_inner();
    let sof = jpg.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    jpg[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    jpg
}

#[test]
fn gigapixel_headers_and_the_pixel_limit() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.jpg");
    std::fs::write(&huge, jpeg_claiming_65000()).unwrap();
    let out = effnet_within(
        &["infer", huge.to_str().unwrap()],
        &[],
        Duration::from_secs(20),
    );
    assert_clean_error(&out, "huge.jpg: image of 65000x65000 pixels");
    // The limit is configurable by flag and by environment, and a bad value is an error.
    let out = effnet(&[
        "infer",
        "tests/data/photos/chelsea.png",
        "--max-image-pixels",
        "1000",
    ]);
    assert_clean_error(&out, "chelsea.png: image of");
    let out = effnet_within(
        &["infer", "tests/data/photos/chelsea.png"],
        &[("EFFNET_MAX_IMAGE_PIXELS", "1K")],
        Duration::from_secs(60),
    );
    assert_clean_error(&out, "decoding limit");
    let out = effnet(&[
        "infer",
        "tests/data/photos/chelsea.png",
        "--max-image-pixels",
        "lots",
    ]);
    assert_clean_error(&out, "--max-image-pixels lots");
}

#[test]
fn absurd_sizes_and_model_dimensions_are_errors_not_aborts() {
    let limit = Duration::from_secs(30);
    let out = effnet_within(
        &["infer", "tests/data/photos/chelsea.png", "--size", "100000"],
        &[],
        limit,
    );
    assert_clean_error(&out, "-size 100000");
    let out = effnet_within(
        &["bench", "--size", "100000", "--model", "efficientnet_b0"],
        &[],
        limit,
    );
    assert_clean_error(&out, "100000");
    let out = effnet_within(
        &[
            "bench",
            "--size",
            "4096",
            "--batch",
            "4096",
            "--model",
            "efficientnet_b0",
        ],
        &[],
        limit,
    );
    assert_clean_error(&out, "of memory");
    let out = effnet_within(
        &[
            "bench",
            "--train",
            "--size",
            "224",
            "--batch",
            "64",
            "--model",
            "efficientnet_b0",
        ],
        &[("EFFNET_MAX_MEMORY", "1G")],
        limit,
    );
    assert_clean_error(&out, "EFFNET_MAX_MEMORY");
    let out = effnet_within(
        &[
            "infer",
            "tests/data/photos/chelsea.png",
            "--crop-pct",
            "0.0001",
        ],
        &[],
        limit,
    );
    assert_clean_error(&out, "resize");

    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("configs/models/efficientnet_b0.toml")).unwrap();
    for (key, value, needle) in [
        ("num_classes", "1000000000000", "num_classes"),
        ("num_classes", "1000000", "parameters alone"),
        ("head_channels", "100000000", "head_channels"),
        ("width_mult", "1e9", "width_mult"),
        ("depth_mult", "1e30", "depth_mult"),
        ("eval_size", "100000", "eval_size"),
    ] {
        let toml = set_key(&base, key, value);
        let p = dir.path().join(format!("{key}-{value}.toml"));
        std::fs::write(&p, toml).unwrap();
        let out = effnet_within(
            &["bench", "--model", p.to_str().unwrap()],
            &[("EFFNET_MAX_MEMORY", "2G")],
            limit,
        );
        assert_clean_error(&out, needle);
        let out = effnet_within(
            &[
                "infer",
                "tests/data/photos/chelsea.png",
                "--model",
                p.to_str().unwrap(),
            ],
            &[("EFFNET_MAX_MEMORY", "2G")],
            limit,
        );
        assert_clean_error(&out, needle);
    }
}

/// `key = value` in a top-level TOML table, replacing the existing line or adding one.
fn set_key(toml: &str, key: &str, value: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut done = false;
    for l in toml.lines() {
        if l.trim_start().starts_with('[') && !done {
            lines.push(format!("{key} = {value}"));
            done = true;
        }
        if l.split('=').next().is_some_and(|k| k.trim() == key) {
            continue;
        }
        lines.push(l.to_string());
    }
    if !done {
        lines.push(format!("{key} = {value}"));
    }
    lines.join("\n")
}

#[test]
fn non_finite_and_zero_mean_std_are_rejected() {
    for (flag, value) in [
        ("--mean", "nan"),
        ("--mean", "0.5,inf,0.5"),
        ("--std", "nan"),
        ("--std", "inf"),
        ("--std", "0"),
        ("--std", "0.2,0.2,0"),
    ] {
        let out = effnet(&["infer", "tests/data/photos/chelsea.png", flag, value]);
        assert_clean_error(&out, flag);
        assert_eq!(text(&out.stderr).lines().count(), 1, "{flag} {value}");
        assert!(out.stdout.is_empty(), "no NaN probabilities printed");
    }
}

#[cfg(unix)]
#[test]
fn directory_symlink_loops_list_each_image_once_and_never_hang() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("sub/deeper")).unwrap();
    std::fs::copy(
        root().join("tests/data/photos/coffee.png"),
        photos.join("a.png"),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/data/photos/chelsea.png"),
        photos.join("sub/deeper/b.png"),
    )
    .unwrap();
    symlink("..", photos.join("sub/up")).unwrap();
    let out = effnet_within(
        &["infer", photos.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    // Two loops.
    symlink("../..", photos.join("sub/deeper/back")).unwrap();
    let out = effnet_within(
        &["infer", photos.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn errors_with_newlines_in_names_stay_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad\nname.jpg");
    std::fs::write(&bad, b"\xFF\xD8\xFF junk").unwrap();
    let out = effnet(&["infer", bad.to_str().unwrap()]);
    assert_clean_error(&out, "bad name.jpg");
    assert_eq!(
        text(&out.stderr).lines().count(),
        2,
        "{}",
        text(&out.stderr)
    );
}
