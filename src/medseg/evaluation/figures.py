"""Report figures (PNG): example overlays, confusion matrix, per-fold box plot, training curves.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through ``pyplot``, so
no global backend or figure state is touched and nothing needs a display. Class colours and the legend come
from :mod:`medseg.palette` (one palette for any number of classes: background black, then red, green, blue,
…; for the chromosome task background black, α red, β green, overlap blue), the same as in the data preview,
``medseg predict``'s overlays and the web viewer.

Overlays: the chromosome task shows images of small, medium and large overlap (:func:`overlay_examples`,
RSE-UNet Fig. 10); every other task its worst and best cases by mean Dice (:func:`select_worst_best`,
:func:`case_overlays`), multi-label channels each filled and outlined in its own colour, volumes at their
slice with the most target (:func:`pick_slices`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage

from medseg.palette import ERROR_RGB, channel_colours, class_colours, legend_handles

__all__ = [
    "case_overlays",
    "channel_overlay",
    "confusion_matrix_figure",
    "fold_boxplot",
    "label_to_rgb",
    "overlay_examples",
    "pick_slices",
    "select_by_overlap",
    "select_worst_best",
    "training_curves",
]

DPI = 120
_ERROR_COLOR = tuple(c / 255 for c in ERROR_RGB)  # yellow: wrongly labelled pixel
_CORRECT_FG = (0.35, 0.35, 0.35)  # grey: correctly labelled foreground pixel


def label_to_rgb(label: np.ndarray, n_classes: int, background: int | None = 0) -> np.ndarray:
    """``(H, W)`` label map to an ``(H, W, 3)`` uint8 RGB image in the class colours of :mod:`medseg.palette`
    (class ``background`` black)."""
    return class_colours(n_classes, background)[np.clip(np.asarray(label, dtype=np.int64), 0, n_classes - 1)]


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


def select_worst_best(scores: Sequence[float], k: int = 3) -> tuple[list[int], list[int]]:
    """Indices of the ``k`` lowest and the ``k`` highest scores (e.g. each case's mean Dice): worst first,
    then best first. The two lists never share a case: with fewer than ``2 k`` cases each takes half (the
    worst list the odd one). Ties keep the cases' order; non-finite scores count as the worst."""
    values = np.asarray(scores, dtype=np.float64)
    values = np.where(np.isfinite(values), values, -np.inf)
    n = len(values)
    if n == 0:
        return [], []
    order = [int(i) for i in np.argsort(values, kind="stable")]
    n_worst = min(int(k), (n + 1) // 2)
    n_best = min(int(k), n - n_worst)
    worst = order[:n_worst]
    best_order = [int(i) for i in np.argsort(-values, kind="stable")]
    best = [i for i in best_order if i not in worst][:n_best]
    return worst, best


def pick_slices(
    images: np.ndarray, labels: np.ndarray, preds: np.ndarray, *, multilabel: bool, background: int | None = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Volumes → one drawable slice per case: the axial slice with the most true foreground (where every
    slice has as much, the one with the most predicted foreground; failing that, the middle slice). 2D cases
    pass through.

    ``images`` (N, [D,] H, W); labels/preds (N, [D,] H, W) label maps or (N, C, [D,] H, W) multi-label masks.
    Foreground: any channel set (multi-label), any class but ``background`` (multi-class; every class when
    ``background`` is None). Returns images, labels, preds and a caption per case ("slice z/D" or "").
    """
    images, labels, preds = np.asarray(images), np.asarray(labels), np.asarray(preds)
    spatial = labels.ndim - (2 if multilabel else 1)
    if spatial == 2:
        return images, labels, preds, ["" for _ in range(len(images))]
    if spatial != 3 or images.ndim != 4:
        raise ValueError(f"images {images.shape} and labels {labels.shape} are neither 2D cases nor volumes")

    def fg(m: np.ndarray) -> np.ndarray:  # (D, H, W) or (C, D, H, W) → per-slice foreground pixel counts
        if multilabel:
            mask = np.asarray(m).any(axis=0)
        elif background is None:
            mask = np.ones(m.shape, bool)
        else:
            mask = np.asarray(m) != background
        return mask.reshape(mask.shape[0], -1).sum(axis=1)

    picks, captions = [], []
    for lab, pre in zip(labels, preds, strict=True):
        t, p = fg(lab), fg(pre)
        z = int(np.argmax(t)) if t.max() > t.min() else int(np.argmax(p)) if p.max() > p.min() else len(t) // 2
        picks.append(z)
        captions.append(f"slice {z + 1}/{len(t)}")
    axis = 1 if multilabel else 0  # the depth axis of one case's labels

    def take(arr: np.ndarray) -> np.ndarray:
        return np.stack([np.take(a, z, axis=axis) for a, z in zip(arr, picks, strict=True)])

    return np.stack([img[z] for img, z in zip(images, picks, strict=True)]), take(labels), take(preds), captions


def _grey(img: np.ndarray) -> np.ndarray:
    """An image as (H, W) grey in [0, 1]: channels-first single channel squeezed, a 1–99 % window."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else img.mean(axis=0)
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros(img.shape, np.float64)
    lo, hi = np.percentile(finite, (1, 99))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(img.shape, np.float64)
    return np.clip(np.nan_to_num((img - lo) / (hi - lo)), 0.0, 1.0)


def _edges(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a 2D mask: the mask minus its erosion."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def channel_overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """Multi-label drawing: ``(H, W)`` image in grey with every channel of ``masks`` ``(C, H, W)`` filled
    (blended at ``alpha``) and outlined in its own colour (:func:`medseg.palette.channel_colours`), so
    overlapping channels all stay visible. Returns (H, W, 3) uint8; each outline is the exact channel colour.
    """
    masks = np.asarray(masks).astype(bool)
    rgb = np.repeat(_grey(image)[..., None], 3, axis=-1)
    colours = channel_colours(len(masks)).astype(np.float64) / 255
    for mask, colour in zip(masks, colours, strict=True):
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colour
    for mask, colour in zip(masks, colours, strict=True):
        rgb[_edges(mask)] = colour
    return np.round(rgb * 255).astype(np.uint8)


def _error_map(wrong: np.ndarray, correct_fg: np.ndarray) -> np.ndarray:
    err = np.zeros(wrong.shape + (3,), dtype=np.float32)
    err[correct_fg & ~wrong] = _CORRECT_FG
    err[wrong] = _ERROR_COLOR
    return err


def _grid(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Sequence[str]]],
    handles: list,
    path: str | Path,
) -> None:
    """Rows of image | ground truth | prediction | error map, each panel with its title; legend below."""
    fig = _new_figure(4 * 2.3, len(rows) * 2.35 + 0.5)
    axes = fig.subplots(len(rows), 4, squeeze=False)
    for r, (img, truth, pred, err, titles) in enumerate(rows):
        axes[r, 0].imshow(img, cmap="gray", interpolation="nearest")
        for a, panel in zip(axes[r, 1:], (truth, pred, err), strict=True):
            a.imshow(panel, interpolation="nearest")
        for a, title in zip(axes[r], titles, strict=True):
            a.set_title(title, fontsize=8)
            a.set_xticks([])
            a.set_yticks([])
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    n_legend_rows = math.ceil(len(handles) / 6)
    fig.subplots_adjust(bottom=(0.3 + 0.2 * n_legend_rows) / (len(rows) * 2.35 + 0.5) + 0.02, hspace=0.3, wspace=0.05)
    _save(fig, path)


def overlay_examples(
    images: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    indices: Sequence[int] | None = None,
) -> list[int]:
    """The chromosome task's overlays: rows of image | ground truth | prediction | error map; returns the
    image indices shown.

    By default three images with small, medium and large true overlap (10th/50th/90th percentile of the
    overlap area among images that have overlap), each titled with its overlap area and overlap IoU.
    Error map: yellow = wrong label, grey = correct non-background, black = correct background. Other tasks
    take :func:`case_overlays`.
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
    rows = []
    for r, i in enumerate(idx):
        lab, pre = labels[i], preds[i]
        wrong = lab != pre
        t_ov, p_ov = lab == ov, pre == ov
        union = np.count_nonzero(t_ov | p_ov)
        ov_iou = np.count_nonzero(t_ov & p_ov) / union if union else 1.0
        size = f"{captions[r]} overlap, " if captions else ""
        titles = (
            f"#{i}: {size}{int(t_ov.sum())} px",
            "ground truth",
            f"prediction (overlap IoU {100 * ov_iou:.1f}%)",
            f"errors: {int(wrong.sum())} px",
        )
        rows.append(
            (
                _grey(images[i]),
                label_to_rgb(lab, n_classes),
                label_to_rgb(pre, n_classes),
                _error_map(wrong, lab != 0),
                titles,
            )
        )
    _grid(rows, legend_handles(class_names, error=True), path)
    return [int(i) for i in idx]


def case_overlays(
    images: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    indices: Sequence[int],
    titles: Sequence[str],
    *,
    multilabel: bool = False,
    background: int | None = 0,
) -> list[int]:
    """Any task's overlays: one row per case of ``indices`` (image | ground truth | prediction | error map),
    the first panel titled with ``titles[r]`` (e.g. "worst 1: case_7, mean Dice 41.2 %").

    Multi-class: label maps in the class colours (class ``background`` black), a legend of every class.
    Multi-label (``labels``/``preds`` (N, C, H, W) masks): the image with each channel filled and outlined
    in its own colour (:func:`channel_overlay`), so overlapping channels all show. 2D cases only: take a
    slice of volumes first (:func:`pick_slices`). Error map: yellow = a pixel with any class/channel wrong,
    grey = correct foreground. Returns the indices shown.
    """
    images, labels, preds = np.asarray(images), np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images {images.shape}, labels {labels.shape}, preds {preds.shape} do not match")
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("no cases to show")
    if len(titles) != len(idx):
        raise ValueError(f"{len(titles)} titles for {len(idx)} cases")
    n = len(class_names)
    if multilabel and labels.shape[1] != n:
        raise ValueError(f"multi-label masks have {labels.shape[1]} channels for {n} class names")
    rows = []
    for i, title in zip(idx, titles, strict=True):
        lab, pre = labels[i], preds[i]
        if multilabel:
            lab, pre = lab.astype(bool), pre.astype(bool)
            wrong = (lab != pre).any(axis=0)
            truth_rgb, pred_rgb = channel_overlay(images[i], lab), channel_overlay(images[i], pre)
            fg = lab.any(axis=0)
        else:
            wrong = lab != pre
            truth_rgb = label_to_rgb(lab, n, background)
            pred_rgb = label_to_rgb(pre, n, background)
            fg = np.ones(lab.shape, bool) if background is None else lab != background
        rows.append(
            (
                _grey(images[i]),
                truth_rgb,
                pred_rgb,
                _error_map(wrong, fg),
                (title, "ground truth", "prediction", f"errors: {int(wrong.sum())} px"),
            )
        )
    handles = legend_handles(class_names, error=True, background_index=background, multilabel=multilabel)
    _grid(rows, handles, path)
    return idx


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


def training_curves(histories: Mapping[str, Sequence[Mapping]], path: str | Path, metric: str | None = None) -> Path:
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
