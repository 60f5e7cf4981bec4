//! Image decoding that never panics: format sniffed from content, EXIF orientation applied,
//! every colour type (grayscale, palette, CMYK JPEG, alpha, 16-bit) converted to 8-bit RGB.
//!
//! Hostile files are refused before any pixel is decoded: the file size and the pixel count the
//! header claims are checked against [`DecodeLimits`], and a file whose structure stops early (a
//! JPEG without its end-of-image marker, a PNG without `IEND`, a WebP shorter than its RIFF size)
//! is "corrupt or truncated" even where the decoder itself would pad the missing part.

use std::collections::HashSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::DataError;
use crate::image_structure::check_complete;

/// File extensions treated as images when scanning folders.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

/// Environment variable overriding [`DecodeLimits::max_pixels`] (e.g. `250000000` or `250M`).
pub const MAX_PIXELS_ENV: &str = "EFFNET_MAX_IMAGE_PIXELS";

/// Caps checked before decoding, so a small file claiming a huge image fails fast with bounded
/// memory instead of allocating gigabytes (or aborting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted `width × height` (default 100 megapixels, generous for real photos).
    pub max_pixels: u64,
    /// Largest accepted file (default 1 GiB): decoders read the whole file into memory.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_file_bytes: 1 << 30,
        }
    }
}

impl DecodeLimits {
    /// The defaults, with `max_pixels` taken from `EFFNET_MAX_IMAGE_PIXELS` when it is set.
    pub fn from_env() -> Result<Self, String> {
        let mut limits = Self::default();
        if let Ok(text) = std::env::var(MAX_PIXELS_ENV) {
            limits.max_pixels =
                parse_pixel_count(&text).map_err(|e| format!("{MAX_PIXELS_ENV}={text}: {e}"))?;
        }
        Ok(limits)
    }

    /// Bytes the decoder may allocate: the largest image as 16-bit RGBA plus working space.
    pub fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(64 << 20)
    }

    fn image_limits(&self) -> Limits {
        let mut l = Limits::default();
        l.max_alloc = Some(self.max_alloc());
        l
    }
}

/// Parses a pixel count: an integer, optionally with a `K`, `M` or `G` suffix (`100M`, `2.5G`).
pub fn parse_pixel_count(text: &str) -> Result<u64, String> {
    let t = text.trim().trim_end_matches(['p', 'P']);
    let (num, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| "expected a pixel count such as 100000000 or 100M".to_string())?;
    let pixels = value * scale;
    if !(1.0..=1e15).contains(&pixels) {
        return Err("the pixel limit must be between 1 and 1e15".into());
    }
    Ok(pixels as u64)
}

static LIMITS: RwLock<Option<DecodeLimits>> = RwLock::new(None);

/// Sets the limits [`load_rgb`] and [`decode_rgb`] use in this process (e.g. from a CLI flag).
pub fn set_decode_limits(limits: DecodeLimits) {
    if let Ok(mut l) = LIMITS.write() {
        *l = Some(limits);
    }
}

/// The limits in force: those given to [`set_decode_limits`], else [`DecodeLimits::from_env`],
/// else the defaults (an unparsable environment value is reported by `from_env`, not here).
pub fn decode_limits() -> DecodeLimits {
    if let Some(l) = LIMITS.read().ok().and_then(|l| *l) {
        return l;
    }
    DecodeLimits::from_env().unwrap_or_default()
}

/// Whether `path` has an image extension (case-insensitive).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// What [`probe_image`] learns without decoding pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Width in pixels (before EXIF orientation).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The format sniffed from the content.
    pub format: ImageFormat,
}

/// Decodes an image file to RGB8, honouring EXIF orientation, under [`decode_limits`].
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    load_rgb_with(path, &decode_limits())
}

/// [`load_rgb`] with explicit limits.
pub fn load_rgb_with(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DataError> {
    let bytes = read_image_file(path, limits)?;
    decode_checked(&bytes, path, limits)
}

/// Checks that a file is a complete image within the limits — size, format, structure (the
/// end-of-image marker is there), header and dimensions — without decoding its pixels. Cheap
/// enough to run on every file of a dataset at scan time.
pub fn probe_image(path: &Path) -> Result<ImageInfo, DataError> {
    let limits = decode_limits();
    let bytes = read_image_file(path, &limits)?;
    let (decoder, format) = open_decoder(&bytes, path, &limits)?;
    let (width, height) = decoder.dimensions();
    Ok(ImageInfo {
        width,
        height,
        format,
    })
}

/// Decodes an in-memory image (e.g. from a network request) to RGB8, under [`decode_limits`].
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<RgbImage, DataError> {
    let path = PathBuf::from(name);
    if bytes.is_empty() {
        return Err(image_error(&path, "empty input (0 bytes)".into()));
    }
    decode_checked(bytes, &path, &decode_limits())
}

fn image_error(path: &Path, reason: String) -> DataError {
    DataError::Image {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads a whole image file, refusing folders, empty files and files over the size limit.
fn read_image_file(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, DataError> {
    let err = |reason: String| image_error(path, reason);
    let meta = std::fs::metadata(path).map_err(|e| err(io_reason(&e)))?;
    if meta.is_dir() {
        return Err(err("is a directory, not an image".into()));
    }
    if meta.len() == 0 {
        return Err(err("empty file (0 bytes)".into()));
    }
    if meta.len() > limits.max_file_bytes {
        return Err(err(format!(
            "file of {} bytes is larger than the {}-byte limit for an image",
            meta.len(),
            limits.max_file_bytes
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(io_reason(&e)))?;
    if bytes.is_empty() {
        return Err(err("empty file (0 bytes)".into()));
    }
    Ok(bytes)
}

/// Sniffs the format, checks the file structure is complete, reads the header and checks the
/// dimensions against the limits: everything short of decoding pixels.
fn open_decoder<'a>(
    bytes: &'a [u8],
    path: &Path,
    limits: &DecodeLimits,
) -> Result<(impl ImageDecoder + 'a, ImageFormat), DataError> {
    let err = |reason: String| image_error(path, reason);
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(io_reason(&e)))?;
    let Some(format) = reader.format() else {
        return Err(err("not a recognised image format".into()));
    };
    check_complete(bytes, format)
        .map_err(|why| err(format!("corrupt or truncated image ({why})")))?;
    reader.limits(limits.image_limits());
    let decoder = reader
        .into_decoder()
        .map_err(|e| err(format!("cannot decode image ({e})")))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 {
        return Err(err(format!("image has no pixels ({w}x{h})")));
    }
    if pixels > limits.max_pixels {
        return Err(err(format!(
            "image of {w}x{h} pixels ({:.1} MP) exceeds the {:.1} MP decoding limit \
             (raise it with --max-image-pixels or {MAX_PIXELS_ENV})",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        )));
    }
    if decoder.total_bytes() > limits.max_alloc() {
        return Err(err(format!(
            "decoding {w}x{h} pixels needs {} bytes, over the {}-byte limit",
            decoder.total_bytes(),
            limits.max_alloc()
        )));
    }
    Ok((decoder, format))
}

fn decode_checked(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DataError> {
    let (mut decoder, _) = open_decoder(bytes, path, limits)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| image_error(path, format!("corrupt or truncated image ({e})")))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
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
/// (sorted, image extensions only, see [`ImageWalker`]). Returns the files and the paths that
/// yielded nothing.
pub fn collect_images(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<DataError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut walker = ImageWalker::default();
    for p in paths {
        if p.is_dir() {
            let found = walker.images_under(p);
            if found.is_empty() {
                errors.push(DataError::Image {
                    path: p.clone(),
                    reason: format!(
                        "directory contains no images ({})",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                });
            }
            files.extend(found);
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

/// A recursive folder walk that never enters a directory twice: every directory is identified by
/// its canonical path, so a symlink into an ancestor (a loop, even one above the folder the walk
/// started from) or into a folder already walked is skipped instead of listing the same images
/// again or recursing forever.
#[derive(Debug, Default)]
pub struct ImageWalker {
    visited: HashSet<PathBuf>,
}

impl ImageWalker {
    /// Marks `dir` as already walked, so symlinks into it are skipped (e.g. the sibling class
    /// folders of a dataset, which are walked on their own).
    pub fn reserve(&mut self, dir: &Path) {
        if let Ok(c) = std::fs::canonicalize(dir) {
            self.visited.insert(c);
        }
    }

    /// Image files under `dir`, sorted depth-first. `dir` itself is walked even if reserved;
    /// its sub-directories are walked only if not seen before.
    pub fn images_under(&mut self, dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        self.reserve(dir);
        self.walk(dir, &mut out);
        out
    }

    fn walk(&mut self, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let here = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                // Never into an ancestor (a loop, even above the walk's root) nor a folder seen.
                let first_visit = std::fs::canonicalize(&p)
                    .map(|c| !here.starts_with(&c) && self.visited.insert(c))
                    .unwrap_or(false);
                if first_visit {
                    self.walk(&p, out);
                }
            } else if is_image_path(&p) {
                out.push(p);
            }
        }
    }
}
