//! Crash-safe file replacement, the one implementation every effnet crate uses (checkpoints,
//! `latest.json`, run-folder outputs, `.bpk` files from `effnet import`): write a temporary file
//! beside the target, fsync it, rename it over the target, then fsync the parent folder so the
//! rename itself survives a power cut. A reader sees the old file or the new one, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `file.tmp` beside `file`: where [`write_atomic`] stages its bytes.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Adds the path to an I/O error so the one-line message says which file failed.
fn with_path(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// Like [`write_atomic`] for writers that want a path (e.g. a tensor store): `write` fills the
/// temporary path, which is then fsynced and renamed over `path`. On error the temp file is removed.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = write(&tmp)
        .map_err(|e| with_path(&tmp, "cannot write", e))
        .and_then(|()| commit(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a finished temporary file or folder `tmp` durable and moves it to `path` (replacing a
/// file there): fsync its contents, rename, fsync the parent folder.
pub fn commit(tmp: &Path, path: &Path) -> io::Result<()> {
    sync_tree(tmp)?;
    fs::rename(tmp, path).map_err(|e| with_path(path, "cannot move into place", e))?;
    sync_parent(path)
}

/// fsyncs a file, or a folder and the files directly inside it.
fn sync_tree(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| with_path(path, "cannot list", e))? {
            let p = entry?.path();
            if p.is_file() {
                sync_path(&p)?;
            }
        }
    }
    sync_path(path)
}

/// fsyncs one file or folder by path.
fn sync_path(path: &Path) -> io::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| with_path(path, "cannot sync", e))
}

/// fsyncs the folder holding `path`, so a rename or creation inside it is on disk.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_path(dir),
        _ => sync_path(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("effnet-fsutil-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
        // A failing writer keeps the old file and cleans its temp file up.
        let e = write_atomic_with(&p, |tmp| {
            fs::write(tmp, b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("a.json.tmp"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
        // Folders commit too (checkpoints are folders).
        let t = dir.join("ckpt.tmp");
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join("x"), b"1").unwrap();
        commit(&t, &dir.join("ckpt")).unwrap();
        assert_eq!(fs::read(dir.join("ckpt/x")).unwrap(), b"1");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_folder_is_an_error_naming_the_file() {
        let p = Path::new("/nonexistent-effnet-dir/x.bin");
        let e = write_atomic(p, b"x").unwrap_err();
        assert!(e.to_string().contains("x.bin.tmp"), "{e}");
    }
}
