"""What each chromosome instance probably is, so that the count a user copies into a report can be trusted.

Separation (:func:`medseg.inference.instances.separate_instances`) says how an object was obtained; it does not
say whether the object is one chromosome. A touching clump without an overlap pixel comes out "whole", and a
fragment at the image's edge counts as much as a chromosome. :func:`chromosome_status` reads each instance's
record (area, ``separated_by``, bounding box, and the shape measures of :func:`shape_measures`) against the
cell's own median single chromosome and gives one status:

* ``single`` — one chromosome (1);
* ``crossing_split`` — one of the two chromosomes of a crossing the pair model split (1 each);
* ``crossing_whole`` — a crossing of two kept whole, one object (2);
* ``clump`` — touching chromosomes, ≈ round(area / median) of them: area ≥ :data:`CLUMP_FACTOR` × median, or
  ≥ :data:`LARGE_FACTOR` × median where separation kept it whole at an overlap;
* ``doubtful`` — possible debris or a nucleus fragment: tiny, a small piece at the image's border or far off
  the metaphase's spread, lying on a bright background (an interphase nucleus), or a large
  compact round blob (an interphase nucleus has no arms); counted apart, never in the estimate. What is
  certainly debris never gets here: :class:`medseg.inference.regions.DebrisRules` removed it with wider margins.

:func:`status_summary` turns the statuses into the headline ("≈ 20 single · 2 clumps (≈ 22) · 10 doubtful")
and a warning when the estimate is far from a human cell's 46; :func:`chromosomes_csv` is the per-chromosome
table a karyotyper takes away. The server and ``medseg predict`` both use this module (inference layer).
"""

from __future__ import annotations

import csv
import io

import numpy as np

from medseg.inference.regions import touches_edge

__all__ = [
    "STATUSES",
    "STATUS_COLOUR",
    "STATUS_MARK",
    "STATUS_TEXT",
    "chromosome_status",
    "chromosomes_csv",
    "instance_statuses",
    "shape_measures",
    "single_median",
    "spread_of",
    "status_summary",
    "surroundings",
]

STATUSES = ("single", "crossing_split", "crossing_whole", "clump", "doubtful")
STATUS_TEXT = {
    "single": "single chromosome",
    "crossing_split": "crossing, split",
    "crossing_whole": "crossing of two, kept whole",
    "clump": "probable clump",
    "doubtful": "possible debris / nucleus",
}
#: How the figure of ``medseg predict`` marks a status: the colour of the object's outline and number box, and a
#: letter after its number, so that the statuses read in print and for colour-blind readers too (single: none,
#: the common case stays uncluttered).
STATUS_COLOUR = {
    "single": "#2ca02c",
    "crossing_split": "#1f77b4",
    "crossing_whole": "#9467bd",
    "clump": "#ff7f0e",
    "doubtful": "#d62728",
}
STATUS_MARK = {"single": "", "crossing_split": "s", "crossing_whole": "w", "clump": "c", "doubtful": "?"}
# On the label maps of 12 M-FISH cells the largest single chromosomes (1, 2) reach 2.0-2.4 × the cell's median:
# a "whole" object is called a clump only from CLUMP_FACTOR on; from LARGE_FACTOR on, one kept whole at an
# overlap (two or more chromosomes for sure) is a clump, and a "whole" one is single but said to be large.
CLUMP_FACTOR = 2.5
LARGE_FACTOR = 1.8
TINY_FACTOR = 0.2  # the smallest chromosomes (21, Y) are 0.22-0.45 × median on the label maps
#: How bright an object's surroundings are, 0 at the background's median grey, 1 at the chromosomes'; on one
#: M-FISH cell the chromosomes' surroundings measured 0.15-0.42, the fragments lying on an interphase nucleus 0.48-1.7.
ON_NUCLEUS = 0.5
RING_PX = (1, 4)  # the surroundings: 1 to 4 px outside the object, foreground left out
OFF_SPREAD = 1.3  # × the spread's radius (90th percentile of the chromosomes' distances to its centre)
BORDER_FACTOR = 0.6  # at the edge and under this × median: a piece cut off, not a countable chromosome
NUCLEUS_SOLIDITY, NUCLEUS_AXIS_RATIO = 0.9, 0.6  # compact and round: no chromosome arms stick out
DEBRIS_SKEW = 1.6  # area-weighted over plain median area above this: the objects are mostly small pieces
EXPECTED = 46  # a normal human metaphase
FAR = 6  # |estimate − 46| above this: the headline warns
SPLIT_FALLBACKS = ("no_pair_model", "pair_model_failed", "pair_model_unsure", "arms_unclear")  # a crossing, kept whole
SPLIT_BY = ("pair_model", "geometry")  # how a crossing of two was parted into its chromosomes
CSV_COLUMNS = (
    "id",
    "status",
    "estimated_count",
    "area_px",
    "top",
    "left",
    "height",
    "width",
    "overlaps_with",
    "separated_by",
    "status_reason",
    "class",
    "class_name",
    "class_confidence",
)


def weighted_median(areas: list[float]) -> float:
    """The area at which half of all the objects' pixels lie in smaller objects (each object weighs its area)."""
    a = np.sort(np.asarray(areas, float))
    cumulative = np.cumsum(a)
    return float(a[np.searchsorted(cumulative, cumulative[-1] / 2)])


def single_median(records: list[dict]) -> float:
    """The cell's median single-chromosome area: over the objects with no crossing kept whole, or over all when
    fewer than five are left; then once more without the specks and clumps that median shows (debris far from
    the spread is often many small pieces, which would pull it down).

    Where the area-weighted median (the size of the object a typical foreground pixel lies in) is over
    :data:`DEBRIS_SKEW` times the plain one, most objects are small pieces while most pixels lie in chromosomes:
    the median is then taken over the objects from half that weighted median on. A plain median fell to 1/4 of a
    chromosome on a held-out metaphase whose 75 objects held dozens of debris pieces of 30-150 px, and every real
    chromosome was called a clump (about 113 chromosomes estimated for 44). In a cell without debris the
    weighted median is about 1.3x the plain one and nothing changes (on that metaphase: 2.0x)."""
    areas = [r["area"] for r in records if r.get("separated_by") in ("whole", *SPLIT_BY)]
    if len(areas) < 5:
        areas = [r["area"] for r in records]
    if not areas:
        return 0.0
    first, by_area = float(np.median(areas)), weighted_median(areas)
    if by_area > DEBRIS_SKEW * first:  # most objects are small pieces, most pixels are in chromosomes
        kept = [a for a in areas if 0.5 * by_area <= a < CLUMP_FACTOR * by_area]
        if len(kept) >= 5:
            return float(np.median(kept))
    kept = [a for a in areas if TINY_FACTOR * first <= a < CLUMP_FACTOR * first]
    return float(np.median(kept)) if len(kept) >= 5 else first


def _centre(record: dict) -> tuple[float, float]:
    b = record["bbox"]
    return b["top"] + b["height"] / 2, b["left"] + b["width"] / 2


def spread_of(records: list[dict], median: float) -> tuple[float, float, float] | None:
    """(row, column, radius) of the metaphase's spread: the median centre of the objects of at least half the
    median area and the 90th percentile of their distances to it; None under eight such objects."""
    centres = np.array([_centre(r) for r in records if r["area"] >= 0.5 * median], float).reshape(-1, 2)
    if len(centres) < 8:
        return None
    middle = np.median(centres, axis=0)
    radius = float(np.percentile(np.hypot(*(centres - middle).T), 90))
    return float(middle[0]), float(middle[1]), radius


def _at_border(record: dict, shape) -> bool:
    b = record["bbox"]
    return touches_edge((b["top"], b["left"], b["height"], b["width"]), shape)


def chromosome_status(record: dict, median: float, shape, spread: tuple[float, float, float] | None = None) -> dict:
    """``{"status", "estimated_count", "status_reason"}`` of one instance record (keys of
    :meth:`~medseg.inference.instances.Instance.record`, optionally ``solidity`` and ``axis_ratio``) in an image
    of ``shape`` (rows, columns) whose median single chromosome has ``median`` px; ``spread`` (row, column,
    radius, :func:`spread_of`): a small object beyond :data:`OFF_SPREAD` × radius is doubtful too."""
    area, how = record["area"], record.get("separated_by", "whole")
    ratio = area / median if median > 0 else 1.0

    def status(name: str, count: int, reason: str) -> dict:
        return {"status": name, "estimated_count": count, "status_reason": reason}

    if record.get("surround", 0) >= ON_NUCLEUS:
        return status("doubtful", 0, f"on a bright background (a nucleus?), {ratio:.2f} × median area")
    if (
        ratio >= CLUMP_FACTOR
        and record.get("solidity", 0) >= NUCLEUS_SOLIDITY
        and record.get("axis_ratio", 0) >= NUCLEUS_AXIS_RATIO
    ):
        return status("doubtful", 0, f"compact and round, {ratio:.1f} × median area: nucleus-like")
    if ratio < TINY_FACTOR:
        return status("doubtful", 0, f"tiny: {ratio:.2f} × median area")
    if ratio < BORDER_FACTOR and _at_border(record, shape):
        return status("doubtful", 0, f"at the image border, {ratio:.2f} × median area")
    if (
        ratio < BORDER_FACTOR
        and spread is not None
        and np.hypot(*(np.subtract(_centre(record), spread[:2]))) > OFF_SPREAD * spread[2]
    ):
        return status("doubtful", 0, f"off the metaphase's spread, {ratio:.2f} × median area")
    estimate = max(2, round(ratio))
    if how in SPLIT_BY:
        by = "the pair model" if how == "pair_model" else "the directions of its arms"
        return status("crossing_split", 1, f"one of a crossing split by {by}")
    if how in SPLIT_FALLBACKS and estimate <= 2:
        return status("crossing_whole", 2, "a crossing of two kept whole")
    if ratio >= CLUMP_FACTOR or (how != "whole" and ratio >= LARGE_FACTOR) or how == "several_overlaps":
        kind = "several overlaps" if how == "several_overlaps" else "touching"
        return status("clump", estimate, f"{kind}: {ratio:.1f} × median area")
    return status(
        "single",
        1,
        f"large ({ratio:.1f} × median): a long chromosome, or two touching" if ratio >= LARGE_FACTOR else "",
    )


def shape_measures(mask: np.ndarray) -> dict:
    """``solidity`` (area / convex hull area) and ``axis_ratio`` (minor / major axis) of one boolean mask."""
    from skimage.measure import regionprops

    props = regionprops(np.asarray(mask, np.uint8))
    if not props:
        return {"solidity": 0.0, "axis_ratio": 0.0}
    p = props[0]
    return {
        "solidity": round(float(p.solidity), 3),
        "axis_ratio": round(float(p.axis_minor_length / max(p.axis_major_length, 1e-9)), 3),
    }


def surroundings(image: np.ndarray, instances) -> list[float]:
    """Per instance, the median grey of its surroundings (:data:`RING_PX`) on the scale 0 = the background's
    median, 1 = the chromosomes' median: high where an object lies on an interphase nucleus."""
    from scipy import ndimage

    image = np.asarray(image, np.float32)
    foreground = np.zeros(image.shape, bool)
    for inst in instances:
        t, left, h, w = inst.bbox
        foreground[t : t + h, left : left + w] |= inst.mask
    if not foreground.any() or foreground.all():
        return [0.0] * len(instances)
    background, chromosome = float(np.median(image[~foreground])), float(np.median(image[foreground]))
    span = max(chromosome - background, 1e-6)
    near, far = RING_PX
    out = []
    for inst in instances:
        t, left, h, w = inst.bbox
        t0, l0 = max(t - far, 0), max(left - far, 0)
        window = np.zeros((min(t + h + far, image.shape[0]) - t0, min(left + w + far, image.shape[1]) - l0), bool)
        window[t - t0 : t - t0 + h, left - l0 : left - l0 + w] = inst.mask
        ring = ndimage.binary_dilation(window, iterations=far) & ~ndimage.binary_dilation(window, iterations=near)
        ring &= ~foreground[t0 : t0 + window.shape[0], l0 : l0 + window.shape[1]]
        values = image[t0 : t0 + window.shape[0], l0 : l0 + window.shape[1]][ring]
        out.append(round((float(np.median(values)) - background) / span, 2) if values.size else 0.0)
    return out


def instance_statuses(instances, shape, image: np.ndarray | None = None) -> list[dict]:
    """One dict of extra record keys per :class:`~medseg.inference.instances.Instance` (in order): the status
    keys of :func:`chromosome_status`; for the large objects it judges by shape, ``solidity`` and
    ``axis_ratio``; with the ``image`` (what separation saw), ``surround`` (:func:`surroundings`)."""
    records = [i.record() for i in instances]
    median = single_median(records)
    spread = spread_of(records, median)
    around = surroundings(image, instances) if image is not None else [None] * len(instances)
    out = []
    for inst, record, surround in zip(instances, records, around, strict=True):
        extra = shape_measures(inst.mask) if median and record["area"] >= CLUMP_FACTOR * median else {}
        if surround is not None:
            extra["surround"] = surround
        out.append({**extra, **chromosome_status({**record, **extra}, median, shape, spread)})
    return out


def status_summary(records: list[dict]) -> dict:
    """Counts per status, the estimate of chromosomes in the cell and the headline (``text``, ``warning``)."""
    counts = {s: sum(r.get("status") == s for r in records) for s in STATUSES}
    clumped = sum(r.get("estimated_count", 0) for r in records if r.get("status") == "clump")
    estimate = sum(r.get("estimated_count", 0) for r in records)
    parts = [f"≈ {counts['single']} single"]
    if counts["crossing_split"]:
        parts.append(f"{counts['crossing_split']} from split crossings")
    if counts["crossing_whole"]:
        parts.append(
            f"{counts['crossing_whole']} crossing{'s' * (counts['crossing_whole'] != 1)} kept whole "
            f"({2 * counts['crossing_whole']})"
        )
    parts.append(f"{counts['clump']} clump{'s' * (counts['clump'] != 1)} (≈ {clumped})")
    parts.append(f"{counts['doubtful']} doubtful")
    warning = None
    if abs(estimate - EXPECTED) > FAR:
        warning = (
            f"about {estimate} chromosomes estimated, far from the {EXPECTED} of a normal cell: check the "
            "clumps and doubtful objects by eye before reporting a count"
        )
    return {
        "counts": counts,
        "estimate": estimate,
        "clumped": clumped,
        "doubtful": counts["doubtful"],
        "text": " · ".join(parts) + f" — about {estimate} chromosomes",
        "warning": warning,
    }


def chromosomes_csv(records: list[dict]) -> str:
    """One row per instance record (:data:`CSV_COLUMNS`; class columns empty when no karyotyping model ran)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        b = r["bbox"]
        confidence = r.get("class_confidence")
        writer.writerow(
            [
                r["id"],
                r.get("status", ""),
                r.get("estimated_count", ""),
                r["area"],
                b["top"],
                b["left"],
                b["height"],
                b["width"],
                " ".join(str(i) for i in r.get("overlaps_with") or []),
                r.get("separated_by", ""),
                r.get("status_reason", ""),
                "" if r.get("class") is None else r["class"],
                r.get("class_name") or "",
                "" if confidence is None else f"{confidence:.3f}",
            ]
        )
    return out.getvalue()
