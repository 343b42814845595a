"""Procedural fluorescent metaphase chromosomes at the scale of Pommier's published pairs.

:func:`render_chromosome` draws one chromosome (curved, banded, centromere constriction, rounded ends,
telomere spots, blur and noise); :func:`chromosome_library` draws a karyotype-like set of them, the default
source of ``medseg data synth`` (:mod:`medseg.data.synth`). The chromosomes are drawn at 85-135 grey levels
above the background so that two of them added in an overlap rarely saturate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from medseg.data.chromosome_crops import ChromosomeCrop

__all__ = ["chromosome_library", "render_chromosome"]


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
    step = core / (n - 1)
    xy = _centre_line(rng, t, bend, step)
    half = _half_widths(rng, t, radius, core, centromere)
    band = _band_profile(rng, t, n_bands, step)

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
        signal = signal + _telomere_spots(rng, xy, half, yy, xx, width)

    if blur > 0:
        signal = ndimage.gaussian_filter(signal, blur)
        cover = ndimage.gaussian_filter(cover, blur)
    mask = _half_maximum_mask(cover, signal)
    img = background + signal + rng.normal(0.0, noise, signal.shape) if noise > 0 else background + signal
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, hh)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, ww)
    return ChromosomeCrop(image=img[y0:y1, x0:x1].copy(), mask=mask[y0:y1, x0:x1].copy(), name=name)


def _centre_line(rng: np.random.Generator, t: np.ndarray, bend: float, step: float) -> np.ndarray:
    """(n, 2) points (y, x) of the centre line: heading = linear turn (C shape) + small S component."""
    n = len(t)
    s_amp = rng.normal(0.0, 0.12 + 0.15 * abs(bend))
    phase = rng.uniform(0, 2 * np.pi)
    heading = bend * (t - 0.5) + s_amp * np.sin(2 * np.pi * t + phase) + rng.uniform(0, 2 * np.pi)
    xy = np.zeros((n, 2))
    xy[1:, 0] = np.cumsum(np.sin(heading[1:]) * step)  # y
    xy[1:, 1] = np.cumsum(np.cos(heading[1:]) * step)  # x
    return xy


def _half_widths(rng: np.random.Generator, t: np.ndarray, radius: float, core: float, centromere: float) -> np.ndarray:
    """Half-width along the centre line: centromere constriction, slight irregularity."""
    n = len(t)
    depth = rng.uniform(0.25, 0.4)
    sigma_c = max(0.6 * radius / core, 0.03)
    wobble = ndimage.gaussian_filter1d(rng.normal(0.0, 1.0, n), sigma=max(n / 12, 1.0), mode="nearest")
    wobble = wobble / (np.abs(wobble).max() + 1e-9) * 0.05
    return radius * (1.0 - depth * np.exp(-0.5 * ((t - centromere) / sigma_c) ** 2)) * (1.0 + wobble)


def _band_profile(rng: np.random.Generator, t: np.ndarray, n_bands: int, step: float) -> np.ndarray:
    """Banding profile along the length: alternating light/dark bands of random widths, softened."""
    edges = np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(n_bands, 2.0)))])
    band_of = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bands - 1)
    start_light = rng.random() < 0.5
    levels = np.empty(n_bands)
    for k in range(n_bands):
        light = (k % 2 == 0) == start_light
        levels[k] = rng.uniform(0.9, 1.0) if light else rng.uniform(0.5, 0.68)
    return ndimage.gaussian_filter1d(levels[band_of], sigma=max(0.5 / step, 1.0), mode="nearest")


def _telomere_spots(
    rng: np.random.Generator, xy: np.ndarray, half: np.ndarray, yy: np.ndarray, xx: np.ndarray, width: float
) -> np.ndarray:
    """The Cy3 telomere spots: one per chromatid at each end, each missing with probability 0.1."""
    n = len(xy)
    spot_sigma = max(0.65, 0.11 * width)
    spots = np.zeros(yy.shape, dtype=np.float64)
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
    return spots


def _half_maximum_mask(cover: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """The chromosome's pixels, as a half-maximum segmentation of the image would take them: the blurred
    outline at >= half its full value, plus any pixel (telomere glow, fringe of a bright band) brighter than
    half the chromosome's median brightness; the largest piece, holes filled."""
    mask = cover >= 0.5
    mask |= signal >= 0.5 * float(np.median(signal[mask]))
    lab, n_lab = ndimage.label(mask)
    if n_lab > 1:
        mask = lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    return ndimage.binary_fill_holes(mask)


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
