"""2D training transforms: augmentation (MONAI dictionary transforms), random patches, input normalisation.

The chromosome papers train without augmentation (none is described), so everything defaults to off;
flips and 90° rotations keep the α/β/overlap label semantics intact, which is why they are the ones offered.

Patches (``data.patch_size: [H, W]``, issue 12): full-resolution images (``data.size: null``) are far larger
than a batch of them can be, so each training sample is one random patch of its image, drawn after the
flips/rotations (which see the whole image, so a rotated non-square image still yields a square patch).
``data.patch_pos_fraction`` is nnU-Net's foreground oversampling: with that probability the patch is centred
on a random foreground pixel, otherwise its position is uniform, so over many draws every pixel of the
image is inside some patch. An image smaller than the patch is padded (image 0, label background). Only
training uses patches: validation and prediction see whole images (by sliding window with
``evaluate.sliding_window.roi_size``).

Input normalisation (``data.normalize``): the stored images are the dtype's range mapped to [0, 1]
(``range``, as before issue 12); ``zscore`` feeds the network each image's own ``(x − mean) / std`` instead
(:func:`normalize_input`), computed on the whole image before any patch is cut — the same function the
predictor applies at inference, so a model sees the same numbers in training and in use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# Smallest standard deviation a z-scored image is divided by: a constant image (std 0) becomes all zeros
# instead of NaN. Images are in [0, 1] before the z-score, so 1e-6 is far below any real image's spread.
ZSCORE_STD_FLOOR = 1e-6
NORMALIZE_MODES = ("range", "zscore")


def normalize_input(image: np.ndarray, mode: str = "range") -> np.ndarray:
    """The network input for one image (any shape, float, dtype range in [0, 1]) under ``data.normalize``.

    ``range``: unchanged (the stored [0, 1] values). ``zscore``: ``(x − mean) / max(std, ZSCORE_STD_FLOOR)``
    over the whole image, as float32. A z-score is unchanged by any linear rescaling of ``x``, so it gives the
    same result whether it is applied to the raw pixels or to their [0, 1] range mapping.
    """
    if mode == "range":
        return image
    if mode != "zscore":
        raise ValueError(f"data.normalize must be one of {NORMALIZE_MODES}, got {mode!r}")
    x = np.asarray(image, dtype=np.float32)
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

    2D: ``augment.flip_prob`` / ``augment.rot90_prob`` on the whole image, then a ``data.patch_size`` patch
    (:class:`RandomPatch2D`, foreground-oversampled by ``data.patch_pos_fraction``, ``task.background`` the
    class that is not foreground). 3D (``task.spatial_dims: 3``): the CTV thesis pipeline of
    :func:`medseg.data.transforms3d.build_train_transform_3d` from ``augment.volume`` and ``data.patch_size``
    patches (the 2D keys are not used there: set ``augment.volume`` instead). None when nothing is on."""
    spatial_dims = int(cfg["task"]["spatial_dims"])
    if spatial_dims == 3:
        from medseg.data.transforms3d import build_train_transform_3d

        return build_train_transform_3d(cfg)
    ts: list[Callable] = []
    augment = _augmentation_2d(cfg["augment"])
    if augment is not None:
        ts.append(augment)
    patch = cfg["data"].get("patch_size")
    if patch:
        ts.append(RandomPatch2D(patch, cfg["data"].get("patch_pos_fraction"), cfg["task"].get("background", 0)))
    if not ts:
        return None
    return ts[0] if len(ts) == 1 else _Chain(ts)


def _augmentation_2d(aug_cfg: dict) -> Callable | None:
    """MONAI flips along each axis and 90° rotations, or None when both probabilities are 0."""
    flip = float(aug_cfg["flip_prob"])
    rot = float(aug_cfg["rot90_prob"])
    if flip <= 0 and rot <= 0:
        return None
    from monai.transforms import Compose, RandFlipd, RandRotate90d

    keys = ["image", "label"]
    ts = []
    if flip > 0:
        ts += [RandFlipd(keys, prob=flip, spatial_axis=a) for a in range(2)]
    if rot > 0:
        ts.append(RandRotate90d(keys, prob=rot, max_k=3, spatial_axes=(0, 1)))
    return _ChannelFirstLabel(Compose(ts))


class _ChannelFirstLabel:
    """MONAI's spatial transforms want channel-first arrays; the label is stored without a channel."""

    def __init__(self, inner: Callable):
        self.inner = inner

    def __call__(self, sample: dict) -> dict:
        sample = dict(sample)
        sample["label"] = sample["label"][None]
        out = self.inner(sample)
        out["image"] = out["image"].as_tensor() if hasattr(out["image"], "as_tensor") else out["image"]
        label = out["label"].as_tensor() if hasattr(out["label"], "as_tensor") else out["label"]
        out["label"] = label[0].long()
        return out


__all__ = ["NORMALIZE_MODES", "ZSCORE_STD_FLOOR", "RandomPatch2D", "build_train_transform", "normalize_input"]
