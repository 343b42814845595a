// medseg web page: sign-in, upload, study list with job progress (polled), slice viewer, downloads.
// Plain JavaScript, no build step and nothing loaded from elsewhere (the server's CSP allows only 'self').
// Drawing from a result's arrays: volume.js; the chromosome table, numbers, click-to-select, zoom: instances.js.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  studies: new Map(),   // id -> study JSON
  viewer: null,         // {study, result, k, n, hidden: Set of hidden structure channels, layer, instances, pinned,
                        //  volume: the result's arrays (volume.js) or null, loading}
  timer: null,          // autoplay interval
  poll: null,
};
const ACTIVE = new Set(["queued", "running"]);
const PLAY_MS = 250;

// ---------------------------------------------------------------------------------------------- API

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401 && location.pathname !== "/login") {
    location.assign("/login");
    throw new Error("not signed in");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.status === 204 ? null : response.json();
}

function show(el, visible) { el.hidden = !visible; }

function setError(el, message) {
  el.textContent = message || "";
  show(el, Boolean(message));
}

// ---------------------------------------------------------------------------------------------- sign-in

function initLogin() {
  show($("login-view"), true);
  $("username").focus();
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    setError($("login-error"), "");
    $("login-button").disabled = true;
    try {
      await api("/api/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: $("username").value.trim(), password: $("password").value }),
      });
      location.assign("/");
    } catch (err) {
      setError($("login-error"), err.message);
      $("password").select();
    } finally {
      $("login-button").disabled = false;
    }
  });
}

// ---------------------------------------------------------------------------------------------- main page

async function initMain() {
  const me = await api("/api/me");
  $("whoami").textContent = me.username + (me.is_admin ? " (admin)" : "");
  show($("account"), true);
  show($("main-view"), true);
  $("logout").addEventListener("click", async () => {
    try { await api("/api/logout", { method: "POST" }); } finally { location.assign("/login"); }
  });
  state.models = await api("/api/models");
  renderModels();
  $("upload-form").addEventListener("submit", upload);
  initViewerControls();
  await refreshStudies();
}

function renderModels() {
  const select = $("model-select");
  select.replaceChildren();
  for (const m of state.models) {
    const option = document.createElement("option");
    option.value = m.id;
    const kinds = m.spatial_dims === 3 ? "3D" : m.stacks ? "2D, images or slice stacks" : "2D";
    const overlap = m.channels && m.channels.length > 1 ? `, ${m.channels.length} overlapping structures` : "";
    // metaphase models: every chromosome as its own instance; crossings split only with a pair model
    const instances = !m.instances ? "" : m.pair_model
      ? `, chromosome instances (pair model ${m.pair_model.version})`
      : ", chromosome instances (no pair model: crossings kept whole)";
    // ... and each chromosome's karyotype class with a karyotyping model (medseg serve --karyotype-model)
    const classes = m.instances && m.karyotype_model ? `, classes by ${m.karyotype_model.version}` : "";
    option.textContent = `${m.id} — ${m.name}, ${kinds}${overlap}${instances}${classes}${m.demo ? " (demo)" : ""}`;
    select.append(option);
  }
  if (!state.models.length) {
    const option = document.createElement("option");
    option.textContent = "no model offered by this server";
    option.disabled = true;
    select.append(option);
    $("upload-button").disabled = true;
  }
  const demos = state.models.filter((m) => m.demo);
  show($("demo-banner"), demos.length > 0);
  $("demo-models").textContent = demos.length ? ` (${demos.map((m) => m.id).join(", ")})` : "";
}

function upload(event) {
  event.preventDefault();
  const files = $("upload-file").files;
  setError($("upload-error"), "");
  if (!files.length) {
    setError($("upload-error"), "Choose an image, a volume or the files of a DICOM series first.");
    return;
  }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const ref = $("reference-file").files[0];
  if (ref) form.append("reference", ref, ref.name);
  form.append("model", $("model-select").value);
  // XMLHttpRequest rather than fetch: it reports upload progress for large volumes.
  const xhr = new XMLHttpRequest();
  const bar = $("upload-progress");
  xhr.open("POST", "/api/studies");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total); };
  xhr.onloadend = async () => {
    show(bar, false);
    $("upload-button").disabled = false;
    if (xhr.status === 201) {
      // Clear the chosen files but keep the chosen model: the next upload and "Re-run" use it.
      const chosen = $("model-select").value;
      $("upload-form").reset();
      $("model-select").value = chosen;
      await refreshStudies();
      return;
    }
    let message = `upload failed (${xhr.status || "network error"})`;
    try { message = JSON.parse(xhr.responseText).detail || message; } catch (_) { /* keep */ }
    if (xhr.status === 401) location.assign("/login");
    setError($("upload-error"), message);
  };
  bar.value = 0;
  show(bar, true);
  $("upload-button").disabled = true;
  xhr.send(form);
}

// ---------------------------------------------------------------------------------------------- studies

function latestDone(study) {
  return [...study.results].reverse().find((r) => r.status === "done") || null;
}

// A result's warnings (e.g. an input that records no modality for a CT model), one per line.
function warningText(result) {
  return result && result.warnings ? result.warnings.map((w) => `⚠ ${w}`).join("\n") : "";
}

// "≈ 46 chromosomes · 3 doubtful · " for a metaphase result, else nothing
function chromosomeCountText(result) {
  const s = result && result.instances && result.instances.statuses;
  return s ? `≈ ${s.estimate} chromosomes · ${s.doubtful} doubtful · ` : "";
}

function statusText(study) {
  if (!study.status) return "";
  return `${study.status} ${Math.round(100 * (study.progress || 0))}%`;
}

function studyItem(study) {
  const li = document.createElement("li");
  li.className = "study";
  li.dataset.id = study.id;
  li.innerHTML = `
    <div class="study-main">
      <span class="name"></span>
      <span class="meta"></span>
      <span class="job-warning warning"></span>
      <span class="job-error error"></span>
    </div>
    <span class="status"></span>
    <div class="study-actions">
      <button type="button" class="open">Open</button>
      <button type="button" class="rerun" title="Segment again with the model chosen above (earlier results are kept)">Re-run</button>
      <button type="button" class="delete" title="Delete the study, its files and all its results">Delete</button>
    </div>`;
  li.querySelector(".open").addEventListener("click", () => openStudy(li.dataset.id));
  // The whole row opens the study too (mouse, or Enter / Space on the focused row); its buttons and any
  // text being selected in it keep their own meaning.
  li.addEventListener("click", (e) => {
    if (e.target.closest("button, a, input, select, textarea")) return;
    if (String(window.getSelection ? window.getSelection() : "")) return;
    openStudy(li.dataset.id);
  });
  li.addEventListener("keydown", (e) => {
    if (e.target !== li || (e.key !== "Enter" && e.key !== " ")) return;
    e.preventDefault();
    openStudy(li.dataset.id);
  });
  li.querySelector(".rerun").addEventListener("click", () => rerun(li.dataset.id, li));
  li.querySelector(".delete").addEventListener("click", () => removeStudy(li.dataset.id, li));
  return li;
}

function updateItem(li, study) {
  const latest = study.results[study.results.length - 1];
  li.querySelector(".name").textContent = study.name;
  // a 2D image as width × height, as image programs give it; a volume keeps its array order
  const shape = study.kind === "2d" ? `${study.shape[2]} × ${study.shape[1]} px image` : `${study.shape.join("×")} volume`;
  const model = latest ? `${latest.model.id}${latest.model.demo ? " (demo)" : ""}` : "";
  const counted = chromosomeCountText(latestDone(study));
  li.querySelector(".meta").textContent =
    `${shape} · ${study.input_format}${study.has_reference ? " + reference" : ""} · ${model} · ${counted}` +
    `${study.results.length} result${study.results.length === 1 ? "" : "s"} · ${new Date(study.created_at).toLocaleString()}`;
  const status = li.querySelector(".status");
  status.textContent = statusText(study);
  status.dataset.status = study.status || "";
  li.dataset.status = study.status || "";
  const err = latest && latest.status === "failed" ? latest.error : "";
  const errEl = li.querySelector(".job-error");
  if (!li.dataset.actionError) errEl.textContent = err || "";
  const done = latestDone(study);
  li.querySelector(".job-warning").textContent = warningText(done);
  const openable = Boolean(done);
  li.querySelector(".open").disabled = !openable;
  li.classList.toggle("openable", openable);
  li.tabIndex = openable ? 0 : -1;
  li.title = openable ? "Open in the viewer" : "";
}

async function refreshStudies() {
  clearTimeout(state.poll);
  let studies = [];
  try {
    studies = await api("/api/studies");
  } catch (err) {
    state.poll = setTimeout(refreshStudies, 5000);
    return;
  }
  const list = $("studies");
  const seen = new Set();
  studies.forEach((study, index) => {
    seen.add(study.id);
    state.studies.set(study.id, study);
    let li = list.querySelector(`.study[data-id="${CSS.escape(study.id)}"]`);
    if (!li) li = studyItem(study);
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    updateItem(li, study);
  });
  for (const li of [...list.querySelectorAll(".study")]) {
    if (!seen.has(li.dataset.id)) { li.remove(); state.studies.delete(li.dataset.id); }
  }
  show($("studies-empty"), studies.length === 0);
  if (state.viewer) {
    const study = state.studies.get(state.viewer.study.id);
    if (!study) closeViewer();
    else { state.viewer.study = study; renderResultChoices(); }
  }
  const busy = studies.some((s) => s.results.some((r) => ACTIVE.has(r.status)));
  state.poll = setTimeout(refreshStudies, busy ? 1000 : 10000);
}

async function rerun(id, li) {
  li.dataset.actionError = "";
  try {
    await api(`/api/studies/${encodeURIComponent(id)}/rerun`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: $("model-select").value }),
    });
  } catch (err) {
    li.dataset.actionError = "1";
    li.querySelector(".job-error").textContent = err.message;
    return;
  }
  await refreshStudies();
}

async function removeStudy(id, li) {
  li.querySelector(".delete").disabled = true;
  try {
    await api(`/api/studies/${encodeURIComponent(id)}`, { method: "DELETE" });
    li.remove();
    state.studies.delete(id);
    if (state.viewer && state.viewer.study.id === id) closeViewer();
    show($("studies-empty"), state.studies.size === 0);
  } catch (err) {
    li.querySelector(".delete").disabled = false;
    li.dataset.actionError = "1";
    li.querySelector(".job-error").textContent = err.message;
  }
}

// ---------------------------------------------------------------------------------------------- viewer

function openStudy(id, resultId) {
  const study = state.studies.get(id);
  if (!study) return;
  const result = (resultId && study.results.find((r) => r.id === resultId)) || latestDone(study);
  if (!result) return;
  stopPlay();
  state.viewer = {
    study, result, k: 0, n: result.n_slices || 1, hidden: new Set(),
    // a metaphase result opens on its chromosome instances; the classes are one click away
    layer: result.instances ? result.instances.layer : "label", instances: [], pinned: null,
    sort: { key: "id", dir: 1 }, view: { zoom: 1, tx: 0, ty: 0 },
    volume: null, loading: Boolean(result.volume_url),
  };
  $("viewer").dataset.volume = "loading";
  applyView();
  for (const canvas of document.querySelectorAll("#viewer .stack canvas")) {
    canvas.width = 0;  // nothing of the study shown before while this one loads
    delete canvas.dataset.slice;
  }
  $("viewer-title").textContent = study.name;
  renderResultChoices();
  show($("viewer-demo"), result.model.demo);
  $("viewer-warnings").textContent = warningText(result);
  show($("viewer-warnings"), Boolean(warningText(result)));
  const hasRef = study.has_reference;
  show($("reference-panel"), hasRef);
  show($("img-reference"), hasRef);
  const slider = $("slice-slider");
  slider.max = String(state.viewer.n);
  slider.disabled = state.viewer.n < 2;
  // a single 2D image has no slices to step through or play: no Play button, slider or "1 / 1"
  for (const id of ["autoplay", "slice-slider", "slice-index"]) show($(id), state.viewer.n > 1);
  const [, h, w] = study.shape;
  const [, sy, sx] = study.spacing || [1, 1, 1];
  for (const stack of document.querySelectorAll("#viewer .stack")) stack.style.aspectRatio = `${w * sx} / ${h * sy}`;
  renderChannelLayers(result);
  renderLayerChoice(result);
  renderLegend(result);
  renderDownloads(study, result);
  renderInstances(result);
  $("viewer-info").textContent =
    `Model ${result.model.id} (version ${result.model.version}) · input sha256 ${study.input_sha256.slice(0, 16)}… · ` +
    `window: ${study.window.kind}` + (result.summary ? " · " + volumeText(result.summary) : "");
  show($("viewer"), true);
  showSlice(0);
  $("viewer").scrollIntoView({ behavior: "smooth", block: "start" });
  if (state.viewer.loading) openVolume(state.viewer);
  else {
    $("viewer").dataset.volume = "slice images";
    renderWindowControls();
  }
}

// The result's arrays, once: from then on every slice is drawn here. A result made before they were kept
// is shown from its slice PNGs instead.
async function openVolume(v) {
  let volume = null;
  try {
    volume = await loadVolume(v.result.volume_url);
  } catch (err) {
    console.warn(`drawing ${v.result.id} from its slice images: ${err.message}`);
  }
  if (state.viewer !== v) return;  // another result was opened meanwhile
  v.volume = volume;
  v.loading = false;
  // what the slices are drawn from, for scripts driving the page (tests): "arrays" or "slice images"
  $("viewer").dataset.volume = volume ? "arrays" : "slice images";
  if (volume) {
    const w = volume.manifest.image.window;
    setWindow(volume, w.low, w.high);
  }
  renderWindowControls();
  showSlice(v.k);
}

function renderWindowControls() {
  const v = state.viewer;
  const usable = Boolean(v && v.volume && v.volume.manifest.image.channels === 1);
  show($("window-controls"), usable);
  if (!usable) return;
  const { low, high } = v.volume.window;
  $("window-width").value = String(+(high - low).toFixed(3));
  $("window-level").value = String(+((high + low) / 2).toFixed(3));
}

function applyWindow() {
  const v = state.viewer;
  if (!v || !v.volume) return;
  const width = Number($("window-width").value), level = Number($("window-level").value);
  if (!(width > 0) || !Number.isFinite(level)) return;  // half typed: keep the last window
  setWindow(v.volume, level - width / 2, level + width / 2);
  showSlice(v.k);
}

function resetWindow() {
  const v = state.viewer;
  if (!v || !v.volume) return;
  const w = v.volume.manifest.image.window;
  setWindow(v.volume, w.low, w.high);
  renderWindowControls();
  showSlice(v.k);
}

// A structure's size: ml where the voxel size is known, else mm² (summed over slices), else a pixel count.
function sizeText(c) {
  if (c.volume_ml != null) return `${c.volume_ml.toFixed(2)} ml`;
  if (c.area_mm2 != null) return `${c.area_mm2.toFixed(1)} mm²`;
  return c.voxels !== undefined ? `${c.voxels} voxels` : `${c.pixels} px`;
}

function volumeText(summary) {
  const sizes = summary.classes.map((c) =>
    `${c.name} ${sizeText(c)}` + (c.dice !== undefined ? ` (Dice ${c.dice.toFixed(3)})` : "")).join(", ");
  // multilabel: an overlap pixel counts in every structure it belongs to
  const overlap = summary.overlap ? ` · ${summary.overlap.count} ${summary.overlap.unit} in two structures or more` : "";
  return sizes + overlap;
}

function renderResultChoices() {
  const v = state.viewer;
  const select = $("result-select");
  select.replaceChildren();
  v.study.results.forEach((r, i) => {
    const option = document.createElement("option");
    option.value = r.id;
    option.textContent = `#${i + 1} ${r.model.id} — ${r.status}${r.status === "running" ? " " + Math.round(100 * r.progress) + "%" : ""}`;
    option.disabled = r.status !== "done";
    option.selected = r.id === v.result.id;
    select.append(option);
  });
}

// "#rrggbb" -> "rgba(r, g, b, alpha)": a structure's half-transparent fill in its legend swatch
function fill(hex, alpha) {
  const v = parseInt(hex.slice(1), 16);
  return `rgba(${(v >> 16) & 255}, ${(v >> 8) & 255}, ${v & 255}, ${alpha})`;
}

function channelsOf(result) {
  return result && result.multilabel && result.channels ? result.channels : [];
}

// Multilabel results: one layer per structure over the slice (its fill half transparent, its outline
// opaque), so a pixel in two structures shows both colours and both outlines; the single "label" layer is
// hidden then. Multiclass results keep the one label layer.
function renderChannelLayers(result) {
  const stack = $("overlay-stack");
  for (const canvas of [...stack.querySelectorAll("canvas.channel-layer")]) canvas.remove();
  const channels = channelsOf(result);
  show($("img-overlay"), channels.length === 0);
  for (const c of channels) {
    const canvas = document.createElement("canvas");
    canvas.className = "layer channel-layer";
    canvas.dataset.channel = String(c.channel);
    canvas.dataset.layer = c.layer;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${c.name} on the original slice`);
    stack.append(canvas);
  }
  applyOpacity();
}

function channelLayers() {
  return [...$("overlay-stack").querySelectorAll("canvas.channel-layer")];
}

function setChannelVisible(channel, visible) {
  const v = state.viewer;
  if (!v) return;
  if (visible) v.hidden.delete(channel); else v.hidden.add(channel);
  for (const canvas of channelLayers()) {
    if (Number(canvas.dataset.channel) === channel) show(canvas, visible);
  }
  const li = $("legend").querySelector(`li[data-channel="${channel}"]`);
  if (li) li.classList.toggle("off", !visible);
  showSlice(v.k);  // hidden layers are not drawn: draw it now
}

function renderLegend(result) {
  const legend = $("legend");
  legend.replaceChildren();
  if (result.instances && state.viewer && state.viewer.layer === result.instances.layer) {
    // the instance layer: one colour per chromosome (the table's swatches), overlap pixels white; the swatch is a
    // generic three-colour bar in no class's colours (class colours come from the API only: test_palette)
    for (const [colour, text] of [[null, "each chromosome its own colour (see the table)"],
                                  ["#ffffff", "overlap: in two chromosomes"]]) {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      if (colour) swatch.style.backgroundColor = colour;
      else swatch.style.backgroundImage = "linear-gradient(90deg, #d4a017 33%, #8e44ad 33% 66%, #16a085 66%)";
      const name = document.createElement("span");
      name.textContent = text;
      li.append(swatch, name);
      legend.append(li);
    }
    return;
  }
  const channels = channelsOf(result);
  const rows = new Map(((result.summary && result.summary.classes) || []).map((c) => [c.value, c]));
  if (channels.length) {
    // one entry per structure, with a checkbox that shows or hides its layer, and its own size
    for (const c of channels) {
      const li = document.createElement("li");
      li.dataset.channel = String(c.channel);
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.addEventListener("change", () => setChannelVisible(c.channel, box.checked));
      const swatch = document.createElement("span");
      swatch.className = "swatch channel";
      swatch.style.backgroundColor = fill(c.colour, 0.55);
      swatch.style.borderColor = c.colour;
      const name = document.createElement("span");
      name.textContent = c.name;
      label.append(box, swatch, name);
      // its size is in the info line below (volumeText); here in the tooltip with its value in the downloads
      const row = rows.get(c.value);
      label.title = (row ? `${sizeText(row)} · ` : "") + `show / hide ${c.name} · label value ${c.value} in the ` +
        "downloads (values add up where structures overlap)";
      li.append(label);
      legend.append(li);
    }
    return;
  }
  for (const c of result.classes) {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = c.colour;
    const name = document.createElement("span");
    name.textContent = c.name;
    li.append(swatch, name);
    legend.append(li);
  }
}

// Label formats besides the first one (the label in the input's own format) and DICOM-SEG.
const MORE_DOWNLOADS = {
  nifti: ["Label (NIfTI)", "label map on the input's grid"],
  "slicer-seg": ["3D Slicer (.seg.nrrd)", "3D Slicer segmentation: one named layer per structure, overlaps kept"],
};

function renderDownloads(study, result) {
  const d = result.downloads;
  const first = d.png ? "png" : d["png-slices"] ? "png-slices" : study.input_format === "hdf5" ? "hdf5" : "nifti";
  const labelLink = $("download-label");
  labelLink.href = d[first];
  labelLink.textContent = first === "png" ? "Label (PNG, class indices)"
    : `Label (${{ "png-slices": "PNG slices, zip", hdf5: "HDF5", nifti: "NIfTI" }[first]})`;
  labelLink.title = result.multilabel
    ? "bit-packed: each structure has its own bit (values 1, 2, 4, …), values add up where structures overlap"
    : first === "png" ? "each pixel holds its class index (0 background, 1, 2, …): looks black in an image viewer; " +
      "for analysis software" : "";
  const seg = $("download-dicom-seg");
  show(seg, Boolean(d["dicom-seg"]));
  seg.href = d["dicom-seg"] || "#";
  const more = $("download-more");
  more.replaceChildren();
  for (const [fmt, [text, title]] of Object.entries(MORE_DOWNLOADS)) {
    if (!d[fmt] || fmt === first) continue;
    const a = document.createElement("a");
    a.href = d[fmt];
    a.download = "";
    a.textContent = text;
    a.title = title;
    more.append(a);
  }
  $("download-summary").href = d["summary.json"];
  $("download-summary-csv").href = d["summary.csv"];
  show($("download-instances"), Boolean(d.instances));
  $("download-instances").href = d.instances || "#";
  show($("download-karyogram"), Boolean(d.karyogram));  // a karyotyping model classed the chromosomes
  $("download-karyogram").href = d.karyogram || "#";
}

function sliceUrl(kind, k) {
  return state.viewer.result.slice_url.replace("{k}", String(k)).replace("{kind}", kind);
}

function showSlice(k) {
  const v = state.viewer;
  if (!v) return;
  v.k = Math.min(Math.max(k, 0), v.n - 1);
  $("slice-slider").value = String(v.k + 1);
  $("slice-index").textContent = `${v.k + 1} / ${v.n}`;
  if (v.loading) return;  // drawn once the arrays are in (openVolume)
  if (v.volume) drawFromVolume(v);
  else drawFromSliceImages(v);
}

// Only the layers shown are drawn: a hidden one costs nothing (and, from slice images, no request).
function drawFromVolume(v) {
  const volume = v.volume, k = v.k;
  drawGrey($("img-original"), volume, k);
  copyCanvas($("img-overlay-base"), $("img-original"));
  if (v.layer !== "label") drawPng($("img-overlay"), sliceUrl(v.layer, k));  // chromosome instances: one image
  else if (!channelsOf(v.result).length) drawLabels($("img-overlay"), volume, "label", k);
  for (const canvas of channelLayers()) {
    if (!canvas.hidden) drawChannel(canvas, volume, Number(canvas.dataset.channel), k);
  }
  if (v.study.has_reference && volume.reference) {
    copyCanvas($("img-reference-base"), $("img-original"));
    drawLabels($("img-reference"), volume, "reference", k);
  }
  $("img-original").dataset.slice = String(k);
}

function drawFromSliceImages(v) {
  const k = v.k;
  drawPng($("img-original"), sliceUrl("image", k), () => {
    if (state.viewer !== v || v.k !== k) return;
    copyCanvas($("img-overlay-base"), $("img-original"));
    if (v.study.has_reference) copyCanvas($("img-reference-base"), $("img-original"));
    $("img-original").dataset.slice = String(k);
  });
  if (v.layer !== "label" || !channelsOf(v.result).length) drawPng($("img-overlay"), sliceUrl(v.layer, k));
  for (const canvas of channelLayers()) {
    if (!canvas.hidden) drawPng(canvas, sliceUrl(canvas.dataset.layer, k));
  }
  if (v.study.has_reference) drawPng($("img-reference"), sliceUrl("reference", k));
}

function step(delta, wrap = false) {
  const v = state.viewer;
  if (!v) return;
  const k = wrap ? (v.k + delta + v.n) % v.n : v.k + delta;
  showSlice(k);
}

function stopPlay() {
  clearInterval(state.timer);
  state.timer = null;
  $("autoplay").setAttribute("aria-pressed", "false");
  $("autoplay").textContent = "Play";
}

function togglePlay() {
  if (state.timer) { stopPlay(); return; }
  if (!state.viewer) return;
  state.timer = setInterval(() => step(1, true), PLAY_MS);
  $("autoplay").setAttribute("aria-pressed", "true");
  $("autoplay").textContent = "Pause";
}

function closeViewer() {
  stopPlay();
  state.viewer = null;
  show($("viewer"), false);
}

function applyOpacity() {
  const value = Number($("opacity").value) / 100;
  $("img-overlay").style.opacity = String(value);
  $("img-reference").style.opacity = String(value);
  for (const canvas of channelLayers()) canvas.style.opacity = String(value);
}

function initViewerControls() {
  $("slice-slider").addEventListener("input", (e) => showSlice(Number(e.target.value) - 1));
  $("autoplay").addEventListener("click", togglePlay);
  $("opacity").addEventListener("input", applyOpacity);
  $("window-width").addEventListener("input", applyWindow);
  $("window-level").addEventListener("input", applyWindow);
  $("window-reset").addEventListener("click", resetWindow);
  applyOpacity();
  initZoomPan();
  applyGrey();
  for (const th of document.querySelectorAll("#instances-table th[data-sort]")) {
    th.tabIndex = 0;
    th.title = "sort by this column (again: the other way)";
    th.addEventListener("click", () => sortBy(th.dataset.sort));
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(th.dataset.sort); });
  }
  for (const radio of document.querySelectorAll('#layer-choice input[name="layer"]')) {
    radio.addEventListener("change", () => { if (radio.checked) setLayer(radio.value); });
  }
  $("result-select").addEventListener("change", (e) => openStudy(state.viewer.study.id, e.target.value));
  document.addEventListener("keydown", (e) => {
    if (!state.viewer || $("viewer").hidden || e.altKey || e.ctrlKey || e.metaKey) return;
    const t = e.target;
    // keys typed into a form field, or handled by a focused slider itself, are not slice steps
    if (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    const moves = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 };
    if (e.key in moves) step(moves[e.key]);
    else if (e.key === "Home") showSlice(0);
    else if (e.key === "End") showSlice(state.viewer.n - 1);
    else return;
    e.preventDefault();
  });
}

// ---------------------------------------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", () => {
  if (location.pathname === "/login") initLogin();
  else initMain().catch((err) => { if (err.message !== "not signed in") console.error(err); });
});
