"""Pixel overlaps of predicted and true instances, each given as sorted flat pixel indices: what instance
matching (:mod:`medseg.evaluation.instances`) and the status check (:mod:`medseg.evaluation.status_accuracy`)
both count."""

from __future__ import annotations

import numpy as np

__all__ = ["intersections"]


def intersections(pred: list[np.ndarray], true: list[np.ndarray]) -> np.ndarray:
    """(P, T) pixel counts of p ∩ g (flat index arrays, sorted)."""
    out = np.zeros((len(pred), len(true)), np.int64)
    for j, g in enumerate(true):
        if not len(g):
            continue
        for i, p in enumerate(pred):
            if len(p) and p[0] <= g[-1] and g[0] <= p[-1]:
                out[i, j] = np.intersect1d(p, g, assume_unique=True).size
    return out
