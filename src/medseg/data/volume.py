"""One volume type for CT/MR data with its geometry, whatever file it came from.

``Volume.array`` is (D, H, W) = (z, y, x) in the patient's slice order; ``spacing`` is (z, y, x) in mm;
``origin`` the (x, y, z) position in mm of the first voxel in DICOM patient coordinates (LPS);
``direction`` the 3×3 matrix whose columns are the x, y, z axis directions (LPS). Readers and writers for
DICOM series, NIfTI and HDF5 live in :mod:`medseg.data.volume_io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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

    def with_array(self, array: np.ndarray, **changes) -> "Volume":
        """A volume on the same grid (a label map for this image, say)."""
        return Volume(array, changes.get("spacing", self.spacing), changes.get("origin", self.origin),
                      changes.get("direction", self.direction), changes.get("modality", self.modality),
                      dict(self.meta, **changes.get("meta", {})))

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
