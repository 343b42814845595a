"""The ``augment`` section: 2D augmentation and, under ``augment.volume``, that of 3D volumes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medseg.config_schema.base import Section

__all__ = ["AugmentConfig", "VolumeAugmentConfig"]


def _probability(value: float | None, where: str) -> None:
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{where} must be a probability in [0, 1], got {value!r}")


class VolumeAugmentConfig(Section):
    """3D volumes (task.spatial_dims 3) only, CTV thesis §2.1: rotation <= 10°, x/y/z flips, shifts <= 8 voxels,
    Gaussian noise of variance 0.001 (medseg.data.transforms3d)."""

    enabled: bool = True
    rotate_deg: float = 10.0
    rotate_axes: Literal["axial", "all"] = "axial"
    shift_voxels: float = 8.0
    affine_prob: float = 1.0
    flip_axes: list[int] = Field(default_factory=lambda: [0, 1, 2], description="array axes 0 (z), 1 (y), 2 (x)")
    flip_prob: float = 0.5
    noise_var: float = 0.001
    noise_prob: float = 1.0
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros"

    @model_validator(mode="after")
    def _checks(self):
        for key in ("flip_prob", "affine_prob", "noise_prob"):
            _probability(getattr(self, key), f"augment.volume.{key}")
        for key in ("rotate_deg", "shift_voxels", "noise_var"):
            if getattr(self, key) < 0:
                raise ValueError(f"augment.volume.{key} must be >= 0, got {getattr(self, key)!r}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"augment.volume.flip_axes are array axes 0 (z), 1 (y), 2 (x); got {self.flip_axes!r}")
        return self


class AugmentConfig(Section):
    flip_prob: float = Field(0.0, description="2D: random flips along each axis")
    rot90_prob: float = Field(0.0, description="2D: random 90° rotations")
    elastic_prob: float = Field(
        0.0,
        description="2D: probability of an elastic deformation (the GI paper, after "
        "Simard et al.; MONAI Rand2DElastic: image bilinear, masks nearest)",
    )
    elastic_spacing: list[float] = Field(
        default_factory=lambda: [16.0, 16.0],
        description=("2D elastic: distance between the deformation's control points, pixels [H, W]"),
    )
    elastic_magnitude: list[float] = Field(
        default_factory=lambda: [1.0, 2.0],
        description=(
            "2D elastic: range [lo, hi] of the control points' random displacement, in pixels "
            "(MONAI's magnitude_range; the smooth field between them moves pixels by about that much)"
        ),
    )
    noise_prob: float = Field(0.0, description="2D: probability of additive Gaussian noise on the image")
    noise_std: float = Field(0.05, description="2D: the noise's standard deviation (in the normalised input's units)")
    gamma_prob: float = Field(
        0.0, description="2D: probability of a random gamma on the image (MONAI RandAdjustContrastd)"
    )
    gamma_range: list[float] = Field(
        default_factory=lambda: [0.7, 1.5], description="2D gamma: [lo, hi], applied to the image rescaled to [0, 1]"
    )
    contrast_prob: float = Field(0.0, description="2D: probability of scaling the image's values (RandScaleIntensityd)")
    contrast_factor: float = Field(0.25, description="2D contrast: the values times 1 + U(-f, f)")
    blur_prob: float = Field(0.0, description="2D: probability of a Gaussian blur (RandGaussianSmoothd)")
    blur_sigma: list[float] = Field(default_factory=lambda: [0.5, 1.2], description="2D blur: sigma range [lo, hi], px")
    zoom_prob: float = Field(0.0, description="2D: probability of a random zoom (RandZoomd, label nearest)")
    zoom_range: list[float] = Field(
        default_factory=lambda: [0.85, 1.15], description="2D zoom: [lo, hi] factor; the image keeps its size"
    )
    volume: VolumeAugmentConfig = Field(default_factory=VolumeAugmentConfig)

    @model_validator(mode="after")
    def _checks(self):
        _probability(self.flip_prob, "augment.flip_prob")
        _probability(self.rot90_prob, "augment.rot90_prob")
        _probability(self.elastic_prob, "augment.elastic_prob")
        _probability(self.noise_prob, "augment.noise_prob")
        for key in ("gamma_prob", "contrast_prob", "blur_prob", "zoom_prob"):
            _probability(getattr(self, key), f"augment.{key}")
        for key in ("gamma_range", "blur_sigma", "zoom_range"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"augment.{key} must be [lo, hi] with 0 < lo <= hi, got {lo_hi!r}")
        if not 0 <= self.contrast_factor < 1:
            raise ValueError(f"augment.contrast_factor must be in [0, 1), got {self.contrast_factor!r}")
        if len(self.elastic_spacing) != 2 or min(self.elastic_spacing) <= 0:
            raise ValueError(
                f"augment.elastic_spacing must be two positive pixel distances [H, W], got {self.elastic_spacing!r}"
            )
        lo_hi = self.elastic_magnitude
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"augment.elastic_magnitude must be [lo, hi] with 0 <= lo <= hi, got {lo_hi!r}")
        if self.noise_std < 0:
            raise ValueError(f"augment.noise_std must be >= 0, got {self.noise_std!r}")
        return self
