"""Deciding the classes of one cell together, as a cytogeneticist does: two of each autosome, XX or XY.

Classified one by one, two chromosomes of a cell can both be called 7 while no chromosome is called 6. Within a
metaphase the classes are not independent: a normal human cell holds two of each autosome 1–22 and XX or XY.
:func:`assign_cell` solves the assignment of the cell's chromosomes to those 46 slots that maximises the summed
log probability (:func:`scipy.optimize.linear_sum_assignment` over −log p), once for XX and once for XY, and keeps
the better — as published karyotyping systems constrain their classifiers.

**Abnormal cells are not forced normal.** A trisomy, a lost or an extra chromosome breaks the two-per-class
rule, and the probabilities then say so. The rule: a chromosome whose assigned class has a probability below
``1 / ratio`` of its own most probable class (:data:`ABNORMAL_RATIO`, 10: the model finds its own class at least
ten times likelier) keeps its own most probable class, and its cell is **flagged**; so is a cell with more than 46
chromosomes (those the 46 slots cannot take keep their own class). A flagged cell may be abnormal or badly
separated — either way a person should look at it. Fewer than 46 chromosomes (a partial cell, or chromosomes left
out) is not a flag: the slots are upper bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ABNORMAL_RATIO", "CellAssignment", "assign_cell", "assign_cells"]

ABNORMAL_RATIO = 10.0
N_AUTOSOMES = 22
X, Y = 23, 24  # class numbers of the sex chromosomes
_EPS = 1e-12


@dataclass
class CellAssignment:
    """The classes (1–24, one per chromosome, in input order) of one cell, its sex complement and whether the
    rule of the module docstring flagged it (``reasons`` says why)."""

    classes: np.ndarray
    sex: str
    flagged: bool
    reasons: list[str] = field(default_factory=list)


def _slots(sex: str) -> np.ndarray:
    autosomes = np.repeat(np.arange(1, N_AUTOSOMES + 1), 2)
    return np.concatenate([autosomes, [X, X] if sex == "XX" else [X, Y]])


def assign_cell(proba: np.ndarray, *, ratio: float = ABNORMAL_RATIO) -> CellAssignment:
    """Assign the chromosomes of one cell: ``proba`` (n, 24), row i the class probabilities of chromosome i
    (column k for class k + 1)."""
    from scipy.optimize import linear_sum_assignment

    proba = np.asarray(proba, np.float64)
    if proba.ndim != 2 or proba.shape[1] != Y:
        raise ValueError(f"probabilities {proba.shape}: expected (chromosomes, {Y})")
    if ratio <= 1:
        raise ValueError(f"ratio must be > 1, got {ratio}")
    own = proba.argmax(axis=1) + 1
    if len(proba) == 0:
        return CellAssignment(own, "XX", False)
    cost_of = -np.log(np.clip(proba, _EPS, None))
    best = None
    for sex in ("XX", "XY"):
        slots = _slots(sex)
        rows, cols = linear_sum_assignment(cost_of[:, slots - 1])
        cost = cost_of[rows, slots[cols] - 1].sum()
        if best is None or cost < best[0]:
            best = (cost, sex, rows, slots[cols])
    _, sex, rows, assigned = best
    classes = own.copy()
    classes[rows] = assigned
    reasons = []
    if len(rows) < len(proba):
        reasons.append(f"{len(proba)} chromosomes: more than the 46 slots of a normal cell")
    i = np.arange(len(proba))
    p_assigned, p_own = proba[i, classes - 1], proba[i, own - 1]
    kept = p_assigned * ratio < p_own
    if kept.any():
        classes[kept] = own[kept]
        names = ", ".join(_name(c) for c in sorted(set(own[kept].tolist())))
        reasons.append(
            f"{int(kept.sum())} chromosome(s) kept their own class ({names}): the normal cell's slot was "
            f"over {ratio:g}x less likely"
        )
    return CellAssignment(classes, sex, bool(reasons), reasons)


def _name(cls: int) -> str:
    return {X: "X", Y: "Y"}.get(int(cls), str(int(cls)))


def assign_cells(
    proba: np.ndarray, cells: Sequence, *, ratio: float = ABNORMAL_RATIO
) -> tuple[np.ndarray, dict[str, CellAssignment]]:
    """:func:`assign_cell` for every cell: ``proba`` (N, 24), ``cells`` (N,) the cell (metaphase) id of each
    chromosome. Returns the classes (N,) and each cell's :class:`CellAssignment`."""
    proba = np.asarray(proba, np.float64)
    cells = np.asarray([str(c) for c in cells])
    if len(cells) != len(proba):
        raise ValueError(f"{len(proba)} probability rows but {len(cells)} cell ids")
    classes = np.zeros(len(proba), np.int64)
    out = {}
    for cell in dict.fromkeys(cells.tolist()):
        rows = np.flatnonzero(cells == cell)
        out[cell] = assign_cell(proba[rows], ratio=ratio)
        classes[rows] = out[cell].classes
    return classes, out
