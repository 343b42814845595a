"""Two chromosomes that cross, parted by geometry: the arms around their overlap paired by direction.

Where two chromosomes cross, the semantic model marks the overlap; without it the component falls apart into
*arms* — the pieces of chromosome that leave the overlap. A chromosome runs straight through a crossing (it is
a rigid rod at metaphase), so the two arms of one chromosome leave the overlap in nearly opposite directions.
That gives a rule that needs no training, in the spirit of the geometric separation of overlapping chromosomes
(e.g. Agam & Dinstein 1997, which pairs the contour pieces around an overlap by their continuity):

* **4 arms** (an X): of the three ways to pair them, the one whose pairs are the most opposite (the largest
  sum of the angles between each pair's directions); each chromosome = its two arms + the overlap;
* **3 arms** (a T: one chromosome ends on the other): the most opposite pair is the chromosome that runs
  through; the third arm + the overlap is the other one;
* **2 arms** (two chromosomes overlapping end to end, or side by side): one arm each, the overlap shared.

A cluster with **several overlaps** (a chromosome crossing two others, a chain) is parted by the same rule at
every overlap (:func:`split_crossings`): each overlap pairs the arms around it, the arms paired through any overlap
are one chromosome, and a chromosome holds every overlap one of its arms leaves. It is made only when every
overlap is clear, every arm leaves some overlap, and every overlap ends up between exactly two chromosomes.

An arm's direction is the vector from the overlap's centroid to the arm's centroid. Arms under ``min_arm_px``
pixels are no arms (a ragged edge of the overlap): their pixels go to the nearest arm. The split is only made
when it is clear (:data:`MIN_OPPOSITION`, the cosine of a pair's angle must be at most −0.5, i.e. ≥ 120°, for
every pair that runs through); otherwise — one arm, five or more, or no pairing straight enough — ``None``: the
caller keeps the crossing whole and counts it, because a karyotyper can cut a cluster by hand but a wrong cut
hands them two wrong chromosomes.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy import ndimage

__all__ = ["MIN_ARM_PX", "MIN_OPPOSITION", "nearest_seed", "split_crossing", "split_crossings"]

MIN_ARM_PX = 15  # px: smaller pieces around an overlap are its ragged edge, not an arm
MIN_OPPOSITION = -0.5  # cosine of the angle between a through-running chromosome's two arms (≤ −0.5: ≥ 120°)


def nearest_seed(seeds: np.ndarray) -> np.ndarray:
    """Every pixel's nearest seed label (Euclidean distance; ``seeds``: int labels, 0 = no seed)."""
    _, (ri, ci) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[ri, ci]


def _directions(arms: list[np.ndarray], overlap: np.ndarray) -> np.ndarray:
    centre = np.argwhere(overlap).mean(0)
    vecs = np.stack([np.argwhere(a).mean(0) - centre for a in arms])
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.where(norms > 0, norms, 1.0)


def _through_pairs(d: np.ndarray) -> list[tuple[int, int]] | None:
    """The pairs of arms that run through the overlap (see the module docstring), or None when unclear."""
    n = len(d)
    cos = d @ d.T
    if n == 4:
        pairings = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
        best = min(pairings, key=lambda p: cos[p[0]] + cos[p[1]])
        return list(best) if max(cos[best[0]], cos[best[1]]) <= MIN_OPPOSITION else None
    if n == 3:
        best = min(combinations(range(3), 2), key=lambda p: cos[p])
        return [best] if cos[best] <= MIN_OPPOSITION else None
    return [] if n == 2 else None


def _arms(comp: np.ndarray, overlap: np.ndarray, contact, min_arm_px: int) -> list[np.ndarray] | None:
    """The component's pieces outside ``overlap`` (and the contact pixels), 4-connected, of at least
    ``min_arm_px``; the smaller pieces join their nearest arm. None when there is no arm."""
    own = comp & ~overlap
    apart = own if contact is None else own & ~np.asarray(contact, bool)
    # 4-connected: at the overlap's corners the two chromosomes' arms meet diagonally, pixel to pixel
    labels, n = ndimage.label(apart)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = [k for k in range(1, n + 1) if sizes[k] >= min_arm_px]
    if not big:
        return None
    seeds = np.zeros(comp.shape, np.int32)
    for j, k in enumerate(big, start=1):
        seeds[labels == k] = j
    arm_of = np.where(own, nearest_seed(seeds), 0)  # small pieces join their nearest arm
    return [arm_of == j for j in range(1, len(big) + 1)]


def split_crossings(
    comp: np.ndarray, overlaps: list[np.ndarray], contact: np.ndarray | None = None, *, min_arm_px: int = MIN_ARM_PX
) -> list[np.ndarray] | None:
    """The chromosomes (boolean masks on ``comp``'s window) of a component with one or more overlap regions
    (``overlaps``: one boolean mask each), or None when one of them is unclear (module docstring)."""
    comp = np.asarray(comp, bool)
    overlaps = [np.asarray(o, bool) & comp for o in overlaps]
    if not overlaps or not all(o.any() for o in overlaps):
        return None
    arms = _arms(comp, np.logical_or.reduce(overlaps), contact, min_arm_px)
    if arms is None:
        return None
    parent = list(range(len(arms)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    around = []  # per overlap: the arms that leave it
    for o in overlaps:
        ring = ndimage.binary_dilation(o, np.ones((5, 5), bool)) & ~o
        near = [i for i, a in enumerate(arms) if (a & ring).any()]
        through = _through_pairs(_directions([arms[i] for i in near], o)) if 2 <= len(near) <= 4 else None
        if through is None:
            return None
        for i, j in through:
            parent[root(near[i])] = root(near[j])
        around.append(near)
    if set(range(len(arms))) - {i for near in around for i in near}:
        return None  # an arm that leaves no overlap: a piece the contact class cut off, not a crossing's
    groups = sorted({root(i) for i in range(len(arms))})
    if len(groups) < 2 or any(len({root(i) for i in near}) != 2 for near in around):
        return None
    out = []
    for g in groups:
        mask = np.logical_or.reduce([arms[i] for i in range(len(arms)) if root(i) == g])
        for o, near in zip(overlaps, around, strict=True):
            if any(root(i) == g for i in near):
                mask = mask | o
        out.append(mask)
    return out


def split_crossing(
    comp: np.ndarray, overlap: np.ndarray, contact: np.ndarray | None = None, *, min_arm_px: int = MIN_ARM_PX
) -> tuple[np.ndarray, np.ndarray] | None:
    """The two chromosomes (A, B: boolean masks on ``comp``'s window, each holding the whole ``overlap``) of a
    component with one overlap region, or None when its arms do not say clearly how (module docstring).
    ``contact``: the pixels where two chromosomes touch (the semantic model's touching class), if known: beside
    an overlap the two chromosomes' arms usually touch each other, so the arms are found without them."""
    comp, overlap = np.asarray(comp, bool), np.asarray(overlap, bool) & np.asarray(comp, bool)
    if not overlap.any():
        return None
    arms = _arms(comp, overlap, contact, min_arm_px)
    if arms is None or not 2 <= len(arms) <= 4:
        return None
    through = _through_pairs(_directions(arms, overlap))
    if through is None:
        return None
    used = {i for p in through for i in p}
    groups = [[i, j] for i, j in through] + [[i] for i in range(len(arms)) if i not in used]
    if len(groups) != 2:
        return None
    a, b = (np.logical_or.reduce([arms[i] for i in g]) | overlap for g in groups)
    return a, b
