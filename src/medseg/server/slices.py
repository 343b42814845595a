"""Slice images for the viewer, made once when a job finishes (thesis §4.6.2: cut and saved right after the
segmentation, so showing a slice is only sending three small files, never reading the volume).

For each axial slice ``k`` there are PNGs of the original in grey (windowed), of the prediction as an RGBA
layer (class colours, transparent background) and of the reference, if one was uploaded, likewise. The
grey window is a CT soft-tissue window (W 400, L 40) when the values are Hounsfield units, otherwise the
0.5-99.5 percentiles of the image (8-bit images are shown as stored).

A multi-label result (bit-packed, :mod:`medseg.server.channels`) gets, besides that one ``label`` layer, one
layer per structure (``channel-<c>/``): the structure's mask filled in its colour, half transparent, with its
outline opaque, so where two structures overlap both fills show through each other and both outlines are
drawn, and the viewer can show or hide each structure. Its ``label`` layer is opaque like a multiclass one;
a pixel in several structures is striped in their colours (diagonal stripes 2 pixels wide).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medseg.palette import channel_colours, colourize

CT_WINDOW = {"kind": "CT soft tissue (W 400, L 40)", "low": -160.0, "high": 240.0}
_PNG = {"compress_level": 3}  # small enough for the wire, quick enough to write a few hundred of
FILL_ALPHA = 140  # a structure's fill in its own layer (outline: 255); the page's opacity slider scales both


def looks_like_hu(array: np.ndarray, modality: str | None) -> bool:
    """CT by its modality; with no modality recorded (a NIfTI from elsewhere), integer values reaching down
    to air (≤ -500) and up to soft tissue (≥ 100) are taken as Hounsfield units."""
    if modality:
        return modality.upper() == "CT"
    if array.size == 0 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        return False
    sample = array[:, ::4, ::4] if array.ndim == 3 else array
    return bool(float(sample.min()) <= -500 and float(sample.max()) >= 100)


def display_window(array: np.ndarray, modality: str | None = None) -> dict:
    """How grey values are mapped to 0..255 for display: {kind, low, high}."""
    if looks_like_hu(array, modality):
        return dict(CT_WINDOW)
    if array.dtype == np.uint8:
        return {"kind": "as stored (8-bit)", "low": 0.0, "high": 255.0}
    sample = array[:, ::2, ::2] if array.ndim == 3 else array
    sample = sample[np.isfinite(sample)] if np.issubdtype(sample.dtype, np.floating) else sample
    if sample.size == 0:
        return {"kind": "percentile 0.5-99.5", "low": 0.0, "high": 1.0}
    low, high = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    return {"kind": "percentile 0.5-99.5", "low": low, "high": high}


def grey_u8(image: np.ndarray, window: dict) -> np.ndarray:
    low, high = float(window["low"]), float(window["high"])
    scaled = (np.asarray(image, dtype=np.float32) - low) * (255.0 / (high - low))
    return np.nan_to_num(np.clip(scaled, 0, 255), nan=0.0).astype(np.uint8)


def label_rgba(labels: np.ndarray, background: int | None = 0) -> np.ndarray:
    """(H, W) label values → (H, W, 4): the class colour, opaque on foreground, transparent on the
    ``background`` value (the model's: :func:`medseg.inference.volume.display_background`; None: all opaque)."""
    labels = np.asarray(labels)
    rgba = np.zeros((*labels.shape, 4), np.uint8)
    rgba[..., :3] = colourize(labels, background)
    rgba[..., 3] = 255 if background is None else np.where(labels != background, 255, 0)
    return rgba


def slice_file(folder: Path, k: int) -> Path:
    return Path(folder) / f"{k:04d}.png"


def write_image_slices(array: np.ndarray, window: dict, folder: Path) -> int:
    """Grey PNG per slice of a (D, H, W) array into ``folder``; returns D."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(array.shape[0]):
        Image.fromarray(grey_u8(array[k], window)).save(slice_file(folder, k), **_PNG)
    return int(array.shape[0])


def write_label_slices(labels: np.ndarray, folder: Path, background: int | None = 0) -> int:
    """RGBA PNG per slice of a (D, H, W) label map into ``folder``; returns D."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(labels.shape[0]):
        Image.fromarray(label_rgba(labels[k], background)).save(slice_file(folder, k), **_PNG)
    return int(labels.shape[0])


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels (4-neighbourhood; pixels on the image's edge are boundary)."""
    mask = np.asarray(mask, bool)
    inner = np.pad(mask, 1, constant_values=False)
    core = inner[1:-1, 1:-1] & inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
    return mask & ~core


def channel_rgba(mask: np.ndarray, rgb) -> np.ndarray:
    """One structure's layer (H, W, 4): its colour, fill alpha :data:`FILL_ALPHA`, outline opaque, else
    transparent."""
    mask = np.asarray(mask, bool)
    out = np.zeros((*mask.shape, 4), np.uint8)
    out[mask, :3] = np.asarray(rgb, np.uint8)
    out[..., 3] = np.where(outline(mask), 255, np.where(mask, FILL_ALPHA, 0))
    return out


def multilabel_rgba(labels: np.ndarray, n_channels: int) -> np.ndarray:
    """A bit-packed label slice (H, W) → one opaque RGBA layer: each structure in its channel colour, pixels
    in several structures striped in their colours, transparent where none is."""
    labels = np.asarray(labels).astype(np.int64)
    colours = channel_colours(n_channels)
    count = np.zeros(labels.shape, np.int64)
    for c in range(n_channels):
        count += (labels >> c) & 1
    yy, xx = np.indices(labels.shape)
    pick = ((yy + xx) // 2) % np.maximum(count, 1)  # which of the pixel's structures colours it
    out = np.zeros((*labels.shape, 4), np.uint8)
    rank = np.zeros(labels.shape, np.int64)  # how many of the pixel's structures come before channel c
    for c in range(n_channels):
        has = ((labels >> c) & 1).astype(bool)
        out[has & (rank == pick), :3] = colours[c]
        rank += has
    out[..., 3] = np.where(count > 0, 255, 0)
    return out


def channel_folder(folder: Path, c: int) -> Path:
    return Path(folder) / f"channel-{int(c)}"


def write_multilabel_slices(labels: np.ndarray, folder: Path, n_channels: int, *, layers: bool = True) -> int:
    """For a (D, H, W) bit-packed label map: the striped ``label`` layer per slice into ``folder`` and, with
    ``layers``, each structure's layer into ``folder/channel-<c>/``; returns D."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = channel_colours(n_channels)
    if layers:
        for c in range(n_channels):
            channel_folder(folder, c).mkdir(exist_ok=True)
    for k in range(labels.shape[0]):
        Image.fromarray(multilabel_rgba(labels[k], n_channels)).save(slice_file(folder, k), **_PNG)
        if layers:
            for c in range(n_channels):
                mask = (labels[k] >> c) & 1
                Image.fromarray(channel_rgba(mask, colours[c])).save(slice_file(channel_folder(folder, c), k), **_PNG)
    return int(labels.shape[0])
