"""The CTV thesis' 3D preprocessing (§2.1), augmentation and patch sampling (medseg.data.transforms3d)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.artifact import sliding_window_settings
from medseg.config import DEFAULTS, load_config
from medseg.data.transforms import build_train_transform
from medseg.data.transforms3d import (
    augment_settings,
    build_train_transform_3d,
    preprocess_label,
    preprocess_settings,
    preprocess_volume,
    restore_shape,
)
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.volume import Volume

OFF = {"enabled": True, "rotate_deg": 0.0, "shift_voxels": 0.0, "flip_prob": 0.0, "noise_var": 0.0}


def aug_cfg(patch=None, pos=None, **volume):
    return {"augment": {"volume": {**OFF, **volume}}, "data": {"patch_size": patch, "patch_pos_fraction": pos}}


def sample(image, label):
    return {"image": torch.as_tensor(image, dtype=torch.float32)[None], "label": torch.as_tensor(label)}


# --- preprocessing --------------------------------------------------------------------------------------


def test_defaults_are_the_thesis_values():
    p, a = preprocess_settings(None), augment_settings(None)
    assert (p["clip_max"], p["depth"], p["size_xy"], p["normalize"]) == (1600.0, 72, [256, 256], "range")
    assert (a["rotate_deg"], a["shift_voxels"], a["noise_var"], a["flip_axes"]) == (10.0, 8.0, 0.001, [0, 1, 2])
    assert DEFAULTS["data"]["patch_size"] is None and DEFAULTS["evaluate"]["sliding_window"]["roi_size"] is None


def test_clip_at_1600_and_normalise_to_unit_range():
    vol = np.zeros((2, 2, 3), np.int16)
    vol[:, 0] = [0, 800, 1600]
    vol[:, 1] = [1599, 1601, 2072]  # the thesis' maximum pixel value is 2072
    out = preprocess_volume(vol, {"preprocess": {"depth": None, "size_xy": None}})
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    # (v - 0) / (1600 - 0): 800 → 0.5, 1599 → 0.999375; 1601 and 2072 are clipped to 1600 → 1.
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(out[0, 1], [1599 / 1600, 1.0, 1.0], atol=1e-7)
    assert out.min() == 0.0 and out.max() == 1.0


def test_clip_min_and_minmax_options():
    vol = np.array([-1000.0, -500.0, 0.0, 500.0, 3000.0]).reshape(1, 1, 5)
    # HU window [-1024, 576]: -1000 → 24/1600 = 0.015, 500 → 1524/1600 = 0.9525, 3000 → 1.
    out = preprocess_volume(vol, {"preprocess": {"clip_min": -1024, "clip_max": 576, "depth": None, "size_xy": None}})
    np.testing.assert_allclose(out[0, 0], [0.015, 0.3275, 0.64, 0.9525, 1.0], atol=1e-6)
    # minmax: clip to [-500, 1000] → [-500, -500, 0, 500, 1000], then (v + 500) / 1500.
    out = preprocess_volume(
        vol, {"preprocess": {"clip_min": -500, "clip_max": 1000, "normalize": "minmax", "depth": None, "size_xy": None}}
    )
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 1 / 3, 2 / 3, 1.0], atol=1e-6)


def test_z_resampled_to_72_while_xy_stay_256():
    d = 10
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 1600, (256, 256))
    vol = np.arange(d)[:, None, None] * 100 + pattern[None] * 0  # a linear ramp along z
    vol = vol + np.zeros((d, 256, 256), np.int64)
    out = preprocess_volume(vol)  # thesis defaults
    assert out.shape == (72, 256, 256)
    # Linear in z, align_corners=False: new slice k samples old z = (k + 0.5) · 10/72 − 0.5, clamped to [0, 9].
    # k = 36: 36.5 · 10/72 − 0.5 = 4.5694…, value 456.94 / 1600; k = 0: z = −0.43 → 0; k = 71: z = 9.43 → 9.
    assert out[36, 5, 7] == pytest.approx((36.5 * 10 / 72 - 0.5) * 100 / 1600, abs=1e-5)
    assert out[0, 0, 0] == pytest.approx(0.0, abs=1e-6) and out[71, 0, 0] == pytest.approx(900 / 1600, abs=1e-6)
    # x/y untouched: a slice pattern comes through exactly.
    vol2 = np.broadcast_to(pattern, (d, 256, 256))
    out2 = preprocess_volume(vol2)
    np.testing.assert_allclose(out2[40], pattern / 1600, atol=1e-6)


def test_size_xy_resizes_and_null_keeps():
    vol = np.ones((4, 32, 48), np.float32) * 800
    assert preprocess_volume(vol, {"preprocess": {"size_xy": None}}).shape == (72, 32, 48)
    assert preprocess_volume(vol, {"preprocess": {"depth": 8, "size_xy": [16, 24]}}).shape == (8, 16, 24)


def test_label_resampled_nearest_stays_binary_and_restore():
    lab = np.zeros((6, 16, 16), np.uint8)
    lab[2:4, 4:12, 4:12] = 1
    out = preprocess_label(lab, {"preprocess": {"depth": 12, "size_xy": None}})
    assert out.dtype == np.uint8 and out.shape == (12, 16, 16) and set(np.unique(out)) == {0, 1}
    # nearest of z' = (k + 0.5)/2 − 0.5 ... every old slice becomes two: slices 4..7 are 1.
    assert out[:, 8, 8].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    multi = preprocess_label(lab[None], {"preprocess": {"depth": 12, "size_xy": None}})
    assert multi.shape == (1, 12, 16, 16) and np.array_equal(multi[0], out)
    back = restore_shape(out[None].astype(np.float32), (6, 16, 16))
    assert back.shape == (1, 6, 16, 16) and np.array_equal(back[0] > 0.5, lab.astype(bool))


def test_volume_geometry_follows_the_resampling():
    vol = Volume(np.zeros((24, 8, 8), np.int16), spacing=(3.0, 1.0, 1.0), origin=(10.0, 20.0, 30.0))
    out = preprocess_volume(vol, {"preprocess": {"size_xy": None}})
    assert isinstance(out, Volume) and out.shape == (72, 8, 8)
    # 24 slices of 3 mm → 72 of 3·24/72 = 1 mm; first new centre at old index 0.5·24/72 − 0.5 = −1/3,
    # i.e. −1 mm along z: origin z 30 → 29.
    assert out.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert out.origin == pytest.approx((10.0, 20.0, 29.0))


def test_bad_volumes_name_the_file():
    with pytest.raises(DataValidationError, match="ct_001.nii.gz.*3D array"):
        preprocess_volume(_vol_with_source(np.zeros((3, 3)), "ct_001.nii.gz"))
    bad = np.zeros((2, 3, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        preprocess_volume(bad)
    with pytest.raises(ConfigError, match="clip_min"):
        preprocess_settings({"preprocess": {"clip_min": 2000}})
    with pytest.raises(ConfigError, match="unknown config key 'preprocess.clipmax' — did you mean preprocess.clip_max"):
        preprocess_settings({"preprocess": {"clipmax": 1}})


class _FakeVolume(Volume):
    def __post_init__(self):  # let a wrong-shaped array through, to test preprocess_volume's own check
        self.array = np.asarray(self.array)


def _vol_with_source(arr, source):
    return _FakeVolume(arr, meta={"source": source})


# --- augmentation ---------------------------------------------------------------------------------------


def test_flip_on_an_asymmetric_volume():
    img = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8) / 200  # different everywhere
    lab = (img > 0.5).astype(np.uint8)[None]
    for axis in (0, 1, 2):
        t = build_train_transform_3d(aug_cfg(flip_prob=1.0, flip_axes=[axis]))
        out = t(sample(img, lab))
        np.testing.assert_array_equal(out["image"][0].numpy(), np.flip(img, axis))
        np.testing.assert_array_equal(out["label"][0].numpy(), np.flip(lab[0], axis))
        assert out["label"].dtype == torch.uint8  # the dataset's dtype comes back


def _bar(d=4, n=33):
    lab = np.zeros((d, n, n), np.uint8)
    lab[:, n // 2 - 1 : n // 2 + 2, 4 : n - 4] = 1  # a bar along x through the centre of every slice
    return lab


def _orientation_deg(mask2d):
    ys, xs = np.nonzero(mask2d)
    ys, xs = ys - ys.mean(), xs - xs.mean()
    cov = np.cov(np.stack([xs, ys]))
    _, v = np.linalg.eigh(cov)
    vx, vy = v[:, -1]
    ang = math.degrees(math.atan2(vy, vx))
    return (ang + 90) % 180 - 90


def test_rotation_at_most_10_degrees_keeps_label_binary_and_aligned():
    lab = _bar()
    t = build_train_transform_3d(aug_cfg(rotate_deg=10.0))
    angles = []
    for seed in range(12):
        torch.manual_seed(seed)
        out = t(sample(lab.astype(np.float32), lab[None]))
        img, l2 = out["image"][0].numpy(), out["label"][0].numpy()
        assert set(np.unique(l2)) <= {0, 1}
        # image (bilinear) and label (nearest) moved together: the thresholded image is the label up to a
        # rim of boundary voxels.
        assert np.mean((img > 0.5) != (l2 > 0)) < 0.01
        per_slice = [_orientation_deg(l2[z]) for z in range(l2.shape[0])]
        assert max(per_slice) - min(per_slice) < 1e-6  # axial rotation: every slice turned the same
        angles.append(per_slice[0])
    assert max(abs(a) for a in angles) <= 10.0 + 1.0  # 1° of slack for the voxelised bar's measured axis
    assert max(abs(a) for a in angles) > 3.0  # it does rotate


def test_shift_at_most_8_voxels():
    lab = np.zeros((24, 24, 24), np.uint8)
    lab[10:14, 10:14, 10:14] = 1  # centre of mass 11.5 on every axis
    t = build_train_transform_3d(aug_cfg(shift_voxels=8.0))
    shifts = []
    for seed in range(15):
        torch.manual_seed(seed)
        out = t(sample(lab.astype(np.float32), lab[None]))
        l2 = out["label"][0].numpy()
        assert l2.sum() > 0 and set(np.unique(l2)) <= {0, 1}
        com = np.array(np.nonzero(l2)).mean(1)
        shifts.append(com - 11.5)
        np.testing.assert_allclose(np.array(np.nonzero(out["image"][0].numpy() > 0.5)).mean(1), com, atol=0.51)
    shifts = np.abs(np.array(shifts))
    assert shifts.max() <= 8.0 + 0.5  # nearest resampling rounds a shift by at most half a voxel
    assert shifts.max() > 4.0  # shifts do happen


def test_noise_variance_0_001_on_a_constant_image():
    img = np.full((16, 32, 32), 0.5, np.float32)
    lab = np.zeros((1, 16, 32, 32), np.uint8)
    t = build_train_transform_3d(aug_cfg(noise_var=0.001))
    torch.manual_seed(0)
    out = t(sample(img, lab))
    noise = out["image"][0].numpy() - 0.5
    # 16384 samples: the variance estimate's relative std error is sqrt(2/16384) ≈ 1.1 %, so 5 % is > 4σ.
    assert noise.var() == pytest.approx(0.001, rel=0.05)
    assert abs(noise.mean()) < 4 * math.sqrt(0.001 / noise.size)
    assert torch.equal(out["label"], torch.as_tensor(lab))


def test_thesis_default_pipeline_runs_and_is_reproducible():
    rng = np.random.default_rng(1)
    img = rng.random((8, 24, 24)).astype(np.float32)
    lab = (img > 0.7).astype(np.uint8)[None]
    t = build_train_transform_3d(load_config(None, {"task": {"spatial_dims": 3}}))
    torch.manual_seed(3)
    a = t(sample(img, lab))
    torch.manual_seed(3)
    b = t(sample(img, lab))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert a["image"].shape == (1, 8, 24, 24) and a["label"].shape == (1, 8, 24, 24)
    assert not torch.equal(a["image"], torch.as_tensor(img)[None])


def test_patch_size_and_padding():
    img = np.random.default_rng(0).random((12, 20, 20)).astype(np.float32)
    lab = np.zeros((1, 12, 20, 20), np.uint8)
    lab[0, 5:7, 14:16, 14:16] = 1  # 8 target voxels in a corner
    t = build_train_transform_3d(aug_cfg(patch=[8, 8, 8]))
    out = t(sample(img, lab))
    assert out["image"].shape == (1, 8, 8, 8) and out["label"].shape == (1, 8, 8, 8)
    # a random crop of the original (no augmentation on): the patch is a sub-block of the volume
    found = any(
        np.array_equal(out["image"][0].numpy(), img[z : z + 8, y : y + 8, x : x + 8])
        for z in range(5)
        for y in range(13)
        for x in range(13)
    )
    assert found
    # pos fraction 1: the patch always holds target voxels
    t = build_train_transform_3d(aug_cfg(patch=[4, 4, 4], pos=1.0))
    for seed in range(5):
        torch.manual_seed(seed)
        assert t(sample(img, lab))["label"].sum() > 0
    # a volume smaller than the patch is padded
    t = build_train_transform_3d(aug_cfg(patch=[16, 24, 24]))
    out = t(sample(img, lab))
    assert out["image"].shape == (1, 16, 24, 24) and out["label"].shape == (1, 16, 24, 24)


def test_multiclass_label_without_channel():
    lab = np.zeros((4, 8, 8), np.int64)
    lab[1:3, 2:5, 2:5] = 2
    t = build_train_transform_3d(aug_cfg(flip_prob=1.0, flip_axes=[1]))
    out = t(sample(lab.astype(np.float32), lab))
    assert out["label"].shape == (4, 8, 8) and out["label"].dtype == torch.int64
    np.testing.assert_array_equal(out["label"].numpy(), np.flip(lab, 1))


def test_hook_in_build_train_transform_and_config_errors():
    assert (
        build_train_transform(
            {"task": {"spatial_dims": 3}, "augment": {"flip_prob": 0.0, "volume": {**OFF, "enabled": False}}}
        )
        is None
    )
    t = build_train_transform(
        {"task": {"spatial_dims": 3}, "augment": {"volume": {**OFF, "flip_prob": 1.0, "flip_axes": [2]}}}
    )
    img = np.arange(8, dtype=np.float32).reshape(1, 1, 8)
    assert t(sample(img, img[None].astype(np.uint8)))["image"][0, 0, 0, 0] == 7.0
    with pytest.raises(ConfigError, match="2D setting"):
        build_train_transform({"task": {"spatial_dims": 3}, "augment": {"flip_prob": 0.5}})
    with pytest.raises(ConfigError, match="patch_size"):
        build_train_transform_3d({"data": {"patch_size": [8, 8]}})
    with pytest.raises(ConfigError, match="probability"):
        build_train_transform_3d({"augment": {"volume": {"flip_prob": 2}}})
    assert sliding_window_settings({"roi_size": None}) is None
    assert sliding_window_settings({"roi_size": [8, 8, 8]})["overlap"] == 0.5
