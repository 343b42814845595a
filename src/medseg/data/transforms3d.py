"""Preprocessing, augmentation and patch sampling for 3D CT volumes (the CTV thesis, §2.1).

Thesis §2.1 ("数据集与预处理"), followed number for number; every value is a config option whose default
is the thesis' value (``preprocess`` and ``augment.volume`` in :mod:`medseg.config_schema`):

Preprocessing (:func:`preprocess_volume`, :func:`preprocess_label`):

* clip the intensities above 1600 to 1600 (``preprocess.clip_max``); ``clip_min`` (default 0) clips below.
  The thesis' pixel values lie in 0…2072, so clipping at 0 changes nothing on its data; CT in Hounsfield
  units needs e.g. ``clip_min: -1000``.
* normalise linearly to 0…1. Reading chosen: ``normalize: range`` (default) maps the fixed window
  [clip_min, clip_max] to [0, 1] — the same mapping for every patient, 1600 → 1 and 0 → 0 — which is what
  a per-volume min/max also gives on the thesis' data (its minimum is 0 and every volume reaches 1600 after
  clipping). ``normalize: minmax`` rescales each clipped volume by its own min and max.
* resample z to a fixed depth of 72 slices ("双线性插值": linear interpolation along z; with x/y untouched
  this is what trilinear resizing does), x and y kept at 256 (``preprocess.size_xy: [256, 256]``; the
  thesis' images are all 256 × 256, so this changes nothing there and makes any other set the same size;
  ``size_xy: null`` keeps each volume's own x/y). Labels are resampled with nearest-neighbour interpolation
  ("nearest-exact", which picks the voxel whose centre is nearest) so they stay binary.
  ``align_corners`` (default False: voxel centres of the new grid are spread over the same physical extent)
  is an option.

Augmentation (:func:`build_train_transform_3d`; MONAI dictionary transforms, image and label together,
the label always with nearest interpolation):

* random rotation of at most 10° (``augment.volume.rotate_deg``). The thesis does not name the axis:
  ``rotate_axes: axial`` (default) turns the (y, x) plane about z — the slices are much thicker than the
  pixels are wide after resampling to 72, and turning about x or y would mix slices; ``all`` also turns
  about y and x by up to the same angle.
* flips along x, y and z (``flip_axes: [0, 1, 2]`` in array order z, y, x), each with probability
  ``flip_prob`` = 0.5 (the thesis gives no probability).
* random shifts of at most 8 voxels along each of the three axes (``shift_voxels``), uniform in
  [-8, 8]. Rotation and shift are one affine resampling (one interpolation, ``affine_prob`` = 1: every
  sample, the angle and shift drawn uniformly so small ones are as likely as large ones); voxels moved in
  from outside are 0 (``padding_mode: zeros``; after normalisation 0 is air).
* Gaussian noise of variance 0.001 (``noise_var``), i.e. standard deviation √0.001 ≈ 0.0316, added to
  every training sample (``noise_prob`` = 1; the thesis adds it to "the training samples"). The std is
  fixed (MONAI's ``sample_std=False``), not drawn from [0, std] as MONAI does by default.

Patch sampling (not in the thesis, which fed whole 72 × 256 × 256 volumes with batch 1): with
``data.patch_size: [d, h, w]`` each training sample is one random patch taken after the augmentation
(so shifted/rotated content, not zero borders, fills it), padded first where the volume is smaller.
``data.patch_pos_fraction: null`` samples the patch centre uniformly (MONAI ``RandSpatialCropd``); a
number p samples it in the target with probability p and in the background otherwise
(``RandCropByPosNegLabeld``), useful when the target is a small part of the volume.

Randomness: MONAI transforms keep their own NumPy generators; every call reseeds them from torch's
global generator, so a training run seeded through :func:`medseg.training.seeding.seed_everything`
draws the same augmentations again (bit-exact resume).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandSpatialCropd,
    Resize,
    ScaleIntensity,
    ScaleIntensityRange,
    SpatialPadd,
)

from medseg.config import section_settings
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.volume import Volume

KEYS = ("image", "label")


# --- settings -------------------------------------------------------------------------------------------


def _section(cfg: dict | None, *path: str) -> dict:
    """The ``path`` section of ``cfg`` (a whole config, or None for the defaults) as a plain dict.

    No defaults or checks of its own: the section goes through its schema model
    (:func:`medseg.config.section_settings`), which returns a config from :func:`medseg.config.load_config`
    unchanged and completes and checks a section given alone (a saved model.json's preprocessing, a
    hand-written dict) with the same defaults and checks as ``load_config``.
    """
    node = cfg
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return section_settings(".".join(path), node)


def preprocess_settings(cfg: dict | None = None) -> dict:
    """The ``preprocess`` section of ``cfg`` (a whole config; None: the thesis defaults)."""
    return _section(cfg, "preprocess")


def augment_settings(cfg: dict | None = None) -> dict:
    """The ``augment.volume`` section of ``cfg`` (None: the thesis defaults)."""
    return _section(cfg, "augment", "volume")


def patch_settings(cfg: dict | None) -> tuple[tuple[int, int, int] | None, float | None]:
    """``(data.patch_size, data.patch_pos_fraction)`` of a config (checked by the schema: size [D, H, W],
    fraction in [0, 1], a fraction only with a size)."""
    data = _section(cfg, "data")
    size, pos = data["patch_size"], data["patch_pos_fraction"]
    return (None if size is None else tuple(int(v) for v in size)), (None if pos is None else float(pos))


# --- preprocessing --------------------------------------------------------------------------------------


def _as_array(volume: np.ndarray | Volume) -> tuple[np.ndarray, Path | None]:
    if isinstance(volume, Volume):
        source = volume.meta.get("source") or volume.meta.get("path")
        return volume.array, None if source is None else Path(str(source))
    return np.asarray(volume), None


def _check(arr: np.ndarray, path: Path | None, what: str, channel: bool = False) -> None:
    want = 4 if channel else 3
    if arr.ndim != want and not (channel and arr.ndim == 3):
        raise DataValidationError(path, f"{what} must be a 3D array (D, H, W) = (z, y, x), got shape {arr.shape}")
    if arr.size == 0:
        raise DataValidationError(path, f"{what} is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataValidationError(path, f"{what} has non-numeric dtype {arr.dtype}")


def clip_and_normalize(array: np.ndarray, settings: dict) -> np.ndarray:
    """Clip to [clip_min, clip_max] and normalise (see the module docstring), float32.

    ``normalize: zscore`` is nnU-Net's intensity normalisation: ``(v - mean) / std`` after clipping, with the
    fixed ``mean``/``std`` of the settings (CT: the training set's foreground statistics, so one tissue keeps
    one value in every volume) or, when they are null, each volume's own mean and std (MR, whose intensities
    have no absolute scale); a constant volume becomes all zeros instead of NaN.
    """
    x = torch.as_tensor(np.asarray(array, dtype=np.float32))
    lo, hi = settings["clip_min"], settings["clip_max"]
    mode = settings["normalize"]
    if mode == "range":
        # (v - lo) / (hi - lo) after clipping: 1600 → 1, 0 → 0 with the thesis values.
        return np.asarray(ScaleIntensityRange(float(lo), float(hi), 0.0, 1.0, clip=True)(x), dtype=np.float32)
    if lo is not None or hi is not None:
        x = x.clamp(min=None if lo is None else float(lo), max=None if hi is None else float(hi))
    if mode == "minmax":
        x = ScaleIntensity(minv=0.0, maxv=1.0)(x)
    elif mode == "zscore":
        if settings.get("mean") is not None:
            mean, std = float(settings["mean"]), float(settings["std"])
        else:  # each volume's own statistics, in float64 so a large volume's sum does not lose precision
            mean, std = float(x.double().mean()), float(x.double().std(correction=0))
        x = (x - mean) / std if std > 1e-8 else torch.zeros_like(x)
    return np.asarray(x, dtype=np.float32)


def _target_shape(shape: Sequence[int], settings: dict) -> tuple[int, int, int]:
    d = int(settings["depth"]) if settings["depth"] is not None else int(shape[0])
    hw = (
        tuple(int(v) for v in settings["size_xy"])
        if settings["size_xy"] is not None
        else tuple(int(v) for v in shape[1:])
    )
    return (d, *hw)


def resize_volume(
    array: np.ndarray, shape: Sequence[int], *, mode: str = "trilinear", align_corners: bool = False
) -> np.ndarray:
    """Resample (D, H, W) or (C, D, H, W) to spatial ``shape`` (MONAI ``Resize``); ``mode`` ``nearest``
    (label maps: MONAI's "nearest-exact", the nearest voxel centre), ``trilinear`` or ``area``."""
    arr = np.asarray(array)
    channel = arr.ndim == 4
    x = torch.as_tensor(arr if channel else arr[None])
    if tuple(x.shape[1:]) == tuple(shape):
        return arr.copy()
    dtype = x.dtype
    if mode == "nearest":
        out = Resize(tuple(shape), mode="nearest-exact", dtype=torch.float32)(x.float())
        out = torch.as_tensor(out).round().to(dtype)
    else:
        out = torch.as_tensor(
            Resize(
                tuple(shape), mode=mode, align_corners=None if mode == "area" else align_corners, dtype=torch.float32
            )(x.float())
        )
    out = np.asarray(out)
    return out if channel else out[0]


def resampled_geometry(volume: Volume, shape: Sequence[int], align_corners: bool = False) -> dict:
    """Spacing and origin of ``volume`` resampled to ``shape`` (same extent, same direction)."""
    old = volume.shape
    spacing, shift = [], []
    for n_old, n_new, s in zip(old, shape, volume.spacing, strict=False):
        if align_corners and n_new > 1:
            new_s = s * (n_old - 1) / (n_new - 1)
            first = 0.0  # the first voxel centre stays where it was
        else:
            new_s = s * n_old / n_new
            first = (new_s - s) / 2  # centre of new voxel 0 at old index (0.5·n_old/n_new − 0.5)
        spacing.append(new_s)
        shift.append(first)
    sz, sy, sx = shift
    origin = np.asarray(volume.origin) + volume.direction @ np.array([sx, sy, sz])
    return {"spacing": tuple(spacing), "origin": tuple(float(v) for v in origin)}


def preprocess_volume(volume: np.ndarray | Volume, cfg: dict | None = None) -> np.ndarray | Volume:
    """The thesis' preprocessing of one CT volume: clip, normalise to [0, 1], resample to (72, 256, 256).

    ``volume``: a (D, H, W) = (z, y, x) array or a :class:`~medseg.formats.volume.Volume`; ``cfg``: a whole
    config (its ``preprocess`` section is used) or None for the thesis values. Returns float32 of shape
    (depth, *size_xy) — a Volume (spacing and origin updated for the new grid) when given a Volume.
    """
    arr, path = _as_array(volume)
    _check(arr, path, "a CT volume")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise DataValidationError(path, "the volume holds NaN or infinite values")
    s = preprocess_settings(cfg)
    shape = _target_shape(arr.shape, s)
    out = resize_volume(clip_and_normalize(arr, s), shape, mode=s["depth_mode"], align_corners=bool(s["align_corners"]))
    out = np.ascontiguousarray(out, dtype=np.float32)
    if isinstance(volume, Volume):
        geo = resampled_geometry(volume, shape, bool(s["align_corners"]))
        return volume.with_array(out, spacing=geo["spacing"], origin=geo["origin"])
    return out


def preprocess_label(label: np.ndarray | Volume, cfg: dict | None = None) -> np.ndarray | Volume:
    """A label map (D, H, W) or (C, D, H, W) on the grid :func:`preprocess_volume` makes: nearest
    interpolation, dtype kept, so a binary mask stays binary."""
    arr, path = _as_array(label)
    _check(arr, path, "a label map", channel=True)
    s = preprocess_settings(cfg)
    shape = _target_shape(arr.shape[-3:], s)
    out = np.ascontiguousarray(resize_volume(arr, shape, mode="nearest"))
    if isinstance(label, Volume):
        geo = resampled_geometry(label, shape, bool(s["align_corners"]))
        return label.with_array(out, spacing=geo["spacing"], origin=geo["origin"])
    return out


def restore_shape(
    proba: np.ndarray, shape: Sequence[int], *, mode: str = "trilinear", align_corners: bool = False
) -> np.ndarray:
    """Probabilities (C, d, h, w) predicted on the preprocessed grid → (C, *shape) on the original grid
    (the inverse resampling of :func:`preprocess_volume`; threshold or argmax afterwards)."""
    proba = np.asarray(proba, dtype=np.float32)
    if proba.ndim != 4:
        raise ValueError(f"expected probabilities (C, D, H, W), got shape {proba.shape}")
    return resize_volume(proba, tuple(int(v) for v in shape), mode=mode, align_corners=align_corners)


# --- augmentation and patches ---------------------------------------------------------------------------


def augmentation_transforms(settings: dict) -> list:
    """The thesis' augmentation as MONAI dictionary transforms on channel-first ``image``/``label``."""
    ts: list = []
    rad = math.radians(float(settings["rotate_deg"]))
    shift = float(settings["shift_voxels"])
    if float(settings["affine_prob"]) > 0 and (rad > 0 or shift > 0):
        # MONAI's rotate_range[0] turns the plane of array axes 1 and 2, i.e. (y, x) about z (checked in
        # the tests); translate_range is in voxels.
        rotate = (rad, rad, rad) if settings["rotate_axes"] == "all" else (rad, 0.0, 0.0)
        ts.append(
            RandAffined(
                list(KEYS),
                prob=float(settings["affine_prob"]),
                rotate_range=rotate,
                translate_range=(shift, shift, shift),
                mode=("bilinear", "nearest"),
                padding_mode=settings["padding_mode"],
            )
        )
    if float(settings["flip_prob"]) > 0:
        ts += [
            RandFlipd(list(KEYS), prob=float(settings["flip_prob"]), spatial_axis=int(a)) for a in settings["flip_axes"]
        ]
    return ts


def noise_transform(settings: dict):
    var = float(settings["noise_var"])
    if var <= 0 or float(settings["noise_prob"]) <= 0:
        return None
    return RandGaussianNoised(
        "image", prob=float(settings["noise_prob"]), mean=0.0, std=math.sqrt(var), sample_std=False
    )


def patch_transforms(patch_size: Sequence[int], pos_fraction: float | None) -> list:
    ts: list = [SpatialPadd(list(KEYS), spatial_size=tuple(patch_size), mode="constant")]
    if pos_fraction is None:
        ts.append(RandSpatialCropd(list(KEYS), roi_size=tuple(patch_size), random_size=False))
    else:
        ts.append(
            RandCropByPosNegLabeld(
                list(KEYS),
                label_key="label",
                spatial_size=tuple(patch_size),
                pos=pos_fraction,
                neg=1.0 - pos_fraction,
                num_samples=1,
                allow_smaller=False,
            )
        )
    return ts


class VolumeTrainTransform:
    """Applies the 3D training pipeline to a dataset sample ``{"image": (1, D, H, W), "label": ...}``.

    The label is (D, H, W) class indices (multiclass) or (C, D, H, W) masks (multilabel); it comes back in
    the same layout and dtype. Order: rotation + shift, flips, patch crop, noise.
    """

    def __init__(self, transforms: list):
        self.transforms = list(transforms)
        self.compose = Compose(self.transforms) if self.transforms else None

    def __call__(self, sample: dict) -> dict:
        if self.compose is None:
            return sample
        sample = dict(sample)
        image, label = torch.as_tensor(sample["image"]), torch.as_tensor(sample["label"])
        if image.ndim != 4:
            raise ValueError(f"a 3D training sample's image must be (1, D, H, W), got {tuple(image.shape)}")
        channel = label.ndim == 4
        label_dtype = label.dtype
        sample["image"] = image.float()
        sample["label"] = (label if channel else label[None]).float()
        # MONAI's generators are reseeded from torch's, which the trainer seeds per epoch.
        self.compose.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        out = self.compose(sample)
        if isinstance(out, list):  # RandCropByPosNegLabeld returns a list of num_samples (= 1) samples
            out = out[0]
        out = dict(out)
        img = out["image"].as_tensor() if hasattr(out["image"], "as_tensor") else torch.as_tensor(out["image"])
        lab = out["label"].as_tensor() if hasattr(out["label"], "as_tensor") else torch.as_tensor(out["label"])
        out["image"] = img.float().contiguous()
        lab = lab.round().to(label_dtype)
        out["label"] = (lab if channel else lab[0]).contiguous()
        return out


def build_train_transform_3d(cfg: dict | None) -> VolumeTrainTransform | None:
    """The training transform of a 3D config: ``augment.volume`` (thesis §2.1) and ``data.patch_size``.

    Returns None when nothing is switched on. ``cfg`` is a whole config (``{"augment": ...}`` suffices
    when no patches are wanted). The data are expected already preprocessed (:func:`preprocess_volume`).
    """
    aug = augment_settings(cfg)
    flat = (cfg or {}).get("augment") or {}
    for key in ("flip_prob", "rot90_prob"):
        if float(flat.get(key) or 0.0) > 0:
            raise ConfigError(
                f"augment.{key} is a 2D setting; 3D volumes take augment.volume "
                f"(flip_prob, flip_axes, rotate_deg, shift_voxels, noise_var)"
            )
    patch, pos = patch_settings(cfg)
    if patch is not None and len(patch) != 3:  # the schema takes [H, W] too (2D patches, medseg.data.transforms)
        raise ConfigError(f"data.patch_size must be [D, H, W] voxels for 3D volumes, got {list(patch)!r}")
    ts: list = []
    if aug["enabled"]:
        ts += augmentation_transforms(aug)
    if patch is not None:
        ts += patch_transforms(patch, pos)
    noise = noise_transform(aug) if aug["enabled"] else None
    if noise is not None:
        ts.append(noise)
    return VolumeTrainTransform(ts) if ts else None


__all__ = [
    "VolumeTrainTransform",
    "augment_settings",
    "augmentation_transforms",
    "build_train_transform_3d",
    "clip_and_normalize",
    "noise_transform",
    "patch_settings",
    "patch_transforms",
    "preprocess_label",
    "preprocess_settings",
    "preprocess_volume",
    "resampled_geometry",
    "resize_volume",
    "restore_shape",
]
