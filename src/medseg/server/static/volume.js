// A result's whole arrays, fetched once when it is opened, and its slices drawn from them on canvases:
// paging, playing, window/level and showing or hiding a structure then cost no request. The encoding is the
// server's (medseg/server/volumes.py): raw little-endian arrays, C order (D, H, W[, channels]), sent
// gzip-encoded and unpacked by the browser; typed arrays read the platform's byte order, which is
// little-endian on every platform a browser runs on.
"use strict";

const FILL_ALPHA = 140;  // a structure's fill in its own layer (outline opaque), as slices.py draws it

async function fetchArray(entry) {
  const response = await fetch(entry.url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${entry.url}: ${response.status} ${response.statusText}`);
  const buffer = await response.arrayBuffer();
  return entry.dtype === "uint16" ? new Uint16Array(buffer) : new Uint8Array(buffer);
}

// The manifest and its arrays; throws where the result has none (made before they were kept).
async function loadVolume(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const manifest = await response.json();
  const kinds = ["image", "label", "reference"].filter((kind) => manifest[kind]);
  const arrays = await Promise.all(kinds.map((kind) => fetchArray(manifest[kind])));
  const volume = { manifest, lut: null };
  kinds.forEach((kind, i) => { volume[kind] = arrays[i]; });
  const [d, h, w] = manifest.shape;
  const expected = d * h * w * manifest.image.channels;
  if (volume.image.length !== expected) throw new Error(`image array has ${volume.image.length} values, not ${expected}`);
  return volume;
}

// Stored value → grey byte for the window [low, high] in the image's own values (value = offset + scale·stored).
function setWindow(volume, low, high) {
  const image = volume.manifest.image;
  const size = image.dtype === "uint16" ? 65536 : 256;
  const lut = new Uint8Array(size);
  const span = high > low ? high - low : 1;
  for (let s = 0; s < size; s++) {
    const g = ((image.offset + image.scale * s - low) * 255) / span;
    lut[s] = g <= 0 ? 0 : g >= 255 ? 255 : Math.round(g);
  }
  volume.lut = lut;
  volume.window = { low, high };
}

function sized(canvas, w, h) {
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  return canvas.getContext("2d");
}

function drawGrey(canvas, volume, k) {
  const [, h, w] = volume.manifest.shape;
  const channels = volume.manifest.image.channels;
  const ctx = sized(canvas, w, h);
  const out = ctx.createImageData(w, h);
  const px = out.data, src = volume.image, lut = volume.lut;
  const base = k * h * w * channels;
  for (let i = 0; i < h * w; i++) {
    const o = 4 * i, s = base + i * channels;
    if (channels === 1) { const g = lut[src[s]]; px[o] = g; px[o + 1] = g; px[o + 2] = g; }
    else { px[o] = lut[src[s]]; px[o + 1] = lut[src[s + 1]]; px[o + 2] = lut[src[s + 2]]; }
    px[o + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
}

// A label slice: each value in its RGBA (multiclass lut), or, bit-packed, each structure in its colour with
// pixels in several structures striped in theirs (diagonal stripes 2 pixels wide), as the slice PNGs.
function drawLabels(canvas, volume, kind, k) {
  const [, h, w] = volume.manifest.shape;
  const entry = volume.manifest[kind];
  const values = volume[kind];
  const ctx = sized(canvas, w, h);
  const out = ctx.createImageData(w, h);
  const px = out.data, base = k * h * w;
  const lut = entry.lut, colours = entry.channels;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = values[base + y * w + x], o = 4 * (y * w + x);
      if (lut) {
        const c = lut[v] || lut[0];
        px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = c[3];
        continue;
      }
      if (!v) continue;
      let count = 0;
      for (let c = 0; c < colours.length; c++) count += (v >> c) & 1;
      let pick = ((y + x) >> 1) % count;
      for (let c = 0; c < colours.length; c++) {
        if (!((v >> c) & 1)) continue;
        if (pick-- === 0) {
          const rgb = colours[c];
          px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2]; px[o + 3] = 255;
          break;
        }
      }
    }
  }
  ctx.putImageData(out, 0, 0);
}

// Structure c of a bit-packed label slice: filled half transparent in its colour, its outline opaque
// (4-neighbourhood; pixels on the image's edge are outline), so overlapping structures both show.
function drawChannel(canvas, volume, c, k) {
  const [, h, w] = volume.manifest.shape;
  const rgb = volume.manifest.label.channels[c];
  const values = volume.label, base = k * h * w;
  const ctx = sized(canvas, w, h);
  const out = ctx.createImageData(w, h);
  const px = out.data;
  const has = (y, x) => y >= 0 && x >= 0 && y < h && x < w && (values[base + y * w + x] >> c) & 1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!has(y, x)) continue;
      const o = 4 * (y * w + x);
      const inner = has(y - 1, x) && has(y + 1, x) && has(y, x - 1) && has(y, x + 1);
      px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2]; px[o + 3] = inner ? FILL_ALPHA : 255;
    }
  }
  ctx.putImageData(out, 0, 0);
}

function copyCanvas(target, source) {
  sized(target, source.width, source.height).drawImage(source, 0, 0);
}

// The per-slice PNG drawn on a canvas: results without arrays, and the chromosome instances' layer.
function drawPng(canvas, url, done) {
  const img = new Image();
  img.onload = () => {
    sized(canvas, img.naturalWidth, img.naturalHeight).drawImage(img, 0, 0);
    if (done) done();
  };
  img.src = url;
}
