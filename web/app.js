// The page's logic: load the wasm build of effnet and the weights, then classify whatever photo
// is picked or dropped. WebGPU (burn's wgpu backend) runs the model when the browser offers an
// adapter, the CPU (effnet-cpu executor) otherwise or when WebGPU fails; `?backend=cpu` or
// `?backend=webgpu` forces one. `?auto=URL[&repeat=N][&report=1]` classifies URL once plus N timed
// repeats without user input and writes the outcome as JSON into #result (and, with report=1,
// POSTs it to /result: that is how scripts/test-web.py reads it from headless Chromium).
import init, { EffnetClassifier } from "./pkg/effnet_web.js";

const WEIGHTS = "lite0_f16.bpk";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const CPU = "cpu (effnet-cpu executor, wasm32, 1 thread)";
let classifier = null;
let backend = CPU;
let onGpu = false;
let weightsBytes = null;

// After a WebGPU failure: the CPU classifier from the same weights.
function fallBackToCpu(load, e) {
  load.webgpu_error = String(e && e.message ? e.message : e);
  classifier = new EffnetClassifier(weightsBytes);
  onGpu = false;
  backend = CPU + " after a WebGPU failure";
}

function showError(message) {
  // After a Rust panic the thrown error only says "unreachable"; the module's panic hook left
  // the panic's own message in globalThis.effnetPanic.
  const text = globalThis.effnetPanic ? "internal error: " + globalThis.effnetPanic : String(message);
  $("error").textContent = "Error: " + text.split("\n")[0];
}

function showTop(result, name, ms) {
  $("error").textContent = "";
  const body = $("top").querySelector("tbody");
  body.replaceChildren();
  for (const p of result.top) {
    const tr = document.createElement("tr");
    const label = document.createElement("td");
    label.textContent = p.label;
    const prob = document.createElement("td");
    prob.className = "p";
    prob.textContent = (100 * p.prob).toFixed(1) + " %";
    const bar = document.createElement("td");
    const fill = document.createElement("div");
    fill.className = "bar";
    fill.style.width = Math.max(1, Math.round(200 * p.prob)) + "px";
    bar.append(fill);
    tr.append(label, prob, bar);
    body.append(tr);
  }
  $("top").hidden = false;
  $("timing").textContent =
    `${name} (${result.width}×${result.height}): ${ms.toFixed(1)} ms on ${backend}`;
}

// Decode + preprocess + forward + softmax of one image file's bytes; returns [result, ms].
async function classifyBytes(bytes, name) {
  const t0 = performance.now();
  const json = onGpu ? await classifier.classify_async(bytes, name, 5) : classifier.classify(bytes, name, 5);
  const ms = performance.now() - t0;
  return [JSON.parse(json), ms];
}

async function classifyFile(file) {
  if (!classifier) return showError("the model is not loaded yet");
  const url = URL.createObjectURL(file);
  $("preview").src = url;
  $("preview").style.display = "block";
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const [result, ms] = await classifyBytes(bytes, file.name);
    showTop(result, file.name, ms);
  } catch (e) {
    $("top").hidden = true;
    $("timing").textContent = "";
    showError(e && e.message ? e.message : e);
  }
}

async function webgpuStatus() {
  if (!("gpu" in navigator)) return "no navigator.gpu";
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return "navigator.gpu present, no adapter";
    const info = adapter.info || {};
    return `adapter: ${[info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "unnamed"}`;
  } catch (e) {
    return "requestAdapter failed: " + e;
  }
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function autoRun(load) {
  const url = params.get("auto");
  const repeat = Math.max(0, parseInt(params.get("repeat") || "5", 10) || 0);
  const out = { status: "error", image: url, backend, ...load };
  try {
    const bytes = await fetchBytes(url);
    const name = url.split("/").pop();
    let result, first;
    try {
      [result, first] = await classifyBytes(bytes, name);
    } catch (e) {
      if (!onGpu || params.get("backend") === "webgpu") throw e;
      fallBackToCpu(load, e);
      [result, first] = await classifyBytes(bytes, name);
    }
    const times = [];
    for (let i = 0; i < repeat; i++) times.push((await classifyBytes(bytes, name))[1]);
    times.sort((a, b) => a - b);
    Object.assign(out, load, {
      status: "done",
      backend,
      ...result,
      first_ms: first,
      steady_ms: times.length ? times[Math.floor(times.length / 2)] : null,
      steady_runs: times.length,
    });
    showTop(result, name, first);
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
    showError(out.error);
  }
  return out;
}

async function report(out) {
  $("result").textContent = JSON.stringify(out);
  if (params.get("report") === "1") {
    await fetch("/result", { method: "POST", body: JSON.stringify(out) });
  }
}

async function main() {
  const load = {};
  try {
    let t = performance.now();
    await init();
    load.wasm_init_ms = performance.now() - t;
    t = performance.now();
    const weights = await fetchBytes(WEIGHTS);
    weightsBytes = weights;
    load.weights_fetch_ms = performance.now() - t;
    load.webgpu = await webgpuStatus();
    t = performance.now();
    const want = params.get("backend") || (load.webgpu.startsWith("adapter") ? "webgpu" : "cpu");
    if (want === "webgpu") {
      try {
        classifier = await EffnetClassifier.webgpu(weights);
        onGpu = true;
        backend = "WebGPU (burn wgpu, " + load.webgpu + ")";
      } catch (e) {
        load.webgpu_error = String(e && e.message ? e.message : e);
        if (params.get("backend") === "webgpu") throw e;
      }
    }
    if (!classifier) classifier = new EffnetClassifier(weights);
    load.model_load_ms = performance.now() - t;
    load.model = JSON.parse(classifier.info());
    $("status").textContent =
      `${load.model.model}, ${load.model.classes} classes, ${(weights.length / 1e6).toFixed(1)} MB of weights; ` +
      `runs on ${backend} (WebGPU: ${load.webgpu}).`;
  } catch (e) {
    const msg = String(e && e.message ? e.message : e);
    showError("could not load the model: " + msg);
    $("status").textContent = "";
    if (params.has("auto")) await report({ status: "error", error: msg, ...load });
    return;
  }
  $("file").addEventListener("change", (ev) => {
    if (ev.target.files.length) classifyFile(ev.target.files[0]);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer.files[0];
    if (file) classifyFile(file);
    else showError("drop an image file");
  });
  if (params.has("auto")) await report(await autoRun(load));
}

main();
