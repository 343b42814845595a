"""Deciding a cell's classes together (medseg.metrics.karyotype_assignment): two of each autosome, XX or XY,
and abnormal cells flagged, not forced normal."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.metrics.karyotype_assignment import assign_cell, assign_cells


def _cell(sex: str = "XY", seed: int = 0, sure: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """A normal cell's 46 chromosomes: true classes and probabilities that favour the true class."""
    rng = np.random.default_rng(seed)
    true = np.concatenate([np.repeat(np.arange(1, 23), 2), [23, 23] if sex == "XX" else [23, 24]])
    proba = rng.uniform(0.0, 0.02, (46, 24))
    proba[np.arange(46), true - 1] = sure
    return true, proba / proba.sum(axis=1, keepdims=True)


def test_assignment_fixes_a_swap_and_respects_the_counts():
    true, proba = _cell("XY")
    six = np.flatnonzero(true == 6)[0]
    proba[six, 6] = proba[six, 5] * 1.5  # one 6 looks more like a 7: one by one, three 7s and one 6
    assert (proba.argmax(1) + 1 == true).sum() == 45
    a = assign_cell(proba)
    np.testing.assert_array_equal(a.classes, true)
    assert a.sex == "XY" and not a.flagged
    counts = np.bincount(a.classes, minlength=25)
    assert (counts[1:23] == 2).all() and counts[23] == 1 and counts[24] == 1


def test_xx_chosen_for_a_female_cell():
    true, proba = _cell("XX", seed=1)
    a = assign_cell(proba)
    assert a.sex == "XX" and (a.classes == true).all() and not a.flagged


def test_a_trisomy_is_kept_and_flagged_not_forced_normal():
    true, proba = _cell("XX", seed=2)
    extra = np.full(24, 0.002)
    extra[20] = 0.95  # a third chromosome 21, the model sure of it
    proba = np.vstack([proba, extra / extra.sum()])
    a = assign_cell(proba)
    assert a.flagged and "more than the 46 slots" in a.reasons[0]
    assert np.bincount(a.classes, minlength=25)[21] == 3
    # a cell of 45 with the third 21 replacing a 22: the 22 slot is far less likely than 21, so it stays 21
    proba45 = np.vstack([proba[:43], proba[44:45], proba[46:]])
    b = assign_cell(proba45)
    assert b.flagged and np.bincount(b.classes, minlength=25)[21] == 3 and "kept their own class (21)" in b.reasons[0]


def test_assign_cells_groups_by_cell_and_checks_its_input():
    true_a, pa = _cell("XY", seed=3)
    true_b, pb = _cell("XX", seed=4)
    classes, cells = assign_cells(np.vstack([pa, pb]), ["a"] * 46 + ["b"] * 46)
    np.testing.assert_array_equal(classes, np.concatenate([true_a, true_b]))
    assert cells["a"].sex == "XY" and cells["b"].sex == "XX"
    with pytest.raises(ValueError, match="cell ids"):
        assign_cells(pa, ["a"] * 45)
    with pytest.raises(ValueError, match=r"\(chromosomes, 24\)"):
        assign_cell(pa[:, :23])
