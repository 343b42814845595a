"""Segmentation metrics for exclusive (multi-class) and overlapping (multi-label) structures, 2D or 3D.

Definitions (one image, one structure; ``P`` = predicted mask, ``G`` = true mask, counts in pixels/voxels):

* IoU ``|P∩G| / |P∪G|`` (AMFL Eq. 10, RSE Eq. 9, ARMS Eq. 3), Dice ``2|P∩G| / (|P|+|G|)`` (AMFL Eq. 9),
  precision ``TP/(TP+FP)`` (Eq. 11), recall ``TP/(TP+FN)`` (Eq. 12), FNR ``FN/(TP+FN)`` (Eq. 13),
  FPR ``FP/(FP+TN)`` (Eq. 14).
* Hausdorff distance (AMFL Eq. 15): ``max(sup_{x∈G} inf_{y∈P} d(x,y), sup_{y∈P} inf_{x∈G} d(x,y))`` with
  Euclidean ``d`` in spacing units (pixels when no spacing is given). Eq. 15 takes the sup/inf over **all
  points of the two sets**, and that is the default here (``points="all"``). MONAI's
  ``HausdorffDistanceMetric`` and most challenge code use only the **surface points** (mask minus its
  erosion); ``points="surface"`` gives that definition and equals MONAI's value. The two coincide whenever
  the farthest point lies on a boundary (e.g. disjoint convex shapes) and differ when one set lies inside
  the other: a prediction inside the truth has all-point distance 0 from prediction to truth but a positive
  surface distance. ``percentile=q`` replaces each directed maximum by the q-th percentile of that
  direction's point distances (MONAI's convention: the larger of the two directed percentiles); with
  ``points="all"`` the percentile runs over all points of each set, so it is smaller than the surface HD95.
* ``pixel_accuracy`` (AMFL Eq. 8): ``Σ_i P_ii / Σ_ij P_ij`` of the image's multi-class confusion matrix. In
  multi-label mode a pixel counts as correct when all of its channels are correct.
* ``foreground_accuracy`` (RSE Eq. 10, ARMS Eq. 4): ``(TP+TN)/ALL`` with foreground = any class but the
  background one (any channel set, in multi-label mode) against background. Not reported for a multi-class
  task without a background class (``background=None``), where it has no meaning.

Which classes are scored. The background class (``background``, class 0 by default in multi-class mode; a
multi-label task has none: its background is where no channel is set) is left out of ``per_class`` and of
the class mean, so a mean is not inflated by the easy background; ``background=None`` scores every class,
``include_background=True`` scores the background class too. :attr:`SegmentationMetrics.scored_classes`
lists the scored classes; trainers, evaluation and reports take them from there.
* ``derived_accuracy``: mean over the derived structures of their binary accuracy ``(TP+TN)/ALL`` -- ARMS Net's
  "average accuracy of two complete chromosomes" when the derived structures are the complete chromosomes
  ``{"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]}``.

Empty-mask policy (never NaN, never dropped from a mean). A structure absent from both the truth and the
prediction was handled perfectly; a structure present in only one of them is a miss (or a false detection),
and every score that is undefined because of the empty side takes its **worst** value:

============================  =========  =========  =======  ==========  =======  ==============
case                          IoU, Dice  precision  recall   FNR         FPR      Hausdorff
============================  =========  =========  =======  ==========  =======  ==============
both empty                    1          1          1        0           0        0
truth empty, prediction not   0          0          0        1           > 0      image diagonal
prediction empty, truth not   0          0          0        1           0        image diagonal
both non-empty                formula    formula    formula  1 - recall  formula  Eq. 15
============================  =========  =========  =======  ==========  =======  ==============

In words: both empty -> perfect (nothing to find, nothing found); exactly one empty -> IoU = Dice =
precision = recall = 0 (a 0/0 there counts as a failure, not as "undefined"), Hausdorff = image diagonal.

The image diagonal is the largest distance two pixel centres of the image can have,
``sqrt(Σ ((n_i - 1) * spacing_i)^2)`` (179.6 px for 128 x 128). FNR is always ``1 - recall``; FPR is 0 when
the image has no negative pixels (nothing can be a false positive). Means over images therefore count every
miss. MONAI differs: ``DiceMetric``/``MeanIoU`` with ``ignore_empty=True`` give NaN for an empty truth,
``compute_confusion_matrix_metric`` gives NaN for 0/0, and its Hausdorff gives ``inf`` (with a warning) when
one side is empty -- values a ``nanmean`` then silently drops. With ``ignore_empty=False`` MONAI's Dice/IoU
agree with the table above.

MONAI is not called inside this module: per-image confusion counts come from one ``np.bincount`` (the same
numbers as ``monai.metrics.get_confusion_matrix`` without building one-hot tensors), and the Hausdorff
definition and empty handling differ as said. ``tests/metrics/test_segmentation.py`` checks the values
against MONAI where the definitions match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from medseg.metrics.distances import (
    HausdorffPoints,
    _spacing_for,
    _to_numpy,
    as_bool_mask,
    hausdorff_distance,
    image_diagonal,
)

__all__ = [
    "BASE_METRICS",
    "SegmentationMetrics",
    "binary_stats",
    "confusion_matrix",
    "hausdorff_distance",
    "image_diagonal",
    "scores_from_counts",
]

#: per-structure scores, in the order the report shows them
BASE_METRICS = ("iou", "dice", "precision", "recall", "fnr", "fpr")


def confusion_matrix(pred: Any, target: Any, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 confusion matrix of two label maps: rows = truth, columns = prediction.

    ``pred`` and ``target`` are integer label maps of the same shape (any number of dimensions, torch or
    numpy). Labels outside ``0..num_classes-1`` raise ``ValueError`` instead of being dropped.
    """
    p = _to_numpy(pred)
    t = _to_numpy(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    p = p.astype(np.int64, copy=False).ravel()
    t = t.astype(np.int64, copy=False).ravel()
    _check_labels(p, num_classes, "pred")
    _check_labels(t, num_classes, "target")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check_labels(a: np.ndarray, num_classes: int, what: str) -> None:
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        bad = np.unique(a[(a < 0) | (a >= num_classes)])
        raise ValueError(
            f"{what} holds label values {bad[:8].tolist()} outside 0..{num_classes - 1} "
            f"(num_classes={num_classes}); pass label maps, not logits or one-hot tensors"
        )


def binary_stats(pred_mask: Any, true_mask: Any) -> dict[str, int]:
    """``{"tp", "fp", "fn", "tn"}`` pixel counts of one binary prediction against one binary truth."""
    p = as_bool_mask(pred_mask, "pred_mask")
    g = as_bool_mask(true_mask, "true_mask")
    if p.shape != g.shape:
        raise ValueError(f"pred_mask and true_mask shapes differ: {p.shape} vs {g.shape}")
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(p.size - tp - fp - fn)}


def scores_from_counts(tp: Any, fp: Any, fn: Any, tn: Any) -> dict[str, np.ndarray]:
    """IoU, Dice, precision, recall, FNR, FPR and binary accuracy from counts (scalars or arrays).

    Applies the module's empty-mask policy: 1 (0 for FNR) when truth and prediction are both empty, the
    worst value when exactly one is empty, never NaN.
    """
    tp, fp, fn, tn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn, tn))
    true_n = tp + fn
    pred_n = tp + fp
    both_empty = (true_n == 0) & (pred_n == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(both_empty, 1.0, tp / (tp + fp + fn))
        dice = np.where(both_empty, 1.0, 2 * tp / (2 * tp + fp + fn))
        precision = np.where(pred_n > 0, tp / pred_n, np.where(both_empty, 1.0, 0.0))
        recall = np.where(true_n > 0, tp / true_n, np.where(both_empty, 1.0, 0.0))
        negatives = fp + tn
        fpr = np.where(negatives > 0, fp / negatives, 0.0)
        total = tp + fp + fn + tn
        accuracy = np.where(total > 0, (tp + tn) / total, 1.0)
    return {
        "iou": iou,
        "dice": dice,
        "precision": precision,
        "recall": recall,
        "fnr": 1.0 - recall,
        "fpr": fpr,
        "accuracy": accuracy,
    }


class SegmentationMetrics:
    """Accumulates per-image metrics over batches and reduces them (see the module docstring).

    ``class_names`` names the classes (multi-class: label values ``0..C-1``) or the channels (multi-label).
    ``background`` is the index of the background class: ``"auto"`` (default) means class 0 in multi-class
    mode and none in multi-label mode (every channel is a foreground structure; background = no channel set);
    ``None`` means no background (every class is scored); an index names another class (or, multi-label, a
    channel that is background). The background class is left out of ``per_class`` and the ``mean`` unless
    ``include_background`` is set; :attr:`scored_classes` lists what is scored. :meth:`from_task` builds the
    metrics of a config's ``task`` section (``task.background``). ``derived`` adds named unions of classes (channels)
    evaluated as extra binary structures, e.g. ARMS Net's complete chromosomes
    ``{"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]}``; they appear in ``per_class``
    but not in ``mean``. ``spacing`` gives the pixel/voxel size per spatial axis for Hausdorff distances;
    ``update(..., spacing=...)`` gives it per batch or per image instead (volumes of one set rarely share a
    voxel size). Hausdorff distances are in ``spacing_unit`` (default ``"mm"``) when a spacing is known and in
    pixels/voxels (``"px"``) when not; ``aggregate()`` says which under ``hausdorff_unit``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        mode: str = "multiclass",
        background: int | None | Literal["auto"] = "auto",
        include_background: bool = False,
        derived: dict[str, Sequence[int]] | None = None,
        hausdorff: bool = True,
        spacing: Sequence[float] | None = None,
        hausdorff_percentile: float | None = None,
        hausdorff_points: HausdorffPoints = "all",
        spacing_unit: str = "mm",
    ) -> None:
        if mode not in ("multiclass", "multilabel"):
            raise ValueError(f"mode must be 'multiclass' or 'multilabel', got {mode!r}")
        self.class_names = [str(n) for n in class_names]
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names must be unique: {self.class_names}")
        n = len(self.class_names)
        if mode == "multiclass" and n < 2:
            raise ValueError("multiclass mode needs at least two classes (background and one structure)")
        if mode == "multilabel" and n < 1:
            raise ValueError("multilabel mode needs at least one channel")
        self.mode = mode
        if isinstance(background, str) and background == "auto":
            background = 0 if mode == "multiclass" else None
        if background is not None:
            if (
                isinstance(background, bool)
                or not isinstance(background, (int, np.integer))
                or not 0 <= int(background) < n
            ):
                raise ValueError(
                    f"background must be a class index in 0..{n - 1}, None (no background) or 'auto', "
                    f"got {background!r}"
                )
            background = int(background)
        self.background: int | None = background
        self.include_background = bool(include_background)
        self.derived: dict[str, tuple[int, ...]] = {}
        for name, idx in (derived or {}).items():
            idx_t = tuple(int(i) for i in idx)
            if name in self.class_names or name in self.derived:
                raise ValueError(f"derived structure name {name!r} clashes with a class name")
            if not idx_t or any(i < 0 or i >= n for i in idx_t):
                raise ValueError(f"derived structure {name!r} has indices {list(idx_t)} outside 0..{n - 1}")
            if background is not None and background in idx_t:
                raise ValueError(
                    f"derived structure {name!r} includes the background class {background} "
                    f"({self.class_names[background]!r})"
                )
            self.derived[str(name)] = idx_t
        self.hausdorff = bool(hausdorff)
        self.spacing = None if spacing is None else _spacing_for(len(tuple(spacing)), spacing)
        self.spacing_unit = str(spacing_unit)
        self.hausdorff_percentile = hausdorff_percentile
        if hausdorff_points not in ("all", "surface"):
            raise ValueError(f"hausdorff_points must be 'all' or 'surface', got {hausdorff_points!r}")
        self.hausdorff_points = hausdorff_points
        # structures evaluated: base classes (channels) then derived unions
        self._base = [i for i in range(n) if self.include_background or i != self.background]
        if not self._base:
            raise ValueError(f"no class left to score: {self.class_names} holds only the background class")
        self.structure_names = [self.class_names[i] for i in self._base] + list(self.derived)
        self.reset()

    @classmethod
    def from_task(cls, task: dict, **kwargs: Any) -> SegmentationMetrics:
        """The metrics of a config's ``task`` section: its classes, mode, derived structures and background
        (``task.background``; a multi-label task scores every channel). ``kwargs`` go to the constructor
        (``hausdorff``, ``spacing``, ...)."""
        mode = task.get("mode", "multiclass")
        background = task.get("background", 0) if mode == "multiclass" else None
        return cls(list(task["class_names"]), mode=mode, background=background, derived=task.get("derived"), **kwargs)

    @property
    def scored_classes(self) -> list[str]:
        """The classes (channels) scored one by one and averaged in ``mean``, in class order: every class but
        the background one (unless ``include_background``)."""
        return [self.class_names[i] for i in self._base]

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every image seen so far."""
        self._counts: list[np.ndarray] = []  # per batch: (B, S, 4) tp, fp, fn, tn
        self._hd: list[np.ndarray] = []  # per batch: (B, S)
        self._pixel_acc: list[np.ndarray] = []
        self._fg_acc: list[np.ndarray] = []
        self._cm = np.zeros((len(self.class_names),) * 2, dtype=np.int64) if self.mode == "multiclass" else None
        self._spacings: list[tuple[float, ...] | None] = []  # per image: the spacing its distances used
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def merge(self, other: SegmentationMetrics) -> None:
        """Add the images ``other`` has seen after this one's (the same classes and settings), e.g. the
        shards of a validation set scored by several processes: the raw per-image counts, accuracies and
        the confusion matrix are joined (counts summed, never means of means), so :meth:`aggregate` gives
        what one accumulator that saw every image would give."""
        if (other.class_names, other.mode, other.structure_names) != (
            self.class_names,
            self.mode,
            self.structure_names,
        ):
            raise ValueError("cannot merge metrics of different classes or modes")
        if other._n == 0:
            return
        known = {sp is not None for sp in [*self._spacings, *other._spacings]}
        if len(known) > 1:
            raise ValueError("cannot merge metrics with and without spacings (Hausdorff units would mix)")
        self._counts += other._counts
        self._hd += other._hd
        self._pixel_acc += other._pixel_acc
        self._fg_acc += other._fg_acc
        self._spacings += other._spacings
        if self._cm is not None:
            self._cm = self._cm + other._cm
        self._n += other._n

    # ----------------------------------------------------------------- update
    def update(self, pred: Any, target: Any, spacing: Any = None) -> None:
        """Add a batch. Multi-class: integer label maps ``(B, *spatial)``; multi-label: binary ``(B, C, *spatial)``.

        ``spacing`` (optional) overrides the constructor's for this batch: one spacing for every image
        (``(sz, sy, sx)``) or one per image (``(B, ndim)``). A set is measured either all with spacings or
        all without (mixing units in one mean is refused).
        """
        p = _to_numpy(pred)
        t = _to_numpy(target)
        if p.shape != t.shape:
            raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
        if self.mode == "multiclass":
            if p.ndim < 3:
                raise ValueError(
                    f"multiclass update expects label maps (B, *spatial) with at least 2 spatial dims, got shape "
                    f"{p.shape}; add a batch dimension"
                )
            floats = [a for a in (p, t) if a.dtype.kind == "f"]
            if any(not np.all(np.mod(a, 1) == 0) for a in floats):
                raise ValueError("multiclass pred/target must be integer label maps (take the argmax of logits)")
            spacings = self._batch_spacings(spacing, p.shape[0], p.shape[1:])  # checked before any state changes
            counts, masks_p, masks_t, pix, fg = self._multiclass_batch(p.astype(np.int64), t.astype(np.int64))
        else:
            c = len(self.class_names)
            if p.ndim < 4 or p.shape[1] != c:
                raise ValueError(f"multilabel update expects binary masks (B, {c}, *spatial), got shape {p.shape}")
            spacings = self._batch_spacings(spacing, p.shape[0], p.shape[2:])
            counts, masks_p, masks_t, pix, fg = self._multilabel_batch(
                as_bool_mask(p, "pred"), as_bool_mask(t, "target")
            )
        b, s = counts.shape[:2]
        hd = np.full((b, s), np.nan)
        if self.hausdorff:
            for i in range(b):
                for j in range(s):
                    hd[i, j] = hausdorff_distance(
                        masks_p[i, j],
                        masks_t[i, j],
                        spacing=spacings[i],
                        percentile=self.hausdorff_percentile,
                        points=self.hausdorff_points,
                    )
        self._counts.append(counts)
        self._hd.append(hd)
        self._pixel_acc.append(pix)
        self._fg_acc.append(fg)
        self._spacings.extend(spacings)
        self._n += b

    def _batch_spacings(self, spacing: Any, b: int, spatial: tuple) -> list[tuple[float, ...] | None]:
        """One spacing (or None) per image of a batch, checked against the spatial rank."""
        ndim = len(spatial)
        if spacing is None:
            if self.spacing is not None and len(self.spacing) != ndim:
                raise ValueError(f"spacing {self.spacing} has {len(self.spacing)} values for spatial shape {spatial}")
            out: list[tuple[float, ...] | None] = [self.spacing] * b
        else:
            arr = np.asarray(spacing, dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(ndim, float(arr))
            if arr.ndim == 1:
                arr = np.broadcast_to(arr, (b, arr.shape[0]))
            if arr.ndim != 2 or arr.shape[0] != b:
                raise ValueError(f"spacing must be one spacing or one per image ({b}), got shape {arr.shape}")
            if arr.shape[1] != ndim:
                raise ValueError(f"spacing has {arr.shape[1]} values for spatial shape {spatial}")
            out = [_spacing_for(ndim, row) for row in arr.tolist()]
        known = {sp is not None for sp in [*self._spacings, *out]}
        if len(known) > 1:
            raise ValueError(
                "some images were given a spacing and others not: Hausdorff distances would mix "
                f"{self.spacing_unit} and pixels in one mean"
            )
        return out

    @property
    def hausdorff_unit(self) -> str:
        """The unit of the Hausdorff distances: ``spacing_unit`` when spacings were known, else ``"px"``."""
        known = self._spacings[0] is not None if self._spacings else self.spacing is not None
        return self.spacing_unit if known else "px"

    def _multiclass_batch(self, p: np.ndarray, t: np.ndarray):
        n = len(self.class_names)
        _check_labels(p, n, "pred")
        _check_labels(t, n, "target")
        b = p.shape[0]
        flat = (np.arange(b)[:, None] * n * n + t.reshape(b, -1) * n + p.reshape(b, -1)).ravel()
        cms = np.bincount(flat, minlength=b * n * n).reshape(b, n, n)  # (B, truth, pred)
        self._cm += cms.sum(axis=0)
        total = cms.sum(axis=(1, 2))
        sets = [(i,) for i in self._base] + list(self.derived.values())
        counts = np.empty((b, len(sets), 4), dtype=np.int64)
        for j, members in enumerate(sets):
            inside = np.zeros(n, dtype=bool)
            inside[list(members)] = True
            tp = cms[:, inside][:, :, inside].sum(axis=(1, 2))
            fn = cms[:, inside][:, :, ~inside].sum(axis=(1, 2))
            fp = cms[:, ~inside][:, :, inside].sum(axis=(1, 2))
            counts[:, j] = np.stack([tp, fp, fn, total - tp - fp - fn], axis=1)
        pixel_acc = np.trace(cms, axis1=1, axis2=2) / total
        bg = self.background
        if bg is None:  # no background: "foreground vs background" means nothing
            fg_acc = np.full(b, np.nan)
        else:  # pixels where truth and prediction agree on background vs any other class
            both_bg = cms[:, bg, bg]
            both_fg = total - cms[:, bg, :].sum(axis=1) - cms[:, :, bg].sum(axis=1) + both_bg
            fg_acc = (both_fg + both_bg) / total
        if self.hausdorff:
            masks_p = np.stack([np.isin(p, m) for m in sets], axis=1)
            masks_t = np.stack([np.isin(t, m) for m in sets], axis=1)
        else:  # only the shape is used
            masks_p = masks_t = np.zeros((b, len(sets)) + (1,) * (p.ndim - 1), dtype=bool)
        return counts, masks_p, masks_t, pixel_acc, fg_acc

    def _multilabel_batch(self, p: np.ndarray, t: np.ndarray):
        b = p.shape[0]
        masks_p = [p[:, i] for i in self._base] + [p[:, list(m)].any(axis=1) for m in self.derived.values()]
        masks_t = [t[:, i] for i in self._base] + [t[:, list(m)].any(axis=1) for m in self.derived.values()]
        mp = np.stack(masks_p, axis=1)
        mt = np.stack(masks_t, axis=1)
        axes = tuple(range(2, mp.ndim))
        tp = np.count_nonzero(mp & mt, axis=axes)
        fp = np.count_nonzero(mp & ~mt, axis=axes)
        fn = np.count_nonzero(~mp & mt, axis=axes)
        total = int(np.prod(mp.shape[2:]))
        counts = np.stack([tp, fp, fn, total - tp - fp - fn], axis=2).astype(np.int64)
        pixel_acc = np.all(p == t, axis=1).reshape(b, -1).mean(axis=1)
        fg_channels = [i for i in range(p.shape[1]) if i != self.background]
        fg_acc = (p[:, fg_channels].any(axis=1) == t[:, fg_channels].any(axis=1)).reshape(b, -1).mean(axis=1)
        return counts, mp, mt, pixel_acc, fg_acc

    # ----------------------------------------------------------------- reduce
    def _stacked(self):
        if self._n == 0:
            raise ValueError("SegmentationMetrics has no images: call update() before per_image()/aggregate()")
        counts = np.concatenate(self._counts, axis=0).astype(np.float64)
        hd = np.concatenate(self._hd, axis=0)
        scores = scores_from_counts(counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3])
        return counts, hd, scores, np.concatenate(self._pixel_acc), np.concatenate(self._fg_acc)

    @property
    def _has_foreground_accuracy(self) -> bool:
        # a multi-label task always has its background (no channel set); a multi-class one only when named
        return self.mode == "multilabel" or self.background is not None

    def confusion(self) -> np.ndarray:
        """Summed multi-class confusion matrix ``(C, C)`` over all images (rows = truth)."""
        if self._cm is None:
            raise ValueError("a confusion matrix is defined for multiclass mode only")
        return self._cm.copy()

    def per_image(self) -> list[dict]:
        """One flat row per image: ``index``, ``<metric>/<structure>``, ``n_true/<structure>``, accuracies."""
        counts, hd, scores, pix, fg = self._stacked()
        derived_idx = [self.structure_names.index(n) for n in self.derived]
        rows = []
        for i in range(self._n):
            row: dict[str, Any] = {"index": i}
            for j, name in enumerate(self.structure_names):
                for m in BASE_METRICS:
                    row[f"{m}/{name}"] = float(scores[m][i, j])
                if self.hausdorff:
                    row[f"hausdorff/{name}"] = float(hd[i, j])
                row[f"n_true/{name}"] = int(counts[i, j, 0] + counts[i, j, 2])
                row[f"n_pred/{name}"] = int(counts[i, j, 0] + counts[i, j, 1])
            if self.hausdorff:
                row["hausdorff_unit"] = self.hausdorff_unit
                if self._spacings[i] is not None:
                    row["spacing"] = list(self._spacings[i])
            row["pixel_accuracy"] = float(pix[i])
            if self._has_foreground_accuracy:
                row["foreground_accuracy"] = float(fg[i])
            if derived_idx:
                row["derived_accuracy"] = float(np.mean(scores["accuracy"][i, derived_idx]))
            rows.append(row)
        return rows

    def aggregate(self) -> dict:
        """Means over images (and pooled IoU/Dice) per structure, accuracies and the class mean; JSON-ready."""
        counts, hd, scores, pix, fg = self._stacked()
        per_class: dict[str, dict[str, Any]] = {}
        summed = counts.sum(axis=0)
        pooled = scores_from_counts(summed[:, 0], summed[:, 1], summed[:, 2], summed[:, 3])
        for j, name in enumerate(self.structure_names):
            entry: dict[str, Any] = {m: float(scores[m][:, j].mean()) for m in BASE_METRICS}
            if self.hausdorff:
                entry["hausdorff"] = float(hd[:, j].mean())
            entry["iou_pooled"] = float(pooled["iou"][j])
            entry["dice_pooled"] = float(pooled["dice"][j])
            entry["accuracy"] = float(scores["accuracy"][:, j].mean())
            entry["n_images_present"] = int(np.count_nonzero(counts[:, j, 0] + counts[:, j, 2]))
            if name in self.derived:
                entry["members"] = [self.class_names[k] for k in self.derived[name]]
            per_class[name] = entry
        base_names = self.scored_classes
        mean_keys = list(BASE_METRICS) + (["hausdorff"] if self.hausdorff else []) + ["iou_pooled", "dice_pooled"]
        out: dict[str, Any] = {
            "n_images": int(self._n),
            "mode": self.mode,
            "per_class": per_class,
            "pixel_accuracy": float(pix.mean()),
            "mean": {k: float(np.mean([per_class[n][k] for n in base_names])) for k in mean_keys},
            "mean_over": base_names,
            "background": None if self.background is None else self.class_names[self.background],
        }
        if self._has_foreground_accuracy:
            out["foreground_accuracy"] = float(fg.mean())
        if self.derived:
            idx = [self.structure_names.index(n) for n in self.derived]
            out["derived_accuracy"] = float(scores["accuracy"][:, idx].mean())
        if self.hausdorff:
            out["hausdorff_points"] = self.hausdorff_points
            out["hausdorff_percentile"] = self.hausdorff_percentile
            out["hausdorff_unit"] = self.hausdorff_unit
            distinct = {sp for sp in self._spacings if sp is not None}
            out["spacing"] = list(distinct.pop()) if len(distinct) == 1 else ("per image" if distinct else None)
        if self._cm is not None:
            out["confusion_matrix"] = self._cm.tolist()
        return out
