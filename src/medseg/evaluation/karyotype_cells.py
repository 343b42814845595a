"""The karyotype report's comparisons: the classical baseline beside the learned model, each decided chromosome by
chromosome and per cell (two of each autosome, XX or XY: :mod:`medseg.metrics.karyotype_assignment`).

:func:`karyotype_comparison` takes the learned model's class probabilities of the held-out chromosomes, fits the
baseline (:class:`~medseg.evaluation.karyotype_baseline.KaryotypeBaseline`) on the training chromosomes of the
same set, and returns for both: accuracy without and with the per-cell assignment, the flagged cells, and the
per-cell accuracy distribution. The set's HDF5 file gives what the images do not: every chromosome's raw
features (``features``), class and metaphase (``folder`` / ``image``: a cell's chromosomes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.data.karyotype_features import per_metaphase
from medseg.errors import DataValidationError
from medseg.evaluation.karyotype_baseline import BASELINE_FILE, KaryotypeBaseline
from medseg.metrics.karyotype_assignment import ABNORMAL_RATIO, assign_cells

__all__ = [
    "cell_results",
    "confused_pairs",
    "has_chromosome_records",
    "karyotype_comparison",
    "read_chromosome_records",
    "read_in_rearrangement",
]

_RECORDS = ("features", "class", "folder", "image")


def has_chromosome_records(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 karyotype set with the records :func:`read_chromosome_records` reads (a set
    from elsewhere, or one built before the features, has none: its report has no baseline)."""
    import h5py

    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return all(k in f for k in _RECORDS)


def read_chromosome_records(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw features (N, 17), class (N,) 1–24, cell id (N,) "folder/image") of a karyotype set's HDF5 file."""
    from medseg.formats.hdf5 import open_hdf5

    path = Path(path)
    with open_hdf5(path) as f:
        missing = [k for k in _RECORDS if k not in f]
        if missing:
            raise DataValidationError(
                path,
                f"no {', '.join(missing)} dataset(s): not a karyotype set of this medseg "
                "version (delete its folder to have it rebuilt with its features)",
            )
        features = np.asarray(f["features"][...], np.float64)
        classes = np.asarray(f["class"][...], np.int64)
        cells = np.char.add(np.char.add(f["folder"].asstr()[...].astype(str), "/"), f["image"].asstr()[...].astype(str))
    if not (len(features) == len(classes) == len(cells)):
        raise DataValidationError(
            path,
            f"features ({len(features)}), class ({len(classes)}) and folder/image ({len(cells)}) disagree in length",
        )
    return features, classes, cells


def read_in_rearrangement(path: str | Path) -> np.ndarray | None:
    """(N,) bool: whether each chromosome's class is named by a structural rearrangement of its cell's karyotype
    (:mod:`medseg.data.iscn`); None for a set built without the record."""
    from medseg.formats.hdf5 import open_hdf5

    with open_hdf5(Path(path)) as f:
        return np.asarray(f["in_rearrangement"][...], bool) if "in_rearrangement" in f else None


def _apart(own: np.ndarray, assigned: np.ndarray, true: np.ndarray, in_rearrangement: np.ndarray) -> dict:
    """Accuracy without / with the per-cell assignment on the chromosomes in a structural rearrangement of their
    cell and on the rest."""
    in_rearrangement = np.asarray(in_rearrangement, bool)
    return {
        name: {
            "n": int(where.sum()),
            "accuracy_without": _accuracy(own[where], true[where]),
            "accuracy_with": _accuracy(assigned[where], true[where]),
        }
        for name, where in (("in_rearrangement", in_rearrangement), ("rest", ~in_rearrangement))
    }


def _accuracy(pred: np.ndarray, true: np.ndarray) -> float | None:
    return float(np.mean(pred == true)) if len(true) else None


def cell_results(
    proba: np.ndarray,
    true: np.ndarray,
    cells: np.ndarray,
    *,
    ratio: float = ABNORMAL_RATIO,
    in_rearrangement: np.ndarray | None = None,
) -> dict:
    """Chromosome accuracy of ``proba`` (N, 24) against ``true`` (N,) 1–24 without and with the per-cell
    assignment, the flagged cells and each cell's accuracy (its distribution: quartiles); with
    ``in_rearrangement`` (N,) bool (:func:`read_in_rearrangement`) also both accuracies on those chromosomes and
    on the rest (``apart``)."""
    own = np.asarray(proba).argmax(axis=1) + 1
    assigned, per_cell = assign_cells(proba, cells, ratio=ratio)
    rows = []
    for cell, a in per_cell.items():
        idx = np.asarray(cells) == cell
        rows.append(
            {
                "cell": cell,
                "n": int(idx.sum()),
                "sex": a.sex,
                "flagged": a.flagged,
                "reasons": a.reasons,
                "accuracy_without": _accuracy(own[idx], true[idx]),
                "accuracy_with": _accuracy(assigned[idx], true[idx]),
            }
        )

    def quartiles(key: str) -> list[float]:
        return [float(q) for q in np.quantile([r[key] for r in rows], [0, 0.25, 0.5, 0.75, 1])] if rows else []

    out = {
        "accuracy_without": _accuracy(own, true),
        "accuracy_with": _accuracy(assigned, true),
        "n": int(len(true)),
        "n_cells": len(rows),
        "n_flagged": sum(r["flagged"] for r in rows),
        "ratio": ratio,
        "cells": rows,
        "cell_accuracy_quartiles_without": quartiles("accuracy_without"),
        "cell_accuracy_quartiles_with": quartiles("accuracy_with"),
        "predicted_with": assigned.tolist(),
    }
    if in_rearrangement is not None:
        out["apart"] = _apart(own, assigned, true, in_rearrangement)
    return out


def confused_pairs(matrix, names, top: int = 8) -> list[dict]:
    """The ``top`` unordered class pairs most often taken for each other (both directions summed)."""
    m = np.asarray(matrix, np.int64)
    both = np.triu(m + m.T, k=1)
    order = np.argsort(both, axis=None)[::-1][:top]
    out = []
    for i, j in zip(*np.unravel_index(order, both.shape), strict=True):
        if both[i, j]:
            out.append(
                {
                    "pair": [names[i], names[j]],
                    "n": int(both[i, j]),
                    f"{names[i]}_as_{names[j]}": int(m[i, j]),
                    f"{names[j]}_as_{names[i]}": int(m[j, i]),
                }
            )
    return out


#: Weights of the baseline in :func:`combine` tried on the validation chromosomes (0: the learned model alone).
COMBINE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def combine(learned: np.ndarray, baseline: np.ndarray, weight: float) -> np.ndarray:
    """The weighted geometric mean of two (N, 24) probability tables, renormalised: ``learned^(1-w) · baseline^w``
    (a product of experts: a class both find likely wins over one that only one of them favours)."""
    log = (1.0 - weight) * np.log(np.asarray(learned) + 1e-6) + weight * np.log(np.asarray(baseline) + 1e-6)
    p = np.exp(log - log.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def choose_weight(learned: np.ndarray, baseline: np.ndarray, true: np.ndarray) -> tuple[float, dict]:
    """The :data:`COMBINE_WEIGHTS` entry with the best accuracy of :func:`combine` on chromosomes whose classes
    ``true`` (1–24) are known (the smallest weight on a tie), and every weight's accuracy."""
    scores = {
        w: float(np.mean(combine(learned, baseline, w).argmax(1) + 1 == np.asarray(true))) for w in COMBINE_WEIGHTS
    }
    best = max(COMBINE_WEIGHTS, key=lambda w: (scores[w], -w))
    return best, scores


def karyotype_comparison(
    source: str | Path,
    train_idx,
    test_idx,
    learned_proba: np.ndarray,
    out_dir: str | Path,
    *,
    seed: int = 0,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """The baseline (fitted on ``train_idx``, saved to ``out_dir``/:data:`BASELINE_FILE`) and the learned model
    (``learned_proba`` (len(test_idx), 24)) on the chromosomes ``test_idx`` of the set ``source``, each without
    and with the per-cell assignment (:func:`cell_results`). ``validation``: (indices, the learned model's
    probabilities there) — then also the two **combined** (:func:`combine`, the baseline's weight chosen on those
    validation chromosomes, never on the test ones)."""
    features, classes, cells = read_chromosome_records(source)
    train_idx, test_idx = np.asarray(train_idx, np.int64), np.asarray(test_idx, np.int64)
    learned_proba = np.asarray(learned_proba, np.float64)
    if learned_proba.shape != (len(test_idx), 24):
        raise ValueError(f"learned probabilities {learned_proba.shape}: expected ({len(test_idx)}, 24)")
    normalised = per_metaphase(features, cells)
    baseline = KaryotypeBaseline(normalised[train_idx], classes[train_idx], seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline.save(out_dir / BASELINE_FILE)
    true, test_cells = classes[test_idx], cells[test_idx]
    rearranged = read_in_rearrangement(source)
    rearranged = None if rearranged is None else rearranged[test_idx]
    base_proba = baseline.predict_proba(normalised[test_idx])
    base = cell_results(base_proba, true, test_cells, in_rearrangement=rearranged)
    learned = cell_results(learned_proba, true, test_cells, in_rearrangement=rearranged)
    combined = None
    if validation is not None and len(validation[0]):
        val_idx = np.asarray(validation[0], np.int64)
        weight, scores = choose_weight(validation[1], baseline.predict_proba(normalised[val_idx]), classes[val_idx])
        combined = {
            "what": "the learned model and the baseline combined (weighted geometric mean of their probabilities), "
            "the baseline's weight chosen on the validation chromosomes",
            "weight": weight,
            "n_validation": int(len(val_idx)),
            "validation_accuracy": {f"{w:g}": round(a, 4) for w, a in scores.items()},
            **cell_results(combine(learned_proba, base_proba, weight), true, test_cells, in_rearrangement=rearranged),
        }
    shown = max(dict.fromkeys(test_cells.tolist()), key=lambda c: int((test_cells == c).sum()))
    where = np.flatnonzero(test_cells == shown)
    assigned = np.asarray(learned["predicted_with"])[where]
    karyogram = {
        "cell": shown,
        "positions": where.tolist(),
        "truth": true[where].tolist(),
        "predicted": assigned.tolist(),
        "confidence": learned_proba[where, assigned - 1].round(4).tolist(),
    }
    return {
        "karyogram": karyogram,
        "baseline": {
            "what": "random forest (scikit-learn, 300 trees, class-balanced) on 17 features per "
            "chromosome divided by its metaphase's median: area, length, width, mean and summed "
            "DAPI, 12-bin profile along the long axis",
            "n_train": int(len(train_idx)),
            "file": BASELINE_FILE,
            **base,
        },
        "learned": learned,
        **({"combined": combined} if combined is not None else {}),
    }
