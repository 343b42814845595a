"""`medseg predict` for a user's own images: label map, colour overlay and each whole object separately.

Beyond the papers: karyotyping needs each chromosome whole, so for every derived structure of the task
(for chromosomes: α = α-only ∪ overlap, β = β-only ∪ overlap) a binary mask and a cut-out (the grey image
with the mask as alpha channel) are written too.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.data.folder import normalize_intensity, read_image
from medseg.data.pommier import pad_to
from medseg.inference.predictor import Predictor
from medseg.inference.volume import display_background
from medseg.palette import (
    colourize,  # the one class palette (background black, α red, β green, overlap blue)
)
from medseg.progress import Progress


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45, background: int | None = 0) -> np.ndarray:
    """The grey image with every non-background label blended in its class colour (``background``: the
    task's background class, None: every class is drawn)."""
    grey = (np.clip(image, 0, 1) * 255).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    colour = colourize(labels, background).astype(np.float32)
    fg = labels != background if background is not None else np.ones(labels.shape, bool)
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * colour[fg]
    return rgb.clip(0, 255).astype(np.uint8)


def predict_arrays(predictor: Predictor, image: np.ndarray, *, probabilities: bool = False) -> np.ndarray:
    """One (H, W) float image in [0, 1] (:func:`~medseg.data.folder.normalize_intensity`: the dtype's range) →
    (H, W) label map ((C, H, W) binary maps for a multilabel model), padded like in training when it is smaller
    than the model's ``data.size`` and cropped back on the last two axes (``data.size: null``: full resolution,
    never padded). The rest of the feeding recorded in model.json — ``data.normalize: zscore``, the sliding
    window — is applied by :meth:`Predictor.predict_proba`, the one path the server and ``evaluate`` share.
    ``probabilities``: the (C, H, W) class probabilities instead of the labels (how sure the model is)."""
    run = predictor.predict_proba if probabilities else predictor.predict
    pre = predictor.meta.get("preprocessing", {})
    size = pre.get("size")
    h, w = image.shape
    if size and (h < size[0] or w < size[1]):
        th, tw = max(h, size[0]), max(w, size[1])
        padded = pad_to(image, (th, tw), pre.get("image_pad_value", 0))
        top, left = (th - h) // 2, (tw - w) // 2
        labels = run(padded[None])[0]
        return labels[..., top : top + h, left : left + w]
    return run(image[None])[0]


def predict_image_file(predictor: Predictor, path: Path, out_dir: Path) -> dict:
    """Writes ``<stem>_labels.png`` (class indices), ``_labels_color.png``, ``_overlay.png`` and, per derived
    structure, ``_<name>_mask.png`` and ``_<name>_cutout.png``; returns the pixel counts written to
    ``<stem>_summary.json``. Files appear only once all are written."""
    path = Path(path)
    raw = read_image(path)
    image = normalize_intensity(raw)
    labels = predict_arrays(predictor, image)
    stem = path.stem
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = predictor.class_names
    summary = {
        "image": str(path),
        "shape": list(image.shape),
        "classes": {},
        "model": predictor.meta.get("model", {}).get("name"),
        "derived": {},
    }
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".predict-") as tmp:
        tmp = Path(tmp)
        Image.fromarray(labels.astype(np.uint8)).save(tmp / f"{stem}_labels.png")
        background = display_background(predictor.meta)
        Image.fromarray(colourize(labels, background)).save(tmp / f"{stem}_labels_color.png")
        Image.fromarray(overlay(image, labels, background=background)).save(tmp / f"{stem}_overlay.png")
        for c, name in enumerate(names):
            summary["classes"][name] = int((labels == c).sum())
        grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        for name, members in (predictor.meta["task"].get("derived") or {}).items():
            mask = np.isin(labels, members)
            Image.fromarray((mask * 255).astype(np.uint8)).save(tmp / f"{stem}_{name}_mask.png")
            Image.fromarray(np.stack([grey, mask.astype(np.uint8) * 255], axis=-1), mode="LA").save(
                tmp / f"{stem}_{name}_cutout.png"
            )
            summary["derived"][name] = int(mask.sum())
        (tmp / f"{stem}_summary.json").write_text(json.dumps(summary, indent=2))
        for f in tmp.iterdir():
            shutil.move(str(f), out_dir / f.name)
    return summary


def predict_image_files(
    predictor: Predictor,
    paths: Sequence[Path],
    out_dir: Path,
    *,
    report: Callable[[str], None] | None = None,
    progress: bool = True,
) -> dict:
    """:func:`predict_image_file` for every image of ``paths``, under a progress bar. ``report`` (default: printed
    above the bar, on stderr) gets a line per image, and after the first of several an estimate of the time
    the rest will take (a 512² image with TTA takes seconds on a loaded CPU core: a folder of them, minutes).
    Returns ``n_images``, ``total_seconds``, ``ms_per_image`` and the images' summaries."""
    start = time.perf_counter()
    summaries = []
    with Progress(
        total=len(paths), desc="predicting images", unit="image", disable=not progress or len(paths) < 2
    ) as bar:
        say = report or (lambda line: bar.write(line, file=sys.stderr))
        for path in paths:
            summary = predict_image_file(predictor, path, out_dir)
            summaries.append(summary)
            bar.update()
            say(f"{path} → {out_dir}  " + ", ".join(f"{k}: {v} px" for k, v in summary["classes"].items()))
            if len(summaries) == 1 and len(paths) > 1:
                first = time.perf_counter() - start
                rest = first * (len(paths) - 1)
                about = f"{rest:.1f} s" if rest < 90 else f"{rest / 60:.1f} min"
                say(f"first image {first:.1f} s: about {about} for the other {len(paths) - 1}")
    total = time.perf_counter() - start
    return {
        "n_images": len(paths),
        "total_seconds": round(total, 3),
        "ms_per_image": round(1000 * total / max(len(paths), 1), 1),
        "images": summaries,
    }
