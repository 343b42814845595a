"""The karyogram: a metaphase's chromosomes cut out, stood upright and arranged by class, as a cytogeneticist reads
a karyotype.

:func:`karyogram_slots` is the layout — the standard karyogram's rows by size, 1–5, 6–12, 13–18, 19–22 with X and Y
at the end of the last row — and :func:`draw_karyogram` the PNG: every classified chromosome upright
(:func:`medseg.data.karyotype_features.upright_cutout`, scaled by its metaphase's median length and intensity so
sizes compare as in the cell), under its class, its confidence in % below it; a chromosome whose confidence is
under ``low`` (:data:`LOW_CONFIDENCE`) gets a red frame and a "?"; chromosomes without a class are shown in a
last row "unclassified". ``medseg predict ... --karyotype-model`` writes it as ``<stem>_karyogram.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.data.karyotype_features import metaphase_cutouts
from medseg.data.mfish_karyotype import class_name

__all__ = ["KARYOGRAM_ROWS", "LOW_CONFIDENCE", "cutout_karyogram", "draw_karyogram", "karyogram_slots"]

KARYOGRAM_ROWS = ((1, 2, 3, 4, 5), (6, 7, 8, 9, 10, 11, 12), (13, 14, 15, 16, 17, 18), (19, 20, 21, 22, 23, 24))
LOW_CONFIDENCE = 0.5
_SHAPE = (96, 48)  # display cut-out


def karyogram_slots(classes: Sequence[int | None]) -> dict[tuple[int, int], list[int]]:
    """Where each chromosome goes: {(row, column): [chromosome indices]} — row and column of its class in
    :data:`KARYOGRAM_ROWS`, and row 4 column 0 for those without a class (None or outside 1–24), in input order."""
    where = {c: (r, k) for r, row in enumerate(KARYOGRAM_ROWS) for k, c in enumerate(row)}
    slots: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(classes):
        key = where.get(int(c), (len(KARYOGRAM_ROWS), 0)) if c is not None else (len(KARYOGRAM_ROWS), 0)
        slots.setdefault(key, []).append(i)
    return slots


def draw_karyogram(
    grey: np.ndarray,
    instances: Sequence,
    records: Sequence[dict],
    path: str | Path,
    *,
    low: float = LOW_CONFIDENCE,
    title: str = "",
) -> Path:
    """Write the karyogram of one metaphase: ``grey`` its image (2-D uint8), ``instances`` objects with ``bbox``
    (top, left, height, width) and ``mask``, ``records`` one dict per instance with ``class`` (1–24 or None) and
    ``class_confidence``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if len(records) != len(instances):
        raise ValueError(f"{len(instances)} instances but {len(records)} records")
    grey = np.asarray(grey)
    windows = [
        (grey[t : t + h, left : left + w], np.asarray(inst.mask, bool))
        for inst in instances
        for t, left, h, w in [(int(v) for v in inst.bbox)]
    ]
    cuts = [c[0] for c in metaphase_cutouts(windows, _SHAPE)[1]] if windows else []
    slots = karyogram_slots([r.get("class") for r in records])
    n_rows = len(KARYOGRAM_ROWS) + (1 if (len(KARYOGRAM_ROWS), 0) in slots else 0)
    per_slot = max([2] + [len(v) for k, v in slots.items() if k[0] < len(KARYOGRAM_ROWS)])
    n_cols = max(len(r) for r in KARYOGRAM_ROWS)
    h, w = _SHAPE
    fig = Figure(figsize=(n_cols * per_slot * 0.55 + 0.5, n_rows * 1.55 + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 0.96 if title else 1))
    ax.set_xlim(0, n_cols * (per_slot * w + 12))
    ax.set_ylim(n_rows * (h + 40), 0)
    ax.axis("off")
    for r, row in enumerate(KARYOGRAM_ROWS + (("?",),)):
        for k, cls in enumerate(row):
            x0, y0 = k * (per_slot * w + 12), r * (h + 40)
            members = slots.get((r, k), [])
            if r == len(KARYOGRAM_ROWS) and not members:
                continue
            name = "unclassified" if cls == "?" else class_name(cls)
            ax.text(x0 + per_slot * w / 2, y0 + h + 30, name, ha="center", va="center", fontsize=8, weight="bold")
            for j, i in enumerate(members[:per_slot] if r < len(KARYOGRAM_ROWS) else members):
                x = x0 + (j % per_slot) * w if r < len(KARYOGRAM_ROWS) else j * w
                ax.imshow(cuts[i], cmap="gray", vmin=0, vmax=255, extent=(x, x + w, y0 + h, y0))
                confidence = records[i].get("class_confidence")
                unsure = confidence is None or confidence < low
                if unsure:
                    ax.add_patch(Rectangle((x + 1, y0 + 1), w - 2, h - 2, fill=False, edgecolor="red", lw=1.2))
                label = "–" if confidence is None else f"{100 * confidence:.0f}%" + ("?" if unsure else "")
                ax.text(
                    x + w / 2,
                    y0 + h + 12,
                    label,
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="red" if unsure else "black",
                )
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    fig.savefig(path, format="png", facecolor="white")
    return path


def cutout_karyogram(
    images: np.ndarray,
    masks: np.ndarray,
    classes: Sequence[int | None],
    confidences: Sequence[float | None],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """:func:`draw_karyogram` of one cell given as its chromosomes' cut-outs (``images`` (n, H, W), uint8 or float
    in [0, 1]; ``masks`` (n, H, W) bool): the evaluation report's karyogram of a held-out cell."""
    from dataclasses import dataclass

    @dataclass
    class _Window:
        bbox: tuple[int, int, int, int]
        mask: np.ndarray

    images, masks = np.asarray(images), np.asarray(masks, bool)
    if images.dtype != np.uint8:  # float: in [0, 1] (normalised) or the grey values as floats
        scale = 255.0 if images.size and images.max() <= 1.0 else 1.0
        images = np.clip(np.rint(images * scale), 0, 255).astype(np.uint8)
    n, h, w = images.shape
    strip = np.concatenate(list(images), axis=1) if n else np.zeros((h, w), np.uint8)
    windows = [_Window((0, k * w, h, w), masks[k]) for k in range(n)]
    records = [{"class": c, "class_confidence": p} for c, p in zip(classes, confidences, strict=True)]
    return draw_karyogram(strip, windows, records, path, title=title)
