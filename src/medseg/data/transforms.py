"""Training augmentation built from MONAI dictionary transforms.

The chromosome papers train without augmentation (none is described), so everything defaults to off;
flips and 90° rotations keep the α/β/overlap label semantics intact, which is why they are the ones offered.
"""

from __future__ import annotations

from typing import Callable

from monai.transforms import Compose, RandFlipd, RandRotate90d


def build_train_transform(cfg: dict) -> Callable | None:
    """The training transform of a validated config (:func:`medseg.config.load_config`), given once.

    2D: ``augment.flip_prob`` / ``augment.rot90_prob``. 3D (``task.spatial_dims: 3``): the CTV thesis pipeline
    of :func:`medseg.data.transforms3d.build_train_transform_3d` from ``augment.volume`` and ``data.patch_size``
    patches (the 2D keys are not used there: set ``augment.volume`` instead)."""
    spatial_dims = int(cfg["task"]["spatial_dims"])
    if spatial_dims == 3:
        from medseg.data.transforms3d import build_train_transform_3d

        return build_train_transform_3d(cfg)
    aug_cfg = cfg["augment"]
    flip = float(aug_cfg["flip_prob"])
    rot = float(aug_cfg["rot90_prob"])
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
