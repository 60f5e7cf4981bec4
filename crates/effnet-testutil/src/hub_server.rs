//! A tiny Hugging Face Hub stand-in for tests: serves `/{repo}/resolve/{revision}/{file}` from
//! memory on 127.0.0.1 with the headers the hub sends (`x-repo-commit`, `etag`, ranges), logs
//! each request, and stops when dropped or after a minute, whichever comes first.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The commit every served file claims to come from.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One served file: its bytes and the ETag to announce.
#[derive(Clone)]
pub struct Served {
    /// The file's content.
    pub bytes: Vec<u8>,
    /// Its ETag (the sha256 for LFS files, as the hub sends it).
    pub etag: String,
}

/// A running server; requests are logged as `"GET /path range"`.
pub struct HubServer {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub endpoint: String,
    /// Requests served so far.
    pub log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HubServer {
    /// Serves `files` (keyed by URL path, e.g. `/timm/tiny/resolve/main/model.safetensors`).
    pub fn start(files: HashMap<String, Served>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &files, &log2),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            endpoint,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// The logged requests so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn read_head(stream: &mut TcpStream) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn serve(mut stream: TcpStream, files: &HashMap<String, Served>, log: &Mutex<Vec<String>>) {
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default().to_string();
    let path = request.split(' ').nth(1).unwrap_or_default().to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    log.lock()
        .unwrap()
        .push(format!("{path} {}", range.clone().unwrap_or_default()));
    let Some(file) = files.get(&path) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let total = file.bytes.len();
    let (start, end) = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().unwrap_or(total.saturating_sub(1));
            (a.min(total), (b + 1).min(total))
        })
        .unwrap_or((0, total));
    let body = &file.bytes[start..end.max(start)];
    let status = if range.is_some() {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\n\
         x-repo-commit: {COMMIT}\r\netag: \"{}\"\r\nConnection: close\r\n\r\n",
        body.len(),
        end.max(1) - 1,
        file.etag
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(body);
}

/// Lower-case hex sha256 of `bytes` (an LFS file's ETag).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The reduced timm V2 fixture as a hub repository `timm/<name>`: `model.safetensors` and a timm
/// `config.json` (architecture left to the caller, 64 px test size, 0.5 mean/std, labels).
pub fn tiny_repo(root: &std::path::Path, name: &str) -> HashMap<String, Served> {
    let weights =
        std::fs::read(root.join("tests/data/parity/timm_tf_v2_tiny.safetensors")).expect("fixture");
    let labels: Vec<String> = (0..10).map(|i| format!("texture_{i}")).collect();
    let config = serde_json::json!({
        "architecture": "timm_tf_v2_tiny",
        "num_classes": 10,
        "label_names": labels,
        "pretrained_cfg": {
            "input_size": [3, 56, 56], "test_input_size": [3, 64, 64],
            "interpolation": "bilinear", "crop_pct": 0.9, "test_crop_pct": 1.0,
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]
        }
    })
    .to_string()
    .into_bytes();
    let base = format!("/timm/{name}/resolve/main");
    HashMap::from([
        (
            format!("{base}/model.safetensors"),
            Served {
                etag: sha256_hex(&weights),
                bytes: weights,
            },
        ),
        (
            format!("{base}/config.json"),
            Served {
                bytes: config,
                etag: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678".into(),
            },
        ),
    ])
}
