"""One volume type for CT/MR data with its geometry, whatever file it came from.

``Volume.array`` is (D, H, W) = (z, y, x) in the patient's slice order; ``spacing`` is (z, y, x) in mm;
``origin`` the (x, y, z) position in mm of the first voxel in DICOM patient coordinates (LPS);
``direction`` the 3×3 matrix whose columns are the x, y, z axis directions (LPS). Readers and writers for
DICOM series, NIfTI and HDF5 live in :mod:`medseg.formats.volume_files`.

What a reader returns is checked in one place, :func:`validate_volume` (every volume reader ends with it;
the 2D image reader uses its :func:`check_values`): real numbers only (complex, string, object and void
arrays are refused, never cast), not empty, no NaN/inf, spacing finite and positive, origin finite,
direction finite and non-singular. A file that fails is refused with a DataValidationError naming it,
instead of a traceback or a "nan ml" volume further down the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError

_CHUNK_VALUES = 2**24  # NaN/inf are counted over slabs of this many values: no full-size boolean array


@dataclass
class Volume:
    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (z, y, x) mm
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (x, y, z) mm, LPS
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns: x, y, z axes, LPS
    modality: str | None = None
    meta: dict = field(default_factory=dict)  # e.g. StudyInstanceUID, SeriesInstanceUID, rescale, source path

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(f"a Volume is (D, H, W); got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def with_array(self, array: np.ndarray, **changes) -> Volume:
        """A volume on the same grid (a label map for this image, say)."""
        return Volume(
            array,
            changes.get("spacing", self.spacing),
            changes.get("origin", self.origin),
            changes.get("direction", self.direction),
            changes.get("modality", self.modality),
            dict(self.meta, **changes.get("meta", {})),
        )

    def affine_lps(self) -> np.ndarray:
        """4×4 voxel (x, y, z index) → LPS mm."""
        a = np.eye(4)
        sz, sy, sx = self.spacing
        a[:3, :3] = self.direction @ np.diag([sx, sy, sz])
        a[:3, 3] = self.origin
        return a

    def affine_ras(self) -> np.ndarray:
        """4×4 voxel (x, y, z index) → RAS mm, the NIfTI convention."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()


def check_dtype(path: str | Path | None, dtype: np.dtype, what: str = "image") -> None:
    """Refuse a data type that is not real numbers, before the data are read (from a header) or after."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise DataValidationError(
            path,
            f"{what} holds complex values ({dtype}); medseg reads real intensities only "
            "and will not drop the imaginary part: save the magnitude or the real part",
        )
    if dtype.kind not in "biuf":
        raise DataValidationError(path, f"{what} has data type {dtype}; expected integer or floating-point values")


def check_values(path: str | Path | None, array: np.ndarray, what: str = "image") -> None:
    """Refuse an array that is not real numbers (complex, strings, objects, records), is empty, or holds
    NaN/inf; the message names the file and, for NaN/inf, how many values."""
    check_dtype(path, array.dtype, what)
    kind = array.dtype.kind
    if array.size == 0:
        raise DataValidationError(path, f"{what} is empty (shape {tuple(array.shape)})")
    if kind == "f":
        array = np.atleast_1d(array)
        step = max(1, _CHUNK_VALUES // max(1, array.size // len(array)))  # rows of axis 0 per slab (views)
        bad = sum(int(np.count_nonzero(~np.isfinite(array[i : i + step]))) for i in range(0, len(array), step))
        if bad:
            raise DataValidationError(path, f"{what} holds {bad:,} NaN or infinite value(s) of {array.size:,}")


def validate_volume(volume: Volume, path: str | Path | None, what: str = "volume") -> Volume:
    """``volume`` if its values and geometry can be used (see the module docstring), else a
    DataValidationError naming ``path``. Every volume reader returns through here."""
    check_values(path, volume.array, what)
    spacing = np.asarray(volume.spacing, float)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise DataValidationError(
            path,
            f"{what} has voxel spacing {tuple(spacing.tolist())} mm (z, y, x); each must be a finite positive number",
        )
    origin = np.asarray(volume.origin, float)
    if not np.all(np.isfinite(origin)):
        raise DataValidationError(path, f"{what} has origin {tuple(origin.tolist())} mm; it must be finite")
    direction = np.asarray(volume.direction, float)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise DataValidationError(
            path,
            f"{what} has direction cosines {direction.round(6).tolist()}: not finite or "
            "singular (two axes parallel or one of length zero)",
        )
    return volume
