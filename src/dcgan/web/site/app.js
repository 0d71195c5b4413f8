// The page: loads model.json and generator.onnx, makes images from seeds in the browser.
// window.dcgan.generate(seeds, {label, truncation}) is what the buttons call (and the tests).
"use strict";

const MAX_SEED = (1n << 63n) - 1n;
const $ = (id) => document.getElementById(id);
const started = performance.now();

ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which static hosts rarely set
ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;  // beside this page, never a CDN

let model = null;
let session = null;

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function parseSeed(text) {
  if (!/^\d+$/.test(String(text).trim())) throw new Error(`a seed is a whole number from 0, not "${text}"`);
  const seed = BigInt(String(text).trim());
  if (seed > MAX_SEED) throw new Error("a seed is below 2**63");
  return seed;
}

// Latents (and labels) of seeds -> {pixels: Uint8Array (B, C, H, W), count}; one session.run at a time.
let pending = Promise.resolve();
function run(latents, labels) {
  const job = pending.then(() => runNow(latents, labels));
  pending = job.catch(() => {});
  return job;
}

async function runNow(latents, labels) {
  const count = latents.length, zDim = model.z_dim;
  const z = new Float32Array(count * zDim);
  latents.forEach((latent, i) => z.set(latent, i * zDim));
  const feeds = { z: new ort.Tensor("float32", z, [count, zDim]) };
  if (model.num_classes > 0) feeds.labels = new ort.Tensor("int64", BigInt64Array.from(labels.map(BigInt)), [count]);
  const output = await session.run(feeds);
  return { pixels: output.images.data, count };
}

async function generate(seeds, { label = null, truncation = null } = {}) {
  seeds = seeds.map(parseSeed);
  const latents = seeds.map((s) => dcganRandom.latentFromSeed(s, model.z_dim, truncation));
  const labels = model.num_classes > 0
    ? seeds.map((s) => (label === null ? dcganRandom.classFromSeed(s, model.num_classes) : label)) : null;
  return { ...(await run(latents, labels)), labels };
}

async function walkFrames(seedFrom, seedTo, frames, label = null) {
  const [a, b] = [seedFrom, seedTo].map((s) => dcganRandom.latentFromSeed(parseSeed(s), model.z_dim, null));
  const latents = [];
  for (let i = 0; i < frames; i++) latents.push(dcganRandom.slerp(a, b, i / (frames - 1)));
  const cls = model.num_classes > 0 ? (label ?? dcganRandom.classFromSeed(parseSeed(seedFrom), model.num_classes)) : null;
  return run(latents, latents.map(() => cls));
}

function paint(canvas, pixels, index) {  // image `index` of (B, C, H, W) uint8 onto a canvas
  const size = model.resolution, channels = model.channels, plane = size * size;
  const context = canvas.getContext("2d");
  const picture = context.createImageData(size, size);
  const offset = index * channels * plane;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) picture.data[4 * p + c] = pixels[offset + (channels === 3 ? c : 0) * plane + p];
    picture.data[4 * p + 3] = 255;
  }
  context.putImageData(picture, 0, 0);
}

async function showGrid() {
  try {
    const first = parseSeed($("seed").value), count = Number($("count").value);
    const seeds = Array.from({ length: count }, (_, i) => String(first + BigInt(i)));
    const truncation = $("truncation").value === "" ? null : Number($("truncation").value);
    const label = $("class").value === "" ? null : Number($("class").value);
    const t0 = performance.now();
    const result = await generate(seeds, { label, truncation });
    const grid = $("grid");
    grid.style.gridTemplateColumns = `repeat(${Math.min(8, Math.ceil(Math.sqrt(count)))}, 1fr)`;
    grid.replaceChildren(...seeds.map((seed, i) => {
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = model.resolution;
      paint(canvas, result.pixels, i);
      const caption = document.createElement("figcaption");
      caption.textContent = `seed ${seed}` + (result.labels ? ` (${model.class_names[result.labels[i]]})` : "");
      figure.append(canvas, caption);
      return figure;
    }));
    status(`${count} images in ${(performance.now() - t0).toFixed(0)} ms`);
  } catch (error) {
    status(error.message, true);
  }
}

let walking = null;
async function playWalk() {
  if (walking) { clearInterval(walking); walking = null; $("walk").textContent = "Play"; return; }
  $("walk").disabled = true;  // until its frames are made: one walk at a time
  try {
    const frames = Math.max(2, Math.min(240, Number($("walk-frames").value) || 60));
    const label = $("class").value === "" ? null : Number($("class").value);
    const result = await walkFrames($("walk-from").value, $("walk-to").value, frames, label);
    const canvas = $("walk-canvas");
    canvas.width = canvas.height = model.resolution;
    let frame = 0, step = 1;
    walking = setInterval(() => {  // forth and back: a loop
      paint(canvas, result.pixels, frame);
      if (frame + step < 0 || frame + step >= frames) step = -step;
      frame += step;
    }, 1000 / 24);
    $("walk").textContent = "Stop";
  } catch (error) {
    status(error.message, true);
  } finally {
    $("walk").disabled = false;
  }
}

async function start() {
  model = await (await fetch("model.json")).json();
  $("title").textContent = `${model.name}: a DCGAN generator in your browser`;
  $("about").textContent = `${model.resolution}x${model.resolution} images, ${model.channels === 3 ? "colour" : "greyscale"}`
    + (model.num_classes > 0 ? `, ${model.num_classes} classes` : "")
    + `; ONNX weights in ${model.precision}, ${(model.onnx_bytes / 1e6).toFixed(1)} MB.`;
  if (model.num_classes > 0) {
    $("class-label").hidden = false;
    model.class_names.forEach((name, i) => $("class").add(new Option(name, String(i))));
  }
  session = await ort.InferenceSession.create("generator.onnx", { executionProviders: ["wasm"] });
  for (const id of ["generate", "random", "walk"]) $(id).disabled = false;
  $("generate").onclick = showGrid;
  $("random").onclick = () => { $("seed").value = String(Math.floor(Math.random() * 1e9)); showGrid(); };
  $("walk").onclick = playWalk;
  await showGrid();
  window.dcgan.timeToFirstImageMs = performance.now() - started;
  status(`first images ${window.dcgan.timeToFirstImageMs.toFixed(0)} ms after the page started`);
}

window.dcgan = { generate, walkFrames, timeToFirstImageMs: null };
window.dcgan.ready = start().catch((error) => { status(`could not load the generator: ${error.message}`, true); throw error; });
