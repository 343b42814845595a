"""Where one chromosome ends and the next begins in a metaphase's foreground, and which objects are no chromosome.

* :func:`touching_regions` — the learned way: a semantic model with a fourth class, *touching* (the pixels
  where two chromosomes meet; ``data.mfish_touching_px``, :func:`medseg.data.mfish_metaphase.touching_labels`
  says why a contact class). The foreground without those pixels falls into cores, one per chromosome (a
  crossing stays one core, joined through its overlap); a seeded watershed (:func:`skimage.segmentation.watershed`
  on the inverted distance to the background) grows the cores back over the contact pixels.
* :func:`distance_regions` — the classical way, for a foreground with no contact cue (the Otsu baseline,
  :mod:`medseg.inference.otsu_baseline`): seeds at the maxima of the distance to the background
  (:func:`skimage.feature.peak_local_max`), the same watershed. It cuts where the foreground narrows, so it
  parts chromosomes that touch at a narrow neck — and also cuts a bent or banded chromosome at its own
  constrictions; that trade-off is what the learned contact class is measured against.
* :class:`DebrisRules` / :func:`debris_rule` — objects that are no chromosome, judged against the metaphase's own
  chromosomes (the median area of its objects, so the rules hold at any magnification): specks, interphase
  nuclei (far larger than the median and round), fragments cut by the image border.

Layering: inference only (numpy, scipy, scikit-image); nothing here knows a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "DEBRIS_RULES",
    "TOUCHING_CLASS",
    "DebrisRules",
    "debris_rule",
    "distance_regions",
    "median_area",
    "touching_regions",
]

TOUCHING_CLASS = 3  # semantic class value of the contact pixels (0 bg, 1 chromosome, 2 overlap, 3 touching)
MIN_CORE_PX = 12  # px: a smaller core (a spot left between two contact lines) seeds no chromosome of its own
_EIGHT = np.ones((3, 3), bool)
#: The debris rules in the order they are tried; each removed object is counted under the first that fits.
DEBRIS_RULES = ("specks", "small", "nuclei", "border_fragments")


def _grow(foreground: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Seeds grown over the foreground by watershed on the inverted distance to the background (so the line
    between two seeds falls where the foreground is narrowest); foreground parts no seed reaches become
    regions of their own (8-connected), numbered after the seeds."""
    from skimage.segmentation import watershed

    distance = ndimage.distance_transform_edt(foreground)
    regions = watershed(-distance, seeds, mask=foreground).astype(np.int32)
    rest, n_rest = ndimage.label(foreground & (regions == 0), _EIGHT)
    if n_rest:
        regions[rest > 0] = rest[rest > 0] + regions.max()
    return regions


def touching_regions(semantic: np.ndarray, *, min_core_px: int = MIN_CORE_PX) -> tuple[np.ndarray, int]:
    """(int32 region labels, count) of a semantic map 0 bg / 1 chromosome / 2 overlap / 3 touching: one region
    per core of chromosome ∪ overlap left once the touching pixels are taken out (4-connected, so a contact
    line one pixel wide still parts two cores), grown back over the whole foreground. Without any touching pixel
    this is the 8-connected components of the foreground, as before the class existed."""
    semantic = np.asarray(semantic)
    foreground = semantic > 0
    contact = semantic == TOUCHING_CLASS
    if not contact.any():
        labels, n = ndimage.label(foreground, _EIGHT)
        return labels.astype(np.int32), int(n)
    cores, n = ndimage.label(foreground & ~contact)  # 4-connectivity
    sizes = np.bincount(cores.ravel(), minlength=n + 1)
    keep = sizes >= min_core_px
    keep[0] = False
    cores = np.where(keep[cores], np.cumsum(keep)[cores], 0).astype(np.int32)
    regions = _grow(foreground, cores)
    return regions, int(regions.max())


def distance_regions(foreground: np.ndarray, *, min_distance: int = 7) -> tuple[np.ndarray, int]:
    """(int32 region labels, count): the classical distance-transform watershed of a boolean foreground —
    seeds at the local maxima of the distance to the background at least ``min_distance`` px apart, one seed at
    most per maximum plateau, grown by :func:`_grow`."""
    from skimage.feature import peak_local_max

    foreground = np.asarray(foreground, bool)
    components, _ = ndimage.label(foreground, _EIGHT)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=components, exclude_border=False)
    seeds = np.zeros(foreground.shape, np.int32)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = _grow(foreground, seeds)
    return regions, int(regions.max())


@dataclass(frozen=True)
class DebrisRules:
    """Which objects are no chromosome. Areas relative to ``median`` — the median area of the metaphase's
    objects of at least ``min_area`` px — hold at any magnification; with fewer than ``min_objects`` such
    objects the median says nothing and only ``min_area`` applies.

    * ``specks``: under ``min_area`` px (the smallest real chromosome has ~60 px, the median ~420);
    * ``small``: under ``small_fraction`` × median (the smallest chromosome, Y or 21, is ~0.2 × median);
    * ``nuclei``: over ``nucleus_factor`` × median *and* compact (solidity ≥ ``nucleus_solidity``) *and* round
      (minor / major axis ≥ ``nucleus_axis_ratio``): an interphase nucleus (2,670–7,141 px, solidity ≈ 1.0, axis
      ratio ≈ 0.9 on A0101XY; the largest chromosome ~1,860 px, ≈ 4.4 × median, is elongated);
    * ``border_fragments``: touching the image's edge and under ``border_fraction`` × median (a piece of a
      nucleus or of debris outside the field; a chromosome cut by the edge keeps most of its length).

    ``enabled=False`` keeps every object (only the specks go, as before these rules).

    These rules *remove* what is certainly no chromosome, with wide margins (a nucleus from 4 × median, a border
    piece under 0.35 × median). What is only probably none is kept and *flagged* afterwards, with the narrower
    margins of :mod:`medseg.inference.instance_status` (status ``doubtful``: under 0.2 × median, a border piece
    under 0.6 ×, compact and round from 2.5 ×, on a nucleus, off the spread), so a user sees it and can count
    it back; both tiers use the same edge test (:func:`touches_edge`)."""

    enabled: bool = True
    min_area: int = 30
    min_objects: int = 8
    small_fraction: float = 0.1
    nucleus_factor: float = 4.0
    nucleus_solidity: float = 0.85
    nucleus_axis_ratio: float = 0.6
    border_fraction: float = 0.35

    def record(self) -> dict:
        return asdict(self)


def debris_rule(
    mask: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int], median: float | None, rules: DebrisRules
) -> str | None:
    """The first rule of :data:`DEBRIS_RULES` that one object fits (``mask`` on its bounding box
    ``box`` = (top, left, height, width) in an image of ``shape``), or None when it is taken for a chromosome.
    ``median``: the metaphase's median object area, None when it has too few objects to say."""
    area = int(mask.sum())
    if area < rules.min_area:
        return "specks"
    if not rules.enabled or median is None:
        return None
    if area < rules.small_fraction * median:
        return "small"
    if area > rules.nucleus_factor * median:
        from skimage.measure import regionprops

        props = regionprops(mask.astype(np.uint8))[0]
        ratio = props.axis_minor_length / max(props.axis_major_length, 1e-9)
        if props.solidity >= rules.nucleus_solidity and ratio >= rules.nucleus_axis_ratio:
            return "nuclei"
    if touches_edge(box, shape) and area < rules.border_fraction * median:
        return "border_fragments"
    return None


def touches_edge(box: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Whether a bounding box (top, left, height, width) touches the edge of an image of ``shape`` (rows, cols)."""
    top, left, h, w = box
    return top == 0 or left == 0 or top + h >= shape[0] or left + w >= shape[1]


def median_area(areas: list[int], rules: DebrisRules) -> float | None:
    """The median of the object areas of at least ``rules.min_area`` px; None under ``rules.min_objects`` of them."""
    kept = [a for a in areas if a >= rules.min_area]
    return float(np.median(kept)) if len(kept) >= rules.min_objects else None
