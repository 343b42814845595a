"""2D augmentation for what differs between imaging systems: augment.zoom_* / blur_* / gamma_* / contrast_*."""

from __future__ import annotations

import pytest
import torch

from medseg.config import load_config
from medseg.data.transforms import _augmentation_2d
from medseg.errors import ConfigError

from .test_transforms_elastic import _aug, _classes, _smooth_image


def _run(seed: int = 0, **kw) -> tuple[dict, torch.Tensor, torch.Tensor]:
    image, label = _smooth_image(1, size=64), _classes()
    torch.manual_seed(seed)
    return _augmentation_2d(_aug(**kw))({"image": image, "label": label}), image, label


def test_zoom_moves_image_and_label_together_and_keeps_their_size_and_values():
    label = _classes()
    torch.manual_seed(1)
    # the image is the label as float: after the zoom both must still agree nearly everywhere
    out = _augmentation_2d(_aug(zoom_prob=1.0, zoom_range=[1.3, 1.3]))({"image": label[None].float(), "label": label})
    assert out["image"].shape == (1, 64, 64) and out["label"].shape == (64, 64)
    assert set(out["label"].unique().tolist()) <= {0, 1, 2, 3}  # nearest: never an interpolated class
    assert (out["label"] != label).any()
    agree = (out["image"][0].round().long() == out["label"]).float().mean()
    assert float(agree) > 0.95
    # zoomed in by 1.3: the classes cover more of the (same-size) canvas
    assert int((out["label"] > 0).sum()) > int((label > 0).sum())


def test_blur_smooths_the_image_and_leaves_the_label():
    label = _classes()
    image = label[None].float()  # sharp edges
    torch.manual_seed(2)
    out = _augmentation_2d(_aug(blur_prob=1.0, blur_sigma=[1.5, 1.5]))({"image": image, "label": label})
    assert torch.equal(out["label"], label)

    def roughness(x):
        return float(((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean())  # an edge blurred: less energy

    assert roughness(out["image"]) < 0.5 * roughness(image)
    assert float(out["image"].sum()) == pytest.approx(float(image.sum()), rel=0.05)  # blurred, not dimmed


def test_gamma_keeps_the_value_range_and_bends_the_values_between():
    out, image, label = _run(3, gamma_prob=1.0, gamma_range=[2.0, 2.0])
    assert torch.equal(out["label"], label)
    assert float(out["image"].min()) == pytest.approx(float(image.min()), abs=1e-4)
    assert float(out["image"].max()) == pytest.approx(float(image.max()), abs=1e-3)
    assert float(out["image"].mean()) < float(image.mean())  # gamma 2 darkens the mid-tones


def test_contrast_scales_every_value_by_one_factor_within_range():
    out, image, _ = _run(4, contrast_prob=1.0, contrast_factor=0.3)
    bright = image > 0.2
    ratio = out["image"][bright] / image[bright]
    assert float(ratio.std()) < 1e-4
    assert 0.7 - 1e-6 <= float(ratio.mean()) <= 1.3 + 1e-6 and abs(float(ratio.mean()) - 1) > 1e-4


def test_off_by_default_and_bad_ranges_are_refused():
    assert _augmentation_2d(_aug()) is None
    for bad in (
        {"gamma_prob": 1.5},
        {"zoom_range": [1.2, 0.8]},
        {"blur_sigma": [0.0, 1.0]},
        {"contrast_factor": 1.0},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad)).split("_")[0]):
            load_config(overrides={"augment": bad})
