"""What a chromosome looks like relative to its own metaphase: hand-made features and upright cut-outs.

Chromosome condensation differs from cell to cell (a chromosome 1 of one metaphase can be shorter than a
chromosome 5 of another), and so does the DAPI exposure. So both the classical baseline and the learned classifier
see every chromosome **relative to its own metaphase**:

* :func:`chromosome_features` — 17 numbers per chromosome (:data:`FEATURE_NAMES`): area, length and width (the
  extents along and across its long axis), mean and summed DAPI intensity, and the mean intensity along the long
  axis in :data:`PROFILE_BINS` equal bins (the banding a cytogeneticist reads). The long axis is the first
  principal axis of the mask's pixel coordinates; the profile runs from the brighter half to the darker so a
  chromosome and its mirror image give the same numbers. :func:`per_metaphase` divides every column by the
  median of its own metaphase.
* :func:`upright_cutout` — the chromosome rotated so its long axis is vertical (brighter half on top, as the
  profile), scaled so that the median chromosome length of its metaphase becomes ``median_length`` pixels, its
  DAPI divided by the metaphase's median chromosome intensity, centred on a ``shape`` canvas. The cut-out's size on
  the canvas is then its size relative to its metaphase: a network sees the class cue, not the cell's condensation.
  A chromosome too long for the canvas at that scale is shrunk to fit (counted by the caller): it is one of the
  longest of its cell anyway.

Region measurements come from :func:`skimage.measure.regionprops`; the resampling from
:func:`scipy.ndimage.map_coordinates`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "FEATURE_NAMES",
    "INTENSITY_LEVEL",
    "PROFILE_BINS",
    "UPRIGHT_MEDIAN_LENGTH",
    "UPRIGHT_MEDIAN_FRACTION",
    "UPRIGHT_SHAPE",
    "chromosome_features",
    "long_axis",
    "metaphase_cutouts",
    "per_metaphase",
    "upright_cutout",
    "upright_median_length",
]

PROFILE_BINS = 12
FEATURE_NAMES = (
    "area",
    "length",
    "width",
    "mean_intensity",
    "summed_intensity",
    *(f"profile_{i}" for i in range(PROFILE_BINS)),
)
UPRIGHT_SHAPE = (64, 32)  # rows x columns of the default upright cut-out
# The median chromosome of every metaphase gets this fraction of the canvas height (24 px on 64 rows): the longest
# chromosome (about 2.2x the median) still fits with room for the augmentation's scale and shift.
UPRIGHT_MEDIAN_FRACTION = 0.375
UPRIGHT_MEDIAN_LENGTH = UPRIGHT_MEDIAN_FRACTION * UPRIGHT_SHAPE[0]
INTENSITY_LEVEL = 96.0  # the grey value the metaphase's median chromosome intensity gets (uint8 headroom to 2.6x)


def _checked(grey: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grey, mask = np.asarray(grey), np.asarray(mask, bool)
    if grey.ndim != 2 or grey.shape != mask.shape:
        raise ValueError(f"grey {grey.shape} and mask {mask.shape} must be two 2-D arrays of one shape")
    if not mask.any():
        raise ValueError("empty mask: no chromosome to measure")
    return grey.astype(np.float64), mask


def long_axis(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroid (row, col), unit vector along the long axis, unit vector across it) of a 2-D bool mask: the
    principal axes of its pixel coordinates."""
    coords = np.argwhere(mask).astype(np.float64)
    centroid = coords.mean(axis=0)
    if len(coords) < 2:
        return centroid, np.array([1.0, 0.0]), np.array([0.0, 1.0])
    _, vectors = np.linalg.eigh(np.cov((coords - centroid).T))
    along, across = vectors[:, 1], vectors[:, 0]  # eigh: ascending eigenvalues
    return centroid, along, across


def _oriented_axis(grey: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centroid, long/cross axes and each pixel's position along the long axis, the axis pointing from the
    brighter half to the darker (a mirrored chromosome measures the same)."""
    centroid, along, across = long_axis(mask)
    coords = np.argwhere(mask).astype(np.float64) - centroid
    t = coords @ along
    values = grey[mask]
    if values[t > 0].sum() > values[t < 0].sum():  # brighter half first (at negative t)
        along, t = -along, -t
    return centroid, along, across, t


def chromosome_features(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The raw :data:`FEATURE_NAMES` (17 float64) of one chromosome: ``grey`` its DAPI window, ``mask`` its pixels.
    Length and width are pixel extents along and across the long axis (an axis-aligned 40 × 10 rectangle: 40 and
    10); the profile's bin i is the mean grey of the pixels in the i-th of 12 equal parts of the length."""
    from skimage.measure import regionprops

    grey, mask = _checked(grey, mask)
    region = regionprops(mask.astype(np.uint8), intensity_image=grey)[0]
    _, along, across, t = _oriented_axis(grey, mask)
    coords = np.argwhere(mask).astype(np.float64)
    s = coords @ across
    length, width = t.max() - t.min() + 1.0, s.max() - s.min() + 1.0
    values = grey[mask]
    edges = np.linspace(t.min(), t.max() + 1e-9, PROFILE_BINS + 1)
    bins = np.clip(np.digitize(t, edges) - 1, 0, PROFILE_BINS - 1)
    sums = np.bincount(bins, weights=values, minlength=PROFILE_BINS)
    counts = np.bincount(bins, minlength=PROFILE_BINS)
    profile = np.divide(sums, counts, out=np.full(PROFILE_BINS, float(region.intensity_mean)), where=counts > 0)
    return np.array([region.area, length, width, region.intensity_mean, values.sum(), *profile], np.float64)


def per_metaphase(features: np.ndarray, metaphase: Sequence) -> np.ndarray:
    """``features`` (N, F) with every column divided by its median over the rows of the same ``metaphase`` id
    (a column whose median is 0 there is left as it is)."""
    features = np.asarray(features, np.float64)
    metaphase = np.asarray(metaphase)
    if features.ndim != 2 or len(metaphase) != len(features):
        raise ValueError(f"features {features.shape} and metaphase ids ({len(metaphase)}) do not match")
    out = features.copy()
    for m in np.unique(metaphase):
        rows = metaphase == m
        median = np.median(features[rows], axis=0)
        out[rows] = features[rows] / np.where(median > 0, median, 1.0)
    return out


def upright_cutout(
    grey: np.ndarray, mask: np.ndarray, *, scale: float, intensity: float, shape: tuple[int, int] = UPRIGHT_SHAPE
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The chromosome upright on a ``shape`` canvas (see the module docstring): ``scale`` canvas px per image px
    (:data:`UPRIGHT_MEDIAN_LENGTH` / the metaphase's median length), ``intensity`` the metaphase's median
    chromosome grey. Returns (image uint8, 0 outside the chromosome and ≥ 1 inside; mask bool; shrunk: whether it
    had to be scaled down further to fit)."""
    from scipy.ndimage import map_coordinates

    grey, mask = _checked(grey, mask)
    if scale <= 0 or intensity <= 0:
        raise ValueError(f"scale ({scale}) and intensity ({intensity}) must be positive")
    centroid, along, across, t = _oriented_axis(grey, mask)
    s = np.argwhere(mask).astype(np.float64) - centroid
    s = s @ across
    rows, cols = (int(v) for v in shape)
    fit = min((rows - 2) / (2 * np.abs(t).max() + 1), (cols - 2) / (2 * np.abs(s).max() + 1))
    shrunk = scale > fit
    scale = min(scale, fit)
    u = (np.arange(rows) - (rows - 1) / 2) / scale  # image px along the long axis
    v = (np.arange(cols) - (cols - 1) / 2) / scale
    uu, vv = np.meshgrid(u, v, indexing="ij")
    where = centroid[:, None, None] + along[:, None, None] * uu + across[:, None, None] * vv
    inside = map_coordinates(mask.astype(np.float64), where, order=1, cval=0.0) >= 0.5
    values = map_coordinates(grey, where, order=1, cval=0.0) * (INTENSITY_LEVEL / intensity)
    image = np.where(inside, np.clip(np.rint(values), 1, 255), 0).astype(np.uint8)
    return image, inside, bool(shrunk)


def upright_median_length(shape: Sequence[int]) -> float:
    """The length (px) the median chromosome of a metaphase gets on an upright canvas of ``shape`` (rows, cols):
    :data:`UPRIGHT_MEDIAN_FRACTION` of its height, so a finer canvas shows the bands in more pixels."""
    return UPRIGHT_MEDIAN_FRACTION * float(shape[0])


def metaphase_cutouts(
    windows: Sequence[tuple[np.ndarray, np.ndarray]],
    shape: tuple[int, int] = UPRIGHT_SHAPE,
    median_length: float | None = None,
    reference: int | None = None,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, bool]]]:
    """Every chromosome of one metaphase (``windows``: (grey, mask) each) measured and cut out upright: its raw
    features (N, 17) and :func:`upright_cutout` scaled so the metaphase's median chromosome is ``median_length``
    px long (default :func:`upright_median_length` of ``shape``), its DAPI by the median intensity — the one rule
    of the training set and of inference. ``reference``: only the first N windows make the medians (the
    others are measured against them); default all."""
    if median_length is None:
        median_length = upright_median_length(shape)
    raw = np.stack([chromosome_features(g, m) for g, m in windows])
    ref = raw[: reference or len(raw)]
    length, intensity = float(np.median(ref[:, 1])), float(np.median(ref[:, 3]))
    cuts = [
        upright_cutout(g, m, scale=median_length / length, intensity=max(intensity, 1.0), shape=shape)
        for g, m in windows
    ]
    return raw, cuts
