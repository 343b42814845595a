"""One chromosome crop (:class:`ChromosomeCrop`) and the crops taken from real images, for the pair synthesizer.

A crop is a tight uint8 image of one chromosome (bright on a dark background) and its own pixels. Two sources
of crops from images are here:

* :func:`crops_from_folder` -- a user's single-chromosome crops (PNG/TIFF/...), one chromosome per file;
* :func:`crops_from_metaphase` -- the chromosomes segmented out of a whole metaphase image, interphase nuclei
  and debris left out (by the expert label map beside it where there is one, else by shape).

Procedural crops are drawn by :mod:`medseg.data.procedural_chromosomes`; :mod:`medseg.data.pair_composition`
crosses crops into pairs and :mod:`medseg.data.synth` writes the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.errors import DataValidationError

__all__ = [
    "IMAGE_SUFFIXES",
    "LABELLED_MIN_SHARE",
    "NUCLEUS_MIN_AREA",
    "NUCLEUS_MIN_AXIS_RATIO",
    "NUCLEUS_MIN_SOLIDITY",
    "ChromosomeCrop",
    "crops_from_folder",
    "crops_from_metaphase",
    "is_nucleus_like",
    "label_map_beside",
    "otsu_threshold",
]

#: File name endings :func:`crops_from_folder` reads (case-insensitive).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


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
            from medseg.formats.images import open_image  # the size and frame checks every reader shares

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
