"""Report figures (PNG): example overlays, confusion matrix, per-fold box plot, training curves.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through ``pyplot``, so
no global backend or figure state is touched and nothing needs a display. Class colours and the legend come
from :mod:`medseg.palette` (AMFL's convention: background black, α red, β green, overlap blue), the same as
in the data preview, ``medseg predict``'s overlays and the web viewer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medseg.palette import ERROR_RGB, colourize, legend_handles

__all__ = [
    "confusion_matrix_figure",
    "fold_boxplot",
    "label_to_rgb",
    "overlay_examples",
    "select_by_overlap",
    "training_curves",
]

DPI = 120
_ERROR_COLOR = tuple(c / 255 for c in ERROR_RGB)  # yellow: wrongly labelled pixel
_CORRECT_FG = (0.35, 0.35, 0.35)  # grey: correctly labelled chromosome pixel


def label_to_rgb(label: np.ndarray, n_classes: int) -> np.ndarray:
    """``(H, W)`` label map to an ``(H, W, 3)`` uint8 RGB image in the class colours of :mod:`medseg.palette`."""
    return colourize(np.clip(np.asarray(label, dtype=np.int64), 0, n_classes - 1))


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight", facecolor="white")
    return path


def _overlap_index(class_names: Sequence[str]) -> int:
    for i, n in enumerate(class_names):
        if "overlap" in n.lower():
            return i
    return len(class_names) - 1


def select_by_overlap(
    labels: np.ndarray, overlap_class: int = 3, quantiles: Sequence[float] = (0.1, 0.5, 0.9)
) -> list[int]:
    """Indices of images whose true overlap area is nearest each quantile (RSE Fig. 10: small/medium/large).

    Only images that contain the overlap class are candidates; the quantiles are of their overlap pixel
    counts. Distinct images are returned when there are enough; with no overlap anywhere, the first
    ``len(quantiles)`` images are returned.
    """
    labels = np.asarray(labels)
    areas = (labels == overlap_class).reshape(len(labels), -1).sum(axis=1)
    candidates = np.flatnonzero(areas > 0)
    if candidates.size == 0:
        return list(range(min(len(quantiles), len(labels))))
    order = candidates[np.argsort(areas[candidates], kind="stable")]
    chosen: list[int] = []
    for q in quantiles:
        target = np.quantile(areas[order], q)
        # nearest area not yet chosen; ties resolved by rank, so small/medium/large stay in order
        ranked = sorted(order, key=lambda i: (abs(areas[i] - target), areas[i]))
        pick = next((int(i) for i in ranked if int(i) not in chosen), None)
        if pick is not None:
            chosen.append(pick)
    return chosen


def as_label_slices(images: np.ndarray, labels: np.ndarray, preds: np.ndarray, class_names: Sequence[str],
                    multilabel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Make volumes and multilabel masks drawable by :func:`overlay_examples`: multilabel (N, C, ...) masks
    become label maps (class c+1 where mask c is set; later classes over earlier ones, 0 = background) and
    3D cases become their axial slice with the most true foreground. Returns images, labels, preds,
    class names and a caption per case (which slice)."""
    images, labels, preds = np.asarray(images), np.asarray(labels), np.asarray(preds)
    names = list(class_names)
    if multilabel:
        def to_map(m):
            out = np.zeros(m.shape[:1] + m.shape[2:], dtype=np.uint8)
            for c in range(m.shape[1]):
                out[np.asarray(m[:, c]) > 0] = c + 1
            return out

        labels, preds, names = to_map(labels), to_map(preds), ["background", *names]
    captions = ["" for _ in range(len(images))]
    if images.ndim == 4:  # (N, D, H, W) volumes
        picks = [(int(np.argmax((lab > 0).reshape(lab.shape[0], -1).sum(1)))) for lab in labels]
        captions = [f"slice {z + 1}/{images.shape[1]}" for z in picks]
        images = np.stack([img[z] for img, z in zip(images, picks)])
        labels = np.stack([lab[z] for lab, z in zip(labels, picks)])
        preds = np.stack([pre[z] for pre, z in zip(preds, picks)])
    return images, labels, preds, names, captions


def overlay_examples(
    images: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    indices: Sequence[int] | None = None,
) -> list[int]:
    """Rows of image | ground truth | prediction | error map; returns the image indices shown.

    By default three images with small, medium and large true overlap (10th/50th/90th percentile of the
    overlap area among images that have overlap). Error map: yellow = wrong label, grey = correct
    non-background, black = correct background.
    """
    images, labels, preds = np.asarray(images), np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images {images.shape}, labels {labels.shape}, preds {preds.shape} do not match")
    n_classes = len(class_names)
    ov = _overlap_index(class_names)
    idx = list(indices) if indices is not None else select_by_overlap(labels, ov)
    if not idx:
        raise ValueError("no images to show")
    captions = ("small", "medium", "large") if indices is None and len(idx) == 3 else None
    fig = _new_figure(4 * 2.3, len(idx) * 2.35 + 0.5)
    axes = fig.subplots(len(idx), 4, squeeze=False)
    for r, i in enumerate(idx):
        img, lab, pre = images[i], labels[i], preds[i]
        if img.ndim == 3 and img.shape[0] in (1, 3):  # channels-first
            img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        wrong = lab != pre
        err = np.zeros(lab.shape + (3,), dtype=np.float32)
        err[(~wrong) & (lab != 0)] = _CORRECT_FG
        err[wrong] = _ERROR_COLOR
        t_ov, p_ov = lab == ov, pre == ov
        union = np.count_nonzero(t_ov | p_ov)
        ov_iou = np.count_nonzero(t_ov & p_ov) / union if union else 1.0
        axes[r, 0].imshow(img, cmap="gray", interpolation="nearest")
        axes[r, 1].imshow(label_to_rgb(lab, n_classes), interpolation="nearest")
        axes[r, 2].imshow(label_to_rgb(pre, n_classes), interpolation="nearest")
        axes[r, 3].imshow(err, interpolation="nearest")
        size = f"{captions[r]} overlap, " if captions else ""
        axes[r, 0].set_title(f"#{i}: {size}{int(t_ov.sum())} px", fontsize=8)
        axes[r, 1].set_title("ground truth", fontsize=8)
        axes[r, 2].set_title(f"prediction (overlap IoU {100 * ov_iou:.1f}%)", fontsize=8)
        axes[r, 3].set_title(f"errors: {int(wrong.sum())} px", fontsize=8)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
    handles = legend_handles(class_names, error=True)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.5 / (len(idx) * 2.35 + 0.5) + 0.02, hspace=0.25, wspace=0.05)
    _save(fig, path)
    return [int(i) for i in idx]


def confusion_matrix_figure(
    cm: np.ndarray, class_names: Sequence[str], path: str | Path, normalize: bool = True
) -> Path:
    """Confusion matrix, rows = truth, columns = prediction; ``normalize`` divides each row by its total (%)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {n} class names")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        shown = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) * 100
    else:
        shown = cm
    size = max(3.6, 0.9 * n + 1.6)
    fig = _new_figure(size + 0.8, size)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=100 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of true class" if normalize else "pixels")
    hi = shown.max() if shown.size else 0
    for i in range(n):
        for j in range(n):
            v = shown[i, j]
            text = f"{v:.2f}" if normalize else f"{int(v):d}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if v > 0.6 * hi else "black")
    ax.set_xticks(range(n), labels=class_names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised, %)" if normalize else " (pixels)"), fontsize=9)
    return _save(fig, path)


def fold_boxplot(
    values_by_fold: Mapping[str, Sequence[float]], path: str | Path, ylabel: str = "overlap IoU (%)"
) -> Path:
    """One box per fold (as ARMS Fig. 6) with the individual values jittered over it and the mean marked."""
    names = list(values_by_fold)
    data = [np.asarray(values_by_fold[k], dtype=np.float64) for k in names]
    data = [d[np.isfinite(d)] for d in data]
    if not names or all(d.size == 0 for d in data):
        raise ValueError("no fold values to plot")
    fig = _new_figure(max(4.0, 1.1 * len(names) + 1.5), 3.8)
    ax = fig.subplots()
    ax.boxplot(data, showfliers=False, widths=0.55, medianprops={"color": "tab:red"})
    rng = np.random.default_rng(0)
    for k, d in enumerate(data, start=1):
        ax.scatter(k + rng.uniform(-0.15, 0.15, d.size), d, s=6, alpha=0.35, color="tab:blue", linewidths=0)
        if d.size:
            ax.scatter([k], [d.mean()], marker="D", s=22, color="black", zorder=3, label="mean" if k == 1 else None)
    ticks = [f"{n}\n(n={d.size})" for n, d in zip(names, data, strict=True)]
    ax.set_xticks(range(1, len(names) + 1), labels=ticks, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("per-image values by fold", fontsize=9)
    return _save(fig, path)


def _series(rows: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for k, r in enumerate(rows):
        v = r.get(key)
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            continue
        xs.append(r.get("epoch", k))
        ys.append(float(v))
    return np.asarray(xs, dtype=np.float64), np.asarray(ys)


def _pick_metric(keys: Sequence[str]) -> str | None:
    """The validation metric to plot: an overlap IoU if recorded, else the first IoU, else the first key."""
    for want in (("overlap", "iou"), ("iou",), ()):
        hit = [k for k in keys if all(w in k.lower() for w in want)]
        if hit:
            return hit[0]
    return None


def training_curves(
    histories: Mapping[str, Sequence[Mapping]], path: str | Path, metric: str | None = None
) -> Path:
    """Loss (train solid, validation dashed), one validation metric and the learning rate per epoch.

    One colour per fold. ``metric`` is the history key to plot (e.g. ``"val_iou/overlap"``); by default an
    overlap IoU (``val_*overlap*iou*`` / ``val_iou/overlap``) when recorded, else the first IoU, else the
    first ``val_*`` key other than ``val_loss``.
    """
    if not histories:
        raise ValueError("no training histories to plot")
    recorded = sorted(
        {k for rows in histories.values() for r in rows for k in r if k.startswith("val_") and k != "val_loss"}
    )
    chosen = metric if metric is not None else _pick_metric(recorded)
    metric_keys = [chosen] if chosen is not None else []
    fig = _new_figure(13.5, 3.8)
    ax_loss, ax_metric, ax_lr = fig.subplots(1, 3)
    styles = ("-", "--", ":", "-.")
    colors = [f"C{i % 10}" for i in range(len(histories))]
    any_lr = False
    for (fold, rows), color in zip(histories.items(), colors, strict=True):
        x, y = _series(rows, "train_loss")
        if y.size:
            ax_loss.plot(x, y, "-", color=color, label=fold)
        x, y = _series(rows, "val_loss")
        if y.size:
            ax_loss.plot(x, y, "--", color=color)
        for m, key in enumerate(metric_keys):
            x, y = _series(rows, key)
            if y.size:
                ax_metric.plot(x, y, styles[m % len(styles)], color=color, label=fold)
        x, y = _series(rows, "lr")
        if y.size:
            any_lr = True
            ax_lr.plot(x, y, "-", color=color, label=fold, drawstyle="steps-post")
    ax_loss.set_title("loss (solid: train, dashed: validation)", fontsize=9)
    ax_loss.set_ylabel("loss")
    metric_label = metric_keys[0].removeprefix("val_") if metric_keys else "metric"
    ax_metric.set_title(f"validation {metric_label}" if metric_keys else "no validation metric recorded", fontsize=9)
    ax_metric.set_ylabel(metric_label)
    ax_lr.set_title("learning rate" if any_lr else "no learning rate recorded", fontsize=9)
    if any_lr:
        ax_lr.set_yscale("log")
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
