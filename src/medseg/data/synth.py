"""Synthesizer of overlapping-chromosome pairs in the Pommier layout (``medseg data synth``).

The published set (Pommier, DeepFISH: ``LowRes_13434_overlapping_pairs.h5``) was made from single
chromosomes segmented out of one real metaphase (DAPI image combined with the Cy3 telomere image, so
telomeres are bright spots at the chromosome ends). Twelve chromosomes (one of each group of four of the
46) gave the C(12, 2) = 66 unordered pairs; for each pair the two chromosomes were rotated and translated
relative to each other so that they cross, the two grey images were *added* and the two masks labelled
1 (alpha) and 2 (beta), 3 where they overlap; 14,850 images were generated, the 1,416 without overlap were
deleted, leaving 13,434 images of 94 x 93 pixels on a black background.

This module does the same from three kinds of source:

* :func:`chromosome_library` -- procedural chromosomes drawn by :func:`render_chromosome` (curved,
  banded, centromere constriction, rounded ends, telomere spots, blur and noise), at the scale of the
  published set;
* :func:`crops_from_folder` -- a user's single-chromosome crops (PNG/TIFF/...);
* :func:`crops_from_metaphase` -- the chromosomes segmented out of a whole metaphase image;

and :func:`synthesize_pairs` composes the pairs, :func:`run_synth` writes the HDF5 file (read back by
:func:`medseg.data.pommier.read_pommier_h5`), a provenance JSON and a preview PNG.

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
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from medseg.data.pommier import POMMIER_CLASSES, POMMIER_SHAPE, give_default_mode, write_pommier_h5
from medseg.errors import DataValidationError
from medseg.palette import colourize, legend_handles

__all__ = [
    "ChromosomeCrop",
    "PairPlacement",
    "POMMIER_N_PAIRS",
    "IMAGE_SUFFIXES",
    "render_chromosome",
    "chromosome_library",
    "crops_from_folder",
    "crops_from_metaphase",
    "rotate_crop",
    "place_pair",
    "synthesize_pairs",
    "save_preview",
    "sidecar_paths",
    "run_synth",
    "otsu_threshold",
]


# --- which chromosome of a pair is label 1 (medseg data mfish-pairs and mfish-synth: one rule for both) -------

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

#: Size of the published set: 14,850 generated - 1,416 without overlap.
POMMIER_N_PAIRS = 13_434
#: File name endings :func:`crops_from_folder` reads (case-insensitive).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

Blend = Literal["sum", "max"] | float
#: The overlap weight ``w`` each named blend stands for: overlap = max(a, b) + w * min(a, b).
BLEND_WEIGHTS = {"sum": 1.0, "max": 0.0}


@dataclass
class ChromosomeCrop:
    """One chromosome: a tight uint8 crop (small margin, dark background) and its own pixels."""

    image: np.ndarray  # uint8 H x W, bright chromosome on a dark background
    mask: np.ndarray  # bool H x W, the chromosome's own pixels
    name: str = ""

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.image.ndim != 2 or self.image.shape != self.mask.shape:
            raise ValueError(
                f"crop {self.name!r}: image {self.image.shape} and mask {self.mask.shape} must be equal 2-D"
            )
        if self.image.dtype != np.uint8:
            raise ValueError(f"crop {self.name!r}: image must be uint8, got {self.image.dtype}")
        if not self.mask.any():
            raise ValueError(f"crop {self.name!r}: empty mask")

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def signal(self) -> np.ndarray:
        """Background-subtracted float32 grey values (background = median of the non-chromosome pixels)."""
        outside = self.image[~self.mask]
        bg = float(np.median(outside)) if outside.size else 0.0
        return np.clip(self.image.astype(np.float32) - bg, 0.0, None)


# --------------------------------------------------------------------------------------------------------
# Procedural chromosomes
# --------------------------------------------------------------------------------------------------------


def render_chromosome(
    rng: np.random.Generator,
    *,
    length: float,
    width: float,
    n_bands: int,
    bend: float,
    centromere: float,
    telomeres: bool = True,
    intensity: float | None = None,
    background: float = 10.0,
    noise: float = 2.5,
    blur: float = 0.6,
    margin: int = 2,
    name: str = "",
) -> ChromosomeCrop:
    """Draw one fluorescent (DAPI + Cy3) metaphase chromosome.

    ``length``: tip-to-tip length in pixels, along the centre line, rounded ends included.
    ``width``: width of the arms in pixels. ``n_bands``: number of alternating light/dark bands of random
    widths along the length (DAPI bands). ``bend``: total change of direction of the centre line, in
    radians (0 straight, about 1.5 a strong C; the sign bends left or right); a small random S-shaped
    component is added. ``centromere``: relative position (0..1) of the centromere constriction, the
    centromere index (0.5 metacentric, ~0.15-0.25 acrocentric). ``telomeres``: add the Cy3 telomere spots,
    one per chromatid at each end (four in all; each is missing with probability 0.1, as weak telomere
    signals are in real images). ``intensity``: grey level of the light bands above ``background``
    (default random 85-135). ``blur`` (Gaussian sigma, px) and ``noise`` (Gaussian sigma, grey levels)
    model the optics and the camera.

    The mask is what a half-maximum segmentation of the image would take: the pixels where the blurred
    outline (rounded ends, constricted centromere) is at least half its full value, plus any pixel that
    is brighter than half the chromosome's median (telomere spots reaching past the tip); the dimmer
    fringe and the background are left out of it.
    """
    if length <= 0 or width <= 0:
        raise ValueError(f"length and width must be positive, got {length}, {width}")
    if not 0.0 <= centromere <= 1.0:
        raise ValueError(f"centromere must be a relative position in 0..1, got {centromere}")
    n_bands = max(1, int(n_bands))
    radius = width / 2.0
    core = max(length - width, 1.0)  # centre-line length; the two rounded caps add ``width``
    n = max(32, int(math.ceil(core * 4)))
    t = np.linspace(0.0, 1.0, n)

    # centre line: heading = linear turn (C shape) + small S component
    s_amp = rng.normal(0.0, 0.12 + 0.15 * abs(bend))
    phase = rng.uniform(0, 2 * np.pi)
    heading = bend * (t - 0.5) + s_amp * np.sin(2 * np.pi * t + phase) + rng.uniform(0, 2 * np.pi)
    step = core / (n - 1)
    xy = np.zeros((n, 2))
    xy[1:, 0] = np.cumsum(np.sin(heading[1:]) * step)  # y
    xy[1:, 1] = np.cumsum(np.cos(heading[1:]) * step)  # x

    # half-width profile: centromere constriction, slight irregularity
    depth = rng.uniform(0.25, 0.4)
    sigma_c = max(0.6 * radius / core, 0.03)
    wobble = ndimage.gaussian_filter1d(rng.normal(0.0, 1.0, n), sigma=max(n / 12, 1.0), mode="nearest")
    wobble = wobble / (np.abs(wobble).max() + 1e-9) * 0.05
    half = radius * (1.0 - depth * np.exp(-0.5 * ((t - centromere) / sigma_c) ** 2)) * (1.0 + wobble)

    # banding profile along the length: alternating light/dark bands of random widths
    edges = np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(n_bands, 2.0)))])
    band_of = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bands - 1)
    start_light = rng.random() < 0.5
    levels = np.empty(n_bands)
    for k in range(n_bands):
        light = (k % 2 == 0) == start_light
        levels[k] = rng.uniform(0.9, 1.0) if light else rng.uniform(0.5, 0.68)
    band = ndimage.gaussian_filter1d(levels[band_of], sigma=max(0.5 / step, 1.0), mode="nearest")

    # raster: pixel grid around the centre line
    pad = radius + margin + 3
    lo = xy.min(axis=0) - pad
    xy = xy - np.floor(lo)
    hh, ww = (np.ceil(xy.max(axis=0) + pad)).astype(int) + 1
    yy, xx = np.mgrid[0:hh, 0:ww]
    pix = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float64)
    dist, idx = cKDTree(xy).query(pix)  # nearest centre-line point: the caps come out round
    dist = dist.reshape(hh, ww)
    idx = idx.reshape(hh, ww)
    r = half[idx]
    cover = np.clip(r - dist + 0.5, 0.0, 1.0)  # anti-aliased edge
    across = 1.0 - 0.22 * np.clip(dist / r, 0, 1) ** 2  # brighter along the axis
    groove = 1.0 - rng.uniform(0.0, 0.12) * np.exp(-((dist / (0.18 * width)) ** 2))  # sister chromatids
    if intensity is None:
        intensity = rng.uniform(85.0, 135.0)
    signal = intensity * cover * across * groove * band[idx]

    if telomeres:
        spot_sigma = max(0.65, 0.11 * width)
        spots = np.zeros_like(signal)
        for end, inward in ((0, 1), (n - 1, -1)):
            p = xy[end]
            tangent = xy[end] - xy[end + inward * min(4, n - 1)]
            tangent = tangent / (np.linalg.norm(tangent) + 1e-9)  # pointing out of the chromosome
            normal = np.array([-tangent[1], tangent[0]])
            rr = half[end]
            for side in (-1.0, 1.0):
                if rng.random() < 0.1:
                    continue
                c = p + tangent * 0.3 * rr + normal * side * 0.42 * rr
                amp = rng.uniform(50.0, 110.0)
                spots += amp * np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * spot_sigma**2))
        signal = signal + spots

    if blur > 0:
        signal = ndimage.gaussian_filter(signal, blur)
        cover = ndimage.gaussian_filter(cover, blur)
    # the chromosome's pixels, as a half-maximum segmentation of the image would take them: the blurred
    # outline at >= half its full value, plus any pixel (telomere glow, fringe of a bright band) brighter
    # than half the chromosome's median brightness; the largest piece, holes filled
    mask = cover >= 0.5
    mask |= signal >= 0.5 * float(np.median(signal[mask]))
    lab, n_lab = ndimage.label(mask)
    if n_lab > 1:
        mask = lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    mask = ndimage.binary_fill_holes(mask)
    img = background + signal + rng.normal(0.0, noise, signal.shape) if noise > 0 else background + signal
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, hh)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, ww)
    return ChromosomeCrop(image=img[y0:y1, x0:x1].copy(), mask=mask[y0:y1, x0:x1].copy(), name=name)


# Approximate relative lengths (% of the haploid autosome set) and centromere indices of the human
# chromosomes, from standard ISCN idiograms; used only to give the library karyotype-like proportions.
_KARYOTYPE: tuple[tuple[str, float, float], ...] = (
    ("1", 8.44, 0.48), ("2", 8.02, 0.39), ("3", 6.83, 0.47), ("4", 6.30, 0.29), ("5", 6.08, 0.29),
    ("6", 5.90, 0.39), ("7", 5.36, 0.39), ("8", 4.93, 0.34), ("9", 4.80, 0.35), ("10", 4.59, 0.33),
    ("11", 4.61, 0.40), ("12", 4.66, 0.30), ("13", 3.74, 0.17), ("14", 3.56, 0.19), ("15", 3.46, 0.20),
    ("16", 3.36, 0.41), ("17", 3.25, 0.34), ("18", 2.93, 0.31), ("19", 2.67, 0.47), ("20", 2.56, 0.45),
    ("21", 1.90, 0.25), ("22", 2.04, 0.27), ("X", 5.12, 0.40), ("Y", 2.15, 0.27),
)  # fmt: skip


def chromosome_library(
    n: int, *, seed: int = 0, min_length: float = 20.0, max_length: float = 60.0
) -> list[ChromosomeCrop]:
    """``n`` varied procedural chromosomes at the scale of the published set.

    Scale: in the 94 x 93 published images the chromosomes are about 20-60 px long and 5-9 px wide
    (Pommier halved the resolution of his DAPI images), so that two of them crossing fit the frame.
    Here each chromosome takes the proportions of a human chromosome type (1..22, X, Y; ``n`` = 48 gives
    each type twice, ``n`` = 12 one of every second type, like Pommier's one-in-four choice of 46):
    length = ``min_length`` + (``max_length`` - ``min_length``) x its relative length rescaled to 0..1,
    times a random condensation factor 0.92-1.08 (clipped to 18-64 px); width 5-9 px, a little wider for
    longer chromosomes; its centromere index +-0.03; 4-13 bands (more on longer chromosomes); bend a
    random turn of up to ~1.6 rad, stronger for longer chromosomes. Band patterns are drawn per
    chromosome, so no two are alike and alpha stays distinguishable from beta even for homologues.
    The list is ordered like a karyotype (chromosome 1 first) and named ``chr1a``, ``chr1b``, ...
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng([int(seed), 0x5EED])
    rel = np.array([k[1] for k in _KARYOTYPE])
    rel01 = (rel - rel.min()) / (rel.max() - rel.min())
    types = [(k * len(_KARYOTYPE)) // n for k in range(n)]
    counts: dict[int, int] = {}
    crops = []
    for ti in types:
        label, _, ci = _KARYOTYPE[ti]
        copy = counts.get(ti, 0)
        counts[ti] = copy + 1
        length = (min_length + (max_length - min_length) * rel01[ti]) * rng.uniform(0.92, 1.08)
        length = float(np.clip(length, min_length - 2, max_length + 4))
        frac = (length - min_length) / (max_length - min_length)
        width = float(np.clip(rng.normal(6.2 + 1.4 * frac, 0.6), 5.0, 9.0))
        n_bands = int(np.clip(round(4 + 8 * frac + rng.integers(-1, 2)), 3, 13))
        bend = float(np.clip(rng.normal(0.0, 0.35 + 0.5 * frac), -1.6, 1.6))
        centromere = float(np.clip(ci + rng.uniform(-0.03, 0.03), 0.08, 0.92))
        if rng.random() < 0.5:  # chromosomes lie either way round
            centromere = 1.0 - centromere
        suffix = chr(ord("a") + copy) if copy < 26 else f"_{copy}"
        crops.append(
            render_chromosome(
                rng, length=length, width=width, n_bands=n_bands, bend=bend, centromere=centromere,
                name=f"chr{label}{suffix}",
            )
        )  # fmt: skip
    return crops


# --------------------------------------------------------------------------------------------------------
# Crops from a user's images
# --------------------------------------------------------------------------------------------------------


def otsu_threshold(image: np.ndarray) -> float | None:
    """Otsu's threshold of ``image`` (any numeric dtype); foreground is ``image > t``.

    Returns ``None`` for a uniform image. 256 histogram bins between the image's minimum and maximum.
    """
    values = np.asarray(image, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return None
    hist, edges = np.histogram(values, bins=256, range=(lo, hi))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centers)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m / w0
        mu1 = (m[-1] - m) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    k = int(np.argmax(between))
    return float(edges[k + 1])


def _load_grey(path: Path) -> np.ndarray:
    """Read an image file as a 2-D numeric array (RGB(A) -> grey), raising DataValidationError."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            # medseg's one TIFF reader: LZW / Deflate / PackBits without imagecodecs (Pillow decodes them)
            from medseg.data.folder import read_image

            return read_image(path)
        else:
            from medseg.data.image_io import open_image  # the size and frame checks every reader shares

            with open_image(path) as im:
                im.load()
                if im.mode in ("L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                    arr = np.asarray(im)
                else:  # RGB, RGBA, P, LA, 1, CMYK...
                    arr = np.asarray(im.convert("L"))
    except DataValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the same thing to the user
        raise DataValidationError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc
    return _as_grey(arr, path)


def _as_grey(arr: np.ndarray, path: Path | None) -> np.ndarray:
    """A 2-D grey array: RGB(A) (channels last, or first as some TIFFs) by ITU-R 601 luma, alpha dropped."""
    arr = np.asarray(arr)
    luma = np.array([0.299, 0.587, 0.114])
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].astype(np.float64) @ luma
    elif arr.ndim == 3 and arr.shape[0] in (3, 4):
        arr = np.tensordot(luma, arr[:3].astype(np.float64), axes=1)
    elif arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape([s for s in arr.shape if s != 1])
    if arr.ndim != 2:
        raise DataValidationError(path, f"expected a 2-D greyscale or RGB image, got an array of shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DataValidationError(path, f"unsupported pixel type {arr.dtype}")
    if not np.isfinite(arr).all():
        raise DataValidationError(path, "image holds NaN or infinite values")
    return arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 as is; any other type (16-bit, float...) stretched linearly from its min..max to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip(np.rint((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _bright_objects(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return the image with bright objects on a dark background, and whether it was inverted.

    Polarity: if most of the one-pixel border lies above Otsu's threshold the background is bright
    (e.g. an inverted or bright-field export) and the image is inverted.
    """
    t = otsu_threshold(img)
    if t is None:
        return img, False
    border = np.concatenate([img[0, :], img[-1, :], img[:, 0], img[:, -1]])
    if np.mean(border > t) > 0.5:
        return (255 - img).astype(np.uint8), True
    return img, False


def _object_mask(img: np.ndarray, threshold: float | None) -> np.ndarray | None:
    t = otsu_threshold(img) if threshold is None else threshold
    if t is None:
        return None
    return img > t


def _rescale(crop_img: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if scale == 1.0:
        return crop_img, mask
    img = ndimage.zoom(crop_img.astype(np.float32), scale, order=1, grid_mode=True, mode="grid-constant")
    m = ndimage.zoom(mask.astype(np.float32), scale, order=1, grid_mode=True, mode="grid-constant") >= 0.5
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), m


def _cut(img: np.ndarray, mask: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, img.shape[0])
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, img.shape[1])
    return img[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy()


_EIGHT = np.ones((3, 3), dtype=bool)

#: Shape filter of :func:`crops_from_metaphase` when no label map tells chromosomes from the rest. An interphase
#: nucleus in a metaphase spread is a large, compact, round blob; a chromosome is small and elongated. On the
#: 133 labelled M-FISH metaphases a single chromosome has at most 1,864 px (median ≈ 400, 99th percentile
#: ≈ 1,240), while the nuclei of A0101XYD.tif have 2,670–7,141 px, solidity ≈ 1.0 and axis ratio ≈ 0.9. So an
#: object is taken for a nucleus when it is larger than any chromosome (NUCLEUS_MIN_AREA, ×1.3 the largest) AND
#: compact (solidity = area / convex-hull area ≥ NUCLEUS_MIN_SOLIDITY) AND round (minor / major axis of its
#: pixel covariance ≥ NUCLEUS_MIN_AXIS_RATIO); a large but ragged or elongated object (touching chromosomes) is
#: left to ``max_area``. Areas are at the M-FISH scale (about 0.1 µm a pixel); ``crop_scale`` does not change them.
NUCLEUS_MIN_AREA = 2_400
NUCLEUS_MIN_SOLIDITY = 0.85
NUCLEUS_MIN_AXIS_RATIO = 0.6
#: With a label map: an object is a chromosome when at least this share of its pixels is labelled (1–24 or 255).
LABELLED_MIN_SHARE = 0.5


def is_nucleus_like(mask: np.ndarray) -> bool:
    """Whether one object (a boolean mask) is shaped like an interphase nucleus rather than a chromosome: large,
    compact and round (the thresholds and why: :data:`NUCLEUS_MIN_AREA` and the lines above it)."""
    area = int(mask.sum())
    if area < NUCLEUS_MIN_AREA:
        return False
    from scipy.spatial import ConvexHull

    pts = np.argwhere(mask).astype(np.float64)
    try:
        hull = float(ConvexHull(pts).volume)  # in 2-D, .volume is the area
    except Exception:  # noqa: BLE001 - a degenerate (collinear) object is a line, not a nucleus
        return False
    solidity = area / max(hull, 1.0)
    eig = np.linalg.eigvalsh(np.cov(pts.T))
    axis_ratio = float(np.sqrt(max(eig[0], 0.0) / max(eig[1], 1e-9)))
    return solidity >= NUCLEUS_MIN_SOLIDITY and axis_ratio >= NUCLEUS_MIN_AXIS_RATIO


def label_map_beside(path: str | Path) -> Path | None:
    """The M-FISH karyotype label map of a DAPI image, when it lies beside it (``<id>D.tif`` → ``<id>K.tif``)."""
    path = Path(path)
    if path.stem[-1:].upper() != "D":
        return None
    for suffix in (path.suffix, ".tif", ".tiff"):
        for k in ("K", "k"):
            candidate = path.with_name(f"{path.stem[:-1]}{k}{suffix}")
            if candidate.is_file():
                return candidate
    return None


def crops_from_folder(
    folder: str | Path,
    *,
    threshold: float | None = None,
    min_area: int = 10,
    scale: float = 1.0,
    margin: int = 2,
) -> list[ChromosomeCrop]:
    """Single-chromosome crops from the images in ``folder`` (one chromosome per image).

    Reads PNG, TIFF, JPEG and BMP files (8- or 16-bit, grey or RGB, which is made grey), sorted by name,
    and ignores other files. Non-8-bit images are stretched linearly from their min..max to 0..255. If
    the background is bright the image is inverted so the chromosome is bright on dark. The chromosome is
    the largest 8-connected component above Otsu's threshold (or ``threshold``, in 8-bit grey levels
    after inversion), holes filled; the crop is cut to its bounding box plus ``margin``. ``scale``
    resizes the crops (e.g. 0.5 to bring full-resolution crops to the published set's scale).

    Raises :class:`DataValidationError` naming the folder if it holds no images, or naming the file if
    one cannot be read or holds no object (uniform image, or largest object under ``min_area`` px).
    The crop order (file names) decides alpha/beta: alpha is the crop that comes first.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataValidationError(folder, "not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataValidationError(folder, f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    crops = []
    for path in files:
        img, _ = _bright_objects(_to_uint8(_load_grey(path)))
        fg = _object_mask(img, threshold)
        if fg is None or not fg.any():
            raise DataValidationError(path, "no object found: the image is uniform or nothing lies above the threshold")
        if fg.all():
            raise DataValidationError(path, "no object found: the whole image lies above the threshold")
        lab, n = ndimage.label(fg, structure=_EIGHT)
        sizes = np.bincount(lab.ravel())[1:]
        mask = ndimage.binary_fill_holes(lab == (int(np.argmax(sizes)) + 1))
        if mask.sum() < min_area:
            raise DataValidationError(
                path, f"no object found: the largest object has {int(mask.sum())} px (< {min_area})"
            )
        c_img, c_mask = _cut(img, mask, margin)
        c_img, c_mask = _rescale(c_img, c_mask, scale)
        if not c_mask.any():
            raise DataValidationError(path, f"the object vanishes at scale {scale}")
        crops.append(ChromosomeCrop(image=c_img, mask=c_mask, name=path.stem))
    return crops


def crops_from_metaphase(
    image: np.ndarray | str | Path,
    *,
    min_area: int = 30,
    max_area: int | None = None,
    threshold: float | None = None,
    scale: float = 1.0,
    margin: int = 2,
    label_map: np.ndarray | None = None,
    stats: dict | None = None,
) -> list[ChromosomeCrop]:
    """Segment a whole metaphase image into one crop per chromosome.

    Chromosomes are kept apart from interphase nuclei and debris by the label map where there is one and by shape
    where there is none: with ``label_map`` (same shape; > 0 where an expert labelled a chromosome or overlap, as
    the M-FISH karyotypes) an object is kept only when at least :data:`LABELLED_MIN_SHARE` of its pixels are
    labelled; without one, objects shaped like a nucleus (:func:`is_nucleus_like`) are dropped. ``stats`` (a
    dict), when given, receives the counts ``dropped_unlabelled`` / ``dropped_nucleus_like``.

    ``image``: an array (2-D grey or RGB, any numeric type) or an image file. The image is brought to
    8-bit (non-8-bit stretched min..max) and bright-on-dark (inverted if the border is bright), thresholded
    by Otsu (or ``threshold``), labelled in 8-connected components (holes filled); objects touching the
    border (cut off), smaller than ``min_area`` (debris) or larger than ``max_area`` (nuclei, clusters of
    touching chromosomes) are dropped. Crops are in raster order of the objects and named ``<name>#k``;
    each crop's mask is its own object only (a neighbour inside the margin is not part of it).
    Touching or overlapping chromosomes come out as one object: use ``max_area`` to drop them.
    """
    path: Path | None = None
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise DataValidationError(path, "file not found")
        arr = _load_grey(path)
        stem = path.stem
    else:
        arr = _as_grey(np.asarray(image), None)
        stem = "metaphase"
    img, _ = _bright_objects(_to_uint8(arr))
    fg = _object_mask(img, threshold)
    if fg is None:
        raise DataValidationError(path, "no object found: the image is uniform")
    lab, n = ndimage.label(fg, structure=_EIGHT)
    crops = []
    counts = stats if stats is not None else {}
    counts.update(dropped_unlabelled=0, dropped_nucleus_like=0)
    if label_map is not None and np.shape(label_map) != lab.shape:
        raise DataValidationError(path, f"label map {np.shape(label_map)} and image {lab.shape} differ in shape")
    if n == 0:
        return crops
    border_labels = np.unique(np.concatenate([lab[0, :], lab[-1, :], lab[:, 0], lab[:, -1]]))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None or k in border_labels:
            continue
        if sizes[k] < min_area or (max_area is not None and sizes[k] > max_area):
            continue
        obj = lab[sl] == k
        if label_map is not None:
            if (np.asarray(label_map)[sl][obj] > 0).mean() < LABELLED_MIN_SHARE:
                counts["dropped_unlabelled"] += 1
                continue
        elif is_nucleus_like(obj):
            counts["dropped_nucleus_like"] += 1
            continue
        y0, y1 = max(sl[0].start - margin, 0), min(sl[0].stop + margin, img.shape[0])
        x0, x1 = max(sl[1].start - margin, 0), min(sl[1].stop + margin, img.shape[1])
        mask = ndimage.binary_fill_holes(lab[y0:y1, x0:x1] == k)
        c_img, c_mask = _rescale(img[y0:y1, x0:x1].copy(), mask, scale)
        if c_mask.any():
            crops.append(ChromosomeCrop(image=c_img, mask=c_mask, name=f"{stem}#{len(crops) + 1}"))
    return crops


# --------------------------------------------------------------------------------------------------------
# Pair composition
# --------------------------------------------------------------------------------------------------------


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
    return _compose(sa, ma, sb, mb, offset, tuple(shape), min_overlap_px, _check_blend(blend), min_visible_px)


def _check_blend(blend: str | float) -> Blend:
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
    output is exactly the above): ``rule`` orders each kept pair by :func:`medseg.data.mfish_pairs.order_pair`
    (``larger``: label 1 is the chromosome with more pixels, overlap included; class from the crop name's
    ``_c<class>`` ending, else its index), swapping labels 1 and 2 (and the pair index) where needed.
    ``crop_weights`` (one per crop, >= 0): each pass draws as many pairs as there are unordered pairs, both
    chromosomes drawn independently with probability proportional to their weights (redrawn until
    distinct), instead of going over every pair once. ``accept(labels)`` -> probability 0..1 of keeping a
    placement that passed the tests above (rejection sampling, e.g. on the crossing angle); refusals are
    counted as ``rejected_accept``.
    """
    if len(crops) < 2:
        raise ValueError(f"need at least two chromosome crops to make pairs, got {len(crops)}")
    if n_pairs is not None and n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if min_overlap_px < 0 or jitter < 0 or min_visible_px < 0:
        raise ValueError("min_overlap_px, min_visible_px and jitter must be >= 0")
    blend = _check_blend(blend)
    shape = (int(shape[0]), int(shape[1]))
    rng = np.random.default_rng(seed)
    signals = [c.signal() for c in crops]
    masks = [c.mask for c in crops]
    all_pairs = np.array(list(combinations(range(len(crops)), 2)), dtype=np.int64)
    target = len(all_pairs) if n_pairs is None else int(n_pairs)
    if rule is not None:
        import re

        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
        classes = []
        for k, c in enumerate(crops):
            m = re.search(r"_c(\d+)$", c.name)
            classes.append(int(m.group(1)) if m else k + 1)
    if crop_weights is not None:
        crop_weights = np.asarray(crop_weights, np.float64)
        if crop_weights.shape != (len(crops),) or not np.isfinite(crop_weights).all() or (crop_weights < 0).any() \
                or np.count_nonzero(crop_weights) < 2:
            raise ValueError("crop_weights: one finite weight >= 0 per crop, at least two of them > 0")
        crop_p = crop_weights / crop_weights.sum()

    images = np.empty((target, *shape), np.uint8)
    labels = np.empty((target, *shape), np.uint8)
    pair_index = np.empty((target, 2), np.int64)
    overlap_px = np.empty(target, np.int64)
    counters = ("generated", "kept", "rejected_no_overlap", "rejected_covered", "rejected_outside", "passes")
    stats: dict = dict.fromkeys(counters, 0)
    if accept is not None:
        stats["rejected_accept"] = 0
    saturated = 0

    from medseg.progress import Progress

    bar = Progress(total=target, desc="synthesizing pairs", unit="pair", disable=not progress, leave=False)
    kept = 0
    try:
        while kept < target:
            stats["passes"] += 1
            kept_this_pass = 0
            if crop_weights is None:
                pass_pairs = all_pairs[rng.permutation(len(all_pairs))]
            else:
                pass_pairs = rng.choice(len(crops), size=(len(all_pairs), 2), p=crop_p)
                for row in np.flatnonzero(pass_pairs[:, 0] == pass_pairs[:, 1]):
                    while pass_pairs[row, 1] == pass_pairs[row, 0]:
                        pass_pairs[row, 1] = rng.choice(len(crops), p=crop_p)
            for i, j in pass_pairs:
                sa, ma = _rotate(signals[i], masks[i], rng.uniform(0.0, 360.0))
                sb, mb = _rotate(signals[j], masks[j], rng.uniform(0.0, 360.0))
                pa = np.unravel_index(rng.choice(np.flatnonzero(ma)), ma.shape)
                pb = np.unravel_index(rng.choice(np.flatnonzero(mb)), mb.shape)
                shift = rng.integers(-jitter, jitter + 1, size=2)
                offset = (pa[0] - pb[0] + shift[0], pa[1] - pb[1] + shift[1])
                res = _compose(sa, ma, sb, mb, offset, shape, min_overlap_px, blend, min_visible_px)
                stats["generated"] += 1
                if res.status != "kept":
                    stats[f"rejected_{res.status}"] += 1
                    continue
                lab = res.labels
                if accept is not None and not rng.random() < float(accept(lab)):
                    stats["rejected_accept"] += 1
                    continue
                if rule is not None and not order_pair((lab == 1) | (lab == 3), (lab == 2) | (lab == 3),
                                                       classes[i], classes[j], rule):
                    lab = np.where(lab == 3, 3, 3 - lab) * (lab > 0)
                    i, j = j, i
                images[kept] = res.image
                labels[kept] = lab
                pair_index[kept] = (i, j)
                overlap_px[kept] = res.overlap_px
                saturated += int(np.count_nonzero((res.labels == 3) & (res.image == 255)))
                kept += 1
                kept_this_pass += 1
                bar.update(1)
                if kept == target:
                    break
            if n_pairs is None:
                break
            if kept_this_pass == 0:
                sizes = max(max(m.shape) for m in masks)
                raise ValueError(
                    f"no pair could be placed in a full pass over {len(all_pairs)} pairs "
                    f"({stats['rejected_outside']} did not fit the {shape[0]}x{shape[1]} frame, "
                    f"{stats['rejected_no_overlap']} had no overlap); the largest crop is {sizes} px: "
                    "use smaller crops (scale) or a larger frame"
                )
    finally:
        bar.close()
    stats["kept"] = kept
    stats["pair_index"] = pair_index[:kept]
    stats["overlap_px"] = overlap_px[:kept]
    stats["saturated_px"] = saturated
    return images[:kept], labels[:kept], stats


# --------------------------------------------------------------------------------------------------------
# Preview, provenance and the command body
# --------------------------------------------------------------------------------------------------------

def save_preview(
    path: str | Path, images: np.ndarray, labels: np.ndarray, *, n: int = 12, title: str = "",
    overlap_px: np.ndarray | None = None,
) -> Path:  # fmt: skip
    """Save a grid of ``n`` examples (image beside its coloured label map) as a PNG, atomically.

    Examples are picked at evenly spaced quantiles of the overlap size, from the smallest to the largest,
    so the preview shows the range of the set. Colours and legend from :mod:`medseg.palette`, as in every
    figure: background black, alpha red, beta green, overlap blue.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if overlap_px is None:
        overlap_px = (labels == 3).reshape(len(labels), -1).sum(axis=1)
    n = max(1, min(n, len(images)))
    order = np.argsort(overlap_px, kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))]
    per_row = 3
    rows = int(math.ceil(len(picks) / per_row))
    fig = Figure(figsize=(2.0 * 2 * per_row, 2.1 * rows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for k, idx in enumerate(picks):
        r, c = divmod(k, per_row)
        ax = fig.add_subplot(rows, 2 * per_row, r * 2 * per_row + 2 * c + 1)
        ax.imshow(images[idx], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"#{idx}", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(rows, 2 * per_row, r * 2 * per_row + 2 * c + 2)
        ax.imshow(colourize(labels[idx]), interpolation="nearest")
        ax.set_title(f"overlap {int(overlap_px[idx])} px", fontsize=8)
        ax.axis("off")
    fig.legend(
        handles=legend_handles(POMMIER_CLASSES), loc="lower center", ncol=len(POMMIER_CLASSES), fontsize=8,
        frameon=False,
    )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        give_default_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sidecar_paths(output: str | Path) -> tuple[Path, Path]:
    """The provenance JSON and the preview PNG written beside ``output``: same name, ``.json``/``.png``."""
    output = Path(output)
    return output.with_suffix(".json"), output.with_suffix(".png")


def run_synth(
    output: str | Path,
    *,
    crops_dir: str | Path | None = None,
    metaphase: str | Path | None = None,
    n_pairs: int | None = None,
    pommier: bool = False,
    n_chromosomes: int = 48,
    shape: tuple[int, int] = POMMIER_SHAPE,
    seed: int = 0,
    progress: bool = True,
    min_overlap_px: int = 1,
    crop_scale: float = 1.0,
    blend: Blend = "sum",
    preview: bool = True,
    crops: list[ChromosomeCrop] | None = None,
    source: dict | None = None,
    extra: dict | None = None,
    rule: str | None = None,
    crop_weights: np.ndarray | None = None,
    accept: Callable[[np.ndarray], float] | None = None,
) -> dict:
    """Body of ``medseg data synth``: make a Pommier-layout set of overlapping pairs and write it.

    Source: the crops in ``crops_dir`` (:func:`crops_from_folder`), or the chromosomes of the
    ``metaphase`` image (:func:`crops_from_metaphase`), or by default ``n_chromosomes`` procedural
    chromosomes (:func:`chromosome_library`). ``n_pairs``: how many images to keep (default one pass over
    all pairs). ``pommier=True``: exactly 13,434 images at 94 x 93, the published size (``n_pairs`` and
    ``shape`` must then be left at their defaults or agree). ``crop_scale`` rescales user crops.
    ``crops`` (with ``source``, a dict describing them for the provenance) gives prepared crops instead,
    e.g. real isolated chromosomes (:func:`medseg.data.mfish_synth.run_mfish_synth`); ``extra``: more
    top-level entries for the JSON and the summary. ``rule``, ``crop_weights``, ``accept``: see
    :func:`synthesize_pairs` (off by default).

    Writes ``output`` (HDF5, :func:`medseg.data.pommier.write_pommier_h5`), ``<output stem>.json``
    (provenance: source, seed, counts, shape, medseg version, ``"synthesized": true``, the alpha/beta crop
    of every image) and ``<output stem>.png`` (preview grid). All three are written under temporary names
    and renamed at the end, so a failure leaves none of them half-written. Returns the summary (the JSON's
    content without the per-image list, plus the paths and the time taken).
    """
    import medseg

    started = time.perf_counter()
    output = Path(output)
    json_path, png_path = sidecar_paths(output)
    if output.suffix.lower() in (".json", ".png"):
        raise ValueError(f"output {output} would collide with its sidecar files; use a .h5 name")
    if sum(x is not None for x in (crops_dir, metaphase, crops)) > 1:
        raise ValueError("give either crops_dir, metaphase or crops, not two of them")
    shape = (int(shape[0]), int(shape[1]))
    if pommier:
        if n_pairs not in (None, POMMIER_N_PAIRS):
            raise ValueError(f"pommier=True makes exactly {POMMIER_N_PAIRS} pairs; n_pairs={n_pairs} contradicts it")
        if shape != tuple(POMMIER_SHAPE):
            raise ValueError(
                f"pommier=True makes {POMMIER_SHAPE[0]}x{POMMIER_SHAPE[1]} images; shape={shape} contradicts it"
            )
        n_pairs = POMMIER_N_PAIRS

    blend = _check_blend(blend)
    if crops is not None:
        source = dict(source or {"kind": "crops"})
    elif crops_dir is not None:
        crops = crops_from_folder(crops_dir, scale=crop_scale)
        source = {"kind": "folder", "path": str(Path(crops_dir).resolve()), "crop_scale": crop_scale}
    elif metaphase is not None:
        beside = label_map_beside(metaphase)
        karyo = None
        if beside is not None:
            from medseg.data.mfish import _read_tif

            karyo = _read_tif(beside)
        kept: dict = {}
        crops = crops_from_metaphase(metaphase, scale=crop_scale, label_map=karyo, stats=kept)
        source = {"kind": "metaphase", "path": str(Path(metaphase).resolve()), "crop_scale": crop_scale,
                  "kept_by": f"label map {beside.name}" if beside is not None else "shape (nuclei dropped)", **kept}
        if len(crops) < 2:
            raise DataValidationError(metaphase, f"found {len(crops)} chromosome(s); at least two are needed")
    else:
        crops = chromosome_library(n_chromosomes, seed=seed)
        source = {
            "kind": "procedural",
            "n_chromosomes": n_chromosomes,
            "generator": "medseg.data.synth.chromosome_library",
        }
    source["n_crops"] = len(crops)
    source["crops"] = [c.name for c in crops]

    images, labels, stats = synthesize_pairs(
        crops, n_pairs=n_pairs, shape=shape, seed=seed, min_overlap_px=min_overlap_px, progress=progress, blend=blend,
        rule=rule, crop_weights=crop_weights, accept=accept,
    )
    overlaps = stats["overlap_px"]
    summary = {
        "synthesized": True,
        "format": "pommier",
        "medseg_version": medseg.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "seed": seed,
        "pommier": pommier,
        "shape": list(shape),
        "n_images": int(len(images)),
        "generated": stats["generated"],
        "kept": stats["kept"],
        "rejected_no_overlap": stats["rejected_no_overlap"],
        "rejected_covered": stats["rejected_covered"],
        "rejected_outside": stats["rejected_outside"],
        "passes": stats["passes"],
        "min_overlap_px": min_overlap_px,
        "composition": (f"{blend} of background-subtracted signals, clipped to 0..255; background 0"
                        if isinstance(blend, str) else f"max(a, b) + {blend:g} * min(a, b) of background-subtracted "
                        "signals, clipped to 0..255; background 0"),
        "blend": blend,
        "labels": {"0": "background", "1": "alpha only", "2": "beta only", "3": "overlap"},
        "overlap_px": {
            "min": int(overlaps.min()),
            "median": float(np.median(overlaps)),
            "max": int(overlaps.max()),
        },
        "saturated_overlap_px": stats["saturated_px"],
    }
    if rule is not None:
        summary["rule"] = rule
    if accept is not None:
        summary["rejected_accept"] = stats["rejected_accept"]
    summary.update(extra or {})
    provenance = dict(summary, pairs=stats["pair_index"].tolist())

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_h5 = output.with_name(f".{output.name}.synth-tmp")
    tmp_json = json_path.with_name(f".{json_path.name}.synth-tmp")
    tmp_png = png_path.with_name(f".{png_path.name}.synth-tmp.png")
    temps = (tmp_h5, tmp_json, tmp_png)
    try:
        write_pommier_h5(tmp_h5, images, labels)
        tmp_json.write_text(json.dumps(provenance, indent=1) + "\n")
        if preview:
            save_preview(
                tmp_png, images, labels, overlap_px=overlaps,
                title=f"{output.name}: {len(images)} synthesized pairs ({source['kind']} source, seed {seed})",
            )  # fmt: skip
        os.replace(tmp_h5, output)
        os.replace(tmp_json, json_path)
        if preview:
            os.replace(tmp_png, png_path)
    except BaseException:
        for p in temps:
            p.unlink(missing_ok=True)
        raise
    summary.update(
        output=str(output),
        json=str(json_path),
        preview=str(png_path) if preview else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    return summary
