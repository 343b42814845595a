"""UW-Madison GI Tract Image Segmentation competition score (GI-tract U-Net paper, Sec. IV.A).

One **scan** (a case on one day) is a stack of ``D`` axial slices; each organ channel is scored on it by

* **Dice per slice image**: ``2|X∩Y| / (|X|+|Y|)`` of every ``(slice, organ)`` 2D image; the scan's Dice is the
  mean over all its ``(slice, organ)`` images ("the mean Dice is the average of each image's Dice"), which is
  also the mean over organs of each organ's slice-mean (every organ has ``D`` slices).
* **3D Hausdorff score**: the slices form one volume, each slice one unit deep (voxel spacing 1 on every axis,
  distances in voxels). ``HD`` is the symmetric Euclidean Hausdorff distance over all voxels of the two sets
  (:func:`medseg.metrics.segmentation.hausdorff_distance`, ``points="all"``), i.e. the larger of scipy's
  ``directed_hausdorff`` in both directions. It is normalised by the volume's diagonal
  ``sqrt(H² + W² + D²)`` (the competition's normaliser; note it is not :func:`image_diagonal`, which uses
  ``n - 1`` per axis) and turned into a score ``1 - HD / diagonal`` clipped to ``[0, 1]``. The scan's Hausdorff
  score is the mean over organs.
* **Final** ``0.4 * Dice + 0.6 * Hausdorff score``.

Empty masks (per slice image for Dice, per organ volume for Hausdorff):

=====================  ===========================  =======================  ================
case                   Dice, ``empty_dice="one"``   ``empty_dice="zero"``    Hausdorff score
=====================  ===========================  =======================  ================
both empty             1                            0                        1
exactly one empty      0                            0                        0
=====================  ===========================  =======================  ================

``"one"`` (default) is the competition's rule; ``"zero"`` is the paper's written definition ("when X and Y are
both empty the Dice coefficient is defined as 0"). Only Dice depends on the convention; results always carry
both (``by_convention``). The paper writes the Hausdorff distance in its directed form
``sup_{x∈X} inf_{y∈Y} d(x, y)``; the competition's scorer takes the symmetric (two-direction) distance, and
so does this module.

Layout: ``pred`` and ``target`` are binary ``(C, D, H, W)`` arrays/tensors -- organ channel first, then the
slice axis -- the (C, D, H, W) layout medseg uses for volumes (``medseg.inference.volume``,
``medseg.data.transforms3d``). A stack of 2D predictions ``(D, C, H, W)`` becomes this with
``pred.transpose(1, 0, 2, 3)`` (numpy) or ``pred.permute(1, 0, 2, 3)`` (torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from medseg.metrics.segmentation import (
    as_bool_mask,
    hausdorff_distance,
    scores_from_counts,
)

__all__ = [
    "DICE_WEIGHT",
    "HAUSDORFF_WEIGHT",
    "UW_ORGANS",
    "UWScore",
    "uw_scan_score",
    "volume_diagonal",
]

#: the competition's channel names, in the order of its submission rows
UW_ORGANS = ("large_bowel", "small_bowel", "stomach")
DICE_WEIGHT = 0.4
HAUSDORFF_WEIGHT = 0.6

EmptyDice = Literal["one", "zero"]
_CONVENTIONS: tuple[str, str] = ("one", "zero")


def volume_diagonal(shape: Sequence[int]) -> float:
    """The competition's Hausdorff normaliser ``sqrt(Σ n_i²)`` of a ``(D, H, W)`` volume, in voxels."""
    return float(math.sqrt(sum(int(n) ** 2 for n in shape)))


def _check_convention(empty_dice: str) -> None:
    if empty_dice not in _CONVENTIONS:
        raise ValueError(f"empty_dice must be 'one' or 'zero', got {empty_dice!r}")


def _organ_names(organ_names: Sequence[str] | None, c: int) -> list[str]:
    if organ_names is None:
        return list(UW_ORGANS) if c == len(UW_ORGANS) else [f"organ_{i}" for i in range(c)]
    names = [str(n) for n in organ_names]
    if len(names) != c:
        raise ValueError(f"{len(names)} organ names {names} for {c} channels")
    if len(set(names)) != c:
        raise ValueError(f"organ names must be unique: {names}")
    return names


def _final(dice: float, haus: float) -> float:
    return DICE_WEIGHT * dice + HAUSDORFF_WEIGHT * haus


def uw_scan_score(
    pred: Any,
    target: Any,
    *,
    empty_dice: EmptyDice = "one",
    organ_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The competition score of one scan. ``pred``, ``target``: binary ``(C, D, H, W)`` (bool or 0/1, numpy or
    torch; channel first, slices second).

    Returns (JSON-ready)::

        {"dice", "hausdorff_score", "score",          # under ``empty_dice``
         "empty_dice", "n_slices", "diagonal",
         "per_organ": {name: {"dice", "hausdorff_score", "score", "hausdorff" (voxels; None when exactly one
                              side is empty, 0.0 when both are), "n_slices_true", "n_slices_pred"}},
         "by_convention": {"one": {"dice", "score", "per_organ": {name: {"dice", "score"}}}, "zero": {...}}}

    ``organ_names`` names the channels (default: :data:`UW_ORGANS` for 3 channels, else ``organ_<i>``).
    """
    _check_convention(empty_dice)
    p = as_bool_mask(pred, "pred")
    t = as_bool_mask(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    if p.ndim != 4:
        raise ValueError(
            f"expected binary masks (C, D, H, W) (channel, slice, height, width), got shape {p.shape}; "
            "a stack of 2D predictions (D, C, H, W) needs a transpose to (C, D, H, W)"
        )
    c, d, h, w = p.shape
    if min(p.shape) == 0:
        raise ValueError(f"empty scan: shape {p.shape}")
    names = _organ_names(organ_names, c)
    diagonal = volume_diagonal((d, h, w))

    # Dice of every (organ, slice) image: counts over (H, W).
    tp = np.count_nonzero(p & t, axis=(2, 3))
    fp = np.count_nonzero(p & ~t, axis=(2, 3))
    fn = np.count_nonzero(~p & t, axis=(2, 3))
    dice_one = scores_from_counts(tp, fp, fn, np.zeros_like(tp))["dice"]  # (C, D); both empty -> 1
    both_empty_slice = (tp + fp + fn) == 0
    dice_by = {"one": dice_one, "zero": np.where(both_empty_slice, 0.0, dice_one)}

    per_organ: dict[str, dict[str, Any]] = {}
    haus_scores = np.empty(c)
    for j, name in enumerate(names):
        p_any, t_any = bool(p[j].any()), bool(t[j].any())
        if not p_any and not t_any:
            hd: float | None = 0.0
            hs = 1.0
        elif p_any != t_any:
            hd, hs = None, 0.0
        else:
            hd = hausdorff_distance(p[j], t[j], points="all")  # voxels, spacing 1 on every axis
            hs = float(np.clip(1.0 - hd / diagonal, 0.0, 1.0))
        haus_scores[j] = hs
        dj = float(dice_by[empty_dice][j].mean())
        per_organ[name] = {
            "dice": dj,
            "hausdorff_score": hs,
            "score": _final(dj, hs),
            "hausdorff": hd,
            "n_slices_true": int(np.count_nonzero(t[j].any(axis=(1, 2)))),
            "n_slices_pred": int(np.count_nonzero(p[j].any(axis=(1, 2)))),
        }

    haus = float(haus_scores.mean())
    by_convention: dict[str, dict[str, Any]] = {}
    for conv in _CONVENTIONS:
        organ_dice = dice_by[conv].mean(axis=1)
        dice = float(dice_by[conv].mean())
        by_convention[conv] = {
            "dice": dice,
            "score": _final(dice, haus),
            "per_organ": {
                name: {"dice": float(organ_dice[j]), "score": _final(float(organ_dice[j]), float(haus_scores[j]))}
                for j, name in enumerate(names)
            },
        }
    chosen = by_convention[empty_dice]
    return {
        "dice": chosen["dice"],
        "hausdorff_score": haus,
        "score": chosen["score"],
        "empty_dice": empty_dice,
        "n_slices": int(d),
        "diagonal": diagonal,
        "per_organ": per_organ,
        "by_convention": by_convention,
    }


class UWScore:
    """Accumulates :func:`uw_scan_score` over scans and averages them.

    ``update(pred, target, scan_id)`` takes one scan ``(C, D, H, W)``; a ``scan_id`` may be given once.
    :meth:`aggregate` gives the **mean over scans** (each scan weighs the same) of ``dice``,
    ``hausdorff_score`` and ``uw_score`` (the final score), per organ too, under ``empty_dice`` and, in
    ``other_convention``, under the other empty-Dice rule. ``dice_over_images`` is the Dice averaged over
    every ``(slice, organ)`` image of all scans instead (scans with more slices weigh more), the literal
    reading of the competition's "average of each image's Dice" over a whole test set.
    """

    def __init__(self, *, empty_dice: EmptyDice = "one", organ_names: Sequence[str] | None = None) -> None:
        _check_convention(empty_dice)
        self.empty_dice = empty_dice
        self.organ_names = None if organ_names is None else [str(n) for n in organ_names]
        self.reset()

    def reset(self) -> None:
        """Forget every scan seen so far."""
        self._scans: dict[str, dict[str, Any]] = {}
        self._names: list[str] | None = None

    def __len__(self) -> int:
        return len(self._scans)

    def update(self, pred: Any, target: Any, scan_id: Any) -> dict[str, Any]:
        """Score one scan ``(C, D, H, W)`` and remember it under ``scan_id``; returns its :func:`uw_scan_score`."""
        key = str(scan_id)
        if key in self._scans:
            raise ValueError(f"scan {key!r} was already added")
        result = uw_scan_score(pred, target, empty_dice=self.empty_dice, organ_names=self.organ_names)
        names = list(result["per_organ"])
        if self._names is not None and names != self._names:
            raise ValueError(f"scan {key!r} has organs {names}, earlier scans {self._names}")
        self._names = names
        self._scans[key] = result
        return result

    def per_scan(self) -> dict[str, dict[str, Any]]:
        """Every scan's :func:`uw_scan_score` result, by ``scan_id`` (in insertion order)."""
        return dict(self._scans)

    def _summary(self, conv: str) -> dict[str, Any]:
        scans = list(self._scans.values())
        names = self._names or []
        haus = float(np.mean([s["hausdorff_score"] for s in scans]))
        dice = float(np.mean([s["by_convention"][conv]["dice"] for s in scans]))
        weights = np.array([s["n_slices"] for s in scans], dtype=np.float64)
        dice_images = float(np.average([s["by_convention"][conv]["dice"] for s in scans], weights=weights))
        per_organ = {}
        for name in names:
            od = float(np.mean([s["by_convention"][conv]["per_organ"][name]["dice"] for s in scans]))
            oh = float(np.mean([s["per_organ"][name]["hausdorff_score"] for s in scans]))
            per_organ[name] = {
                "dice": od,
                "hausdorff_score": oh,
                "uw_score": float(np.mean([s["by_convention"][conv]["per_organ"][name]["score"] for s in scans])),
            }
        return {
            "empty_dice": conv,
            "dice": dice,
            "hausdorff_score": haus,
            "uw_score": float(np.mean([s["by_convention"][conv]["score"] for s in scans])),
            "dice_over_images": dice_images,
            "per_organ": per_organ,
        }

    def aggregate(self) -> dict[str, Any]:
        """Means over scans (JSON-ready): ``n_scans``, ``empty_dice``, ``dice``, ``hausdorff_score``,
        ``uw_score``, ``dice_over_images``, ``per_organ``, and ``other_convention`` with the same keys under the
        other empty-Dice rule."""
        if not self._scans:
            raise ValueError("UWScore has no scans: call update() before aggregate()")
        other = "zero" if self.empty_dice == "one" else "one"
        out = {"n_scans": len(self._scans), **self._summary(self.empty_dice)}
        out["other_convention"] = self._summary(other)
        return out
