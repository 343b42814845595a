"""Simulated annotation noise for training on noisy labels (CTV thesis ch. 3, §3.1 and §3.3).

**Noise simulation (§3.1, §3.3).** Segmentation label noise is regional: a contour drawn too wide or too
tight. The thesis simulates it by dilating or shrinking the exact annotation by ``n_i`` pixels, ``n_i``
drawn with equal probability from a range (Table 3.1: 1–8 and 5–13 px), on 0/25/50/75 % of the training
set. :func:`simulate_label_noise` does this on the training indices it is given (``run.train_fold`` passes
a fold's training indices only — validation and test labels are never touched) and returns a record
``{index, op, n, changed}`` per corrupted sample. Choices the thesis leaves open, each a config option:

* ``n`` is an integer drawn uniformly from ``dilate_range`` = [lo, hi], both ends included. The text
  (line 362) says "0-8 and 5-13", the table (lines 372–389) "1-8" and "5-13"; the default follows the table
  (n = 0 would be a clean label).
* ``mode``: every corrupted sample is dilated (``dilate``), eroded (``erode``), or either with probability ½
  (``both``, the default: Fig. 3.1 shows both kinds and §3.2 argues that their mixture is what hurts). One
  ``op`` and one ``n`` per sample, applied to each of its structures.
* Morphology is Euclidean in pixel (voxel) units, 2D or 3D: dilation by n adds every pixel within distance
  n of the structure, erosion removes every pixel within distance n of a pixel outside it. This is exactly
  ``scipy.ndimage.binary_dilation`` / ``binary_erosion(border_value=1)`` with the ball footprint
  ``{o : |o| <= n}`` (tested), computed with distance transforms so that radii up to 13 px stay cheap in
  3D. The image border is not a structure boundary: a structure cut by the border does not shrink from it.
* ``structures``: what a "structure" is in a label map.
  ``classes`` — each foreground class of an exclusive (multiclass) map. Dilation grows a class into
  *background* only (an annotated pixel of another class is never overwritten); a background pixel reached
  by several dilated classes goes to the nearest one, ties to the lower class index. Erosion shrinks each
  class by its own mask (a boundary with another class counts) and the removed pixels become background.
  ``derived`` — the unions of ``task.derived`` (for chromosomes the whole chromosomes α = {1, 3} and
  β = {2, 3}): each union is dilated/eroded as one binary mask and the label map is rebuilt from which
  unions cover a pixel (α only → 1, β only → 2, both → 3 overlap, none → background), so a chromosome
  drawn too wide over its neighbour widens the overlap, as a real wide contour would. This needs the unions
  to code every class exactly once (2^K classes for K unions).
  Multilabel tasks (``(C, *S)`` binary maps) perturb every channel independently.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.config_schema import NOISE_MODES, noise_range, structure_signatures
from medseg.errors import ConfigError, DataValidationError
from medseg.progress import Progress

NOISE_OPS = ("dilate", "erode")


def ball(n: int, spatial_dims: int) -> np.ndarray:
    """The Euclidean ball footprint ``{o : |o| <= n}`` (a disk in 2D), shape (2n + 1,) * spatial_dims."""
    g = np.indices((2 * n + 1,) * spatial_dims) - n
    return (g**2).sum(0) <= n * n


def dilate_mask(mask: np.ndarray, n: int) -> np.ndarray:
    """``binary_dilation(mask, ball(n))``: every pixel within Euclidean distance n of the mask."""
    mask = np.asarray(mask, dtype=bool)
    if n <= 0 or not mask.any() or mask.all():
        return mask.copy()
    # The distance to the nearest mask pixel is sqrt(integer); sqrt is exact on squares, so <= n is exact.
    return ndimage.distance_transform_edt(~mask) <= n


def erode_mask(mask: np.ndarray, n: int) -> np.ndarray:
    """``binary_erosion(mask, ball(n), border_value=1)``: pixels farther than n from any pixel outside the mask.

    Outside the array counts as unknown, not as background: a structure cut by the image border does not
    shrink from the border.
    """
    mask = np.asarray(mask, dtype=bool)
    if n <= 0 or not mask.any() or mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask) > n


def _morph(mask: np.ndarray, op: str, n: int) -> np.ndarray:
    if op == "dilate":
        return dilate_mask(mask, n)
    if op == "erode":
        return erode_mask(mask, n)
    raise ValueError(f"unknown noise operation {op!r}; use {' or '.join(NOISE_OPS)}")


def _signature_table(structures: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Class of every membership pattern (bit k = inside structure k), as an array indexed by pattern; the
    unions must code each class once (checked by the config schema's :func:`structure_signatures`)."""
    try:
        signatures = structure_signatures([list(m) for m in structures], num_classes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    table = np.full(2 ** len(structures), -1, dtype=np.int64)
    for sig, c in signatures.items():
        table[sig] = c
    return table


def perturb_label(
    label: np.ndarray,
    op: str,
    n: int,
    *,
    task_mode: str = "multiclass",
    structures: Sequence[Sequence[int]] | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """Dilate or erode every structure of one label by ``n`` pixels (see the module docstring for the rules).

    ``label``: (*S) class indices (multiclass) or (C, *S) binary maps (multilabel), 2D or 3D.
    ``structures``: None = each foreground class; else unions of classes (``task.derived``), multiclass only,
    coding ``num_classes`` classes (default 2^len(structures)).
    """
    if op not in NOISE_OPS:
        raise ValueError(f"unknown noise operation {op!r}; use {' or '.join(NOISE_OPS)}")
    label = np.asarray(label)
    if task_mode == "multilabel":
        return np.stack([_morph(ch != 0, op, n) for ch in label]).astype(label.dtype)
    if task_mode != "multiclass":
        raise ValueError(f"task_mode must be multiclass or multilabel, got {task_mode!r}")
    if structures is not None:
        num_classes = int(num_classes if num_classes is not None else 2 ** len(structures))
        table = _signature_table(structures, num_classes)
        code = np.zeros(label.shape, dtype=np.int64)
        for i, members in enumerate(structures):
            code |= _morph(np.isin(label, [int(m) for m in members]), op, n).astype(np.int64) << i
        return table[code].astype(label.dtype)
    out = label.copy()
    classes = [int(c) for c in np.unique(label) if c != 0]
    if not classes or n <= 0:
        return out
    if op == "erode":
        for c in classes:
            mask = label == c
            out[mask & ~erode_mask(mask, n)] = 0
        return out
    # Dilation: background pixels within n of a class go to the nearest class (ties: lower index, argmin's
    # first); other classes' pixels are never overwritten.
    dist = np.stack([ndimage.distance_transform_edt(label != c) for c in classes])
    nearest = dist.argmin(0)
    claim = (label == 0) & (dist.min(0) <= n)
    out[claim] = np.asarray(classes, dtype=label.dtype)[nearest[claim]]
    return out


def simulate_label_noise(
    labels: np.ndarray,
    indices: Sequence[int],
    *,
    fraction: float,
    n_range: Sequence[int] = (1, 8),
    mode: str = "both",
    seed: int | Sequence[int] = 0,
    task_mode: str = "multiclass",
    structures: Sequence[Sequence[int]] | None = None,
    num_classes: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, list[dict]]:
    """Corrupt ``round(fraction · len(indices))`` of the samples ``indices`` of ``labels`` (N, [C,] *S).

    Returns a copy of ``labels`` (the input is never modified) and one record ``{"index", "op", "n",
    "changed"}`` per corrupted sample, in index order; ``changed`` counts the label entries that differ.
    Samples outside ``indices`` are untouched. Which samples, which operation and which n come from
    ``numpy.random.default_rng(seed)``: the same seed gives the same noise.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    lo, hi = noise_range(n_range)
    if mode not in NOISE_MODES:
        raise ValueError(f"mode must be one of {NOISE_MODES}, got {mode!r}")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(labels)):
        raise IndexError(f"sample indices must lie in 0..{len(labels) - 1}")
    if len(np.unique(indices)) != len(indices):
        raise ValueError("sample indices contain duplicates")
    rng = np.random.default_rng(seed)
    k = int(np.floor(fraction * len(indices) + 0.5))
    chosen = np.sort(rng.choice(indices, size=k, replace=False)) if k else np.zeros(0, np.int64)
    out = labels.copy()
    records = []
    for idx in Progress(chosen, desc="simulating label noise", unit="sample", leave=False, disable=not progress):
        op = NOISE_OPS[int(rng.integers(2))] if mode == "both" else mode
        n = int(rng.integers(lo, hi + 1))
        out[idx] = perturb_label(
            labels[idx], op, n, task_mode=task_mode, structures=structures, num_classes=num_classes
        )
        records.append({"index": int(idx), "op": op, "n": n, "changed": int((out[idx] != labels[idx]).sum())})
    return out, records


def noise_structures(cfg: dict) -> list[list[int]] | None:
    """``noisy_labels.structures`` resolved: None (each class) or the ``task.derived`` unions."""
    if cfg["noisy_labels"]["structures"] == "classes":
        return None
    return [[int(m) for m in members] for members in (cfg["task"].get("derived") or {}).values()]


def apply_label_noise(cfg: dict, data, train_idx: Sequence[int], fold: int = 0, *, progress: bool = True):
    """The data a fold trains on: ``data`` with its *training* samples' labels corrupted per ``noisy_labels``.

    Returns ``(noisy_data, report)``; ``noisy_data`` is a new :class:`SegmentationData` sharing the images,
    with a copied label array (``data`` is unchanged, so folds of one cross-validation never see each
    other's noise). The noise is seeded by ``(noisy_labels.seed, fold)``. ``report`` (for data.json) holds
    the settings and one record per corrupted sample.
    """
    nl = cfg["noisy_labels"]  # checked when the config was loaded (medseg.config_schema)
    task_mode = cfg["task"]["mode"]
    spatial_dims = int(cfg["task"]["spatial_dims"])
    expected = 1 + spatial_dims + (task_mode == "multilabel")
    if data.labels.ndim != expected:
        raise DataValidationError(
            data.source,
            f"labels of shape {data.labels.shape} do not fit a {spatial_dims}D "
            f"{task_mode} task (expected {expected} dimensions) for the label-noise simulation",
        )
    lo, hi = noise_range(nl["dilate_range"])
    labels, records = simulate_label_noise(
        data.labels,
        train_idx,
        fraction=float(nl["fraction"]),
        n_range=(lo, hi),
        mode=nl["mode"],
        seed=[int(nl["seed"]), int(fold)],
        task_mode=task_mode,
        structures=noise_structures(cfg),
        num_classes=len(cfg["task"]["class_names"]),
        progress=progress,
    )
    note = (
        f"label noise: {len(records)} of {len(train_idx)} training samples of fold {fold} {nl['mode']} "
        f"by {lo}-{hi} px (seed {nl['seed']}); validation and test labels are clean"
    )
    noisy = dataclasses.replace(data, labels=labels, notes=[*data.notes, note])
    report = {
        "fold": int(fold),
        "fraction": float(nl["fraction"]),
        "dilate_range": [lo, hi],
        "mode": nl["mode"],
        "structures": nl["structures"],
        "seed": [int(nl["seed"]), int(fold)],
        "n_train": len(train_idx),
        "n_corrupted": len(records),
        "records": records,
    }
    return noisy, report


def merge_noise_report(data_json: Path, report: dict) -> dict:
    """``label_noise`` of data.json: the folds recorded there before, plus this fold's ``report``."""
    merged: dict = {}
    try:
        previous = json.loads(Path(data_json).read_text()).get("label_noise")
        if isinstance(previous, dict):
            merged.update({k: v for k, v in previous.items() if k.startswith("fold_")})
    except (OSError, ValueError, AttributeError):
        pass
    merged[f"fold_{report['fold']}"] = report
    return dict(sorted(merged.items()))


__all__ = [
    "NOISE_MODES",
    "NOISE_OPS",
    "apply_label_noise",
    "ball",
    "dilate_mask",
    "erode_mask",
    "merge_noise_report",
    "noise_structures",
    "perturb_label",
    "simulate_label_noise",
]
