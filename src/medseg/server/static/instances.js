// Metaphase results in the viewer: the chromosome instances' table (statuses, sorting), their numbers on the
// prediction, a click on an object selecting its row; and zoom, pan, brightness and contrast for every result.
// Shares app.js's globals ($, state, show, api, ...): loaded before it, run only once the page has started.
"use strict";

// ---------------------------------------------------------------------------------------------- chromosome instances

// Metaphase results: the chromosome instances' layer or the classes' layer in the prediction panel.
function renderLayerChoice(result) {
  show($("layer-choice"), Boolean(result.instances));
  for (const radio of document.querySelectorAll('#layer-choice input[name="layer"]')) {
    radio.checked = radio.value === state.viewer.layer;
  }
  $("overlay-caption").textContent = state.viewer.layer === "label" ? "Prediction"
    : "Chromosomes on the image (opacity 0: the image alone)";
}

function setLayer(layer) {
  const v = state.viewer;
  if (!v || !v.result.instances) return;
  v.layer = layer === "label" ? "label" : v.result.instances.layer;
  renderLayerChoice(v.result);
  renderLegend(v.result);
  renderNumbers(v);
  showSlice(v.k);
}

const HOW = {
  whole: "alone",
  pair_model: "split by the pair model",
  several_overlaps: "kept whole: several overlaps",
  no_pair_model: "kept whole: no pair model",
  pair_model_failed: "kept whole: pair model could not split it",
  pair_model_unsure: "kept whole: pair model unsure",
};
// each object's status (medseg.inference.instance_status), in the order the table sorts them
const STATUS = {
  single: "single",
  crossing_split: "crossing, split",
  crossing_whole: "crossing of two, kept whole",
  clump: "probable clump",
  doubtful: "doubtful: debris / nucleus?",
};
const STATUS_ORDER = Object.keys(STATUS);

function instanceStatusText(r) {
  if (!r.status) return "—";
  return r.status === "clump" || r.status === "crossing_whole"
    ? `${STATUS[r.status]} (≈ ${r.estimated_count})` : STATUS[r.status] || r.status;
}

// how the objects were separated: the detail under the headline
function countsText(info) {
  const parts = [`${info.n} object${info.n === 1 ? "" : "s"} found`,
    `${info.split} crossing${info.split === 1 ? "" : "s"} split by the pair model`];
  const why = Object.values(info.kept_whole_why || {}).map((w) => `${w.count} × ${w.reason}`);
  parts.push(`${info.kept_whole} cluster${info.kept_whole === 1 ? "" : "s"} kept whole` +
             (why.length ? ` (${why.join("; ")})` : ""));
  if (info.counts && info.counts.specks) parts.push(`${info.counts.specks} specks under 30 px left out`);
  const pair = info.pair_model ? ` · pair model ${info.pair_model.version}` : "";
  return parts.join(" · ") + pair;
}

function classText(r) {
  const name = r.class_name != null ? r.class_name : r.class != null ? String(r.class) : "";
  if (!name) return "";
  return r.class_confidence != null ? `${name} (${Math.round(100 * r.class_confidence)} %)` : name;
}

async function renderInstances(result) {
  const panel = $("instances-panel");
  const info = result.instances;
  markInstance(null);
  $("viewer-body").classList.toggle("with-table", Boolean(info));
  show($("numbers-choice"), Boolean(info));
  $("instance-numbers").replaceChildren();
  show(panel, Boolean(info));
  if (!info) return;
  const s = info.statuses;
  $("instances-title").textContent = s ? s.text : `${info.n} object${info.n === 1 ? "" : "s"}`;
  $("instances-counts").textContent = countsText(info);
  $("instances-warning").textContent = s && s.warning ? `⚠ ${s.warning}` : "";
  show($("instances-warning"), Boolean(s && s.warning));
  $("instances-note").textContent = info.note ? `⚠ ${info.note}` : "";
  show($("instances-note"), Boolean(info.note));
  // per-class counts when the server's karyotyping model classed the chromosomes
  const karyo = info.karyotype_model;
  $("instances-classes").textContent = karyo && info.classes_text
    ? `${info.classes_text} · classes by ${karyo.version} (${karyo.vote} vote)` : "";
  show($("instances-classes"), Boolean(karyo && info.classes_text));
  $("instances-table").querySelector("tbody").replaceChildren();
  let table;
  try {
    table = await api(info.table_url);
  } catch (err) {
    $("instances-counts").textContent = `${countsText(info)} · the table could not be loaded: ${err.message}`;
    return;
  }
  const v = state.viewer;
  if (!v || v.result.id !== result.id) return;  // another result was opened meanwhile
  v.instances = table.instances || [];
  // the class column: shown when any record holds a class; a chromosome without one shows why (class_note)
  v.withClass = v.instances.some((r) => classText(r));
  for (const cell of document.querySelectorAll("#instances-table .class-col")) show(cell, v.withClass);
  renderRows(v);
  renderNumbers(v);
}

const SORT_KEYS = {
  id: (r) => r.id,
  area: (r) => r.area,
  status: (r) => STATUS_ORDER.indexOf(r.status) * 1e6 + (r.estimated_count || 0),
  class: (r) => (r.class != null ? r.class : 1e9),
};

function sortBy(key) {
  const v = state.viewer;
  if (!v || !v.instances.length || !SORT_KEYS[key]) return;
  v.sort = { key, dir: v.sort.key === key ? -v.sort.dir : key === "area" ? -1 : 1 };  // area: largest first
  renderRows(v);
}

function renderRows(v) {
  for (const th of document.querySelectorAll("#instances-table th[data-sort]")) {
    if (th.dataset.sort === v.sort.key) th.setAttribute("aria-sort", v.sort.dir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
  const key = SORT_KEYS[v.sort.key];
  const records = [...v.instances].sort((a, b) => v.sort.dir * (key(a) - key(b)) || a.id - b.id);
  const body = $("instances-table").querySelector("tbody");
  body.replaceChildren();
  for (const r of records) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.id = String(r.id);
    tr.classList.toggle("pinned", Boolean(v.pinned) && v.pinned.id === r.id);
    const cells = [String(r.id), instanceStatusText(r), String(r.area), HOW[r.separated_by] || r.separated_by,
                   (r.overlaps_with || []).join(", ") || "—"];
    if (v.withClass) cells.push(classText(r) || "—");
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 1) {
        td.className = `instance-status status-${r.status || "none"}`;
        if (r.status_reason) td.title = r.status_reason;
      }
      if (i === 5 && r.class_note) td.title = r.class_note;
      if (i === 0 && r.colour) {
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.backgroundColor = r.colour;
        td.append(swatch);
      }
      td.append(document.createTextNode(text));
      tr.append(td);
    });
    tr.addEventListener("mouseenter", () => markInstance(r));
    tr.addEventListener("focus", () => markInstance(r));
    tr.addEventListener("mouseleave", () => markInstance(v.pinned));
    tr.addEventListener("blur", () => markInstance(v.pinned));
    tr.addEventListener("click", () => pinInstance(v.pinned && v.pinned.id === r.id ? null : r));
    tr.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" && e.key !== " ") return;
      e.preventDefault();
      pinInstance(v.pinned && v.pinned.id === r.id ? null : r);
    });
    body.append(tr);
  }
}

// Every object's number at the centre of its box over the prediction (doubtful ones in another colour).
function renderNumbers(v) {
  const layer = $("instance-numbers");
  layer.replaceChildren();
  const [, h, w] = v.study.shape;
  for (const r of v.instances) {
    const b = r.bbox;
    const span = document.createElement("span");
    span.textContent = String(r.id);
    span.dataset.id = String(r.id);
    if (r.status === "doubtful") span.className = "doubtful";
    span.style.left = `${(100 * (b.left + b.width / 2)) / w}%`;
    span.style.top = `${(100 * (b.top + b.height / 2)) / h}%`;
    layer.append(span);
  }
  show(layer, $("show-numbers").checked && v.layer !== "label");
}

function pinInstance(record, scroll = false) {
  const v = state.viewer;
  if (!v) return;
  v.pinned = record;
  for (const tr of $("instances-table").querySelectorAll("tbody tr")) {
    const on = Boolean(record) && tr.dataset.id === String(record.id);
    tr.classList.toggle("pinned", on);
    if (on && scroll) tr.scrollIntoView({ block: "nearest" });
  }
  for (const span of $("instance-numbers").children) {
    span.classList.toggle("selected", Boolean(record) && span.dataset.id === String(record.id));
  }
  markInstance(record);
}

// The object under a click on the prediction: of the boxes holding the point, the one whose colour the
// instance layer shows there (transparent there: none); on the classes' layer, the smallest box.
function instanceAt(v, event) {
  const canvas = $("img-overlay");
  const rect = canvas.getBoundingClientRect();  // the zoomed, panned canvas: it maps onto the whole image
  const [, h, w] = v.study.shape;
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * w);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * h);
  const inside = v.instances.filter((r) => {
    const b = r.bbox;
    return x >= b.left && x < b.left + b.width && y >= b.top && y < b.top + b.height;
  });
  if (!inside.length) return null;
  if (v.layer === "label" || canvas.width !== w || canvas.height !== h) {
    return inside.reduce((a, b) => (a.bbox.width * a.bbox.height <= b.bbox.width * b.bbox.height ? a : b));
  }
  const [red, green, blue, alpha] = canvas.getContext("2d").getImageData(x, y, 1, 1).data;
  if (!alpha) return null;
  const distance = (r) => {
    const c = parseInt((r.colour || "#000000").slice(1), 16);
    return Math.abs(((c >> 16) & 255) - red) + Math.abs(((c >> 8) & 255) - green) + Math.abs((c & 255) - blue);
  };
  return inside.reduce((a, b) => (distance(a) <= distance(b) ? a : b));
}

// ---------------------------------------------------------------------------------------------- zoom, pan, grey

const MAX_ZOOM = 16;

function applyView() {
  const view = state.viewer ? state.viewer.view : { zoom: 1, tx: 0, ty: 0 };
  for (const stack of document.querySelectorAll("#viewer .stack")) {
    stack.style.setProperty("--zoom", String(view.zoom));
    stack.style.setProperty("--tx", String(view.tx));
    stack.style.setProperty("--ty", String(view.ty));
    stack.classList.toggle("zoomed", view.zoom > 1);
  }
}

// Zoom by `factor` about the point (fx, fy) of the panel (fractions of its size); the image keeps covering it.
function zoomAt(factor, fx = 0.5, fy = 0.5) {
  const v = state.viewer;
  if (!v) return;
  const zoom = Math.min(Math.max(v.view.zoom * factor, 1), MAX_ZOOM);
  const cx = (fx - v.view.tx) / v.view.zoom, cy = (fy - v.view.ty) / v.view.zoom;  // the image point under it
  v.view = clampView({ zoom, tx: fx - zoom * cx, ty: fy - zoom * cy });
  applyView();
}

function clampView(view) {
  const low = 1 - view.zoom;
  return { zoom: view.zoom, tx: Math.min(0, Math.max(low, view.tx)), ty: Math.min(0, Math.max(low, view.ty)) };
}

function applyGrey() {
  const filter = `brightness(${$("brightness").value}%) contrast(${$("contrast").value}%)`;
  for (const id of ["img-original", "img-overlay-base", "img-reference-base"]) $(id).style.filter = filter;
}

function initZoomPan() {
  $("zoom-in").addEventListener("click", () => zoomAt(1.5));
  $("zoom-out").addEventListener("click", () => zoomAt(1 / 1.5));
  $("zoom-fit").addEventListener("click", () => {
    if (state.viewer) { state.viewer.view = { zoom: 1, tx: 0, ty: 0 }; applyView(); }
  });
  $("brightness").addEventListener("input", applyGrey);
  $("contrast").addEventListener("input", applyGrey);
  $("show-numbers").addEventListener("change", () => { if (state.viewer) renderNumbers(state.viewer); });
  for (const stack of document.querySelectorAll("#viewer .stack")) {
    stack.addEventListener("wheel", (e) => {
      if (!state.viewer) return;
      e.preventDefault();
      const rect = stack.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.25 : 1 / 1.25, (e.clientX - rect.left) / rect.width, (e.clientY - rect.top) / rect.height);
    }, { passive: false });
    let drag = null;  // a press that moves pans; one that does not is a click (selects an object)
    stack.addEventListener("pointerdown", (e) => {
      if (!state.viewer || e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, view: state.viewer.view, moved: false, rect: stack.getBoundingClientRect() };
      stack.setPointerCapture(e.pointerId);
    });
    stack.addEventListener("pointermove", (e) => {
      if (!drag || !state.viewer) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      drag.moved = true;
      state.viewer.view = clampView({ zoom: drag.view.zoom, tx: drag.view.tx + dx / drag.rect.width,
                                      ty: drag.view.ty + dy / drag.rect.height });
      applyView();
    });
    stack.addEventListener("pointerup", (e) => {
      const click = drag && !drag.moved;
      drag = null;
      const v = state.viewer;
      if (!click || !v || !v.instances.length) return;
      const record = instanceAt(v, e);
      pinInstance(record && v.pinned && v.pinned.id === record.id ? null : record, true);
    });
  }
}

// A frame around one chromosome's bounding box over the prediction (the stack has the image's aspect ratio).
function markInstance(record) {
  const mark = $("instance-mark");
  const v = state.viewer;
  if (!record || !v) { show(mark, false); return; }
  const [, h, w] = v.study.shape;
  const b = record.bbox;
  mark.style.left = `${(100 * b.left) / w}%`;
  mark.style.top = `${(100 * b.top) / h}%`;
  mark.style.width = `${(100 * b.width) / w}%`;
  mark.style.height = `${(100 * b.height) / h}%`;
  show(mark, true);
}
