"""Stratified group k-fold splits (``splits.stratify``), as the GI paper's scikit-learn ``StratifiedGroupKFold``.

Every group (patient, case) lies inside one fold, and each stratum (the GI data: the number of organs in an
image, 0-3) has about the same share of every fold. There is no test set (``splits.test_fraction`` 0).
"""

from __future__ import annotations

import numpy as np

from medseg.data.split_making import STRATIFIED_PROTOCOL, is_int
from medseg.errors import ConfigError

__all__ = ["make_stratified_group_splits", "stratified_group_assignment"]


def _best_fold(y_counts_per_fold: np.ndarray, y_cnt: np.ndarray, group_y_counts: np.ndarray) -> int:
    best_fold, min_eval, min_samples = None, np.inf, None
    for i in range(len(y_counts_per_fold)):
        y_counts_per_fold[i] += group_y_counts
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = y_counts_per_fold / y_cnt.reshape(1, -1)
        dist = np.nan_to_num(dist)
        y_counts_per_fold[i] -= group_y_counts
        fold_eval = np.mean(np.std(dist, axis=0))
        samples = y_counts_per_fold[i].sum()
        is_better = fold_eval < min_eval or (np.isclose(fold_eval, min_eval) and samples < min_samples)
        if is_better:
            min_eval, min_samples, best_fold = fold_eval, samples, i
    return best_fold


def stratified_group_assignment(
    strata, groups, n_folds: int, *, seed: int = 0, n_strata: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The fold of every group, as scikit-learn's ``StratifiedGroupKFold(shuffle=True)`` assigns them
    (scikit-learn is not a dependency): groups in a seeded random order, then sorted by the spread of their
    stratum counts (largest first), each put into the fold that keeps every stratum's share across folds
    most even (ties: the smallest fold). Returns (fold of each group in ``sorted(set(groups))`` order,
    (n_folds, n_strata) item counts per fold and stratum)."""
    y = np.asarray(strata, dtype=int)
    group_names = sorted(set(groups))
    n_cls = int(n_strata if n_strata is not None else (y.max() + 1 if y.size else 1))
    g_index = {g: i for i, g in enumerate(group_names)}
    g = np.array([g_index[c] for c in groups], dtype=int)
    y_counts_per_group = np.zeros((len(group_names), n_cls))
    np.add.at(y_counts_per_group, (g, y), 1)
    y_cnt = np.bincount(y, minlength=n_cls).astype(float)
    order = np.random.default_rng(seed).permutation(len(group_names))
    spread = np.std(y_counts_per_group[order], axis=1)
    order = order[np.argsort(-spread, kind="mergesort")]
    y_counts_per_fold = np.zeros((n_folds, n_cls))
    fold_of_group = np.empty(len(group_names), dtype=int)
    for gi in order:
        best = _best_fold(y_counts_per_fold, y_cnt, y_counts_per_group[gi])
        y_counts_per_fold[best] += y_counts_per_group[gi]
        fold_of_group[gi] = best
    return fold_of_group, y_counts_per_fold


def make_stratified_group_splits(strata, groups, *, n_folds: int = 5, seed: int = 0) -> dict:
    """A medseg split (no test set; ``n_folds`` folds whose validation sets partition the items) with every
    group (patient, case) inside one fold and the strata in about equal shares per fold."""
    strata, groups = list(strata), list(groups)
    if len(strata) != len(groups) or not strata:
        raise ConfigError(
            f"stratified splits need one stratum and one group per item, got {len(strata)} and {len(groups)}"
        )
    if not is_int(n_folds) or n_folds < 2:
        raise ConfigError(f"splits.stratify needs n_folds >= 2, got {n_folds!r}")
    names = sorted(set(groups))
    if n_folds > len(names):
        raise ConfigError(f"splits.n_folds {n_folds} is more than the {len(names)} patients/cases to spread over them")
    fold_of_group, _ = stratified_group_assignment(strata, groups, int(n_folds), seed=int(seed))
    g_index = {g: i for i, g in enumerate(names)}
    fold_of_item = np.array([fold_of_group[g_index[g]] for g in groups])
    everything = np.arange(len(groups))
    folds = [
        {"train": everything[fold_of_item != k].tolist(), "val": everything[fold_of_item == k].tolist()}
        for k in range(int(n_folds))
    ]
    return {
        "n": len(groups),
        "seed": int(seed),
        "protocol": STRATIFIED_PROTOCOL,
        "test_fraction": 0.0,
        "n_folds": int(n_folds),
        "test": [],
        "folds": folds,
    }
