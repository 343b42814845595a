"""A SYNTHESIZED abdomen-like MRI set in exactly the UW-Madison GI Tract layout (not real anatomy).

So that the embedded default and CI can run every reader path of :mod:`medseg.data.uwgi` without the real
data, :func:`write_synth_gi` writes::

    <out>/train.csv                      id,class,segmentation (three rows per slice, CLASSES order)
    <out>/train/case{C}/case{C}_day{D}/scans/slice_{SSSS}_{W}_{H}_{pw}_{ph}.png   16-bit grey
    <out>/manifest.json                  says SYNTHESIZED, the seed and the counts

Each case has 1–5 days (scans) of 144 or 80 slices, in one of the four published sizes (266×266 and
360×310 at 1.50 mm, 276×276 and 234×234 at 1.63 mm). The body is a smooth outline; the stomach is a lumpy
3D blob, the small bowel a coiled tube starting at the caecum, the large bowel a tube around the periphery
(so part of the large bowel lies inside the small bowel mask, as in the published masks). Organs lie in
the middle range of slices only (many empty slices) and move a little from day to day. Intensities are
smooth tissue values with noise. The masks are written with :func:`medseg.data.uwgi.rle_encode`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.data.uwgi import CLASSES, rle_encode
from medseg.data.uwgi_convert import scan_filename, write_train_csv
from medseg.errors import DataValidationError
from medseg.formats.atomic import atomic_file
from medseg.progress import Progress

__all__ = ["PUBLISHED_SIZES", "PUBLISHED_SLICES", "SLICE_MM", "write_synth_gi"]

#: (width, height, pixel spacing in mm) of the published scans.
PUBLISHED_SIZES: tuple[tuple[int, int, float], ...] = (
    (266, 266, 1.50),
    (360, 310, 1.50),
    (276, 276, 1.63),
    (234, 234, 1.63),
)
#: Slices per scan in the published set.
PUBLISHED_SLICES: tuple[int, ...] = (144, 80)
#: Distance between slices (mm).
SLICE_MM = 3.0

# Organ geometry in a normalized frame: x, y in units of the body's semi-axes (x to the image's right,
# y down), u = position along the slices in [0, 1]. Radii of the tubes in mm.
_SMALL_BOWEL_MM = 11.0
_LARGE_BOWEL_MM = 17.0
_CAECUM = (-0.55, 0.10, 0.33)
_LARGE_BOWEL_PATH = (  # caecum → ascending → transverse (anterior) → descending → sigmoid
    _CAECUM,
    (-0.60, 0.05, 0.50),
    (-0.58, -0.10, 0.68),
    (-0.30, -0.40, 0.72),
    (0.00, -0.45, 0.73),
    (0.30, -0.40, 0.72),
    (0.60, -0.15, 0.70),
    (0.64, 0.05, 0.52),
    (0.60, 0.15, 0.34),
    (0.35, 0.35, 0.27),
    (0.05, 0.30, 0.25),
)


def _polyline(points, n: int) -> np.ndarray:
    """``n`` points evenly spaced (by parameter) along the piecewise-linear path through ``points``."""
    p = np.asarray(points, float)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, p[:, k]) for k in range(3)], axis=1)


class _Case:
    """The random anatomy of one case (shared by its days) and the motion of each day."""

    def __init__(self, rng: np.random.Generator, n_days: int):
        self.lb_wiggle = rng.uniform(0.02, 0.05, 2), rng.uniform(0, 2 * np.pi, 2)
        self.sb_center = np.array([rng.uniform(-0.10, 0.10), rng.uniform(0.0, 0.15)])
        self.sb_turns = rng.uniform(4.0, 7.0)
        self.sb_phase = rng.uniform(0, 2 * np.pi)
        self.sb_lobes = rng.integers(2, 5)
        self.st_center = np.array([rng.uniform(0.25, 0.40), rng.uniform(-0.35, -0.15), rng.uniform(0.68, 0.76)])
        self.st_radii = np.array([rng.uniform(0.18, 0.26), rng.uniform(0.14, 0.22), rng.uniform(0.07, 0.11)])
        self.st_lumps = rng.uniform(0.05, 0.15, 2), rng.uniform(0, 2 * np.pi, 2)
        self.body_lumps = rng.uniform(0.01, 0.04, 3), rng.uniform(0, 2 * np.pi, 3)
        # Day motion: an (x, y, u) shift per organ and a coil phase change per day.
        self.days = [
            {
                "shift": {c: rng.normal(0, (0.035, 0.035, 0.012)) for c in CLASSES},
                "phase": rng.normal(0, 0.25),
                "gain": rng.uniform(0.85, 1.15),
            }
            for _ in range(n_days)
        ]

    def large_bowel(self, day: int) -> np.ndarray:
        p = _polyline(_LARGE_BOWEL_PATH, 700)
        t = np.linspace(0, 1, len(p))
        (ax, ay), (px, py) = self.lb_wiggle
        p[:, 0] += ax * np.sin(9 * np.pi * t + px)
        p[:, 1] += ay * np.sin(7 * np.pi * t + py)
        p[0] = _CAECUM  # the small bowel joins here: keep it exact
        return p + self.days[day]["shift"]["large_bowel"]

    def small_bowel(self, day: int) -> np.ndarray:
        t = np.linspace(0, 1, 900)
        ang = 2 * np.pi * self.sb_turns * t + self.sb_phase + self.days[day]["phase"]
        r = 0.12 + 0.28 * np.abs(np.sin(self.sb_lobes * np.pi * t + 0.3))
        coil = np.stack(
            [
                self.sb_center[0] + r * np.cos(ang),
                self.sb_center[1] + 0.75 * r * np.sin(ang),
                0.36 + 0.24 * t + 0.03 * np.sin(11 * np.pi * t),
            ],
            axis=1,
        )
        # The terminal ileum: from the caecum (same place as the large bowel's start) into the coil.
        lead = _polyline([_CAECUM, coil[0]], 80)
        path = np.concatenate([lead, coil]) + self.days[day]["shift"]["small_bowel"]
        path[:80] += self.days[day]["shift"]["large_bowel"] - self.days[day]["shift"]["small_bowel"]
        return path


def _tube_mask(path: np.ndarray, u: float, r_u: float, r_px: float, geom, shape) -> np.ndarray:
    """The cut of the tube of radius ``r_px`` (in-plane) / ``r_u`` (across slices) at slice position u."""
    h, w = shape
    cx, cy, ax, ay = geom
    mask = np.zeros(shape, bool)
    near = np.abs(path[:, 2] - u) < r_u
    for x, y, z in path[near]:
        rr = r_px * np.sqrt(1.0 - ((z - u) / r_u) ** 2)
        if rr < 0.7:
            continue
        px, py = cx + x * ax, cy + y * ay
        x0, x1 = max(int(px - rr), 0), min(int(px + rr) + 2, w)
        y0, y1 = max(int(py - rr), 0), min(int(py + rr) + 2, h)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (xx - px) ** 2 + (yy - py) ** 2 <= rr * rr
    return mask


def _check_args(n_cases, slices) -> tuple[int, ...]:
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or not 1 <= n_cases <= 999:
        raise DataValidationError(None, f"n_cases must be an integer from 1 to 999, got {n_cases!r}")
    choices = (slices,) if isinstance(slices, (int, np.integer)) else tuple(slices)
    if not choices or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 4 <= s <= 9999 for s in choices
    ):
        raise DataValidationError(None, f"slices must be integers from 4 to 9999, got {slices!r}")
    return tuple(int(s) for s in choices)


def write_synth_gi(out, *, n_cases: int = 4, seed: int = 0, slices=PUBLISHED_SLICES, progress: bool = True) -> dict:
    """Write a SYNTHESIZED UW-Madison-layout set of ``n_cases`` cases to the folder ``out``; the summary.

    ``slices``: the slice counts a scan may have (one is drawn per case), 144 or 80 as published; an int
    or a smaller tuple for quick tests. The same ``seed`` (and arguments) gives the same files. ``out``
    must not already hold a ``train.csv``, ``train/`` or ``manifest.json``.
    """
    start = time.perf_counter()
    choices = _check_args(n_cases, slices)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataValidationError(out, "exists and is not a folder")
    clash = [n for n in ("train.csv", "train", "manifest.json") if (out / n).exists()]
    if clash:
        raise DataValidationError(out, f"already holds {', '.join(clash)}: choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    case_ids = np.sort(rng.choice(np.arange(1, 160), size=n_cases, replace=False))
    size_order = rng.permutation(len(PUBLISHED_SIZES))
    plan = []
    for i, case in enumerate(case_ids.tolist()):
        n_days = int(rng.integers(2 if i == 0 else 1, 6))  # the first case has 2+ days: day-to-day motion
        days = np.sort(rng.choice(np.arange(0, 40), size=n_days, replace=False)).tolist()
        w, h, sp = PUBLISHED_SIZES[size_order[i % len(PUBLISHED_SIZES)]]
        n_slices = choices[int(rng.integers(len(choices)))]
        plan.append((case, days, w, h, sp, n_slices, int(rng.integers(2**32))))
    total = sum(len(p[1]) * p[5] for p in plan)

    rles: dict[str, dict[str, str]] = {}
    counts = {"with_masks": 0, "without_masks": 0, "with_overlap": 0}
    cases_info = []
    bar = Progress(total=total, desc="synthesizing GI slices", unit="slice", disable=not progress, leave=False)
    try:
        for case, days, w, h, sp, n_slices, case_seed in plan:
            crng = np.random.default_rng(case_seed)
            anatomy = _Case(crng, len(days))
            cases_info.append({"case": case, "days": days, "width": w, "height": h, "pixel_mm": sp, "slices": n_slices})
            for d_i, day in enumerate(days):
                folder = out / "train" / f"case{case}" / f"case{case}_day{day}" / "scans"
                folder.mkdir(parents=True, exist_ok=True)
                _write_scan(folder, case, day, d_i, anatomy, w, h, sp, n_slices, crng, rles, counts, bar)
    finally:
        bar.close()

    write_train_csv(out / "train.csv", rles)  # sorted by case, day, slice: the order they were made in
    summary = {
        "synthesized": True,
        "note": "SYNTHESIZED data in the UW-Madison GI Tract layout: smooth blobs and tubes, not real anatomy, "
        "not real MRI; for tests and demos only.",
        "generator": "medseg.data.synth_gi.write_synth_gi",
        "layout": "UW-Madison GI Tract Image Segmentation (train.csv + train/case*/case*_day*/scans/*.png)",
        "seed": seed,
        "n_cases": len(plan),
        "n_scans": sum(len(p[1]) for p in plan),
        "n_images": total,
        "n_images_with_masks": counts["with_masks"],
        "n_images_without_masks": counts["without_masks"],
        "n_images_with_overlap": counts["with_overlap"],
        "classes": list(CLASSES),
        "cases": cases_info,
    }
    with atomic_file(out / "manifest.json", ".json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return {
        **summary,
        "output": str(out),
        "manifest": str(out / "manifest.json"),
        "seconds": time.perf_counter() - start,
    }


def _write_scan(folder, case, day, d_i, anatomy: _Case, w, h, sp, n_slices, rng, rles, counts, bar) -> None:
    shape = (h, w)
    # The organs live in the normalized slice range; a scan shorter than the published 80 slices (a test
    # setting) keeps the published proportions instead of making the tubes fill the whole scan.
    extent_mm = SLICE_MM * max(n_slices - 1, 79)
    min_r_u = 0.6 / (n_slices - 1)  # a tube shows on at least one slice even for tiny test scans
    r_u = {
        "large_bowel": max(_LARGE_BOWEL_MM / extent_mm, min_r_u),
        "small_bowel": max(_SMALL_BOWEL_MM / extent_mm, min_r_u),
    }
    r_px = {"large_bowel": _LARGE_BOWEL_MM / sp, "small_bowel": _SMALL_BOWEL_MM / sp}
    paths = {"large_bowel": anatomy.large_bowel(d_i), "small_bowel": anatomy.small_bowel(d_i)}
    dayinfo = anatomy.days[d_i]
    st_center = anatomy.st_center + dayinfo["shift"]["stomach"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    (bl_a, bl_p) = anatomy.body_lumps
    (sl_a, sl_p) = anatomy.st_lumps
    bias = 1.0 + 0.15 * np.sin(xx / w * np.pi + rng.uniform(0, 6)) * np.cos(yy / h * np.pi + rng.uniform(0, 6))
    for s in range(1, n_slices + 1):
        u = (s - 1) / (n_slices - 1)
        # Body: an ellipse with smooth lumps, a little larger mid-scan.
        grow = 0.92 + 0.08 * np.sin(np.pi * u)
        ax, ay = 0.42 * w * grow, 0.36 * h * grow
        cx, cy = w / 2, h / 2 + 0.02 * h
        ang = np.arctan2((yy - cy) / ay, (xx - cx) / ax)
        rad = np.hypot((xx - cx) / ax, (yy - cy) / ay)
        edge = 1 + sum(
            a * np.sin(k * ang + p) for k, (a, p) in zip((2, 3, 5), zip(bl_a, bl_p, strict=True), strict=True)
        )
        body = rad <= edge
        geom = (cx, cy, ax, ay)
        masks = {c: _tube_mask(paths[c], u, r_u[c], r_px[c], geom, shape) for c in ("large_bowel", "small_bowel")}
        du = (u - st_center[2]) / anatomy.st_radii[2]
        stomach = np.zeros(shape, bool)
        if abs(du) < 1:
            scale = np.sqrt(1 - du * du)
            sx = cx + st_center[0] * ax
            sy = cy + st_center[1] * ay
            rx, ry = anatomy.st_radii[0] * ax * scale, anatomy.st_radii[1] * ay * scale
            if rx > 1 and ry > 1:
                a = np.arctan2(yy - sy, xx - sx)
                lump = 1 + sl_a[0] * np.sin(2 * a + sl_p[0]) + sl_a[1] * np.cos(3 * a + sl_p[1])
                stomach = np.hypot((xx - sx) / rx, (yy - sy) / ry) <= lump
        masks["stomach"] = stomach
        for c in CLASSES:
            masks[c] &= body
        # Intensities: tissue with a smooth bias, organs of their own brightness, noise everywhere.
        img = np.where(body, 420.0 * bias, 15.0)
        img = img + np.where(body, 60.0 * np.sin(xx / 17.0 + u * 5) * np.cos(yy / 23.0), 0.0)
        img[masks["large_bowel"]] = 300.0
        img[masks["small_bowel"]] = 780.0 * bias[masks["small_bowel"]]
        img[masks["stomach"]] = 620.0
        img = img * dayinfo["gain"] + rng.normal(0, 25.0, shape)
        arr = np.clip(img, 0, 65535).astype(np.uint16)
        name = scan_filename(s, w, h, sp, sp)
        with atomic_file(folder / name, ".png") as tmp:
            Image.fromarray(arr).save(tmp, format="PNG", compress_level=1)
        id_ = f"case{case}_day{day}_slice_{s:04d}"
        present = [c for c in CLASSES if masks[c].any()]
        rles[id_] = {c: rle_encode(masks[c]) for c in CLASSES}
        counts["with_masks" if present else "without_masks"] += 1
        if any((masks[a] & masks[b]).any() for i, a in enumerate(CLASSES) for b in CLASSES[i + 1 :]):
            counts["with_overlap"] += 1
        bar.update(1)
