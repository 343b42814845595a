"""The crops of ``medseg data mfish-pairs``: real overlapping-chromosome pairs cut from one M-FISH metaphase.

:func:`pairs_from_karyotype` cuts a crop around every overlap of the karyotype label map that joins exactly two
chromosomes (the rules: :mod:`medseg.data.mfish_pairs`, all in :class:`PairOptions`); :func:`isolated_chromosomes`
crops every chromosome that touches no overlap. :mod:`medseg.data.mfish_pairs` writes them as a set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medseg.data.mfish import OVERLAP_VALUE, slide_of
from medseg.data.pommier import POMMIER_SHAPE
from medseg.data.synth import RULES, order_pair

__all__ = [
    "LEFT_OUT",
    "IsolatedChromosome",
    "Pair",
    "PairOptions",
    "bounding_box",
    "crossed_chromosomes",
    "isolate_pair",
    "isolated_chromosomes",
    "pairs_from_karyotype",
]

#: Why an overlap region gives no pair (``cut_by_crop`` only with ``keep_cut=False``).
LEFT_OUT = ("too_small", "same_class", "three_or_more", "no_chromosome", "duplicate", "cut_by_crop")
_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class PairOptions:
    """How overlaps become pairs (see :mod:`medseg.data.mfish_pairs` for each rule)."""

    crop: tuple[int, int] = POMMIER_SHAPE  # rows x columns
    rule: str = "larger"
    min_overlap_px: int = 10
    touch_px: int = 1
    keep_cut: bool = True
    mask_others: bool = False

    def __post_init__(self) -> None:
        crop = tuple(int(v) for v in self.crop)
        if len(crop) != 2 or min(crop) < 8:
            raise ValueError(f"crop must be two sizes (rows, columns) of at least 8 pixels, got {self.crop!r}")
        object.__setattr__(self, "crop", crop)
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; use one of {', '.join(RULES)}")
        if int(self.min_overlap_px) < 1:
            raise ValueError(f"min_overlap_px must be at least 1, got {self.min_overlap_px}")
        if not 1 <= int(self.touch_px) <= 5:
            raise ValueError(f"touch_px must be 1 to 5 pixels, got {self.touch_px}")


@dataclass
class Pair:
    """One crop: ``image`` uint8 and ``labels`` uint8 (0 bg, 1 A only, 2 B only, 3 overlap), both ``crop``."""

    image: np.ndarray
    labels: np.ndarray
    folder: str
    image_id: str
    classes: tuple[int, int]  # karyotype class of label 1 (A) and of label 2 (B)
    areas: tuple[int, int]  # pixels of A and of B in the metaphase, overlap included
    overlap_px: int  # pixels of A and B together (label 3) in the metaphase
    box: tuple[int, int]  # top, left of the crop in the metaphase
    centred_on: str  # "pair", "overlap", or per axis "pair/overlap" (rows/columns)
    cut: bool  # A or B reaches beyond the crop
    other_px: int  # pixels of other chromosomes in the crop (background in the label map)

    def record(self) -> dict:
        return {
            "folder": self.folder,
            "slide": slide_of(self.folder),
            "image": self.image_id,
            "classes": list(self.classes),
            "areas": list(self.areas),
            "overlap_px": self.overlap_px,
            "box": list(self.box),
            "centred_on": self.centred_on,
            "cut": self.cut,
            "other_px": self.other_px,
        }


@dataclass
class IsolatedChromosome:
    """A chromosome touching no overlap: its crop (``margin`` around it) and mask (True: its pixels)."""

    image: np.ndarray
    mask: np.ndarray
    folder: str
    image_id: str
    cls: int
    area: int
    box: tuple[int, int, int, int]  # top, left, height, width of the crop in the metaphase
    touches_other: bool  # another chromosome lies against it (no overlap label between them)
    at_border: bool  # it reaches the metaphase's edge (maybe not whole)


@dataclass
class _Overlaps:
    labelled: np.ndarray
    sizes: np.ndarray
    slices: list
    classes: list[tuple[int, ...]] = field(default_factory=list)


def _window(sl: tuple[slice, slice], pad: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    return tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(sl, shape, strict=True))


def _overlap_regions(karyo: np.ndarray, touch_px: int) -> _Overlaps:
    """Every 8-connected region of label 255, its size and the classes 1–24 within ``touch_px`` of it."""
    labelled, n = ndimage.label(karyo == OVERLAP_VALUE, _EIGHT)
    ov = _Overlaps(labelled, np.bincount(labelled.ravel(), minlength=n + 1), ndimage.find_objects(labelled))
    structure = np.ones((2 * touch_px + 1,) * 2, bool)
    for k, sl in enumerate(ov.slices, start=1):
        win = _window(sl, touch_px + 1, karyo.shape)
        region = labelled[win] == k
        ring = ndimage.binary_dilation(region, structure) & ~region
        values = np.unique(karyo[win][ring])
        ov.classes.append(tuple(int(v) for v in values if 1 <= v <= 24))
    return ov


def crossed_chromosomes(
    dapi: np.ndarray, karyo: np.ndarray, *, min_px: int = 10, folder: str = "", image_id: str = ""
) -> list[IsolatedChromosome]:
    """Every chromosome that :func:`isolated_chromosomes` leaves out because it crosses another: its class's
    pixels together with the overlap regions it borders (the rule of
    :func:`medseg.evaluation.instances.true_instances`: a chromosome cut in two by a crossing is one), cropped
    to its box with no margin. Only crossings of exactly two classes are taken — an overlap bordering three or
    more chromosomes, or two copies of one class, does not say whose pixels are whose. In the overlap the DAPI
    is both chromosomes' (brighter), as the instance separation hands a crossed chromosome to the classifier."""
    ov = _overlap_regions(karyo, 1)
    clear = {k for k, classes in enumerate(ov.classes, start=1) if len(classes) == 2}
    h, w = karyo.shape
    out: list[IsolatedChromosome] = []
    for c in range(1, 25):
        own = karyo == c
        if not own.any():
            continue
        bordering = [k for k, classes in enumerate(ov.classes, start=1) if c in classes]
        if not bordering:
            continue
        labelled, _ = ndimage.label(own | np.isin(ov.labelled, bordering), _EIGHT)
        for i, sl in enumerate(ndimage.find_objects(labelled), start=1):
            if sl is None:
                continue
            mask = labelled[sl] == i
            regions = set(np.unique(ov.labelled[sl][mask]).tolist()) - {0}
            if not regions or not regions <= clear or int((mask & own[sl]).sum()) < min_px:
                continue  # isolated (isolated_chromosomes' own), or a crossing that is not clearly two
            out.append(
                IsolatedChromosome(
                    image=dapi[sl].astype(np.uint8, copy=True),
                    mask=mask,
                    folder=folder,
                    image_id=image_id,
                    cls=c,
                    area=int(mask.sum()),
                    box=(sl[0].start, sl[1].start, sl[0].stop - sl[0].start, sl[1].stop - sl[1].start),
                    touches_other=True,
                    at_border=sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w,
                )
            )
    return out


def isolate_pair(image: np.ndarray, pair: np.ndarray, px: int) -> np.ndarray:
    """``image`` (a pair's crop) with every pixel farther than ``px`` from ``pair`` (the two chromosomes' boolean
    mask) painted with the 25th percentile of those pixels (the dark background of a crop also holding other
    chromosomes), so the crop shows the pair alone, as Pommier's pairs do.

    One rule for training and prediction: ``mfish:pairs`` with ``data.mfish_pair_isolate_px`` cuts its crops so
    from the label map's pair, the metaphase pipeline from the semantic model's component
    (:func:`medseg.inference.instances.separate_instances`). The ``px`` margin keeps the chromosomes' blurred
    edges, which the label map and the semantic model draw a pixel or two apart. A copy; ``image`` is untouched."""
    keep = ndimage.binary_dilation(pair, _EIGHT, iterations=int(px)) if px > 0 else np.asarray(pair, bool)
    out = np.array(image, copy=True)
    if keep.all() or not keep.any():
        return out
    out[~keep] = np.percentile(image[~keep], 25)
    return out


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1), half-open, of a non-empty boolean mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _crop_start(union: tuple[int, int], overlap: tuple[int, int], size: int, length: int) -> tuple[int, str]:
    lo, hi = union
    on = "pair" if hi - lo <= size else "overlap"
    if on == "overlap":
        lo, hi = overlap
    start = int(np.floor((lo + hi - size) / 2))
    return min(max(start, 0), length - size), on


def _pad_to_crop(dapi: np.ndarray, karyo: np.ndarray, crop: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A metaphase smaller than the crop, padded at the bottom/right (DAPI with its background median)."""
    pad = [(0, max(0, c - s)) for c, s in zip(crop, karyo.shape, strict=True)]
    if not any(p for _, p in pad):
        return dapi, karyo
    bg = int(np.median(dapi[karyo == 0])) if (karyo == 0).any() else 0
    return np.pad(dapi, pad, constant_values=bg), np.pad(karyo, pad, constant_values=0)


def pairs_from_karyotype(
    dapi: np.ndarray, karyo: np.ndarray, options: PairOptions = PairOptions(), *, folder: str = "", image_id: str = ""
) -> tuple[list[Pair], Counter]:
    """The pairs of one metaphase (DAPI uint8 and karyotype label map, same shape) and the counts: ``overlaps``
    (regions of label 255), ``kept``, each reason of :data:`LEFT_OUT`, ``cut`` (pairs reaching beyond the
    crop, kept or not) and ``with_other_chromosomes`` (kept crops holding pixels of other chromosomes)."""
    dapi, karyo = np.asarray(dapi), np.asarray(karyo)
    if dapi.shape != karyo.shape or karyo.ndim != 2:
        raise ValueError(f"DAPI {dapi.shape} and karyotype {karyo.shape} must be two images of the same shape")
    dapi, karyo = _pad_to_crop(dapi, karyo, options.crop)
    counts: Counter = Counter({k: 0 for k in ("overlaps", "kept", *LEFT_OUT, "cut", "with_other_chromosomes")})
    ov = _overlap_regions(karyo, options.touch_px)
    counts["overlaps"] = len(ov.slices)
    instances: dict[int, np.ndarray] = {}  # class -> labelled instances of that class

    def instance_labels(c: int) -> np.ndarray:
        if c not in instances:
            bordering = [k for k, classes in enumerate(ov.classes, start=1) if c in classes]
            instances[c] = ndimage.label((karyo == c) | np.isin(ov.labelled, bordering), _EIGHT)[0]
        return instances[c]

    pairs: list[Pair] = []
    seen: set[tuple[int, int, int, int]] = set()
    for k, (sl, classes) in enumerate(zip(ov.slices, ov.classes, strict=True), start=1):
        if ov.sizes[k] < options.min_overlap_px:
            counts["too_small"] += 1
            continue
        if len(classes) != 2:
            counts["no_chromosome" if not classes else "same_class" if len(classes) == 1 else "three_or_more"] += 1
            continue
        r, c = np.argwhere(ov.labelled[sl] == k)[0]
        seed = (int(r) + sl[0].start, int(c) + sl[1].start)  # a pixel of the overlap: in both instances
        ids = [int(instance_labels(c)[seed]) for c in classes]
        key = (classes[0], ids[0], classes[1], ids[1])
        if key in seen:
            counts["duplicate"] += 1
            continue
        seen.add(key)
        a, b = (instance_labels(c) == i for c, i in zip(classes, ids, strict=True))
        (a, ca), (b, cb) = (
            ((a, classes[0]), (b, classes[1]))
            if order_pair(a, b, *classes, options.rule)
            else ((b, classes[1]), (a, classes[0]))
        )
        union = a | b
        r0, r1, c0, c1 = bounding_box(union)
        o0, o1, p0, p1 = bounding_box(ov.labelled[sl] == k)
        o0, o1, p0, p1 = o0 + sl[0].start, o1 + sl[0].start, p0 + sl[1].start, p1 + sl[1].start
        top, on_r = _crop_start((r0, r1), (o0, o1), options.crop[0], karyo.shape[0])
        left, on_c = _crop_start((c0, c1), (p0, p1), options.crop[1], karyo.shape[1])
        win = (slice(top, top + options.crop[0]), slice(left, left + options.crop[1]))
        cut = bool(union.sum() > union[win].sum())
        counts["cut"] += cut
        if cut and not options.keep_cut:
            counts["cut_by_crop"] += 1
            continue
        wa, wb = a[win], b[win]
        labels = np.zeros(options.crop, np.uint8)
        labels[wa & ~wb] = 1
        labels[wb & ~wa] = 2
        labels[wa & wb] = 3
        image = dapi[win].astype(np.uint8, copy=True)
        others = (karyo[win] > 0) & ~(wa | wb)
        if others.any():
            counts["with_other_chromosomes"] += 1
            if options.mask_others:
                background = karyo[win] == 0
                image[others] = int(np.median(image[background])) if background.any() else 0
        counts["kept"] += 1
        pairs.append(
            Pair(
                image=image,
                labels=labels,
                folder=folder,
                image_id=image_id,
                classes=(ca, cb),
                areas=(int(a.sum()), int(b.sum())),
                overlap_px=int((a & b).sum()),
                box=(top, left),
                centred_on=on_r if on_r == on_c else f"{on_r}/{on_c}",
                cut=cut,
                other_px=int(others.sum()),
            )
        )
    return pairs, counts


def isolated_chromosomes(
    dapi: np.ndarray,
    karyo: np.ndarray,
    *,
    touch_px: int = 1,
    margin: int = 4,
    min_px: int = 10,
    folder: str = "",
    image_id: str = "",
) -> tuple[list[IsolatedChromosome], int]:
    """Every chromosome (8-connected component of one class 1–24) with no overlap pixel within ``touch_px``,
    cropped with ``margin`` pixels around it; returns them and the number of components under ``min_px``
    pixels left out (specks)."""
    overlap = karyo == OVERLAP_VALUE
    structure = np.ones((2 * touch_px + 1,) * 2, bool)
    out: list[IsolatedChromosome] = []
    small = 0
    h, w = karyo.shape
    for c in range(1, 25):
        labelled, _ = ndimage.label(karyo == c, _EIGHT)
        for i, sl in enumerate(ndimage.find_objects(labelled), start=1):
            if sl is None:
                continue
            win = _window(sl, touch_px + 1, karyo.shape)
            own = labelled[win] == i
            ring = ndimage.binary_dilation(own, structure) & ~own
            if overlap[win][ring].any():
                continue
            area = int(own.sum())
            if area < min_px:
                small += 1
                continue
            box = _window(sl, margin, karyo.shape)
            mask = labelled[box] == i
            out.append(
                IsolatedChromosome(
                    image=dapi[box].astype(np.uint8, copy=True),
                    mask=mask,
                    folder=folder,
                    image_id=image_id,
                    cls=c,
                    area=area,
                    box=(box[0].start, box[1].start, box[0].stop - box[0].start, box[1].stop - box[1].start),
                    touches_other=bool((karyo[win][ring] > 0).any()),
                    at_border=sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w,
                )
            )
    return out, small
