"""2D elastic deformation and Gaussian noise (the GI-tract paper §IV-D, issue 13): augment.elastic_* / noise_*,
for class-index (H, W) and multilabel (K, H, W) labels alike, reproducible from torch's seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.config import load_config
from medseg.data.transforms import _augmentation_2d, build_train_transform
from medseg.errors import ConfigError

OFF = {
    "flip_prob": 0.0,
    "rot90_prob": 0.0,
    "elastic_prob": 0.0,
    "elastic_spacing": [16.0, 16.0],
    "elastic_magnitude": [1.0, 2.0],
    "noise_prob": 0.0,
    "noise_std": 0.05,
}


def _aug(**kw) -> dict:
    return {**OFF, **kw}


def _smooth_image(channels: int = 1, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth blobs (a deformation moves them visibly), the same in every channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    img = np.zeros((size, size), np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(8, size - 8, 2)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0)
    return torch.from_numpy(img)[None].repeat(channels, 1, 1)


def _organs(size: int = 64) -> torch.Tensor:
    """(3, H, W) int64 0/1 masks that overlap (multilabel: large bowel, small bowel, stomach)."""
    lab = torch.zeros(3, size, size, dtype=torch.int64)
    lab[0, 10:30, 8:40] = 1
    lab[1, 20:50, 30:56] = 1
    lab[2, 40:60, 5:25] = 1
    return lab


def _classes(size: int = 64) -> torch.Tensor:
    lab = torch.zeros(size, size, dtype=torch.int64)
    lab[10:30, 8:40] = 1
    lab[20:50, 30:56] = 2
    lab[40:60, 5:25] = 3
    return lab


def test_elastic_moves_the_image_and_keeps_shapes_dtypes_and_binary_masks():
    t = _augmentation_2d(_aug(elastic_prob=1.0, elastic_magnitude=[2.0, 3.0]))
    image, label = _smooth_image(1), _organs()
    torch.manual_seed(0)
    out = t({"image": image, "label": label})
    assert out["image"].shape == image.shape and out["image"].dtype == torch.float32
    assert out["label"].shape == label.shape and out["label"].dtype == torch.int64
    assert type(out["image"]) is torch.Tensor and type(out["label"]) is torch.Tensor  # no MetaTensor
    assert float((out["image"] - image).abs().max()) > 0.05  # deformed
    assert set(out["label"].unique().tolist()) <= {0, 1}  # nearest neighbour: never interpolated values
    assert (out["label"] != label).any()  # the masks moved with the image
    assert out["label"].sum() > 0.8 * label.sum()  # but organs do not vanish


def test_class_index_labels_keep_their_values_and_layout():
    t = _augmentation_2d(_aug(elastic_prob=1.0, elastic_magnitude=[2.0, 3.0]))
    label = _classes()
    torch.manual_seed(1)
    for _ in range(5):
        out = t({"image": _smooth_image(1), "label": label})
        assert out["label"].shape == (64, 64) and out["label"].dtype == torch.int64
        assert set(out["label"].unique().tolist()) <= set(label.unique().tolist())


def test_padding_is_the_background_class():
    # task.background = 3: what a deformation brings in from outside must be class 3, not a new class 0
    t = _augmentation_2d(_aug(elastic_prob=1.0, elastic_magnitude=[3.0, 3.0], elastic_spacing=[8.0, 8.0]), background=3)
    label = torch.full((32, 32), 3, dtype=torch.int64)
    label[8:24, 8:24] = 1
    torch.manual_seed(2)
    for _ in range(5):
        assert set(t({"image": torch.rand(1, 32, 32), "label": label})["label"].unique().tolist()) <= {1, 3}


def test_probability_zero_changes_nothing():
    assert _augmentation_2d(OFF) is None
    cfg = load_config(overrides={"augment": {"elastic_prob": 0.0, "noise_prob": 0.0}})
    assert build_train_transform(cfg) is None
    # switched on with probability 0 through MONAI itself: the same sample comes back
    t = _augmentation_2d(_aug(elastic_prob=1e-12, noise_prob=1e-12))
    image, label = _smooth_image(3), _organs()
    torch.manual_seed(3)
    out = t({"image": image, "label": label})
    assert torch.equal(out["image"], image) and torch.equal(out["label"], label)


def test_every_image_channel_gets_the_same_deformation():
    # a 2.5D stack of identical slices stays identical slice by slice
    t = _augmentation_2d(_aug(elastic_prob=1.0, elastic_magnitude=[2.0, 3.0]))
    image = _smooth_image(5)
    torch.manual_seed(4)
    out = t({"image": image, "label": _organs()})["image"]
    assert not torch.equal(out[0], image[0])
    for c in range(1, 5):
        assert torch.equal(out[c], out[0])


def test_label_moves_with_the_image():
    # the image is the label itself (as float): after the deformation both must still agree pixel for pixel
    t = _augmentation_2d(_aug(elastic_prob=1.0, elastic_magnitude=[2.0, 3.0]))
    label = _organs()
    torch.manual_seed(5)
    out = t({"image": label.float(), "label": label})
    agree = ((out["image"] > 0.5).long() == out["label"]).float().mean()
    assert float(agree) > 0.97  # bilinear vs nearest differ only on a few boundary pixels


def test_noise_changes_the_image_by_about_std_and_leaves_the_label():
    t = _augmentation_2d(_aug(noise_prob=1.0, noise_std=0.1))
    image, label = _smooth_image(2, size=96), _organs(96)
    torch.manual_seed(6)
    out = t({"image": image, "label": label})
    assert torch.equal(out["label"], label) and out["label"].dtype == torch.int64
    delta = out["image"] - image
    assert out["image"].dtype == torch.float32
    assert float(delta.std()) == pytest.approx(0.1, rel=0.05)  # exactly noise_std, not drawn from [0, std]
    assert abs(float(delta.mean())) < 0.01


def test_class_index_labels_through_noise_come_back_unchanged():
    t = _augmentation_2d(_aug(noise_prob=1.0))
    label = _classes()
    torch.manual_seed(7)
    out = t({"image": _smooth_image(1), "label": label})
    assert torch.equal(out["label"], label) and out["label"].shape == (64, 64)


def test_reproducible_from_torch_seed():
    t = _augmentation_2d(_aug(flip_prob=0.5, rot90_prob=0.5, elastic_prob=0.5, noise_prob=0.5))
    sample = {"image": _smooth_image(3), "label": _organs()}

    def run(seed):
        torch.manual_seed(seed)
        return [t(sample) for _ in range(4)]

    a, b, c = run(8), run(8), run(9)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert any(not torch.equal(x["image"], y["image"]) for x, y in zip(a, c, strict=True))


def test_flips_move_multilabel_masks_spatially_not_across_channels():
    # (K, H, W) masks used to get a channel axis in front, so "spatial axis 0" flipped the organ axis
    t = _augmentation_2d(_aug(flip_prob=1.0, rot90_prob=1.0))
    label = _organs()
    torch.manual_seed(10)
    for _ in range(4):
        out = t({"image": label.float(), "label": label})  # the image is the masks: both must move alike
        assert out["label"].shape == (3, 64, 64)
        assert out["label"].sum((1, 2)).tolist() == label.sum((1, 2)).tolist()  # each organ keeps its area
        assert torch.equal(out["image"], out["label"].float())
        assert not torch.equal(out["label"], label)


def test_config_builds_the_transform():
    cfg = load_config(
        overrides={
            "task": {
                "mode": "multilabel",
                "class_names": ["large_bowel", "small_bowel", "stomach"],
                "derived": None,
                "primary_metric": "stomach",
            },
            "augment": {
                "elastic_prob": 1.0,
                "elastic_spacing": [12.0, 12.0],
                "elastic_magnitude": [1.5, 2.5],
                "noise_prob": 1.0,
                "noise_std": 0.02,
            },
        }
    )
    t = build_train_transform(cfg)
    assert t is not None
    names = [type(x).__name__ for x in t.inner.transforms]
    assert names == ["Rand2DElasticd", "RandGaussianNoised"]
    elastic, noise = t.inner.transforms
    assert tuple(elastic.rand_2d_elastic.deform_grid.spacing) == (12.0, 12.0)
    assert tuple(elastic.rand_2d_elastic.deform_grid.magnitude) == (1.5, 2.5)
    assert noise.rand_gaussian_noise.std == 0.02 and list(noise.keys) == ["image"]
    torch.manual_seed(11)
    out = t({"image": _smooth_image(3), "label": _organs()})
    assert out["image"].shape == (3, 64, 64) and out["label"].shape == (3, 64, 64)
    assert set(out["label"].unique().tolist()) <= {0, 1}


def test_config_with_patches_chains_augmentation_then_patch():
    cfg = load_config(
        overrides={"data": {"size": None, "patch_size": [32, 32]}, "augment": {"elastic_prob": 1.0, "noise_prob": 0.5}}
    )
    t = build_train_transform(cfg)
    torch.manual_seed(12)
    out = t({"image": _smooth_image(1), "label": _classes()})
    assert out["image"].shape == (1, 32, 32) and out["label"].shape == (32, 32)


def test_2d_keys_are_refused_for_volumes():
    with pytest.raises(ConfigError, match="elastic_prob"):
        build_train_transform({"task": {"spatial_dims": 3}, "augment": {"elastic_prob": 0.5}})
    with pytest.raises(ConfigError, match="noise_prob"):
        build_train_transform({"task": {"spatial_dims": 3}, "augment": {"noise_prob": 0.5}})


def test_magnitude_is_in_pixels_not_in_units_of_the_spacing():
    # MONAI adds the control points' offsets in pixels: magnitude 1 with a 16 px spacing moves pixels by about
    # 1 px (standard deviation), not by 16 px. A coordinate ramp as the image measures the displacement.
    t = _augmentation_2d(_aug(elastic_prob=1.0, elastic_magnitude=[1.0, 1.0], elastic_spacing=[16.0, 16.0]))
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    image = torch.stack([yy, xx])
    torch.manual_seed(13)
    shifts = [
        (t({"image": image, "label": torch.zeros(96, 96, dtype=torch.int64)})["image"] - image)[:, 24:-24, 24:-24]
        for _ in range(4)
    ]
    std = float(torch.stack(shifts).std())
    assert 0.3 < std < 3.0
