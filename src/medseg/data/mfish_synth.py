"""Pommier's procedure on real chromosomes (``medseg data mfish-synth``), and pair-set statistics.

:func:`crops_from_isolated` reads the real isolated chromosomes written by ``medseg data mfish-pairs
--isolated-dir`` (``images/``, ``masks/`` and ``index.csv``): each chromosome is cut by its own mask, which is
its expert label map (classes 1-24), so nuclei and debris (label 0 there) never enter; chromosomes flagged as
touching another chromosome or the metaphase's edge are skipped, and only the chosen slides are read (the
transfer experiment holds out test slides, so no test slide's chromosome may be synthesized into training
data). :func:`run_mfish_synth` gives them to :func:`medseg.data.synth.run_synth` (the one pair synthesizer),
records the slides used in the provenance JSON and copies the set's licence notice beside the output.

Overlap intensity: on the real M-FISH pairs the background-subtracted DAPI signal in the overlap is on median
1.4 times the single-chromosome signal (quartiles 0.93-1.61; see :data:`MFISH_OVERLAP_WEIGHT`), not the ~2 of
a sum of the two layers; the synthesizer's ``blend`` is therefore an overlap weight w (overlap = max + w * min),
by default the w that reproduces the measured ratio.

:func:`pair_statistics` measures, for every pair of a Pommier-layout set, the areas of chromosome A (labels
1 + 3) and B (2 + 3), the overlap area, the overlap / single intensity ratio (background-subtracted means)
and the crossing angle of the two chromosomes' principal axes; :func:`compare_pair_sets` writes side-by-side
histograms (PNG) and the medians and quartiles (JSON) of two sets.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from medseg.data.mfish import licence_notice, slide_of
from medseg.data.synth import ChromosomeCrop, run_synth, synthesize_pairs
from medseg.errors import DataValidationError

__all__ = [
    "MFISH_OVERLAP_WEIGHT",
    "STATISTICS",
    "angle_acceptance",
    "calibrate_blend",
    "compare_pair_sets",
    "crops_from_isolated",
    "crossing_angle",
    "pair_statistics",
    "read_pair_set",
    "run_mfish_synth",
    "size_weights",
    "summarize",
    "target_statistics",
    "test_slides_of",
]

#: Overlap weight w (overlap = max(a, b) + w * min(a, b)) whose synthesized pairs match the median overlap /
#: single intensity ratio of the 338 real M-FISH pairs: measured 1.40 (quartiles 0.93-1.61, background-subtracted;
#: 1.30 raw); synthesized from the real isolated chromosomes, w = 0 gives 1.26, 0.25 gives 1.44, 1 (sum) 1.96.
MFISH_OVERLAP_WEIGHT = 0.2
#: The per-pair statistics of :func:`pair_statistics`, with their axis titles.
STATISTICS = {
    "area_a": "area of chromosome A (px, overlap included)",
    "area_b": "area of chromosome B (px, overlap included)",
    "overlap": "overlap area (px)",
    "intensity_ratio": "overlap / single-chromosome intensity (background-subtracted)",
    "angle": "crossing angle of the principal axes (degrees)",
}


def _split_names(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v.strip()]


def test_slides_of(pairs_h5: str | Path) -> list[str]:
    """The slides of the test set of a ``medseg data mfish-pairs`` file: the names ``<stem>[i]`` in
    ``<stem>.splits.json`` beside it, mapped to slides by the file's ``slide`` dataset
    (:func:`medseg.data.mfish_pairs.held_out_slides`, the one rule)."""
    from medseg.data.mfish_pairs import held_out_slides

    return held_out_slides(Path(pairs_h5))


def crops_from_isolated(
    iso_dir: str | Path,
    *,
    slides: str | list[str] | None = None,
    exclude_slides: str | list[str] | None = None,
    skip_touching: bool = True,
    skip_border: bool = True,
    min_area: int = 30,
    max_area: int | None = None,
) -> tuple[list[ChromosomeCrop], dict]:
    """The real isolated chromosomes of ``iso_dir`` (``index.csv``, ``images/``, ``masks/`` as written by
    ``medseg data mfish-pairs --isolated-dir``) from the slides in ``slides`` (default all) minus
    ``exclude_slides`` (slide = folder prefix, ``A02`` for ``A02__15``; lists or comma-separated text).

    Each crop is its DAPI image with its own mask (the label map's chromosome, so no nucleus or debris);
    chromosomes touching another (``skip_touching``) or the metaphase edge (``skip_border``), or with fewer
    than ``min_area`` / more than ``max_area`` pixels, are left out. Crops are named as in the index
    (``<folder>__<image>__<k>_c<class>``), in index order. Returns the crops and a record of the selection
    (slides used, counts left out)."""
    from medseg.formats.images import open_image  # the size and frame checks every reader shares

    iso_dir = Path(iso_dir)
    index = iso_dir / "index.csv"
    if not index.is_file():
        raise DataValidationError(
            iso_dir, "no index.csv: not a folder written by medseg data mfish-pairs --isolated-dir"
        )
    with index.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    available = sorted({slide_of(r["folder"]) for r in rows})
    wanted = _split_names(slides)
    excluded = set(_split_names(exclude_slides) or [])
    unknown = sorted(set(wanted or []) - set(available))
    if unknown:
        raise DataValidationError(
            iso_dir, f"slides {', '.join(unknown)} not in the index (it holds {', '.join(available)})"
        )
    allowed = set(wanted if wanted is not None else available) - excluded
    left_out = {"other_slide": 0, "touches_other": 0, "at_border": 0, "too_small": 0, "too_large": 0}
    crops: list[ChromosomeCrop] = []
    used: set[str] = set()
    for r in rows:
        slide = slide_of(r["folder"])
        if slide not in allowed:
            left_out["other_slide"] += 1
            continue
        if skip_touching and int(r["touches_other"]):
            left_out["touches_other"] += 1
            continue
        if skip_border and int(r["at_border"]):
            left_out["at_border"] += 1
            continue
        area = int(r["area"])
        if area < min_area:
            left_out["too_small"] += 1
            continue
        if max_area is not None and area > max_area:
            left_out["too_large"] += 1
            continue
        with open_image(iso_dir / "images" / f"{r['name']}.png") as im:
            image = np.asarray(im.convert("L"))
        with open_image(iso_dir / "masks" / f"{r['name']}.png", "mask") as im:
            mask = np.asarray(im.convert("L")) > 127
        crops.append(ChromosomeCrop(image=image, mask=mask, name=r["name"]))
        used.add(slide)
    if len(crops) < 2:
        raise DataValidationError(
            iso_dir, f"{len(crops)} chromosome(s) left from slides {sorted(allowed)}; at least two are needed"
        )
    record = {
        "slides_used": sorted(used),
        "slides_excluded": sorted(excluded & set(available)),
        "slides_available": available,
        "n_chromosomes": len(crops),
        "left_out": left_out,
        "skip_touching": skip_touching,
        "skip_border": skip_border,
        "min_area": min_area,
        "max_area": max_area,
        "mask": "each chromosome's own label-map component (classes 1-24): nuclei and debris are never cut",
    }
    return crops, record


# --------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------


def _axis_angle(mask: np.ndarray) -> float:
    """Orientation (radians, 0..pi) of the principal axis of ``mask`` (second moments); NaN under 2 px."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 2:
        return float("nan")
    y, x = ys - ys.mean(), xs - xs.mean()
    cyy, cxx, cxy = (y * y).mean(), (x * x).mean(), (x * y).mean()
    return float(0.5 * math.atan2(2 * cxy, cxx - cyy)) % math.pi


def crossing_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees, 0..90) between the principal axes of the bool masks ``a`` and ``b``; NaN if undefined."""
    d = abs(_axis_angle(a) - _axis_angle(b))
    return math.degrees(min(d, math.pi - d)) if np.isfinite(d) else float("nan")


def pair_statistics(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair of a Pommier-layout set (``images``, ``labels`` N x H x W; 1 A only, 2 B only, 3 overlap):
    ``area_a`` (labels 1 + 3), ``area_b`` (2 + 3), ``overlap`` (3), ``intensity_ratio`` (mean grey of the
    overlap over mean grey of the single-chromosome pixels 1 + 2, both minus the background, the median grey
    of the label-0 pixels: ~13 on real DAPI, 0 on synthesized pairs; NaN without overlap) and ``angle`` (the
    angle between the principal axes of A's and B's masks, 0..90 degrees)."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 2:
        images, labels = images[None], labels[None]
    n = len(labels)
    out = {k: np.full(n, np.nan) for k in STATISTICS}
    for i in range(n):
        lab, img = labels[i], images[i].astype(np.float64)
        a, b, ov = (lab == 1) | (lab == 3), (lab == 2) | (lab == 3), lab == 3
        single = (lab == 1) | (lab == 2)
        bg = float(np.median(img[lab == 0])) if (lab == 0).any() else 0.0
        out["area_a"][i], out["area_b"][i], out["overlap"][i] = a.sum(), b.sum(), ov.sum()
        if ov.any() and single.any():
            s = img[single].mean() - bg
            if s > 0:
                out["intensity_ratio"][i] = (img[ov].mean() - bg) / s
        out["angle"][i] = crossing_angle(a, b)
    return out


def summarize(stats: dict[str, np.ndarray]) -> dict[str, dict]:
    """Count, mean, median and quartiles of each statistic (NaNs left out)."""
    out = {}
    for k, v in stats.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        if not len(v):
            out[k] = {"n": 0}
            continue
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        out[k] = {
            "n": len(v),
            "mean": round(float(v.mean()), 4),
            "q1": round(float(q1), 4),
            "median": round(float(med), 4),
            "q3": round(float(q3), 4),
        }
    return out


def read_pair_set(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a Pommier-layout HDF5 file."""
    from medseg.data.pommier import read_pommier_h5

    images, labels, _ = read_pommier_h5(path)
    return images, labels


def compare_pair_sets(
    sets: dict[str, tuple[np.ndarray, np.ndarray] | str | Path],
    png: str | Path,
    json_path: str | Path,
    *,
    title: str = "",
) -> dict:
    """Side-by-side histograms (one panel per statistic of :func:`pair_statistics`, one colour per set, each
    normalized to its own count) written to ``png``, and ``{set: summary}`` (:func:`summarize`) written to
    ``json_path``; returns the summaries. ``sets``: name -> (images, labels) or a Pommier-layout file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from medseg.formats.atomic import atomic_file

    stats = {}
    for name, data in sets.items():
        images, labels = read_pair_set(data) if isinstance(data, (str, Path)) else data
        stats[name] = pair_statistics(images, labels)
    summaries = {name: summarize(s) for name, s in stats.items()}
    fig = Figure(figsize=(4.0 * len(STATISTICS), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for k, (key, label) in enumerate(STATISTICS.items()):
        ax = fig.add_subplot(1, len(STATISTICS), k + 1)
        values = {n: s[key][np.isfinite(s[key])] for n, s in stats.items()}
        allv = np.concatenate([v for v in values.values() if len(v)] or [np.zeros(1)])
        lo, hi = np.percentile(allv, [0.5, 99.5]) if key != "angle" else (0.0, 90.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
        for c, (n, v) in enumerate(values.items()):
            if len(v):
                ax.hist(
                    np.clip(v, bins[0], bins[-1]),
                    bins=bins,
                    density=True,
                    histtype="step",
                    linewidth=1.6,
                    color=colours[c % len(colours)],
                    label=f"{n} (n={len(v)}, median {np.median(v):.3g})",
                )
        ax.set_xlabel(label, fontsize=8)
        ax.set_yticks([])
        ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_file(Path(png), ".png") as tmp:
        fig.savefig(tmp, format="png")
    with atomic_file(Path(json_path), ".json") as tmp:
        tmp.write_text(json.dumps(summaries, indent=1) + "\n")
    return summaries


def target_statistics(
    pairs_h5: str | Path, *, drop_test: bool = False, exclude_slides: list[str] | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """:func:`pair_statistics` of the real pairs of ``pairs_h5`` to match; ``drop_test``: without the pairs of its
    split's test set (``<stem>.splits.json``), and without the pairs of ``exclude_slides`` (by the file's ``slide``
    dataset, where it has one), so that held-out pairs do not shape the training data. Returns the statistics
    and a record (file, pairs used)."""
    import h5py

    pairs_h5 = Path(pairs_h5)
    stats = pair_statistics(*read_pair_set(pairs_h5))
    n = len(stats["area_a"])
    keep = np.ones(n, bool)
    if drop_test:
        split_path = pairs_h5.with_name(pairs_h5.stem + ".splits.json")
        if not split_path.is_file():
            raise DataValidationError(
                split_path, "no split file beside the pairs file (medseg data mfish-pairs writes it)"
            )
        prefix = pairs_h5.stem + "["
        for name in json.loads(split_path.read_text())["test"]:
            if name.startswith(prefix):
                keep[int(name[len(prefix) : -1])] = False
    n_test = int(n - keep.sum())
    n_slides = 0
    if exclude_slides:
        with h5py.File(pairs_h5, "r") as f:
            slides = [s.decode() if isinstance(s, bytes) else str(s) for s in f["slide"][:]] if "slide" in f else []
        if slides:
            held = np.isin(slides, list(exclude_slides)) & keep
            keep &= ~held
            n_slides = int(held.sum())
    record = {
        "file": str(pairs_h5.resolve()),
        "n_pairs": int(keep.sum()),
        "test_pairs_dropped": n_test,
        "excluded_slide_pairs_dropped": n_slides,
    }
    return {k: v[keep] for k, v in stats.items()}, record


def size_weights(crop_areas: np.ndarray, real_areas: np.ndarray, *, n_bins: int = 12) -> np.ndarray:
    """Importance weights, one per chromosome, so that chromosomes drawn in proportion to them have the area
    distribution of ``real_areas`` (the areas of the real pairs' chromosomes, A and B pooled): real / isolated
    histogram on ``n_bins`` (at most one per 5 real areas) equal-count bins of the real areas (plus one bin
    below and one above them, where the real count is taken as 0.5, so that no chromosome is never drawn)."""
    crop_areas = np.asarray(crop_areas, float)
    real = np.asarray(real_areas, float)
    real = real[np.isfinite(real)]
    if not len(real):
        raise ValueError("no real areas to match sizes to")
    n_bins = max(1, min(n_bins, len(real) // 5))  # few real pairs: fewer, wider bins
    inner = np.unique(np.percentile(real, np.linspace(0, 100, n_bins + 1)))
    edges = np.concatenate([[-np.inf], inner[:-1], [inner[-1] + 1e-9], [np.inf]])
    real_count = np.histogram(real, edges)[0].astype(float)
    real_count[real_count == 0] = 0.5
    bin_of = np.clip(np.searchsorted(edges, crop_areas, side="right") - 1, 0, len(edges) - 2)
    crop_count = np.bincount(bin_of, minlength=len(edges) - 1).astype(float)
    ratio = (real_count / real_count.sum()) / np.maximum(crop_count / len(crop_areas), 1e-12)
    return ratio[bin_of]


def angle_acceptance(real_angles: np.ndarray, *, n_bins: int = 9):
    """``accept(labels)`` for :func:`medseg.data.synth.synthesize_pairs`: the probability of keeping a placement
    whose crossing angle (:func:`crossing_angle` of labels 1 + 3 and 2 + 3) is theta, real histogram(theta) /
    its maximum (``n_bins`` bins over 0..90 degrees, 0.5 added to each count): rejection sampling from the
    synthesizer's (uniform) angles to the real ones."""
    real = np.asarray(real_angles, float)
    real = real[np.isfinite(real)]
    edges = np.linspace(0.0, 90.0, n_bins + 1)
    hist = np.histogram(np.clip(real, 0.0, 90.0), edges)[0] + 0.5
    prob = hist / hist.max()

    def accept(labels: np.ndarray) -> float:
        theta = crossing_angle((labels == 1) | (labels == 3), (labels == 2) | (labels == 3))
        if not np.isfinite(theta):
            return 1.0
        return float(prob[min(int(theta / 90.0 * n_bins), n_bins - 1)])

    accept.probabilities = prob  # type: ignore[attr-defined]
    return accept


def calibrate_blend(
    crops: list[ChromosomeCrop],
    target_ratio: float,
    *,
    n_pairs: int = 300,
    seed: int = 0,
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
) -> tuple[float, dict]:
    """The overlap weight w whose synthesized pairs have median overlap/single intensity ratio
    ``target_ratio``: ``n_pairs`` pairs synthesized at each of ``weights`` (same seed, so the same placements),
    then linear interpolation of the (monotonic) median ratio. Returns w and ``{w: median ratio}``."""
    medians = {}
    for w in weights:
        images, labels, _ = synthesize_pairs(crops, n_pairs=n_pairs, seed=seed, blend=float(w))
        medians[float(w)] = float(np.nanmedian(pair_statistics(images, labels)["intensity_ratio"]))
    ws, rs = np.array(list(medians)), np.array(list(medians.values()))
    order = np.argsort(rs)
    w = float(np.clip(np.interp(target_ratio, rs[order], ws[order]), 0.0, 1.0))
    return round(w, 3), medians


def _matching(
    crops: list,
    compare: str | Path | None,
    exclude_test_of: str | Path | None,
    excluded: list[str],
    *,
    rule: str | None,
    match_sizes: bool | None,
    match_angles: bool | None,
) -> tuple[dict, np.ndarray | None, object | None]:
    """How :func:`run_mfish_synth` matches the real pairs (see there): the record of it, the crops' draw weights
    (or None) and the placements' acceptance (or None)."""
    real_file = compare if compare is not None else exclude_test_of
    if match_sizes is None:
        match_sizes = real_file is not None
    if match_angles is None:
        match_angles = compare is not None
    crop_weights = accept = None
    matching: dict = {"rule": rule, "match_sizes": bool(match_sizes), "match_angles": bool(match_angles)}
    if match_sizes or match_angles:
        if real_file is None:
            raise ValueError("matching sizes or angles needs the real pairs (compare or exclude_test_of)")
        same = exclude_test_of is not None and Path(real_file).resolve() == Path(exclude_test_of).resolve()
        target, matching["target"] = target_statistics(real_file, drop_test=same, exclude_slides=excluded)
        if match_sizes:
            real_areas = np.concatenate([target["area_a"], target["area_b"]])
            crop_weights = size_weights(np.array([c.area for c in crops]), real_areas)
            matching["size_weights"] = {
                "min": round(float(crop_weights.min()), 4),
                "median": round(float(np.median(crop_weights)), 4),
                "max": round(float(crop_weights.max()), 4),
            }
        if match_angles:
            accept = angle_acceptance(target["angle"])
            matching["angle_acceptance_by_10_degrees"] = [round(float(p), 4) for p in accept.probabilities]
    return matching, crop_weights, accept


def run_mfish_synth(
    iso_dir: str | Path,
    output: str | Path,
    *,
    slides: str | list[str] | None = None,
    exclude_slides: str | list[str] | None = None,
    exclude_test_of: str | Path | None = None,
    n_pairs: int | None = None,
    pommier: bool = False,
    seed: int = 0,
    blend: str | float = MFISH_OVERLAP_WEIGHT,
    compare: str | Path | None = None,
    max_area: int | None = None,
    progress: bool = True,
    rule: str | None = "larger",
    match_sizes: bool | None = None,
    match_angles: bool | None = None,
) -> dict:
    """Body of ``medseg data mfish-synth``: pairs synthesized (:func:`medseg.data.synth.run_synth`) from the
    real isolated chromosomes of ``iso_dir`` (:func:`crops_from_isolated`) of the chosen slides only;
    ``exclude_test_of`` (a ``mfish-pairs`` file) also excludes the slides of its split's test set.
    ``blend``: ``sum``, ``max``, an overlap weight 0..1, or ``match`` (calibrated on 300 pairs to the median
    intensity ratio of the ``compare`` file). Writes ``output`` (HDF5), ``<stem>.json`` (provenance with the
    slides used), ``<stem>.png`` (preview), ``<stem>.README.TXT`` (the M-FISH licence notice) and, with
    ``compare`` (real pairs, Pommier layout), ``<stem>.compare.png`` / ``<stem>.compare.json``.

    Matching the real pairs (:func:`target_statistics` of ``compare``, else of ``exclude_test_of``; without the
    test pairs of ``exclude_test_of``'s split when it is that file): ``rule`` orders each pair as ``medseg data
    mfish-pairs`` does (default ``larger``: label 1 is the larger chromosome; ``None`` keeps the crop order);
    ``match_sizes`` draws chromosomes with :func:`size_weights` (default: on when there are real pairs);
    ``match_angles`` keeps placements with :func:`angle_acceptance` (default: on when ``compare`` is given)."""
    started = time.perf_counter()
    output = Path(output)
    excluded = list(_split_names(exclude_slides) or [])
    if exclude_test_of is not None:
        excluded += test_slides_of(exclude_test_of)
    crops, selection = crops_from_isolated(iso_dir, slides=slides, exclude_slides=excluded or None, max_area=max_area)
    if exclude_test_of is not None:
        selection["test_slides_of"] = str(Path(exclude_test_of).resolve())
    calibration = None
    if blend == "match":
        if compare is None:
            raise ValueError("blend='match' needs the real pairs to match (compare)")
        real = pair_statistics(*read_pair_set(compare))
        target = float(np.nanmedian(real["intensity_ratio"]))
        blend, medians = calibrate_blend(crops, target, seed=seed)
        calibration = {"target_median_ratio": round(target, 4), "median_ratio_by_weight": medians, "weight": blend}
    matching, crop_weights, accept = _matching(
        crops, compare, exclude_test_of, excluded, rule=rule, match_sizes=match_sizes, match_angles=match_angles
    )
    notice, notice_text = licence_notice(iso_dir)
    licence_path = output.with_name(output.stem + ".README.TXT")
    source = {"kind": "mfish-isolated", "path": str(Path(iso_dir).resolve()), **selection, "n_crops": len(crops)}
    extra = {
        "real_chromosomes": True,
        "slides_used": selection["slides_used"],
        "licence": {"file": licence_path.name if notice else None, "notice": notice_text},
    }
    if calibration:
        extra["blend_calibration"] = calibration
    extra["matching"] = matching
    summary = run_synth(
        output,
        crops=crops,
        source=source,
        n_pairs=n_pairs,
        pommier=pommier,
        seed=seed,
        blend=blend,
        progress=progress,
        extra=extra,
        rule=rule,
        crop_weights=crop_weights,
        accept=accept,
    )
    if notice is not None:
        shutil.copyfile(notice, licence_path)
    if compare is not None:
        cpng, cjson = output.with_name(output.stem + ".compare.png"), output.with_name(output.stem + ".compare.json")
        summary["comparison"] = compare_pair_sets(
            {"real pairs": compare, "synthesized": output},
            cpng,
            cjson,
            title=f"real M-FISH pairs ({Path(compare).name}) vs pairs synthesized from real chromosomes "
            f"({output.name}, overlap weight {blend})",
        )
        summary.update(compare_png=str(cpng), compare_json=str(cjson))
    summary["seconds_total"] = round(time.perf_counter() - started, 2)
    return summary
