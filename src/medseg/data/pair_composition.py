"""Pairs of crossing chromosomes composed by Pommier's procedure: rotate two crops, make them cross, add them.

:func:`place_pair` composes one pair deterministically; :func:`synthesize_pairs` draws many, as Pommier did
(every unordered pair of crops, random angles and crossing points, pairs without overlap rejected). The crops
come from :mod:`medseg.data.chromosome_crops` or :mod:`medseg.data.procedural_chromosomes`;
:func:`medseg.data.synth.run_synth` writes the result.

Composition rule: the grey value of an overlap pixel is the **sum** of the two chromosomes'
background-subtracted signals, clipped to 255. Fluorescence is additive (two layers of DNA emit twice the
light), it is what Pommier did (his generator adds the two images), and it keeps *both* banding patterns
visible inside the overlap, which is what lets a network follow alpha and beta across it; a maximum would
hide the dimmer chromosome there. The procedural chromosomes are drawn at 85-135 grey levels so that the
sum rarely saturates; ``blend="max"`` is offered for sources that are already near saturation.
Between the two, ``blend=w`` (a number 0..1) makes an overlap pixel ``max(a, b) + w * min(a, b)``
(``"sum"`` is w = 1, ``"max"`` w = 0): real DAPI overlaps are brighter than one layer but less than
twice as bright (dye quenching, depth of field, camera saturation), so ``medseg data mfish-synth``
takes the w measured on the real M-FISH pairs (:mod:`medseg.data.mfish_synth`).
The background is 0, as in the published set (its chromosomes were pasted on black). Every labelled pixel
has a grey value >= 1 and every unlabelled pixel is 0, so image and label map agree exactly.

Which chromosome is alpha: the one with the lower index in the crop list (pairs are taken as ``i < j``,
like Pommier's pairs), so alpha/beta is a stable identity a network can learn from the chromosomes'
appearance (length, banding, centromere, telomeres), as on the real set. The generated library is
ordered like a karyotype (chromosome 1 first), so alpha is usually the longer chromosome of the pair.
Sets matched to real pairs may order each pair by a rule instead (:data:`RULES`, :func:`order_pair`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from scipy import ndimage

from medseg.data.chromosome_crops import ChromosomeCrop
from medseg.data.pommier import POMMIER_SHAPE

__all__ = [
    "BLEND_WEIGHTS",
    "RULES",
    "RULE_TEXT",
    "Blend",
    "PairPlacement",
    "check_blend",
    "order_pair",
    "place_pair",
    "rotate_crop",
    "synthesize_pairs",
]

RULES = ("larger", "lower-class", "top-left")
RULE_TEXT = {
    "larger": "label 1 is the chromosome with more pixels (overlap included); ties: the lower class",
    "lower-class": "label 1 is the chromosome of the lower karyotype class (1-22, X = 23, Y = 24)",
    "top-left": "label 1 is the chromosome whose centroid lies higher in the metaphase (ties: further left)",
}


def order_pair(a: np.ndarray, b: np.ndarray, class_a: int, class_b: int, rule: str) -> bool:
    """Whether chromosome ``a`` (bool mask, class ``class_a``) is label 1 under ``rule`` (else ``b`` is)."""
    if rule == "larger":
        na, nb = int(a.sum()), int(b.sum())
        return na > nb or (na == nb and class_a < class_b)
    if rule == "lower-class":
        return class_a < class_b
    if rule == "top-left":
        ca, cb = ndimage.center_of_mass(a), ndimage.center_of_mass(b)
        return (ca[0], ca[1], class_a) < (cb[0], cb[1], class_b)
    raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")


Blend = Literal["sum", "max"] | float
#: The overlap weight ``w`` each named blend stands for: overlap = max(a, b) + w * min(a, b).
BLEND_WEIGHTS = {"sum": 1.0, "max": 0.0}


@dataclass
class PairPlacement:
    """The result of placing one pair: ``status`` is ``kept``, ``no_overlap``, ``covered`` or ``outside``."""

    status: str
    overlap_px: int
    image: np.ndarray | None = None  # uint8 H x W, only when kept
    labels: np.ndarray | None = None  # uint8 H x W, only when kept
    alpha_origin: tuple[int, int] | None = None  # top-left of the rotated alpha crop in the frame
    beta_origin: tuple[int, int] | None = None


def _rotate(signal: np.ndarray, mask: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (bilinear signal, nearest mask), mask the signal, cut both to the mask's bounding box."""
    if angle % 360 == 0:
        s, m = signal.astype(np.float32, copy=True), mask.copy()
    else:
        m = ndimage.rotate(mask.view(np.uint8), angle, order=0, reshape=True, mode="constant", cval=0) > 0
        s = ndimage.rotate(signal, angle, order=1, reshape=True, mode="constant", cval=0.0, prefilter=False)
        if not m.any():  # a one-pixel sliver can fall between grid points
            m = ndimage.rotate(mask.astype(np.float32), angle, order=1, reshape=True) >= 0.25
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    m = m[sl]
    s = np.where(m, np.maximum(s[sl], 1.0), 0.0).astype(np.float32)  # labelled pixels are never black
    return s, m


def rotate_crop(crop: ChromosomeCrop, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``crop`` rotated by ``angle`` degrees (:func:`scipy.ndimage.rotate`): float32 signal, bool mask, cut to
    the mask's bounding box. The signal is background-subtracted, 0 outside the mask, >= 1 inside."""
    return _rotate(crop.signal(), crop.mask, angle)


def _compose(
    sa: np.ndarray, ma: np.ndarray, sb: np.ndarray, mb: np.ndarray, offset: tuple[int, int],
    shape: tuple[int, int], min_overlap_px: int, blend: Blend, min_visible_px: int = 1,
) -> PairPlacement:  # fmt: skip
    H, W = shape
    ha, wa = ma.shape
    hb, wb = mb.shape
    dy, dx = int(offset[0]), int(offset[1])
    # overlap, in alpha's coordinates
    y0, y1 = max(0, dy), min(ha, dy + hb)
    x0, x1 = max(0, dx), min(wa, dx + wb)
    overlap = 0
    if y1 > y0 and x1 > x0:
        overlap = int(np.count_nonzero(ma[y0:y1, x0:x1] & mb[y0 - dy : y1 - dy, x0 - dx : x1 - dx]))
    if overlap < min_overlap_px:
        return PairPlacement("no_overlap", overlap)
    if min(int(np.count_nonzero(ma)), int(np.count_nonzero(mb))) - overlap < min_visible_px:
        return PairPlacement("covered", overlap)  # one chromosome (almost) hidden under the other
    top, left = min(0, dy), min(0, dx)
    uh, uw = max(ha, dy + hb) - top, max(wa, dx + wb) - left
    if uh > H or uw > W:
        return PairPlacement("outside", overlap)
    # centre the pair's bounding box in the frame (an odd remainder goes to the bottom/right, as pad_to)
    ay, ax = (H - uh) // 2 - top, (W - uw) // 2 - left
    by, bx = ay + dy, ax + dx
    frame = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    frame[ay : ay + ha, ax : ax + wa] = sa
    labels[ay : ay + ha, ax : ax + wa] = ma
    fb = frame[by : by + hb, bx : bx + wb]
    w = BLEND_WEIGHTS.get(blend, blend) if isinstance(blend, str) else float(blend)
    if w == 1.0:
        fb += sb
    elif w == 0.0:
        np.maximum(fb, sb, out=fb)
    else:
        fb[...] = np.maximum(fb, sb) + w * np.minimum(fb, sb)
    labels[by : by + hb, bx : bx + wb] |= mb.view(np.uint8) << 1
    image = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return PairPlacement("kept", overlap, image, labels, (ay, ax), (by, bx))


def place_pair(
    alpha: ChromosomeCrop,
    beta: ChromosomeCrop,
    *,
    angle_alpha: float = 0.0,
    angle_beta: float = 0.0,
    offset: tuple[int, int] = (0, 0),
    shape: tuple[int, int] = POMMIER_SHAPE,
    min_overlap_px: int = 1,
    blend: Blend = "sum",
    min_visible_px: int = 1,
) -> PairPlacement:
    """Compose one pair deterministically.

    Both crops are rotated (:func:`rotate_crop`), beta's rotated crop is put at ``offset`` (rows, cols)
    from alpha's, and the bounding box of the two is centred in a ``shape`` frame. Labels: 1 alpha only,
    2 beta only, 3 both. Rejected (``status`` ``no_overlap`` / ``covered`` / ``outside``) when fewer
    than ``min_overlap_px`` pixels overlap, when fewer than ``min_visible_px`` pixels of alpha or of beta
    lie outside the overlap, or when the pair does not fit the frame (tested in that order).
    """
    sa, ma = rotate_crop(alpha, angle_alpha)
    sb, mb = rotate_crop(beta, angle_beta)
    return _compose(sa, ma, sb, mb, offset, tuple(shape), min_overlap_px, check_blend(blend), min_visible_px)


def check_blend(blend: str | float) -> Blend:
    """``"sum"``, ``"max"`` or an overlap weight w in 0..1 (a number, or its text: ``"0.6"``)."""
    if isinstance(blend, str) and blend in BLEND_WEIGHTS:
        return blend  # type: ignore[return-value]
    try:
        w = float(blend)
    except (TypeError, ValueError):
        w = float("nan")
    if not 0.0 <= w <= 1.0:  # also NaN
        raise ValueError(f"blend must be 'sum', 'max' or an overlap weight 0..1, got {blend!r}")
    return w


def synthesize_pairs(
    crops: list[ChromosomeCrop],
    *,
    n_pairs: int | None = None,
    shape: tuple[int, int] = POMMIER_SHAPE,
    seed: int = 0,
    min_overlap_px: int = 1,
    progress: bool = False,
    jitter: int = 6,
    blend: Blend = "sum",
    min_visible_px: int = 1,
    rule: str | None = None,
    crop_weights: np.ndarray | None = None,
    accept: Callable[[np.ndarray], float] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Overlapping pairs by Pommier's procedure.

    Goes over every unordered pair ``(i, j)``, ``i < j``, of ``crops`` (alpha = crop ``i``, beta = crop
    ``j``), in a random order; each pass draws new placements, and passes are repeated until ``n_pairs``
    pairs are kept (``None``: one pass, keeping what passes). A placement: both chromosomes rotated by
    independent uniform angles (0-360 degrees), then translated so that a random pixel of beta lands on
    a random pixel of alpha, plus a uniform shift of up to ``jitter`` px in each direction. Aligning
    random pixels makes them cross anywhere along their lengths -- tips just touching, an arm across the
    other, or lying along each other -- so overlaps range from a few pixels to large areas; the jitter
    also makes some miss, as some of Pommier's did. The pair's bounding box is centred in the ``shape``
    frame (as his were, padded to a common size). Grey values are added (``blend="sum"``, clipped to
    255; see the module doc) or, with ``blend="max"``, the brighter is kept; a number w in 0..1 gives
    ``max + w * min``.

    Kept: overlap >= ``min_overlap_px``, at least ``min_visible_px`` pixels of alpha only and of beta
    only (neither chromosome hidden under the other), and both chromosomes wholly inside the frame.
    Rejections are counted under the first test failed, in that order (Pommier deleted 1,416 of 14,850
    for no overlap). Returns images (N, H, W) uint8, labels (N, H, W) uint8 and stats: ``generated``,
    ``kept``, ``rejected_no_overlap``, ``rejected_covered``, ``rejected_outside``, ``passes``, ``pair_index``
    ((N, 2) int array of the crop indices of alpha and beta), ``overlap_px`` ((N,) int array) and
    ``saturated_px`` (overlap pixels clipped at 255).

    Options for sets matched to real pairs (``medseg data mfish-synth``; all off by default, and then the
    output is exactly the above): ``rule`` orders each kept pair by :func:`order_pair`
    (``larger``: label 1 is the chromosome with more pixels, overlap included; class from the crop name's
    ``_c<class>`` ending, else its index), swapping labels 1 and 2 (and the pair index) where needed.
    ``crop_weights`` (one per crop, >= 0): each pass draws as many pairs as there are unordered pairs, both
    chromosomes drawn independently with probability proportional to their weights (redrawn until
    distinct), instead of going over every pair once. ``accept(labels)`` -> probability 0..1 of keeping a
    placement that passed the tests above (rejection sampling, e.g. on the crossing angle); refusals are
    counted as ``rejected_accept``.
    """
    _check_pair_counts(crops, n_pairs, min_overlap_px, jitter, min_visible_px)
    blend = check_blend(blend)
    shape = (int(shape[0]), int(shape[1]))
    rng = np.random.default_rng(seed)
    signals = [c.signal() for c in crops]
    masks = [c.mask for c in crops]
    all_pairs = np.array(list(combinations(range(len(crops)), 2)), dtype=np.int64)
    target = len(all_pairs) if n_pairs is None else int(n_pairs)
    classes = _crop_classes(crops, rule)
    crop_p = _crop_probabilities(crop_weights, len(crops))

    placement = (jitter, shape, min_overlap_px, blend, min_visible_px)  # the rest of _random_placement's arguments
    kept = _KeptPairs(target, shape)
    stats = _new_stats(accept is not None)

    from medseg.progress import Progress

    bar = Progress(total=target, desc="synthesizing pairs", unit="pair", disable=not progress, leave=False)
    try:
        while kept.n < target:
            stats["passes"] += 1
            kept_this_pass = 0
            for i, j in _pairs_of_a_pass(rng, all_pairs, len(crops), crop_p):
                res = _random_placement(rng, signals[i], masks[i], signals[j], masks[j], *placement)
                stats["generated"] += 1
                if res.status != "kept":
                    stats[f"rejected_{res.status}"] += 1
                    continue
                lab = res.labels
                if accept is not None and not rng.random() < float(accept(lab)):
                    stats["rejected_accept"] += 1
                    continue
                if rule is not None and not order_pair(
                    (lab == 1) | (lab == 3), (lab == 2) | (lab == 3), classes[i], classes[j], rule
                ):
                    lab = np.where(lab == 3, 3, 3 - lab) * (lab > 0)
                    i, j = j, i
                kept.add(res, lab, i, j)
                kept_this_pass += 1
                bar.update(1)
                if kept.n == target:
                    break
            if n_pairs is None:
                break
            if kept_this_pass == 0:
                raise _nothing_fits(stats, len(all_pairs), shape, masks)
    finally:
        bar.close()
    return kept.result(stats)


def _check_pair_counts(
    crops: list[ChromosomeCrop], n_pairs: int | None, min_overlap_px: int, jitter: int, min_visible_px: int
) -> None:
    if len(crops) < 2:
        raise ValueError(f"need at least two chromosome crops to make pairs, got {len(crops)}")
    if n_pairs is not None and n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if min_overlap_px < 0 or jitter < 0 or min_visible_px < 0:
        raise ValueError("min_overlap_px, min_visible_px and jitter must be >= 0")


def _crop_classes(crops: list[ChromosomeCrop], rule: str | None) -> list[int] | None:
    """The karyotype class of every crop for ``rule``: from the name's ``_c<class>`` ending, else its index + 1."""
    if rule is None:
        return None
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    classes = []
    for k, c in enumerate(crops):
        m = re.search(r"_c(\d+)$", c.name)
        classes.append(int(m.group(1)) if m else k + 1)
    return classes


def _crop_probabilities(crop_weights: np.ndarray | None, n_crops: int) -> np.ndarray | None:
    """Each crop's probability of being drawn (weights normalised to sum 1); None: every pair once a pass."""
    if crop_weights is None:
        return None
    crop_weights = np.asarray(crop_weights, np.float64)
    if (
        crop_weights.shape != (n_crops,)
        or not np.isfinite(crop_weights).all()
        or (crop_weights < 0).any()
        or np.count_nonzero(crop_weights) < 2
    ):
        raise ValueError("crop_weights: one finite weight >= 0 per crop, at least two of them > 0")
    return crop_weights / crop_weights.sum()


def _pairs_of_a_pass(
    rng: np.random.Generator, all_pairs: np.ndarray, n_crops: int, crop_p: np.ndarray | None
) -> np.ndarray:
    """The (alpha, beta) crop indices one pass tries: every unordered pair in a random order, or (with
    ``crop_p``) as many pairs drawn by the crops' probabilities, each pair's two crops distinct."""
    if crop_p is None:
        return all_pairs[rng.permutation(len(all_pairs))]
    pass_pairs = rng.choice(n_crops, size=(len(all_pairs), 2), p=crop_p)
    for row in np.flatnonzero(pass_pairs[:, 0] == pass_pairs[:, 1]):
        while pass_pairs[row, 1] == pass_pairs[row, 0]:
            pass_pairs[row, 1] = rng.choice(n_crops, p=crop_p)
    return pass_pairs


def _random_placement(
    rng: np.random.Generator, sa0: np.ndarray, ma0: np.ndarray, sb0: np.ndarray, mb0: np.ndarray, jitter: int,
    shape: tuple[int, int], min_overlap_px: int, blend: Blend, min_visible_px: int,
) -> PairPlacement:  # fmt: skip
    """One placement: both crops rotated by uniform angles, a random pixel of beta put on a random pixel of
    alpha, shifted by up to ``jitter`` px each way."""
    sa, ma = _rotate(sa0, ma0, rng.uniform(0.0, 360.0))
    sb, mb = _rotate(sb0, mb0, rng.uniform(0.0, 360.0))
    pa = np.unravel_index(rng.choice(np.flatnonzero(ma)), ma.shape)
    pb = np.unravel_index(rng.choice(np.flatnonzero(mb)), mb.shape)
    shift = rng.integers(-jitter, jitter + 1, size=2)
    offset = (pa[0] - pb[0] + shift[0], pa[1] - pb[1] + shift[1])
    return _compose(sa, ma, sb, mb, offset, shape, min_overlap_px, blend, min_visible_px)


def _new_stats(counts_accept: bool) -> dict:
    counters = ("generated", "kept", "rejected_no_overlap", "rejected_covered", "rejected_outside", "passes")
    stats: dict = dict.fromkeys(counters, 0)
    if counts_accept:
        stats["rejected_accept"] = 0
    return stats


def _nothing_fits(stats: dict, n_pairs: int, shape: tuple[int, int], masks: list[np.ndarray]) -> ValueError:
    sizes = max(max(m.shape) for m in masks)
    return ValueError(
        f"no pair could be placed in a full pass over {n_pairs} pairs "
        f"({stats['rejected_outside']} did not fit the {shape[0]}x{shape[1]} frame, "
        f"{stats['rejected_no_overlap']} had no overlap); the largest crop is {sizes} px: "
        "use smaller crops (scale) or a larger frame"
    )


class _KeptPairs:
    """The arrays :func:`synthesize_pairs` fills, one kept pair at a time."""

    def __init__(self, target: int, shape: tuple[int, int]):
        self.images = np.empty((target, *shape), np.uint8)
        self.labels = np.empty((target, *shape), np.uint8)
        self.pair_index = np.empty((target, 2), np.int64)
        self.overlap_px = np.empty(target, np.int64)
        self.saturated = 0
        self.n = 0

    def add(self, res: PairPlacement, labels: np.ndarray, alpha: int, beta: int) -> None:
        self.images[self.n] = res.image
        self.labels[self.n] = labels
        self.pair_index[self.n] = (alpha, beta)
        self.overlap_px[self.n] = res.overlap_px
        self.saturated += int(np.count_nonzero((res.labels == 3) & (res.image == 255)))
        self.n += 1

    def result(self, stats: dict) -> tuple[np.ndarray, np.ndarray, dict]:
        n = self.n
        stats["kept"] = n
        stats["pair_index"] = self.pair_index[:n]
        stats["overlap_px"] = self.overlap_px[:n]
        stats["saturated_px"] = self.saturated
        return self.images[:n], self.labels[:n], stats
