"""Training augmentation built from MONAI dictionary transforms.

The chromosome papers train without augmentation (none is described), so everything defaults to off;
flips and 90° rotations keep the α/β/overlap label semantics intact, which is why they are the ones offered.
"""

from __future__ import annotations

from typing import Callable

from monai.transforms import Compose, RandFlipd, RandRotate90d


def build_train_transform(aug_cfg: dict, spatial_dims: int = 2, cfg: dict | None = None) -> Callable | None:
    """The training transform. 3D (``spatial_dims == 3``): the CTV thesis pipeline of
    :func:`medseg.data.transforms3d.build_train_transform_3d` from ``aug_cfg["volume"]`` — and, when the whole
    config ``cfg`` is given, ``data.patch_size`` patches (the 2D keys ``flip_prob``/``rot90_prob`` are not
    used there: set ``augment.volume`` instead)."""
    if spatial_dims == 3:
        from medseg.data.transforms3d import build_train_transform_3d

        return build_train_transform_3d(cfg if cfg is not None else {"augment": aug_cfg})
    flip = float(aug_cfg.get("flip_prob", 0.0))
    rot = float(aug_cfg.get("rot90_prob", 0.0))
    if flip <= 0 and rot <= 0:
        return None
    keys = ["image", "label"]
    ts = []
    if flip > 0:
        ts += [RandFlipd(keys, prob=flip, spatial_axis=a) for a in range(spatial_dims)]
    if rot > 0 and spatial_dims == 2:
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
