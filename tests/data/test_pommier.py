"""Tests of the Pommier overlapping-chromosome HDF5 reader/writer (medseg.data.pommier)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from medseg.data.pommier import (
    POMMIER_KEY,
    fix_stray_labels,
    pad_to,
    read_pommier_h5,
    write_png_pairs,
    write_pommier_h5,
)
from medseg.errors import DataValidationError


def _sample(n: int, h: int = 94, w: int = 93, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images of random grey values and label maps with the four classes as blocks."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = np.zeros((n, h, w), dtype=np.uint8)
    labels[:, 10:40, 10:40] = 1
    labels[:, 50:80, 20:60] = 2
    labels[:, 30:55, 30:50] = 3
    return images, labels


def _write_published(path: Path, images: np.ndarray, labels: np.ndarray, *, key: str = POMMIER_KEY) -> Path:
    """Write exactly as the published file: one dataset N x H x W x 2, uint8, gzip 9, chunked."""
    data = np.stack([images, labels], axis=-1)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            key, data=data, dtype=np.uint8, compression="gzip", compression_opts=9, chunks=(1, *data.shape[1:])
        )
    return path


def _raw_file(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
    return path


# --------------------------------------------------------------------------------------------- reading


def test_read_published_layout(tmp_path):
    images, labels = _sample(5)
    path = _write_published(tmp_path / "LowRes_13434_overlapping_pairs.h5", images, labels)
    with h5py.File(path) as f:  # the fixture really is the published layout
        ds = f["dataset_1"]
        assert ds.shape == (5, 94, 93, 2) and ds.dtype == np.uint8
        assert ds.compression == "gzip" and ds.compression_opts == 9 and ds.chunks is not None
    got_images, got_labels, report = read_pommier_h5(path)
    assert got_images.shape == (5, 94, 93) and got_labels.shape == (5, 94, 93)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert report.stray_pixels == {} and report.images_affected == 0
    assert report.summary() == "no stray label values"


def test_read_cleaned_88x88_layout(tmp_path):
    images, labels = _sample(3, 88, 88, seed=1)
    path = _write_published(tmp_path / "Cleaned_LowRes_13434_overlapping_pairs.h5", images, labels)
    got_images, got_labels, _ = read_pommier_h5(path)
    assert got_images.shape == (3, 88, 88)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_other_key(tmp_path):
    images, labels = _sample(2)
    path = _write_published(tmp_path / "k.h5", images, labels, key="pairs")
    np.testing.assert_array_equal(read_pommier_h5(path, key="pairs")[1], labels)


# ---------------------------------------------------------------------------------------------- writing


def test_write_gives_published_layout_and_round_trips(tmp_path):
    images, labels = _sample(70, seed=2)  # more than one 64-image chunk
    path = write_pommier_h5(tmp_path / "sub" / "out.h5", images, labels)
    assert path == tmp_path / "sub" / "out.h5"
    with h5py.File(path) as f:
        assert list(f.keys()) == ["dataset_1"]
        ds = f["dataset_1"]
        assert ds.shape == (70, 94, 93, 2)
        assert ds.dtype == np.uint8
        assert ds.compression == "gzip"
        assert ds.compression_opts == 9
        assert ds.chunks is not None and ds.chunks[1:] == (94, 93, 2)
        np.testing.assert_array_equal(ds[..., 0], images)
        np.testing.assert_array_equal(ds[..., 1], labels)
    got_images, got_labels, _ = read_pommier_h5(path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.h5"]  # no temporary file left


def test_write_rejects_bad_inputs(tmp_path):
    images, labels = _sample(2)
    with pytest.raises(ValueError):
        write_pommier_h5(tmp_path / "a.h5", images, labels[:, :, :90])
    with pytest.raises(ValueError):
        write_pommier_h5(tmp_path / "b.h5", images.astype(np.float32), labels)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temp_and_no_destination(tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def boom(self, *args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(h5py.File, "create_dataset", boom, raising=False)
    images, labels = _sample(2)
    with pytest.raises(OSError, match="simulated"):
        write_pommier_h5(out_dir / "pairs.h5", images, labels)
    assert list(out_dir.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    images, labels = _sample(2, seed=3)
    path = write_pommier_h5(tmp_path / "pairs.h5", images, labels)

    def boom(self, *args, **kwargs):
        raise RuntimeError("interrupted (simulated)")

    monkeypatch.setattr(h5py.File, "create_dataset", boom, raising=False)
    with pytest.raises(RuntimeError):
        write_pommier_h5(path, images[::-1].copy(), labels)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_pommier_h5(path)[0], images)
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.h5"]


# ----------------------------------------------------------------------------------------------- errors


def _assert_names_file(exc: DataValidationError, path: Path) -> str:
    msg = str(exc)
    assert str(path) in msg
    assert exc.path == path
    return msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    assert "not found" in _assert_names_file(info.value, path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(tmp_path)
    _assert_names_file(info.value, tmp_path)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "random.h5"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    assert "HDF5" in _assert_names_file(info.value, path)


def test_wrong_key_lists_keys_present(tmp_path):
    images, labels = _sample(1)
    path = _raw_file(tmp_path / "keys.h5", images=images, labels=labels)
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    msg = _assert_names_file(info.value, path)
    assert "dataset_1" in msg
    assert "images" in msg and "labels" in msg


def test_group_instead_of_dataset(tmp_path):
    path = tmp_path / "group.h5"
    with h5py.File(path, "w") as f:
        f.create_group("dataset_1")
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    assert "group" in _assert_names_file(info.value, path)


def test_wrong_ndim(tmp_path):
    path = _raw_file(tmp_path / "ndim.h5", dataset_1=np.zeros((3, 94, 93), dtype=np.uint8))
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    assert "(3, 94, 93)" in _assert_names_file(info.value, path)


def test_last_axis_not_two(tmp_path):
    path = _raw_file(tmp_path / "axis.h5", dataset_1=np.zeros((3, 94, 93, 3), dtype=np.uint8))
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    assert "(3, 94, 93, 3)" in _assert_names_file(info.value, path)


def test_float_dtype(tmp_path):
    path = _raw_file(tmp_path / "float.h5", dataset_1=np.zeros((2, 94, 93, 2), dtype=np.float32))
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    msg = _assert_names_file(info.value, path)
    assert "float32" in msg and "uint8" in msg


def test_empty_dataset(tmp_path):
    path = _raw_file(tmp_path / "empty.h5", dataset_1=np.zeros((0, 94, 93, 2), dtype=np.uint8))
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    assert "no images" in _assert_names_file(info.value, path)


# ------------------------------------------------------------------------------------------ stray labels


def _with_strays(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """4 images; label 4 at 3 pixels of image 0 (inside the label-2 block) and 2 of image 2 (inside label 1)."""
    images, labels = _sample(4, seed=4)
    labels[0, 60, 40] = labels[0, 61, 40] = labels[0, 60, 41] = 4  # block of label 2 is rows 50:80, cols 20:60
    labels[2, 20, 20] = labels[2, 21, 22] = 4  # block of label 1 is rows 10:40, cols 10:40 (outside label 3)
    return _write_published(tmp_path / "stray.h5", images, labels), images, labels


def test_stray_label_reject_gives_pixel_count(tmp_path):
    path, _, _ = _with_strays(tmp_path)
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)  # reject is the default
    msg = _assert_names_file(info.value, path)
    assert "4: 5 px" in msg  # 3 + 2 pixels of value 4
    assert "in 2 images" in msg
    assert "stray_labels" in msg  # tells the user how to proceed


def test_stray_label_background(tmp_path):
    path, images, labels = _with_strays(tmp_path)
    got_images, got_labels, report = read_pommier_h5(path, stray_labels="background")
    expected = labels.copy()
    expected[expected == 4] = 0
    np.testing.assert_array_equal(got_labels, expected)
    np.testing.assert_array_equal(got_images, images)
    assert report.stray_pixels == {4: 5}
    assert report.total_stray_pixels == 5
    assert report.images_affected == 2
    assert report.policy == "background"
    assert "5 stray-label pixels" in report.summary()


def test_stray_label_nearest(tmp_path):
    path, _, labels = _with_strays(tmp_path)
    _, got_labels, report = read_pommier_h5(path, stray_labels="nearest")
    assert got_labels.max() == 3
    assert got_labels[0, 60, 40] == 2 and got_labels[0, 61, 40] == 2 and got_labels[0, 60, 41] == 2
    assert got_labels[2, 20, 20] == 1 and got_labels[2, 21, 22] == 1
    untouched = labels != 4
    np.testing.assert_array_equal(got_labels[untouched], labels[untouched])
    assert report.images_affected == 2
    assert report.stray_pixels == {4: 5}
    assert report.policy == "nearest"


def test_nearest_picks_the_closer_region():
    # 1 x 1 x 7 row: [1, 1, 4, 4, 4, 4, 2] -> positions 2, 3 are nearer the 1s (distance 1, 2 vs 4, 3);
    # position 4 is at distance 3 from the last 1 and 2 from the 2; position 5 at distance 1 from the 2.
    labels = np.array([[[1, 1, 4, 4, 4, 4, 2]]], dtype=np.uint8)
    fixed, report = fix_stray_labels(labels, 4, "nearest")
    np.testing.assert_array_equal(fixed, [[[1, 1, 1, 1, 2, 2, 2]]])
    assert report.stray_pixels == {4: 4} and report.images_affected == 1
    np.testing.assert_array_equal(labels, [[[1, 1, 4, 4, 4, 4, 2]]])  # input not modified


def test_several_stray_values_and_an_all_stray_image():
    labels = np.zeros((3, 4, 4), dtype=np.uint8)
    labels[0, 0, 0] = 7
    labels[0, 1, 1] = 4
    labels[1] = 5  # every pixel stray: nothing to copy from, becomes background
    fixed, report = fix_stray_labels(labels, 4, "nearest")
    assert report.stray_pixels == {4: 1, 5: 16, 7: 1}
    assert report.images_affected == 2
    assert fixed.max() == 0


def test_unknown_policy():
    labels = np.full((1, 2, 2), 9, dtype=np.uint8)
    with pytest.raises(ValueError, match="policy"):
        fix_stray_labels(labels, 4, "drop")


# ---------------------------------------------------------------------------------------------- pad_to


def test_pad_94x93_to_128_is_centred():
    a = (np.arange(94 * 93) % 251 + 1).astype(np.uint8).reshape(94, 93)  # no zeros inside
    out = pad_to(a, (128, 128))
    assert out.shape == (128, 128) and out.dtype == np.uint8
    # rows: 128 - 94 = 34 -> 17 top, 17 bottom; cols: 128 - 93 = 35 -> 17 left, 18 right
    np.testing.assert_array_equal(out[17:111, 17:110], a)
    assert not out[:17].any() and not out[111:].any()  # 17 rows each side
    assert not out[:, :17].any() and not out[:, 110:].any()  # 17 cols left, 18 right
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert (rows[0], 127 - rows[-1]) == (17, 17)
    assert (cols[0], 127 - cols[-1]) == (17, 18)


def test_pad_leading_axes_and_value():
    a = np.ones((3, 94, 93), dtype=np.uint8)
    out = pad_to(a, (128, 128), value=255)
    assert out.shape == (3, 128, 128)
    assert (out[:, 17:111, 17:110] == 1).all()
    assert int(out.sum()) == 3 * (94 * 93 * 1 + (128 * 128 - 94 * 93) * 255)


def test_pad_border_value_is_the_border_median():
    a = np.array([[1, 2, 3], [4, 100, 6], [7, 8, 9]], dtype=np.uint8)
    # border = top [1,2,3] + bottom [7,8,9] + left [1,4,7] + right [3,6,9]
    # sorted: 1 1 2 3 3 4 6 7 7 8 9 9 -> median = (4 + 6) / 2 = 5 (the centre 100 does not count)
    out = pad_to(a, (5, 5), value="border")
    expected = np.full((5, 5), 5, dtype=np.uint8)
    expected[1:4, 1:4] = a
    np.testing.assert_array_equal(out, expected)


def test_pad_border_is_per_image():
    a = np.zeros((2, 4, 4), dtype=np.uint8)
    a[1] = 200
    a[:, 1:3, 1:3] = 50
    out = pad_to(a, (8, 8), value="border")
    assert out[0, 0, 0] == 0 and out[1, 0, 0] == 200
    assert out[0, 7, 7] == 0 and out[1, 7, 7] == 200
    np.testing.assert_array_equal(out[:, 2:6, 2:6], a)


def test_pad_rejects_unknown_string():
    with pytest.raises(ValueError, match="border"):
        pad_to(np.zeros((2, 2), np.uint8), (4, 4), value="edge")


def test_larger_array_is_centre_cropped():
    a = np.arange(130 * 131, dtype=np.int32).reshape(130, 131)
    out = pad_to(a, (128, 128))
    # rows: (130 - 128) // 2 = 1 -> rows 1..128; cols: (131 - 128) // 2 = 1 -> cols 1..128
    np.testing.assert_array_equal(out, a[1:129, 1:129])


def test_crop_one_axis_pad_the_other():
    a = np.arange(1, 130 * 90 + 1, dtype=np.int32).reshape(130, 90)
    out = pad_to(a, (128, 128))
    # rows cropped from 1; cols padded 38 -> 19 left, 19 right
    np.testing.assert_array_equal(out[:, 19:109], a[1:129])
    assert not out[:, :19].any() and not out[:, 109:].any()


def test_same_size_is_unchanged():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = pad_to(a, (3, 4), value="border")
    assert out.shape == (3, 4)
    np.testing.assert_array_equal(out, a)


# -------------------------------------------------------------------------------------------- PNG pairs


def test_write_png_pairs_round_trip(tmp_path):
    images, labels = _sample(3, seed=5)
    n = write_png_pairs(tmp_path / "png", images, labels, first_index=7)
    assert n == 3
    names = [f"pair_{i:05d}.png" for i in (7, 8, 9)]
    assert sorted(p.name for p in (tmp_path / "png" / "images").iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "png" / "masks").iterdir()) == names
    for k, name in enumerate(names):
        with Image.open(tmp_path / "png" / "images" / name) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), images[k])
        with Image.open(tmp_path / "png" / "masks" / name) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), labels[k])


# ------------------------------------------------------------------------------ corrupt and oversized files


def test_corrupt_metadata_is_a_data_error_naming_the_file(tmp_path):
    images, labels = _sample(2)
    good = write_pommier_h5(tmp_path / "good.h5", images, labels)
    data = bytearray(good.read_bytes())
    for signature in (b"HEAP", b"SNOD", b"TREE"):
        i = data.find(signature)
        if i < 0:
            continue
        bad = tmp_path / f"bad_{signature.decode()}.h5"
        broken = bytearray(data)
        broken[i : i + 4] = b"XXXX"
        bad.write_bytes(bytes(broken))
        with pytest.raises(DataValidationError) as info:
            read_pommier_h5(bad)
        assert "\n" not in _assert_names_file(info.value, bad)


def test_image_and_dataset_limits_are_checked_from_the_shape(tmp_path, monkeypatch):
    images, labels = _sample(3)
    path = write_pommier_h5(tmp_path / "p.h5", images, labels)
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path, max_voxels=1000)
    assert "8,742 voxels (94, 93)" in _assert_names_file(info.value, path)
    monkeypatch.setenv("MEDSEG_MAX_DATASET_BYTES", "10000")
    with pytest.raises(DataValidationError) as info:
        read_pommier_h5(path)
    assert "would take" in _assert_names_file(info.value, path)


def test_load_data_checks_the_float_copy_against_the_memory_limit(tmp_path, monkeypatch):
    from medseg.config import DEFAULTS
    from medseg.data.datasets import load_data

    images, labels = _sample(3)
    path = write_pommier_h5(tmp_path / "p.h5", images, labels)
    cfg = {**DEFAULTS["data"], "path": str(path), "size": [128, 128], "stray_labels": "reject"}
    monkeypatch.setenv("MEDSEG_MAX_DATASET_BYTES", str(3 * 94 * 93 * 2 + 10))  # the file fits, 3 × 128² × 5 does not
    with pytest.raises(DataValidationError) as info:
        load_data(cfg, 4)
    assert "3 images of 128x128" in _assert_names_file(info.value, path)
