"""Whole volumes for the viewer: a result's image and label maps sent once, drawn slice by slice in the browser.

Paging through a study then costs no request: the page fetches a small manifest and two or three arrays,
and draws slices, overlays, window/level and each structure's layer on a canvas. A result never changes
(a re-run is a new result), so every file is served with ``Cache-Control: immutable`` and an ETag, and the
URLs carry :data:`FORMAT_VERSION`, so a change of encoding gets new URLs instead of stale caches.

Encoding, per array, little-endian, C order (D, H, W[, channels]), gzip-compressed on disk:

* ``image``: the original's values as ``uint8`` or ``uint16`` with ``value = offset + scale * stored``, so
  the browser can apply any window. Integers spanning at most 65,536 values are stored exactly (CT in HU:
  ``offset`` = its minimum); floats and wider integers are quantised linearly over their finite range
  (65,536 steps: far finer than a display's 256 grey levels). Colour images are windowed here and stored as
  8-bit RGB (``channels`` 3).
* ``label`` / ``reference``: label values as ``uint8`` (``uint16`` when a value exceeds 255). ``lut`` gives
  each multiclass value's RGBA (background transparent); a multilabel (bit-packed) map gives its
  ``channels`` and their colours instead.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from medseg.palette import channel_colours, colourize
from medseg.server.slices import grey_u8

FORMAT_VERSION = 1
KINDS = ("image", "label", "reference")
MANIFEST = "volume.json"
_GZIP_LEVEL = 6  # about as small as level 9 on label maps, several times faster


def file_name(kind: str) -> str:
    return f"{kind}.bin.gz"


def encode_image(array: np.ndarray, window: dict) -> tuple[np.ndarray, dict]:
    """(D, H, W[, 3]) → (stored array, its manifest entry without the URL)."""
    array = np.asarray(array)
    if array.ndim == 4:  # colour: windowed here, the page shows it as stored
        return grey_u8(array, window), {
            "dtype": "uint8",
            "channels": int(array.shape[-1]),
            "offset": 0.0,
            "scale": 1.0,
            "window": {**window, "low": 0.0, "high": 255.0},
        }
    entry = {"channels": 1, "window": dict(window)}
    if array.dtype == np.uint8 or array.dtype == bool:
        return array.astype(np.uint8), {**entry, "dtype": "uint8", "offset": 0.0, "scale": 1.0}
    low, high = _finite_range(array)
    stored = np.empty(array.shape, np.uint16)  # filled slice by slice: a 512³ volume needs no float64 copy
    if np.issubdtype(array.dtype, np.integer) and high - low <= 65535:
        for k in range(array.shape[0]):  # v - low fits 0..65535, so the modular uint16 difference is exact
            np.subtract(array[k].astype(np.uint16), np.uint16(int(low) % 65536), out=stored[k])
        return stored, {**entry, "dtype": "uint16", "offset": low, "scale": 1.0}
    scale = (high - low) / 65535 or 1.0
    for k in range(array.shape[0]):
        values = np.nan_to_num((array[k].astype(np.float64) - low) / scale, nan=0.0, posinf=65535, neginf=0)
        stored[k] = np.clip(np.rint(values), 0, 65535)
    return stored, {**entry, "dtype": "uint16", "offset": low, "scale": scale}


def _finite_range(array: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values, slice by slice (0, 0 when there are none)."""
    lows, highs = [], []
    for k in range(array.shape[0]):
        part = array[k]
        if np.issubdtype(part.dtype, np.floating):
            part = part[np.isfinite(part)]
        if part.size:
            lows.append(float(part.min()))
            highs.append(float(part.max()))
    return (min(lows), max(highs)) if lows else (0.0, 0.0)


def encode_labels(labels: np.ndarray, background: int | None, n_channels: int) -> tuple[np.ndarray, dict]:
    """Label values → (stored array, manifest entry): the RGBA of each value (multiclass) or the structures'
    colours (multilabel, ``n_channels`` > 0)."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    stored = labels.astype(np.uint8 if top < 256 else np.uint16)
    entry = {"dtype": str(stored.dtype)}
    if n_channels:
        entry["channels"] = [[int(v) for v in rgb] for rgb in channel_colours(n_channels)]
    else:
        values = np.arange(top + 1)
        rgb = colourize(values, background)
        alpha = np.full(values.shape, 255) if background is None else np.where(values != background, 255, 0)
        entry["lut"] = [[int(r), int(g), int(b), int(a)] for (r, g, b), a in zip(rgb, alpha, strict=True)]
    return stored, entry


def _write_array(array: np.ndarray, path: Path) -> None:
    data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0))
    os.replace(tmp, path)


def write_volumes(
    folder: Path,
    grey: np.ndarray,
    window: dict,
    labels: np.ndarray,
    reference: np.ndarray | None,
    *,
    background: int | None,
    n_channels: int = 0,
) -> dict:
    """Write the arrays and ``volume.json`` (the manifest, URLs added when served) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    image, image_entry = encode_image(grey, window)
    manifest = {
        "version": FORMAT_VERSION,
        "shape": [int(s) for s in labels.shape],
        "image": image_entry,
        "multilabel": bool(n_channels),
    }
    _write_array(image, folder / file_name("image"))
    for kind, values in (("label", labels), ("reference", reference)):
        if values is None:
            manifest[kind] = None
            continue
        stored, manifest[kind] = encode_labels(values, background, n_channels)
        _write_array(stored, folder / file_name(kind))
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return manifest


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None
