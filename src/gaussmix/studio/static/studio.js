// gaussmix studio: choose a picture, fit, watch EM, then re-render from the fitted model.
// Plain JavaScript against the studio's HTTP API (see the README); nothing is fetched from
// anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
// job: the job followed (fitting or shown); shown: the finished job whose gallery is shown.
const state = { picture: null, sample: null, job: null, shown: null, events: null, info: null,
                tone: [], renders: [], timer: null };
// Which renders each control changes (everything follows sharpen).
const DEPENDS = { peak: ["density", "density-mapped"], tone: ["density-mapped"],
                  samples: ["samples"], seed: ["samples"] };

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    error.field = body && body.field;
    throw error;
  }
  return body;
}

// The text of the label of the setting with this id ("Components" for k).
function labelOf(id) {
  const label = $(id)?.closest("label");
  if (!label) return id;
  const own = [...label.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE)
    .map((n) => n.textContent.trim()).find(Boolean);
  const text = own || label.textContent.trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// A server's sentence about one field, naming the field as the page labels it.
function fieldError(err) {
  document.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  if (!err.field || !$(err.field) || !err.message.startsWith(`${err.field} `)) return err.message;
  $(err.field).setAttribute("aria-invalid", "true");
  return labelOf(err.field) + err.message.slice(err.field.length);
}

// ---- choosing a picture -------------------------------------------------------------
// The server's own sentence for a file it would refuse, found before uploading it.
async function pictureProblem(file) {
  const errors = state.info.upload_errors;
  if (file.size > state.info.max_upload_bytes) return errors.too_big;
  try {
    (await createImageBitmap(file)).close();
  } catch (err) {
    return errors.not_a_picture;
  }
  return null;
}

async function choosePicture(file) {
  state.picture = null;
  state.sample = null;
  document.querySelectorAll(".samples button").forEach((b) => b.classList.remove("chosen"));
  $("fit").disabled = true;
  const problem = await pictureProblem(file);
  if (problem) {
    $("drop-text").textContent = `${file.name}: choose another picture`;
    showError(problem);
    return;
  }
  state.picture = file;
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  $("drop-text").replaceChildren(img);
  $("fit").disabled = Boolean(state.events);
  showError("");
}

function chooseSample(name, button) {
  state.sample = name;
  state.picture = null;
  document.querySelectorAll(".samples button").forEach((b) => b.classList.toggle("chosen", b === button));
  $("drop-text").textContent = `Sample: ${name} (drop a picture to use your own)`;
  $("fit").disabled = Boolean(state.events);
  showError("");
}

function setUpPicking() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => e.target.files[0] && choosePicture(e.target.files[0]));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) choosePicture(file);
  });
  for (const name of state.info.samples) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = name;
    button.dataset.sample = name;
    const img = document.createElement("img");
    img.src = `/api/samples/${name}.png`;
    img.alt = name;
    button.append(img);
    button.addEventListener("click", () => chooseSample(name, button));
    $("samples").append(button);
  }
}

// ---- fitting ---------------------------------------------------------------------------
async function fit() {
  showError("");
  const form = new FormData();
  if (state.picture) form.append("image", state.picture);
  else form.append("sample", state.sample);
  for (const name of ["mode", "k", "color_scale", "seed", "max_iter", "max_pixels", "threshold"]) {
    const value = $(name).value.trim();
    if (value !== "") form.append(name, value);
  }
  if ($("keep_light").checked) form.append("keep_light", "true");
  try {
    const { id } = await api("/api/jobs", { method: "POST", body: form });
    fieldError({});
    follow(id);
  } catch (err) {
    showError(fieldError(err));
  }
}

// Follow a job's progress; the gallery shown so far stays (and its controls work) until the
// new one is done.
function follow(id) {
  if (state.events) state.events.close();
  state.job = id;
  history.replaceState(null, "", `#job=${id}`);  // a reload finds the job again
  $("progress").hidden = false;
  $("fit").disabled = true;
  $("cancel").hidden = false;
  $("preview").removeAttribute("src");
  $("preview").hidden = true;  // until the first preview arrives (no broken picture)
  $("bar-fill").style.width = "0";
  $("status").textContent = "queued";
  const events = new EventSource(`/api/jobs/${id}/events`);
  state.events = events;
  events.onmessage = (message) => update(JSON.parse(message.data));
  events.onerror = () => { if (events.readyState === EventSource.CLOSED) state.events = null; };
}

function update(job) {
  if (job.id !== state.job) return;
  const share = Math.min(1, job.iteration / job.max_iter);
  $("bar-fill").style.width = `${(job.state === "done" ? 1 : share) * 100}%`;
  const ll = job.log_likelihood === null ? "" : ` · log-likelihood ${job.log_likelihood.toFixed(4)}`;
  $("status").textContent = `${job.state} · iteration ${job.iteration} of at most ${job.max_iter}${ll}`;
  if (job.preview) {
    $("preview").src = `/api/jobs/${job.id}/preview.png?i=${job.iteration}`;
    $("preview").hidden = false;
  }
  if (["done", "failed", "cancelled"].includes(job.state)) {
    state.events && state.events.close();
    state.events = null;
    $("fit").disabled = !(state.picture || state.sample);
    $("cancel").hidden = true;
  }
  if (job.state === "done") {
    $("progress").hidden = true;
    showResult(job);
  } else if (job.state === "failed" || job.state === "cancelled") {
    backToShown();
    if (job.state === "failed") showError(job.error);
  }
}

// After a failed or cancelled fit: the earlier gallery (if any) is the page's job again.
function backToShown() {
  $("progress").hidden = true;
  $("status").textContent = "";
  state.job = state.shown;
  history.replaceState(null, "", state.shown ? `#job=${state.shown}` : location.pathname);
}

async function cancel() {
  if (!state.job) return;
  try {
    await api(`/api/jobs/${state.job}`, { method: "DELETE" });
  } catch (err) {
    showError(err.message);
  }
}

// ---- the gallery and its controls -------------------------------------------------------
function showResult(job) {
  state.shown = job.id;
  state.renders = job.renders;
  resetControls();
  const r = job.report;
  $("summary").textContent = `${r.mode === "color" ? "colour" : "black and white"} · ` +
    `${r.n_components} components · ${r.iterations} iterations` +
    `${r.converged ? "" : " (not converged)"} · ${r.points.toLocaleString()} points · ` +
    `fit ${r.seconds.fit.toFixed(1)} s`;
  $("model-link").href = `/api/jobs/${job.id}/model.npz`;
  $("report-link").href = `/api/jobs/${job.id}/report.json`;
  const samples = r.mode === "color" ? r.picture.width * r.picture.height : r.points;
  $("samples-count").value = Math.log10(Math.max(1000, Math.min(samples, state.info.max_samples)));
  $("which").replaceChildren(Object.assign(document.createElement("legend"), { textContent: "Renders shown" }));
  $("gallery").replaceChildren();
  for (const name of job.renders) {
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: true });
    box.addEventListener("change", () => { $(`card-${name}`).hidden = !box.checked; });
    label.append(box, name);
    $("which").append(label);
    const card = document.createElement("figure");
    card.className = "card";
    card.id = `card-${name}`;
    const img = Object.assign(document.createElement("img"), { alt: name, id: `render-${name}` });
    img.src = `/api/jobs/${job.id}/renders/${name}.png`;
    img.addEventListener("load", () => img.classList.remove("busy"));
    const caption = document.createElement("figcaption");
    const link = Object.assign(document.createElement("a"), { textContent: "PNG", id: `link-${name}` });
    link.href = img.src;
    link.download = `${name}.png`;
    caption.append(name, link);
    card.append(img, caption);
    $("gallery").append(card);
  }
  showControls();
  $("result").hidden = false;
}

// The controls at the settings of a new gallery's renders (the defaults).
function resetControls() {
  clearTimeout(state.timer);
  $("sharpen").value = 0;
  $("peak").value = state.info.peak;
  $("sample-seed").value = 0;
  state.tone = defaultTone();
  drawTone();
}

function defaultTone() {
  return state.info.tone.split(",").map((pair) => pair.split(":").map(Number));
}

function controlValues() {
  return { sharpen: Math.exp(parseFloat($("sharpen").value)), peak: parseFloat($("peak").value),
           samples: Math.round(10 ** parseFloat($("samples-count").value)),
           seed: parseInt($("sample-seed").value || "0", 10),
           tone: state.tone.map(([x, y]) => `${x.toFixed(3)}:${y.toFixed(3)}`).join(",") };
}

function showControls() {
  const v = controlValues();
  $("sharpen-out").textContent = v.sharpen.toFixed(2);
  $("peak-out").textContent = v.peak.toFixed(2);
  $("samples-out").textContent = v.samples.toLocaleString();
}

function renderUrl(name, v) {
  const query = new URLSearchParams({ sharpen: v.sharpen.toFixed(4) });
  if (name === "density" || name === "density-mapped") query.set("peak", v.peak);
  if (name === "density-mapped") query.set("tone", v.tone);
  if (name === "samples") { query.set("samples", v.samples); query.set("seed", v.seed); }
  return `/api/jobs/${state.shown}/renders/${name}.png?${query}`;
}

// Re-render the renders a control changes, a moment after it stops moving.
function changed(control) {
  showControls();
  clearTimeout(state.timer);
  state.timer = setTimeout(() => {
    const v = controlValues();
    const names = control === "sharpen" ? state.renders : DEPENDS[control].filter((n) => state.renders.includes(n));
    for (const name of names) {
      const img = $(`render-${name}`);
      const url = renderUrl(name, v);
      if (img.getAttribute("src") === url) continue;
      img.classList.add("busy");
      img.src = url;
      $(`link-${name}`).href = url;
    }
  }, 120);
}

// ---- the tone curve: knots dragged on a small plot ---------------------------------------
const TONE_SIZE = 160;

function drawTone() {
  const svg = $("tone");
  const point = ([x, y]) => [x * TONE_SIZE, (1 - y) * TONE_SIZE];
  const ns = "http://www.w3.org/2000/svg";
  const frame = document.createElementNS(ns, "rect");
  Object.entries({ x: 0, y: 0, width: TONE_SIZE, height: TONE_SIZE, fill: "none", stroke: "#e4e2dc" })
    .forEach(([k, v]) => frame.setAttribute(k, v));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", state.tone.map((k) => point(k).join(",")).join(" "));
  svg.replaceChildren(frame, line);
  state.tone.forEach((knot, index) => {
    const dot = document.createElementNS(ns, "circle");
    const [cx, cy] = point(knot);
    Object.entries({ cx, cy, r: 6 }).forEach(([k, v]) => dot.setAttribute(k, v));
    dot.dataset.index = index;
    dot.addEventListener("pointerdown", startDrag);
    svg.append(dot);
  });
}

function startDrag(event) {
  const index = parseInt(event.target.dataset.index, 10);
  const svg = $("tone");
  svg.setPointerCapture(event.pointerId);
  const move = (e) => {
    const box = svg.getBoundingClientRect();
    const scale = (TONE_SIZE + 16) / box.width;
    let x = ((e.clientX - box.left) * scale - 8) / TONE_SIZE;
    const y = Math.min(1, Math.max(0, 1 - ((e.clientY - box.top) * scale - 8) / TONE_SIZE));
    const last = state.tone.length - 1;
    if (index === 0) x = 0;
    else if (index === last) x = 1;
    else x = Math.min(state.tone[index + 1][0] - 0.005, Math.max(state.tone[index - 1][0] + 0.005, x));
    state.tone[index] = [x, y];
    drawTone();
    changed("tone");
  };
  const stop = () => {
    svg.removeEventListener("pointermove", move);
    svg.removeEventListener("pointerup", stop);
  };
  svg.addEventListener("pointermove", move);
  svg.addEventListener("pointerup", stop);
}

// ---- start ----------------------------------------------------------------------------------
async function start() {
  state.info = await api("/api/samples");
  state.tone = defaultTone();
  setUpPicking();
  drawTone();
  $("fit").addEventListener("click", fit);
  $("cancel").addEventListener("click", cancel);
  $("sharpen").addEventListener("input", () => changed("sharpen"));
  $("peak").addEventListener("input", () => changed("peak"));
  $("samples-count").addEventListener("input", () => changed("samples"));
  $("sample-seed").addEventListener("input", () => changed("seed"));
  showControls();
  const earlier = location.hash.match(/^#job=([\w-]+)$/);
  if (earlier) {
    try {
      await api(`/api/jobs/${earlier[1]}`);
      follow(earlier[1]);
    } catch (err) {
      history.replaceState(null, "", location.pathname);  // forgotten: start afresh
    }
  }
}

start().catch((err) => showError(err.message));
