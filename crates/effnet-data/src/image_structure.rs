//! Structural completeness checks run before decoding. Some decoders (zune-jpeg in lenient mode,
//! which the `image` crate uses) pad a truncated file with grey and report success; walking the
//! container to its end marker catches every truncation cheaply, without decoding pixels.

use image::ImageFormat;

/// Checks that `bytes` hold a whole file of `format`: JPEG up to its end-of-image marker after at
/// least one complete scan, PNG up to `IEND`, WebP as long as its RIFF header says. Other formats
/// are left to their decoder. The error says where the file stops.
pub fn check_complete(bytes: &[u8], format: ImageFormat) -> Result<(), String> {
    match format {
        ImageFormat::Jpeg => jpeg_complete(bytes),
        ImageFormat::Png => png_complete(bytes),
        ImageFormat::WebP => webp_complete(bytes),
        _ => Ok(()),
    }
}

fn truncated(at: &str, len: usize) -> String {
    format!("file ends {at} after {len} bytes")
}

/// Walks JPEG marker segments and entropy-coded scans until the end-of-image marker.
fn jpeg_complete(b: &[u8]) -> Result<(), String> {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err("no JPEG start-of-image marker".into());
    }
    let mut i = 2;
    let mut scans = 0usize;
    loop {
        // Tolerate stray bytes between segments (decoders skip them too), then fill bytes.
        let Some(k) = b[i..].iter().position(|&x| x == 0xFF) else {
            return Err(truncated("before the end-of-image marker", b.len()));
        };
        i += k;
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return Err(truncated("inside a marker", b.len()));
        };
        i += 1;
        match marker {
            0xD9 if scans > 0 => return Ok(()),
            0xD9 => return Err("end-of-image marker before any image data".into()),
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = b
            .get(i..i + 2)
            .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
        else {
            return Err(truncated("inside a segment header", b.len()));
        };
        if len < 2 {
            return Err(format!("invalid segment length {len} at byte {i}"));
        }
        if i + len > b.len() {
            return Err(truncated("inside a segment", b.len()));
        }
        i += len;
        if marker == 0xDA {
            scans += 1;
            i = skip_entropy_coded(b, i)?;
        }
    }
}

/// Skips a scan's entropy-coded data (where `FF 00` is a literal 0xFF and `FF D0..D7` are restart
/// markers); returns the position of the next real marker.
fn skip_entropy_coded(b: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let Some(k) = b[i..].iter().position(|&x| x == 0xFF) else {
            return Err(truncated("inside the image data", b.len()));
        };
        i += k;
        match b.get(i + 1) {
            None => return Err(truncated("inside the image data", b.len())),
            Some(0x00 | 0xD0..=0xD7) => i += 2,
            Some(0xFF) => i += 1,
            Some(_) => return Ok(i),
        }
    }
}

/// Walks PNG chunks until `IEND`.
fn png_complete(b: &[u8]) -> Result<(), String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !b.starts_with(SIGNATURE) {
        return Err("no PNG signature".into());
    }
    let mut i = SIGNATURE.len();
    loop {
        let Some(head) = b.get(i..i + 8) else {
            return Err(truncated("before the IEND chunk", b.len()));
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > i32::MAX as usize {
            return Err(format!("invalid chunk length {len} at byte {i}"));
        }
        let end = i + 8 + len + 4;
        if end > b.len() {
            return Err(truncated("inside a chunk", b.len()));
        }
        if &head[4..8] == b"IEND" {
            return Ok(());
        }
        i = end;
    }
}

/// Checks the RIFF container is as long as its header says.
fn webp_complete(b: &[u8]) -> Result<(), String> {
    let Some(size) = b.get(4..8) else {
        return Err(truncated("inside the RIFF header", b.len()));
    };
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    if 8 + size > b.len() {
        return Err(format!(
            "file ends after {} of the {} bytes its RIFF header announces",
            b.len(),
            8 + size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_jpeg_structure_is_walked_to_the_end_marker() {
        // SOI, a 4-byte APP0 segment, SOS with a 2-byte header, data with stuffing and a
        // restart marker, EOI.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x01, 0x02, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF,
            0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9,
        ];
        assert_eq!(jpeg_complete(&jpeg), Ok(()));
        for cut in 0..jpeg.len() {
            assert!(jpeg_complete(&jpeg[..cut]).is_err(), "cut at {cut}");
        }
    }
}
