//! Image decoding that never panics: format sniffed from content, EXIF orientation applied,
//! every colour type (grayscale, palette, CMYK JPEG, alpha, 16-bit) converted to 8-bit RGB.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::DataError;

/// File extensions treated as images when scanning folders.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

/// Whether `path` has an image extension (case-insensitive).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes an image file to RGB8, honouring EXIF orientation.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    let err = |reason: String| DataError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(io_reason(&e)))?;
    if meta.is_dir() {
        return Err(err("is a directory, not an image".into()));
    }
    if meta.len() == 0 {
        return Err(err("empty file (0 bytes)".into()));
    }
    let reader = ImageReader::open(path)
        .map_err(|e| err(io_reason(&e)))?
        .with_guessed_format()
        .map_err(|e| err(io_reason(&e)))?;
    if reader.format().is_none() {
        return Err(err("not a recognised image format".into()));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| err(format!("cannot decode image ({e})")))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| err(format!("corrupt or truncated image ({e})")))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.into_rgb8())
}

/// Decodes an in-memory image (e.g. from a network request) to RGB8.
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<RgbImage, DataError> {
    let err = |reason: String| DataError::Image {
        path: PathBuf::from(name),
        reason,
    };
    if bytes.is_empty() {
        return Err(err("empty input (0 bytes)".into()));
    }
    let img =
        image::load_from_memory(bytes).map_err(|e| err(format!("cannot decode image ({e})")))?;
    Ok(img.into_rgb8())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Lists image files under each path: files are taken as given, folders are walked recursively
/// (sorted, image extensions only). Returns the files and the paths that yielded nothing.
pub fn collect_images(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<DataError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = files.len();
            walk(p, &mut files);
            if files.len() == before {
                errors.push(DataError::Image {
                    path: p.clone(),
                    reason: format!(
                        "directory contains no images ({})",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                });
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            errors.push(DataError::Image {
                path: p.clone(),
                reason: "no such file".into(),
            });
        }
    }
    (files, errors)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if is_image_path(&p) {
            out.push(p);
        }
    }
}
