#!/usr/bin/env python3
"""Browser test of the web page (docs/deploy.md): serves web/dist (built by
scripts/build-web.sh) on a free local port, opens `index.html?auto=photos/chelsea.png&report=1`
in headless Chromium, and waits for the page to POST its outcome to /result. Then checks that
the page ranks tiger cat first with the probability the native library gives for the same f16
weights (`effnet infer --weights web/dist/lite0_f16.bpk --format json`), within 0.01, that a
file that is not an image (`?auto=index.html`) gives one error line naming it, and prints the
page's timings and weight.

Usage: scripts/test-web.py [--dist web/dist] [--repeat 10] [--chromium chromium]
       [--effnet PATH] [--webgpu] [--backend auto|cpu|webgpu] [--json OUT]
Standard library only. Exit status 0 when the check passes.
"""
import argparse
import gzip
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = "chelsea.png"
TOLERANCE = 0.01


def serve(dist, results):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=dist, **kw)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            self.send_response(204)
            self.end_headers()
            if self.path == "/result":
                results.append(json.loads(body))

        def log_message(self, *a):
            pass

    Handler.extensions_map = {**Handler.extensions_map, ".wasm": "application/wasm", ".js": "text/javascript"}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_page(chromium, url, results, timeout, extra):
    profile = tempfile.mkdtemp(prefix="effnet-web-chromium-")
    cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", f"--user-data-dir={profile}", *extra, url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while not results and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        shutil.rmtree(profile, ignore_errors=True)
    if not results:
        tail = "\n".join((err or "").strip().splitlines()[-15:])
        sys.exit(f"FAIL: no result from the page within {timeout} s\nchromium stderr:\n{tail}")
    return results[0]


def native_reference(effnet, weights, photo):
    out = subprocess.run([effnet, "infer", "--weights", weights, "--format", "json", photo],
                         check=True, capture_output=True, text=True).stdout
    rec = next(iter(json.loads(out).values()))
    return [{"index": i, "label": l, "prob": p} for i, l, p in zip(rec["index"], rec["label"], rec["prob"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", default=os.path.join(ROOT, "web", "dist"))
    ap.add_argument("--repeat", type=int, default=10, help="timed runs after the first")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/effnet-target"))
    ap.add_argument("--effnet", default=os.environ.get("EFFNET", os.path.join(target, "release", "effnet")))
    ap.add_argument("--webgpu", action="store_true",
                    help="also ask Chromium for WebGPU (--enable-unsafe-webgpu, SwiftShader) and report the adapter")
    ap.add_argument("--backend", choices=["auto", "cpu", "webgpu"], default="auto",
                    help="the page's backend: auto (WebGPU when Chromium offers an adapter), cpu or webgpu")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", help="write the page's outcome and the figures here")
    args = ap.parse_args()

    wasm = os.path.join(args.dist, "pkg", "effnet_web_bg.wasm")
    weights = os.path.join(args.dist, "lite0_f16.bpk")
    for f in (wasm, weights, os.path.join(args.dist, "photos", PHOTO)):
        if not os.path.exists(f):
            sys.exit(f"FAIL: {f} missing: run scripts/build-web.sh first")

    results = []
    server = serve(args.dist, results)
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?auto=photos/{PHOTO}&repeat={args.repeat}&report=1"
    if args.backend != "auto":
        url += f"&backend={args.backend}"
    extra = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-angle=swiftshader",
             "--use-webgpu-adapter=swiftshader"] if args.webgpu else []
    page = run_page(args.chromium, url, results, args.timeout, extra)
    # A file that is not an image: the page must report one error line naming it.
    results.clear()
    bad_url = url.replace(f"photos/{PHOTO}", "index.html").replace(f"repeat={args.repeat}", "repeat=0")
    bad = run_page(args.chromium, bad_url, results, args.timeout, extra)
    server.shutdown()

    if bad.get("status") != "error" or "index.html" not in bad.get("error", "") or "\n" in bad["error"]:
        sys.exit(f"FAIL: a non-image should give one error line naming it, got {bad}")
    print(f"non-image file: the page says: {bad['error']}")
    if page.get("status") != "done":
        sys.exit(f"FAIL: the page reported an error: {page.get('error')}")
    native = native_reference(args.effnet, weights, os.path.join(ROOT, "tests", "data", "photos", PHOTO))
    got = page["top"][0]
    want = native[0]
    diff = abs(got["prob"] - want["prob"])
    # The f32 bundled weights' reference (tests/data/photos/reference.json): f16 costs ~1e-3.
    with open(os.path.join(ROOT, "tests", "data", "photos", "reference.json")) as f:
        f32_prob = json.load(f)["top5"][PHOTO][0]["prob"]
    with open(wasm, "rb") as f:
        raw = f.read()
    figures = {
        "browser": subprocess.run([args.chromium, "--version"], capture_output=True, text=True).stdout.strip(),
        "backend": page.get("backend"),
        "webgpu": page.get("webgpu"),
        "webgpu_error": page.get("webgpu_error"),
        "top1": got["label"],
        "prob_browser": got["prob"],
        "prob_native": want["prob"],
        "prob_abs_diff": diff,
        "prob_native_f32_weights": f32_prob,
        "max_abs_diff_top5": max(abs(a["prob"] - b["prob"]) for a, b in zip(page["top"], native)),
        "first_ms": page["first_ms"],
        "steady_ms_median": page["steady_ms"],
        "steady_runs": page["steady_runs"],
        "wasm_init_ms": page.get("wasm_init_ms"),
        "model_load_ms": page.get("model_load_ms"),
        "wasm_bytes": len(raw),
        "wasm_gzip_bytes": len(gzip.compress(raw, 9)),
        "weights_bytes": os.path.getsize(weights),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"figures": figures, "page": page, "native": native}, f, indent=1)
    if abs(got["prob"] - f32_prob) > TOLERANCE:
        sys.exit(f"FAIL: tiger cat probability {got['prob']:.4f} vs {f32_prob:.4f} with the f32 weights")
    if got["label"] != "tiger cat" or got["index"] != want["index"]:
        sys.exit(f"FAIL: top-1 is {got['label']!r} ({got['index']}), native says {want['label']!r}")
    if diff > TOLERANCE:
        sys.exit(f"FAIL: tiger cat probability {got['prob']:.4f} vs native {want['prob']:.4f}")
    print(f"PASS: {PHOTO}: tiger cat {got['prob']:.4f} in the browser, {want['prob']:.4f} native "
          f"(|diff| {diff:.2e} <= {TOLERANCE})")


if __name__ == "__main__":
    main()
