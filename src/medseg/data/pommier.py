"""Reader and writer for the Pommier overlapping-chromosome HDF5 layout.

The published file (``LowRes_13434_overlapping_pairs.h5``, J. Pommier, DeepFISH) holds one dataset,
``dataset_1``, of shape ``N x 94 x 93 x 2`` and dtype uint8: channel 0 is the grey image, channel 1 the
label map (0 background, 1 chromosome alpha only, 2 chromosome beta only, 3 overlap). A few pixels of the
published file carry a stray label 4 (noise); the cleaned variant used by Hu et al. has the same layout
with those removed (and is sometimes cropped to 88 x 88). Both are read here.

Stray label values are never dropped silently: :func:`read_pommier_h5` counts them and, according to
``stray_labels``, rejects the file, maps them to background, or gives each the label of its nearest
valid pixel.

The file is read through :func:`medseg.formats.hdf5.open_hdf5`, so a corrupt one is a DataValidationError
naming it, whatever h5py raises.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
from scipy import ndimage

from medseg.errors import DataValidationError
from medseg.formats.atomic import default_file_mode
from medseg.formats.hdf5 import hdf5_errors, open_hdf5
from medseg.formats.limits import check_dataset_bytes, check_voxels

POMMIER_KEY = "dataset_1"
POMMIER_CLASSES = ("background", "chromosome_alpha", "chromosome_beta", "overlap")
POMMIER_SHAPE = (94, 93)
StrayPolicy = Literal["reject", "background", "nearest"]


@dataclass
class LabelReport:
    """What was found and done about label values outside ``0..num_classes-1``."""

    stray_pixels: dict[int, int] = field(default_factory=dict)  # value -> pixel count
    images_affected: int = 0
    policy: str = "reject"

    @property
    def total_stray_pixels(self) -> int:
        return int(sum(self.stray_pixels.values()))

    def summary(self) -> str:
        if not self.stray_pixels:
            return "no stray label values"
        values = ", ".join(f"{v}: {n} px" for v, n in sorted(self.stray_pixels.items()))
        return (
            f"{self.total_stray_pixels} stray-label pixels ({values}) in {self.images_affected} images, "
            f"policy '{self.policy}'"
        )


def fix_stray_labels(
    labels: np.ndarray, num_classes: int, policy: StrayPolicy, path: str | Path | None = None
) -> tuple[np.ndarray, LabelReport]:
    """Count label values ``>= num_classes`` and handle them by ``policy``.

    ``reject`` raises :class:`DataValidationError`; ``background`` sets them to 0; ``nearest`` gives each
    stray pixel the label of the nearest valid pixel of the same image (Euclidean distance transform).
    """
    stray = labels >= num_classes
    report = LabelReport(policy=policy)
    if not stray.any():
        return labels, report
    values, counts = np.unique(labels[stray], return_counts=True)
    report.stray_pixels = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
    report.images_affected = int(stray.reshape(len(labels), -1).any(axis=1).sum())
    if policy == "reject":
        raise DataValidationError(
            path,
            f"label values outside 0..{num_classes - 1}: {report.summary()}. "
            "Set data.stray_labels to background or nearest to map them (command line: --set "
            "data.stray_labels=nearest; medseg data info: --stray-labels nearest).",
        )
    fixed = labels.copy()
    if policy == "background":
        fixed[stray] = 0
    elif policy == "nearest":
        for i in np.flatnonzero(stray.reshape(len(labels), -1).any(axis=1)):
            bad = stray[i]
            if bad.all():
                fixed[i] = 0
                continue
            _, idx = ndimage.distance_transform_edt(bad, return_indices=True)
            fixed[i] = labels[i][tuple(idx)]
    else:
        raise ValueError(f"unknown stray-label policy {policy!r}; use reject, background or nearest")
    return fixed, report


def read_pommier_h5(
    path: str | Path,
    *,
    key: str = POMMIER_KEY,
    num_classes: int = 4,
    stray_labels: StrayPolicy = "reject",
    max_voxels: int | None = None,
) -> tuple[np.ndarray, np.ndarray, LabelReport]:
    """Read a Pommier-layout HDF5 file.

    Returns ``images`` (N, H, W) uint8, ``labels`` (N, H, W) uint8 and a :class:`LabelReport`.
    Raises :class:`DataValidationError` naming the file for anything that is not the published layout,
    for a corrupt file, for an image larger than the voxel budget (``max_voxels``, see
    :mod:`medseg.formats.limits`) and for a dataset larger than the memory limit — both from the dataset's
    shape, before it is read.
    """
    path = Path(path)
    with open_hdf5(path) as f:
        if key not in f:
            keys = ", ".join(sorted(f.keys())) or "none"
            raise DataValidationError(path, f"no dataset '{key}' (datasets present: {keys})")
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise DataValidationError(path, f"'{key}' is a group, expected a dataset")
        if ds.ndim != 4 or ds.shape[-1] != 2:
            raise DataValidationError(
                path, f"dataset '{key}' has shape {ds.shape}; expected N x H x W x 2 (image, label)"
            )
        if ds.dtype != np.uint8:
            raise DataValidationError(path, f"dataset '{key}' has dtype {ds.dtype}; expected uint8")
        if ds.shape[0] == 0:
            raise DataValidationError(path, f"dataset '{key}' holds no images")
        check_voxels(path, ds.shape[1:3], what=f"each image of dataset '{key}'", max_voxels=max_voxels)
        check_dataset_bytes(path, ds.size * ds.dtype.itemsize, what=f"dataset '{key}' {ds.shape}")
        with hdf5_errors(path, f"dataset '{key}'"):
            data = ds[...]
    images = np.ascontiguousarray(data[..., 0])
    labels = np.ascontiguousarray(data[..., 1])
    labels, report = fix_stray_labels(labels, num_classes, stray_labels, path)
    return images, labels, report


def give_default_mode(path: Path) -> None:
    """Give a file made by mkstemp (0600) the permissions an ordinary new file gets (0666 & ~umask)."""
    os.chmod(path, default_file_mode())


def write_pommier_h5(
    path: str | Path, images: np.ndarray, labels: np.ndarray, *, key: str = POMMIER_KEY, compression_level: int = 9
) -> Path:
    """Write ``images`` and ``labels`` (N, H, W) uint8 in the published layout, atomically.

    The file is written beside its destination under a temporary name and renamed at the end, so an
    interrupted write never leaves a half-written file at ``path``.
    """
    path = Path(path)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.shape != labels.shape or images.ndim != 3:
        raise ValueError(f"images {images.shape} and labels {labels.shape} must both be N x H x W")
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise ValueError("images and labels must be uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    give_default_mode(Path(tmp))
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                key,
                data=np.stack([images, labels], axis=-1),
                compression="gzip",
                compression_opts=compression_level,
                chunks=(min(len(images), 64), *images.shape[1:], 2),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def pad_to(array: np.ndarray, size: tuple[int, int], value: float | str = 0) -> np.ndarray:
    """Pad the last two axes of ``array`` symmetrically ("padded all round", ARMS Net §2.2) to ``size``.

    An odd difference puts the extra row/column at the bottom/right. ``value`` is a number, or
    ``"border"``: the median of each image's one-pixel border, which matches the image's own background
    whatever its polarity (AMFL padded the inverted images with 255, the fluorescence images have a dark
    background). Arrays larger than ``size`` are centre-cropped.
    """
    h, w = array.shape[-2:]
    th, tw = size
    out = array
    if h > th or w > tw:
        top, left = max(0, (h - th) // 2), max(0, (w - tw) // 2)
        out = out[..., top : top + min(h, th), left : left + min(w, tw)]
        h, w = out.shape[-2:]
    if (h, w) == (th, tw):
        return np.ascontiguousarray(out)
    pad = [(0, 0)] * (out.ndim - 2) + [((th - h) // 2, th - h - (th - h) // 2), ((tw - w) // 2, tw - w - (tw - w) // 2)]
    if isinstance(value, str):
        if value != "border":
            raise ValueError(f"pad value must be a number or 'border', got {value!r}")
        flat = out.reshape(-1, h, w)
        border = np.concatenate([flat[:, 0, :], flat[:, -1, :], flat[:, :, 0], flat[:, :, -1]], axis=1)
        med = np.median(border, axis=1).astype(out.dtype).reshape(out.shape[:-2])
        padded = np.empty(out.shape[:-2] + (th, tw), dtype=out.dtype)
        padded[...] = med[..., None, None]
        padded[..., pad[-2][0] : pad[-2][0] + h, pad[-1][0] : pad[-1][0] + w] = out
        return padded
    return np.pad(out, pad, mode="constant", constant_values=value)


def write_png_pairs(out_dir: str | Path, images: np.ndarray, labels: np.ndarray, *, first_index: int = 0) -> int:
    """Write (N, H, W) uint8 images and labels as ``images/pair_00000.png`` + ``masks/pair_00000.png``
    (class indices), the generic folder layout every command reads with ``--data``."""
    from PIL import Image

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    for i, (im, lb) in enumerate(zip(images, labels, strict=True)):
        name = f"pair_{first_index + i:05d}.png"
        Image.fromarray(np.asarray(im, dtype=np.uint8)).save(out_dir / "images" / name)
        Image.fromarray(np.asarray(lb, dtype=np.uint8)).save(out_dir / "masks" / name)
    return len(images)


GROUP_KEY = "slide"  # medseg data mfish-pairs: the slide (patient) of every pair, beside dataset_1


def read_groups(path: str | Path, n: int, *, key: str = GROUP_KEY) -> list[str] | None:
    """The group (slide/patient) of each of the first ``n`` pairs of a Pommier-layout file, from its optional
    ``key`` dataset of strings (written by ``medseg data mfish-pairs``), so that splits keep a slide's pairs
    together; None when the file has none (the published file: every pair its own unit)."""
    path = Path(path)
    with open_hdf5(path) as f:
        if key not in f or not isinstance(f[key], h5py.Dataset):
            return None
        ds = f[key]
        if ds.ndim != 1 or ds.shape[0] < n:
            raise DataValidationError(
                path, f"dataset '{key}' holds {ds.shape} values for {n} pairs; expected one group name per pair"
            )
        return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[:n]]
