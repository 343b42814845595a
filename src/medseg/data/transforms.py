"""2D training transforms: augmentation (MONAI dictionary transforms), random patches, input normalisation.

The chromosome papers train without augmentation (none is described), so everything defaults to off;
flips and 90° rotations keep the α/β/overlap label semantics intact, which is why they are the ones offered.
The GI-tract paper (§IV-D) adds elastic deformation (Simard et al.) and Gaussian noise on the image
(``augment.elastic_*``, ``augment.noise_*``; :func:`_augmentation_2d`). Labels may be (H, W) class indices
or (K, H, W) 0/1 channels (multilabel); both keep their layout, dtype and values.

Patches (``data.patch_size: [H, W]``): full-resolution images (``data.size: null``) are far larger
than a batch of them can be, so each training sample is one random patch of its image, drawn after the
flips/rotations (which see the whole image, so a rotated non-square image still yields a square patch).
``data.patch_pos_fraction`` is nnU-Net's foreground oversampling: with that probability the patch is centred
on a random foreground pixel, otherwise its position is uniform, so over many draws every pixel of the
image is inside some patch. An image smaller than the patch is padded (image 0, label background). Only
training uses patches: validation and prediction see whole images (by sliding window with
``evaluate.sliding_window.roi_size``).

Input normalisation (``data.normalize``): the stored images are the dtype's range mapped to [0, 1]
(``range``, what medseg did before ``zscore`` was offered); ``zscore`` feeds the network each image's own
``(x − mean) / std`` instead (:func:`normalize_input`), computed on the whole image before any patch is cut —
the same function the predictor applies at inference, so a model sees the same numbers in training and in use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError

# Smallest standard deviation a z-scored image is divided by: a constant image (std 0) becomes all zeros
# instead of NaN. Images are in [0, 1] before the z-score, so 1e-6 is far below any real image's spread.
ZSCORE_STD_FLOOR = 1e-6
NORMALIZE_MODES = ("range", "zscore", "minmax")


def normalize_input(image: np.ndarray, mode: str = "range") -> np.ndarray:
    """The network input for one image (any shape, float, dtype range in [0, 1]) under ``data.normalize``.

    ``range``: unchanged (the stored [0, 1] values). ``zscore``: ``(x − mean) / max(std, ZSCORE_STD_FLOOR)``
    over the whole image, as float32. A z-score is unchanged by any linear rescaling of ``x``, so it gives the
    same result whether it is applied to the raw pixels or to their [0, 1] range mapping. ``minmax``:
    ``(x − min) / (max − min)`` over the whole image (a 2.5D stack: over all its slices, so they keep their
    relative brightness), to [0, 1]; a constant image becomes all zeros. Like the z-score it ignores any linear
    rescaling of ``x``: 16-bit MR slices whose values fill a small, scan-dependent part of the range come out
    on one scale.
    """
    if mode == "range":
        return image
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"data.normalize must be one of {NORMALIZE_MODES}, got {mode!r}")
    x = np.asarray(image, dtype=np.float32)
    if mode == "minmax":
        lo, hi = float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 0.0
        if hi - lo <= ZSCORE_STD_FLOOR:
            return np.zeros_like(x)
        return ((x - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32, copy=False)
    mean = float(x.mean(dtype=np.float64))
    std = max(float(x.std(dtype=np.float64)), ZSCORE_STD_FLOOR)
    return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32, copy=False)


class RandomPatch2D:
    """One random ``patch_size`` patch of a sample ``{"image": (C, H, W), "label": (H, W) | (K, H, W)}``.

    ``pos_fraction``: probability that the patch is centred on a foreground pixel (label ≠ ``background``;
    for channel labels (multilabel) any channel set); else, and when the image holds no foreground, the
    patch's top-left corner is uniform over every position that keeps it inside the image. ``background``
    None (no background class): every pixel is foreground, so the centre is a uniform pixel. Images smaller
    than the patch are padded centred first (image 0, label ``background`` or 0). Random numbers come from
    torch's global generator, which the trainer seeds per epoch (and DataLoader per worker).
    """

    def __init__(self, patch_size: Sequence[int], pos_fraction: float | None = None, background: int | None = 0):
        if len(patch_size) != 2 or min(int(v) for v in patch_size) < 1:
            raise ValueError(f"a 2D patch size must be [H, W] pixels, got {list(patch_size)!r}")
        if pos_fraction is not None and not 0.0 <= float(pos_fraction) <= 1.0:
            raise ValueError(f"patch_pos_fraction must be in [0, 1] or None, got {pos_fraction!r}")
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.pos_fraction = None if pos_fraction is None else float(pos_fraction)
        self.background = background

    def _pad(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad (centred) an image and its label smaller than the patch up to the patch size."""
        h, w = image.shape[-2:]
        ph, pw = self.patch_size
        if h >= ph and w >= pw:
            return image, label
        dh, dw = max(ph - h, 0), max(pw - w, 0)
        pad = [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2]
        if label.ndim == 2:  # class indices: the padding is background
            fill = 0 if self.background is None else int(self.background)
            return F.pad(image, pad, value=0.0), F.pad(label[None], pad, value=fill)[0]
        return F.pad(image, pad, value=0.0), F.pad(label, pad, value=0)  # channels: nothing set

    def _foreground(self, label: torch.Tensor) -> torch.Tensor:
        """Flat mask of the foreground pixels of an (H, W) index label or a (K, H, W) channel label."""
        if label.ndim == 3:
            return label.reshape(label.shape[0], -1).any(0)
        if self.background is None:
            return torch.ones(label.numel(), dtype=torch.bool)
        return label.reshape(-1) != self.background

    def corner(self, label: torch.Tensor) -> tuple[int, int]:
        """Top-left corner (y, x) of the next patch on an (already padded) label of at least the patch size."""
        h, w = label.shape[-2:]
        ph, pw = self.patch_size
        if self.pos_fraction is not None and float(torch.rand(())) < self.pos_fraction:
            fg = torch.nonzero(self._foreground(label)).flatten()
            if len(fg):
                flat = int(fg[int(torch.randint(len(fg), ()))])
                cy, cx = divmod(flat, w)
                return min(max(cy - ph // 2, 0), h - ph), min(max(cx - pw // 2, 0), w - pw)
        return int(torch.randint(h - ph + 1, ())), int(torch.randint(w - pw + 1, ()))

    def __call__(self, sample: dict) -> dict:
        sample = dict(sample)
        image, label = torch.as_tensor(sample["image"]), torch.as_tensor(sample["label"])
        if image.ndim != 3:
            raise ValueError(f"a 2D training sample's image must be (C, H, W), got {tuple(image.shape)}")
        image, label = self._pad(image, label)
        top, left = self.corner(label)
        ph, pw = self.patch_size
        sample["image"] = image[..., top : top + ph, left : left + pw].contiguous()
        sample["label"] = label[..., top : top + ph, left : left + pw].contiguous()
        return sample


class _Chain:
    """Applies 2D training transforms in order (augmentation on the whole image, then the patch)."""

    def __init__(self, transforms: list[Callable]):
        self.transforms = transforms

    def __call__(self, sample: dict) -> dict:
        for t in self.transforms:
            sample = t(sample)
        return sample


def build_train_transform(cfg: dict) -> Callable | None:
    """The training transform of a validated config (:func:`medseg.config.load_config`), given once.

    2D: ``augment.flip_prob`` / ``augment.rot90_prob`` / ``augment.elastic_*`` / ``augment.noise_*``
    (:func:`_augmentation_2d`) on the whole image, then a ``data.patch_size`` patch
    (:class:`RandomPatch2D`, foreground-oversampled by ``data.patch_pos_fraction``, ``task.background`` the
    class that is not foreground). 3D (``task.spatial_dims: 3``): the CTV thesis pipeline of
    :func:`medseg.data.transforms3d.build_train_transform_3d` from ``augment.volume`` and ``data.patch_size``
    patches (the 2D keys are not used there: set ``augment.volume`` instead). None when nothing is on."""
    spatial_dims = int(cfg["task"]["spatial_dims"])
    if spatial_dims == 3:
        from medseg.data.transforms3d import build_train_transform_3d

        flat = cfg.get("augment") or {}
        for key in ("elastic_prob", "noise_prob"):
            if float(flat.get(key) or 0.0) > 0:
                raise ConfigError(
                    f"augment.{key} is a 2D setting; 3D volumes take augment.volume "
                    f"(flip_prob, flip_axes, rotate_deg, shift_voxels, noise_var)"
                )
        return build_train_transform_3d(cfg)
    ts: list[Callable] = []
    augment = _augmentation_2d(cfg["augment"], cfg["task"].get("background", 0))
    if augment is not None:
        ts.append(augment)
    patch = cfg["data"].get("patch_size")
    if patch:
        ts.append(RandomPatch2D(patch, cfg["data"].get("patch_pos_fraction"), cfg["task"].get("background", 0)))
    if not ts:
        return None
    return ts[0] if len(ts) == 1 else _Chain(ts)


def _augmentation_2d(aug_cfg: dict, background: int | None = 0) -> Callable | None:
    """The 2D augmentation of an ``augment`` section as MONAI dictionary transforms, in this order: flips along
    each axis (``flip_prob``), 90° rotations (``rot90_prob``), an elastic deformation (``elastic_*``) and
    Gaussian noise on the image (``noise_*``); None when every probability is 0.

    Elastic deformation (the GI-tract paper §IV-D, after Simard et al.; MONAI ``Rand2DElasticd``): a grid of
    control points ``elastic_spacing`` pixels apart, each moved by a normal random offset whose scale is drawn
    per sample uniformly from ``elastic_magnitude`` = [lo, hi], interpolated smoothly (bicubic) to every pixel.
    MONAI adds those offsets in *pixels* (measured: magnitude 1 → about 1 px standard deviation of the
    displacement, 2 → about 1.7 px after the smoothing), whatever the spacing. One deformation per sample,
    shared by every image channel (a 2.5D stack stays aligned) and the label; the image is interpolated
    bilinearly, the label by nearest neighbour (labels keep their exact values), and what comes in from outside
    the image is 0 for the image and background / nothing-set for the label (``_ChannelFirstLabel``).

    Noise (``RandGaussianNoised``, the image only): N(0, ``noise_std``²) added to every pixel with probability
    ``noise_prob``, with exactly that standard deviation (``sample_std=False``; MONAI's default would draw the
    std uniformly from [0, noise_std] per sample). It is added after the deformation, so no noise is
    interpolated.

    What differs between microscopes and scanners (the three imaging systems of the M-FISH set, say), each with
    its own probability, after the geometry and before the noise: a zoom (``zoom_*``, ``RandZoomd``: the image
    bilinear, the label nearest, the size kept), a blur (``blur_*``, ``RandGaussianSmoothd``), a gamma
    (``gamma_*``, ``RandAdjustContrastd``, on the image's own value range) and a contrast scale (``contrast_*``,
    ``RandScaleIntensityd``: values × (1 + U(−f, f))).
    """
    flip = float(aug_cfg["flip_prob"])
    rot = float(aug_cfg["rot90_prob"])
    elastic = float(aug_cfg.get("elastic_prob", 0.0))
    noise = float(aug_cfg.get("noise_prob", 0.0))
    looks = {k: float(aug_cfg.get(f"{k}_prob", 0.0)) for k in ("zoom", "blur", "gamma", "contrast")}
    if max(flip, rot, elastic, noise, *looks.values()) <= 0:
        return None
    from monai.transforms import (
        Compose,
        Rand2DElasticd,
        RandFlipd,
        RandGaussianNoised,
        RandRotate90d,
    )

    keys = ["image", "label"]
    ts = []
    if flip > 0:
        ts += [RandFlipd(keys, prob=flip, spatial_axis=a) for a in range(2)]
    if rot > 0:
        ts.append(RandRotate90d(keys, prob=rot, max_k=3, spatial_axes=(0, 1)))
    if elastic > 0:
        spacing = tuple(float(v) for v in aug_cfg.get("elastic_spacing", (16.0, 16.0)))
        lo, hi = (float(v) for v in aug_cfg.get("elastic_magnitude", (1.0, 2.0)))
        ts.append(
            Rand2DElasticd(
                keys,
                spacing=spacing,
                magnitude_range=(lo, hi),
                prob=elastic,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            )
        )
    ts += _imaging_looks(aug_cfg, looks)
    if noise > 0:
        ts.append(
            RandGaussianNoised(
                ["image"], prob=noise, mean=0.0, std=float(aug_cfg.get("noise_std", 0.05)), sample_std=False
            )
        )
    return _ChannelFirstLabel(Compose(ts), background=background)


def _imaging_looks(aug_cfg: dict, looks: dict[str, float]) -> list:
    """The zoom, blur, gamma and contrast transforms of :func:`_augmentation_2d` whose probability is > 0."""
    from monai.transforms import RandAdjustContrastd, RandGaussianSmoothd, RandScaleIntensityd, RandZoomd

    def lo_hi(key: str, default: tuple[float, float]) -> tuple[float, float]:
        lo, hi = (float(v) for v in aug_cfg.get(key) or default)
        return lo, hi

    ts: list = []
    if looks["zoom"] > 0:
        lo, hi = lo_hi("zoom_range", (0.85, 1.15))
        ts.append(
            RandZoomd(
                ["image", "label"],
                prob=looks["zoom"],
                min_zoom=lo,
                max_zoom=hi,
                mode=("bilinear", "nearest"),
                padding_mode="constant",
                keep_size=True,
            )
        )
    if looks["blur"] > 0:
        lo, hi = lo_hi("blur_sigma", (0.5, 1.2))
        ts.append(RandGaussianSmoothd(["image"], sigma_x=(lo, hi), sigma_y=(lo, hi), prob=looks["blur"]))
    if looks["gamma"] > 0:
        ts.append(RandAdjustContrastd(["image"], prob=looks["gamma"], gamma=lo_hi("gamma_range", (0.7, 1.5))))
    if looks["contrast"] > 0:
        f = float(aug_cfg.get("contrast_factor", 0.25))
        ts.append(RandScaleIntensityd(["image"], factors=(-f, f), prob=looks["contrast"]))
    return ts


class _ChannelFirstLabel:
    """Runs MONAI dictionary transforms on a 2D sample ``{"image": (C, H, W), "label": (H, W) | (K, H, W)}``.

    MONAI's spatial transforms want channel-first arrays: a class-index label (H, W) (multiclass) gets a
    channel axis for the call and loses it afterwards; a channel label (K, H, W) (multilabel, one 0/1 map per
    class) has its channel axis already and goes through as it is (each map moved like the image). The label
    is float32 during the call and comes back rounded, in its own dtype and layout (nearest-neighbour
    interpolation only ever copies label values, so the rounding changes nothing). Index labels are shifted
    by ``-background`` during the call, so what a deformation pads with (0) is the background class when it
    is not class 0 (``background`` None: no shift). The image keeps its dtype.

    Randomness: MONAI transforms keep their own NumPy generators; every call reseeds them from torch's global
    generator (as the 3D pipeline does), which the trainer seeds per epoch and DataLoader per worker, so a
    seeded run draws the same augmentations again.
    """

    def __init__(self, inner: Callable, background: int | None = 0):
        self.inner = inner
        self.background = background

    def __call__(self, sample: dict) -> dict:
        sample = dict(sample)
        image, label = torch.as_tensor(sample["image"]), torch.as_tensor(sample["label"])
        if image.ndim != 3:
            raise ValueError(f"a 2D training sample's image must be (C, H, W), got {tuple(image.shape)}")
        if label.ndim not in (2, 3) or tuple(label.shape[-2:]) != tuple(image.shape[-2:]):
            raise ValueError(
                f"a 2D training sample's label must be (H, W) class indices or (K, H, W) channels of "
                f"the image's size, got {tuple(label.shape)} for an image {tuple(image.shape)}"
            )
        channel = label.ndim == 3
        shift = 0 if channel or self.background is None else int(self.background)
        label_dtype = label.dtype
        lab = label.float()
        if shift:
            lab = lab - shift
        sample["image"] = image
        sample["label"] = lab if channel else lab[None]
        if hasattr(self.inner, "set_random_state"):
            self.inner.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        out = dict(self.inner(sample))
        img = out["image"].as_tensor() if hasattr(out["image"], "as_tensor") else torch.as_tensor(out["image"])
        lab = out["label"].as_tensor() if hasattr(out["label"], "as_tensor") else torch.as_tensor(out["label"])
        if shift:
            lab = lab + shift
        out["image"] = (img.to(image.dtype) if image.is_floating_point() else img).contiguous()
        out["label"] = (lab if channel else lab[0]).round().to(label_dtype).contiguous()
        return out


__all__ = ["NORMALIZE_MODES", "ZSCORE_STD_FLOOR", "RandomPatch2D", "build_train_transform", "normalize_input"]
