"""2D data at full resolution (issue 12): random patches with foreground oversampling, images of different
sizes on one canvas, the crop warning of data.size, and per-image z-score normalisation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from medseg.config import DEFAULTS, load_config
from medseg.data.datasets import (
    SegmentationData,
    SegmentationDataset,
    crop_warning,
    load_data,
    update_metrics,
)
from medseg.data.pommier import write_pommier_h5
from medseg.data.transforms import RandomPatch2D, build_train_transform, normalize_input
from medseg.metrics import SegmentationMetrics


def _sample(image: np.ndarray, label: np.ndarray) -> dict:
    return {
        "image": torch.from_numpy(image[None].astype(np.float32)),
        "label": torch.from_numpy(label.astype(np.int64)),
    }


# ------------------------------------------------------------------------------------------------ patches


def test_uniform_patches_cover_every_pixel_over_many_draws():
    h, w = 21, 26
    ids = np.arange(h * w, dtype=np.float32).reshape(h, w)  # each pixel's value is its own index
    patcher = RandomPatch2D([8, 10], None)
    torch.manual_seed(0)
    seen = np.zeros(h * w, bool)
    for _ in range(600):
        out = patcher(_sample(ids, np.zeros((h, w))))
        assert out["image"].shape == (1, 8, 10) and out["label"].shape == (8, 10)
        seen[out["image"].numpy().astype(np.int64).ravel()] = True
    assert seen.all(), f"{(~seen).sum()} pixels never inside a patch"  # corners and edges too


def test_pos_fraction_one_puts_foreground_in_every_patch():
    h, w = 64, 64
    label = np.zeros((h, w), np.int64)
    label[50:53, 3:6] = 2  # a small target near a corner: a uniform 12×12 patch rarely holds it
    image = np.random.default_rng(0).random((h, w)).astype(np.float32)
    torch.manual_seed(1)
    always = RandomPatch2D([12, 12], 1.0)
    assert all((always(_sample(image, label))["label"] > 0).any() for _ in range(200))
    uniform = RandomPatch2D([12, 12], None)
    hits = sum(bool((uniform(_sample(image, label))["label"] > 0).any()) for _ in range(200))
    assert hits < 60  # the same target without oversampling: most patches miss it


def test_oversampling_uses_task_background_and_channel_labels():
    label = np.full((40, 40), 3, np.int64)  # background is class 3 here; class 0 marks the target
    label[2:4, 30:33] = 0
    torch.manual_seed(2)
    patcher = RandomPatch2D([8, 8], 1.0, background=3)
    assert all((patcher(_sample(np.zeros((40, 40)), label))["label"] != 3).any() for _ in range(100))
    # multilabel: (C, H, W) masks, foreground = any channel set
    masks = np.zeros((2, 40, 40), np.int64)
    masks[1, 35:37, 1:3] = 1
    sample = {"image": torch.zeros(1, 40, 40), "label": torch.from_numpy(masks)}
    for _ in range(100):
        out = patcher(sample)
        assert out["label"].shape == (2, 8, 8) and out["label"].any()


def test_images_smaller_than_the_patch_are_padded():
    image = np.full((5, 7), 0.5, np.float32)
    label = np.ones((5, 7), np.int64)
    out = RandomPatch2D([16, 12], 0.5, background=0)(_sample(image, label))
    assert out["image"].shape == (1, 16, 12) and out["label"].shape == (16, 12)
    assert float(out["image"].sum()) == pytest.approx(0.5 * 35)  # the whole image is inside, padding is 0
    assert int(out["label"].sum()) == 35  # and the label's padding is background


def test_build_train_transform_cuts_2d_patches_after_augmentation():
    cfg = load_config(
        overrides={
            "data": {"size": None, "patch_size": [16, 24], "patch_pos_fraction": 0.5},
            "augment": {"flip_prob": 0.5, "rot90_prob": 0.5},
        }
    )
    t = build_train_transform(cfg)
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    for _ in range(20):  # non-square images turned by 90°: the patch still has the configured shape
        label = (rng.random((40, 70)) > 0.9).astype(np.int64)
        out = t(_sample(rng.random((40, 70)), label))
        assert out["image"].shape == (1, 16, 24) and out["label"].shape == (16, 24)
        assert out["label"].dtype == torch.int64


def test_config_takes_2d_patches_and_windows():
    cfg = load_config(
        overrides={
            "data": {"size": None, "patch_size": [256, 256], "patch_pos_fraction": 0.33, "normalize": "zscore"},
            "evaluate": {"sliding_window": {"roi_size": [256, 256]}},
            "train": {"iterations": 1000, "scheduler": {"name": "poly"}},
        }
    )
    assert cfg["data"]["patch_size"] == [256, 256] and cfg["evaluate"]["sliding_window"]["roi_size"] == [256, 256]
    # defaults keep the behaviour of configs written before these keys
    assert DEFAULTS["data"]["normalize"] == "range" and DEFAULTS["train"]["iterations"] is None
    assert DEFAULTS["data"]["size"] == [128, 128]


# -------------------------------------------------------------------------------------- sizes, crop warning


def _folder(root, shapes, seed=0):
    """images/ + masks/ of uint8 PNGs of the given (H, W) shapes; a bright square is class 1."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    out = []
    for i, (h, w) in enumerate(shapes):
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : h // 2, w // 3 : w // 2] = 1
        image = (rng.random((h, w)) * 60 + mask * 150).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"img_{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"img_{i}.png")
        out.append((image, mask))
    return out


def _data_cfg(path, **kw):
    return {**DEFAULTS["data"], "path": str(path), **kw}


def test_cropping_to_data_size_warns_with_the_numbers(tmp_path):
    _folder(tmp_path / "set", [(512, 512), (512, 512)])
    with pytest.warns(UserWarning) as record:
        data = load_data(_data_cfg(tmp_path / "set", size=[128, 128]), 2)
    messages = [str(w.message) for w in record if "centre-cropped" in str(w.message)]
    assert len(messages) == 1  # once, not per image
    msg = messages[0]
    assert "2 of 2 images" in msg and "93.8 %" in msg and "data.size: null" in msg and "data.patch_size" in msg
    assert msg in data.notes  # the report shows it too
    assert data.images.shape == (2, 128, 128)


def test_padding_to_data_size_stays_silent(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 94, 93), dtype=np.uint8)
    labels = rng.integers(0, 4, (3, 94, 93), dtype=np.uint8)
    path = write_pommier_h5(tmp_path / "p.h5", images, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        data = load_data(_data_cfg(path, size=[128, 128], stray_labels="reject"), 4)
    assert data.images.shape == (3, 128, 128) and not any("crop" in n for n in data.notes)
    with pytest.warns(UserWarning, match=r"3 of 3 images .*: 53\.1 % of all pixels"):
        load_data(_data_cfg(path, size=[64, 64], stray_labels="reject"), 4)  # 94×93 → 64×64 loses pixels


def test_crop_warning_counts_only_the_images_larger_than_size():
    msg = crop_warning([(100, 100), (50, 50), (100, 40)], [80, 80], "x")
    assert "2 of 3 images (largest 100x100)" in msg
    cut = (100 * 100 - 80 * 80) + (100 * 40 - 80 * 40)
    assert f"{cut:,} of {100 * 100 + 50 * 50 + 100 * 40:,}" in msg
    assert crop_warning([(94, 93)], [128, 128], "x") is None


def test_full_resolution_keeps_each_image_at_its_own_size(tmp_path):
    shapes = [(40, 30), (64, 64), (50, 70)]
    written = _folder(tmp_path / "set", shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_data(_data_cfg(tmp_path / "set", size=None), 2)
    assert data.images.shape == (3, 64, 70) and len(data.boxes) == 3  # one canvas, each image's box recorded
    assert any("3 image sizes at full resolution" in n for n in data.notes)
    dataset = SegmentationDataset(data, [0, 1, 2])
    for i, ((image, mask), shape) in enumerate(zip(written, shapes, strict=True)):
        img, lab = data.item(i)
        assert img.shape == lab.shape == shape
        np.testing.assert_allclose(img, image / 255.0, atol=1e-6)
        np.testing.assert_array_equal(lab, mask)
        item = dataset[i]
        assert tuple(item["image"].shape) == (1, *shape) and tuple(item["label"].shape) == shape
    same = load_data(_data_cfg(tmp_path / "set", size=None, limit=1), 2)
    assert same.boxes == [data.boxes[0]] and len(same) == 1


def test_same_size_images_at_full_resolution_need_no_canvas(tmp_path):
    _folder(tmp_path / "set", [(300, 200), (300, 200)])
    data = load_data(_data_cfg(tmp_path / "set", size=None), 2)
    assert data.boxes is None and data.images.shape == (2, 300, 200)


def test_update_metrics_never_scores_the_canvas_padding():
    labels = np.zeros((2, 10, 12), np.uint8)
    labels[0, 2:4, 2:4] = 1
    labels[1, 5:7, 5:7] = 1
    preds = labels.copy()
    preds[0, 8:, :] = 1  # garbage in the padding of image 0 (its box is 8 × 12)
    preds[1, :, 9:] = 1  # and of image 1 (box 10 × 9)
    boxes = [(0, 0, 8, 12), (0, 0, 10, 9)]
    m = SegmentationMetrics(["bg", "fg"], mode="multiclass", hausdorff=False)
    update_metrics(m, preds, labels, boxes=boxes)
    assert m.aggregate()["per_class"]["fg"]["iou"] == pytest.approx(1.0)
    plain = SegmentationMetrics(["bg", "fg"], mode="multiclass", hausdorff=False)
    update_metrics(plain, preds, labels)
    assert plain.aggregate()["per_class"]["fg"]["iou"] < 0.5  # the padding would have counted without boxes


# ------------------------------------------------------------------------------------------------ z-score


def test_zscore_normalises_each_whole_image():
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 4096, (30, 40)).astype(np.uint16)
    scaled = raw.astype(np.float32) / 65535.0
    z = normalize_input(scaled, "zscore")
    assert abs(float(z.mean())) < 1e-5 and float(z.std()) == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(z, normalize_input(raw.astype(np.float32), "zscore"), atol=1e-4)  # same on raw pixels
    assert np.array_equal(normalize_input(np.full((4, 4), 0.3, np.float32), "zscore"), np.zeros((4, 4)))
    assert normalize_input(scaled, "range") is scaled
    with pytest.raises(ValueError, match="data.normalize"):
        normalize_input(scaled, "percentile")


def test_dataset_feeds_zscored_images_before_the_patch():
    rng = np.random.default_rng(5)
    images = rng.random((2, 32, 32)).astype(np.float32) * 0.2 + 0.4
    data = SegmentationData(images, np.zeros((2, 32, 32), np.uint8), ["a", "b"], "toy")
    item = SegmentationDataset(data, [0], normalize="zscore")[0]["image"][0].numpy()
    np.testing.assert_allclose(item, (images[0] - images[0].mean()) / images[0].std(), atol=1e-4)
    patch = SegmentationDataset(data, [0], RandomPatch2D([8, 8]), normalize="zscore")[0]["image"][0].numpy()
    assert np.isin(np.round(patch, 4), np.round(item, 4)).all()  # statistics of the whole image, not the patch


def test_minmax_stretches_each_whole_image_to_unit_range():
    rng = np.random.default_rng(3)
    raw = rng.integers(200, 900, size=(2, 16, 16)).astype(np.float32)  # a 2.5D stack of two slices
    out = normalize_input(raw / 65535.0, "minmax")
    assert out.dtype == np.float32 and out.min() == 0.0 and abs(out.max() - 1.0) < 1e-6
    # one scale for the whole stack: the slices keep their relative brightness, and a linear rescale is ignored
    np.testing.assert_allclose(out, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-5)
    np.testing.assert_allclose(normalize_input(raw, "minmax"), out, atol=1e-5)
    assert np.array_equal(normalize_input(np.full((4, 4), 0.3, np.float32), "minmax"), np.zeros((4, 4)))
