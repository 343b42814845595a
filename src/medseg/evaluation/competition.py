"""The UW-Madison competition score of a GI-tract model's predictions, scan by scan at the original size.

medseg trains and predicts the GI slices on the grid of ``data.size`` (the paper: 128 × 128); the competition
scores each scan (a case on one day) at its slices' own size. So the probabilities of every slice are scaled
(or cropped) back to the slice's size (:func:`~medseg.data.uwgi_dataset.to_original_size`), thresholded at
0.5, stacked in slice order into a (C, D, H, W) volume and scored against the masks decoded again from
``train.csv`` (:func:`~medseg.data.uwgi_dataset.original_masks`) by :class:`~medseg.metrics.uw_score.UWScore`:
0.4 × Dice per slice image + 0.6 × (1 − 3D Hausdorff / diagonal), each slice one unit deep, under the
competition's rule for empty masks (both empty = 1) and, in ``other_convention``, the paper's (= 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.data.uwgi import read_train_csv
from medseg.data.uwgi_dataset import original_masks, scan_groups, to_original_size
from medseg.metrics.uw_score import UWScore


def competition_score(
    data, indices: Sequence[int], proba: np.ndarray, class_names: Sequence[str], *, threshold: float = 0.5
) -> dict:
    """UWScore aggregate (mean over scans) of ``proba`` (N, C, h, w) — the probabilities of the items
    ``indices`` of the UW-Madison ``data``, in that order — plus ``per_scan`` final scores."""
    rles = read_train_csv(Path(data.volume_info["root"]) / "train.csv")
    position = {int(i): k for k, i in enumerate(indices)}
    score = UWScore(empty_dice="one", organ_names=list(class_names))
    for scan, items in scan_groups(data, indices).items():
        pred = np.stack([to_original_size(proba[position[i]], data, i) > threshold for i in items], axis=1)
        truth = np.stack([original_masks(data, i, rles) for i in items], axis=1).astype(bool)
        score.update(pred, truth, scan)
    out = score.aggregate()
    out["per_scan"] = {scan: round(float(r["score"]), 6) for scan, r in score.per_scan().items()}
    return out


__all__ = ["competition_score"]
