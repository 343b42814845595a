"""Tests of the generic image-folder / mask-folder dataset (medseg.data.folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from medseg.data.folder import (
    FolderPairs,
    load_folder_dataset,
    normalize_intensity,
    pair_files,
    read_image,
    read_mask,
    resolve_folder,
)
from medseg.errors import DataValidationError


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _tif(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kwargs)
    return path


def _ramp(h: int, w: int, dtype) -> np.ndarray:
    hi = np.iinfo(dtype).max
    return np.linspace(0, hi, h * w).round().astype(dtype).reshape(h, w)


def _dataset(tmp_path: Path, n: int = 3, shape=(12, 10)) -> tuple[Path, Path, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    images, masks = [], []
    for i in range(n):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        mask = (rng.random(shape) > 0.5).astype(np.uint8) * 255
        _tif(tmp_path / "images" / f"img_{i:02d}.tif", img)
        _png(tmp_path / "masks" / f"img_{i:02d}.png", mask)
        images.append(img)
        masks.append(mask)
    return tmp_path / "images", tmp_path / "masks", images, masks


# ------------------------------------------------------------------------------------------ read_image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("writer", ["png", "tif"])
def test_read_image_8_and_16_bit_png_and_tiff(tmp_path, dtype, writer):
    arr = _ramp(9, 7, dtype)
    path = (_png if writer == "png" else _tif)(tmp_path / f"a.{writer}", arr)
    out = read_image(path)
    assert out.dtype == dtype
    assert out.shape == (9, 7)
    np.testing.assert_array_equal(out, arr)


def test_big_endian_16_bit_tiff_is_uint16(tmp_path):
    arr = _ramp(5, 5, np.uint16)
    out = read_image(_tif(tmp_path / "be.tif", arr, byteorder=">"))
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_allclose(normalize_intensity(out), arr / 65535.0, atol=1e-6)


def test_read_image_float_tiff(tmp_path):
    arr = np.linspace(-3, 5, 20, dtype=np.float32).reshape(4, 5)
    out = read_image(_tif(tmp_path / "f.tif", arr))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("writer", ["png", "tif"])
def test_rgb_image_becomes_grey(tmp_path, writer):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    rgb[1, :, :] = 100  # one grey row
    path = (_png if writer == "png" else _tif)(tmp_path / f"rgb.{writer}", rgb)
    out = read_image(path)
    assert out.shape == (4, 5) and out.dtype == np.uint8
    assert out[0, 0] == round(0.299 * 200)  # ITU-R 601 luma, as Pillow's convert("L")
    assert (out[1] == 100).all()
    # Same grey as Pillow's own conversion.
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.full((3, 3, 4), 50, dtype=np.uint8)
    rgba[..., 3] = 255
    out = read_image(_png(tmp_path / "rgba.png", rgba))
    assert out.shape == (3, 3)
    assert (out == 50).all()


def test_corrupt_png_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DataValidationError) as info:
        read_image(bad)
    assert info.value.path == bad
    assert "broken.png" in str(info.value)
    assert "corrupt" in str(info.value)


def test_truncated_png_is_an_error(tmp_path):
    good = _png(tmp_path / "good.png", _ramp(64, 64, np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataValidationError, match="cut.png"):
        read_image(cut)


def test_corrupt_tiff_names_the_file(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff at all" * 20)
    with pytest.raises(DataValidationError, match="broken.tif.*corrupt"):
        read_image(bad)


def test_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_tiff_stack_is_not_2d(tmp_path):
    path = _tif(tmp_path / "stack.tif", np.zeros((3, 8, 8), dtype=np.uint8), photometric="minisblack")
    with pytest.raises(DataValidationError, match="stack.tif.*3 pages"):
        read_image(path)


def test_planar_rgb_tiff_becomes_grey(tmp_path):
    planar = np.zeros((3, 4, 5), dtype=np.uint16)
    planar[2] = 1000  # blue
    path = _tif(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    out = read_image(path)
    assert out.shape == (4, 5) and out.dtype == np.uint16
    assert (out == round(0.114 * 1000)).all()


def test_multichannel_tiff_is_not_2d(tmp_path):
    path = _tif(
        tmp_path / "five.tif", np.zeros((8, 8, 5), dtype=np.uint8), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(DataValidationError, match=r"five.tif.*\(8, 8, 5\).*2D"):
        read_image(path)


# --------------------------------------------------------------------------------- normalize_intensity


def test_normalize_uses_dtype_range_not_image_range():
    dark8 = np.array([[0, 51]], dtype=np.uint8)
    np.testing.assert_allclose(normalize_intensity(dark8), [[0.0, 0.2]], atol=1e-7)
    dark16 = np.array([[0, 13107, 65535]], dtype=np.uint16)
    out = normalize_intensity(dark16)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], atol=1e-7)


def test_normalize_float_is_min_max():
    out = normalize_intensity(np.array([[-2.0, 0.0, 6.0]], dtype=np.float64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.25, 1.0]])
    assert (normalize_intensity(np.full((2, 2), 7.5, dtype=np.float32)) == 0).all()
    with pytest.raises(ValueError, match="NaN"):
        normalize_intensity(np.array([[0.0, np.nan]]))


# ------------------------------------------------------------------------------------------- read_mask


@pytest.mark.parametrize(
    ("dtype", "hi", "writer"),
    [
        (np.uint8, 255, "png"),
        (np.uint8, 255, "tif"),
        (np.uint16, 65535, "png"),
        (np.uint16, 65535, "tif"),
        (np.uint8, 1, "png"),
    ],
)
def test_binary_mask_becomes_0_1(tmp_path, dtype, hi, writer):
    mask = np.zeros((5, 6), dtype=dtype)
    mask[1:3, 2:5] = hi
    path = (_png if writer == "png" else _tif)(tmp_path / f"m.{writer}", mask)
    out = read_mask(path, 2)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, (mask == hi).astype(np.uint8))


def test_bilevel_png_mask(tmp_path):
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, :2] = True
    path = tmp_path / "bw.png"
    Image.fromarray(mask).convert("1").save(path)
    np.testing.assert_array_equal(read_mask(path, 2), mask.astype(np.uint8))


def test_class_index_mask_kept(tmp_path):
    mask = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    out = read_mask(_png(tmp_path / "m.png", mask), 4)
    np.testing.assert_array_equal(out, mask)
    out16 = read_mask(_tif(tmp_path / "m16.tif", mask.astype(np.uint16)), 4)
    assert out16.dtype == np.uint8
    np.testing.assert_array_equal(out16, mask)


def test_mask_values_mapping(tmp_path):
    stored = np.array([[0, 85, 170, 255], [255, 0, 85, 170]], dtype=np.uint8)
    out = read_mask(_png(tmp_path / "m.png", stored), 4, mask_values=[0, 85, 170, 255])
    np.testing.assert_array_equal(out, [[0, 1, 2, 3], [3, 0, 1, 2]])
    # Any order: mask_values[k] is class k.
    out = read_mask(tmp_path / "m.png", 4, mask_values=[255, 170, 85, 0])
    np.testing.assert_array_equal(out, [[3, 2, 1, 0], [0, 3, 2, 1]])


def test_mask_values_must_match_num_classes(tmp_path):
    path = _png(tmp_path / "m.png", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        read_mask(path, 3, mask_values=[0, 255])
    with pytest.raises(ValueError, match="repeats"):
        read_mask(path, 2, mask_values=[0, 0])


def test_unknown_mask_values_error_names_file_and_values(tmp_path):
    mask = np.array([[0, 1, 7], [128, 128, 1]], dtype=np.uint8)
    path = _png(tmp_path / "weird_mask.png", mask)
    with pytest.raises(DataValidationError) as info:
        read_mask(path, 4)
    msg = str(info.value)
    assert info.value.path == path and "weird_mask.png" in msg
    assert "7 (1 px)" in msg and "128 (2 px)" in msg  # offending values with pixel counts
    assert "0..3" in msg  # the allowed ones
    assert "mask_values" in msg  # and how to fix it


def test_unknown_values_with_mask_values(tmp_path):
    path = _png(tmp_path / "m.png", np.array([[0, 85, 86]], dtype=np.uint8))
    with pytest.raises(DataValidationError) as info:
        read_mask(path, 3, mask_values=[0, 85, 170])
    msg = str(info.value)
    assert "m.png" in msg and "86 (1 px)" in msg and "[0, 85, 170]" in msg


def test_binary_mask_with_grey_edges_is_rejected_not_thresholded(tmp_path):
    mask = np.array([[0, 128, 255]], dtype=np.uint8)  # anti-aliased edge
    with pytest.raises(DataValidationError, match=r"128 \(1 px\)"):
        read_mask(_png(tmp_path / "m.png", mask), 2)


def test_0_255_mask_is_not_binary_when_more_classes(tmp_path):
    with pytest.raises(DataValidationError, match="255"):
        read_mask(_png(tmp_path / "m.png", np.array([[0, 255]], dtype=np.uint8)), 3)


def test_rgb_mask_with_equal_channels_ok_else_error(tmp_path):
    grey = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_array_equal(read_mask(_png(tmp_path / "g.png", rgb), 3), grey)
    rgb[0, 1] = (1, 0, 0)
    with pytest.raises(DataValidationError, match="c.png.*colour mask"):
        read_mask(_png(tmp_path / "c.png", rgb), 3)


def test_palette_mask_keeps_indices(tmp_path):
    idx = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png", 3), idx)


# ------------------------------------------------------------------------------------------ pair_files


def test_pair_files_matches_stems_across_extensions(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=3)
    (images_dir / ".hidden.tif").write_bytes(b"x")  # ignored
    (masks_dir / ".DS_Store").write_bytes(b"x")
    (images_dir / "notes.txt").write_text("ignored")
    pairs = pair_files(images_dir, masks_dir)
    assert isinstance(pairs, FolderPairs)
    assert pairs.names == ["img_00", "img_01", "img_02"]
    assert [p.name for p in pairs.images] == ["img_00.tif", "img_01.tif", "img_02.tif"]
    assert [p.name for p in pairs.masks] == ["img_00.png", "img_01.png", "img_02.png"]


def test_missing_mask_error_names_files(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=3)
    (masks_dir / "img_01.png").unlink()
    _png(masks_dir / "orphan.png", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataValidationError) as info:
        pair_files(images_dir, masks_dir)
    msg = str(info.value)
    assert "img_01.tif" in msg and "no mask" in msg
    assert "orphan.png" in msg and "no image" in msg


def test_missing_masks_listing_is_capped(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=14, shape=(2, 2))
    for i in range(1, 14):
        (masks_dir / f"img_{i:02d}.png").unlink()
    with pytest.raises(DataValidationError) as info:
        pair_files(images_dir, masks_dir)
    msg = str(info.value)
    assert "13 image(s)" in msg and "and 3 more" in msg
    assert "img_10.tif" in msg and "img_11.tif" not in msg


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    _png(tmp_path / "masks" / "a.png", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataValidationError, match=r"images: no image files .*found 1 \.jpg"):
        pair_files(tmp_path / "images", tmp_path / "masks")


def test_duplicate_stem_in_one_folder(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=1)
    _png(images_dir / "img_00.png", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataValidationError, match="img_00.png and img_00.tif|img_00.tif and img_00.png"):
        pair_files(images_dir, masks_dir)


# --------------------------------------------------------------------------------------- resolve_folder


def test_resolve_folder_masks_or_labels(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path)
    assert resolve_folder(tmp_path) == (images_dir, masks_dir)
    masks_dir.rename(tmp_path / "labels")
    assert resolve_folder(tmp_path) == (images_dir, tmp_path / "labels")


def test_resolve_folder_explains_layout(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataValidationError) as info:
        resolve_folder(tmp_path)
    msg = str(info.value)
    assert "'images/'" in msg and "'masks/'" in msg and "labels" in msg and "imgs/" in msg
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataValidationError, match="keep one mask folder"):
        resolve_folder(tmp_path)


# ---------------------------------------------------------------------------------- load_folder_dataset


def test_load_folder_dataset(tmp_path):
    images_dir, masks_dir, images, masks = _dataset(tmp_path, n=3, shape=(12, 10))
    x, y, names = load_folder_dataset(images_dir, masks_dir, num_classes=2)
    assert x.shape == (3, 12, 10) and x.dtype == np.float32
    assert y.shape == (3, 12, 10) and y.dtype == np.uint8
    assert names == ["img_00", "img_01", "img_02"]
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x[1], images[1] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(y[2], masks[2] // 255)


def test_load_16_bit_png_images(tmp_path):
    img = _ramp(6, 6, np.uint16)
    _png(tmp_path / "images" / "a.png", img)
    _png(tmp_path / "masks" / "a.png", np.zeros((6, 6), dtype=np.uint8))
    x, _, _ = load_folder_dataset(tmp_path / "images", tmp_path / "masks", num_classes=2)
    np.testing.assert_allclose(x[0], img / 65535.0, atol=1e-6)
    assert x[0].max() == 1.0


def test_shape_mismatch_names_both_files(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=2, shape=(12, 10))
    _png(masks_dir / "img_01.png", np.zeros((12, 11), dtype=np.uint8))
    with pytest.raises(DataValidationError) as info:
        load_folder_dataset(images_dir, masks_dir, num_classes=2)
    msg = str(info.value)
    assert "img_01.tif" in msg and "img_01.png" in msg
    assert "12x10" in msg and "12x11" in msg


def test_different_image_shapes_need_size(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=2, shape=(12, 10))
    _tif(images_dir / "big.tif", np.zeros((16, 16), dtype=np.uint8))
    _png(masks_dir / "big.png", np.zeros((16, 16), dtype=np.uint8))
    with pytest.raises(DataValidationError) as info:
        load_folder_dataset(images_dir, masks_dir, num_classes=2)
    msg = str(info.value)
    assert "12x10" in msg and "16x16" in msg and "big.tif" in msg and "size" in msg


def test_padding_and_cropping_to_size(tmp_path):
    small = np.full((4, 6), 200, dtype=np.uint8)
    big = np.zeros((12, 12), dtype=np.uint8)
    big[4:8, 4:8] = 100
    _png(tmp_path / "images" / "a_small.png", small)
    _png(tmp_path / "masks" / "a_small.png", np.ones((4, 6), dtype=np.uint8))
    _png(tmp_path / "images" / "b_big.png", big)
    big_mask = np.zeros((12, 12), dtype=np.uint8)
    big_mask[4:8, 4:8] = 1
    _png(tmp_path / "masks" / "b_big.png", big_mask)

    x, y, names = load_folder_dataset(tmp_path / "images", tmp_path / "masks", num_classes=2, size=(8, 8))
    assert x.shape == (2, 8, 8) and y.shape == (2, 8, 8)
    assert names == ["a_small", "b_big"]
    # Small image padded all round: 2 rows top/bottom, 1 column left/right; "border" pads with the
    # image's own border value, the mask with background.
    np.testing.assert_allclose(x[0], 200 / 255, atol=1e-6)
    assert y[0].sum() == 4 * 6 and (y[0][2:6, 1:7] == 1).all()
    # Big image centre-cropped: the object stays in the centre.
    assert (y[1][2:6, 2:6] == 1).all() and y[1].sum() == 16
    np.testing.assert_allclose(x[1][2:6, 2:6], 100 / 255, atol=1e-6)

    x0, y0, _ = load_folder_dataset(tmp_path / "images", tmp_path / "masks", num_classes=2, size=(8, 8), pad_value=0.0)
    assert x0[0][0, 0] == 0.0 and x0[0][2, 1] == pytest.approx(200 / 255)


def test_rgb_images_in_dataset(tmp_path):
    rgb = np.zeros((5, 5, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    _png(tmp_path / "images" / "a.png", rgb)
    _png(tmp_path / "masks" / "a.png", np.zeros((5, 5), dtype=np.uint8))
    x, _, _ = load_folder_dataset(tmp_path / "images", tmp_path / "masks", num_classes=2)
    assert x.shape == (1, 5, 5)
    np.testing.assert_allclose(x[0], round(0.587 * 255) / 255, atol=1e-6)


def test_mask_values_through_loader_and_bad_mask_named(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((2, 2), dtype=np.uint8))
    _png(tmp_path / "masks" / "a.png", np.array([[0, 85], [170, 255]], dtype=np.uint8))
    _, y, _ = load_folder_dataset(tmp_path / "images", tmp_path / "masks", num_classes=4, mask_values=[0, 85, 170, 255])
    np.testing.assert_array_equal(y[0], [[0, 1], [2, 3]])
    with pytest.raises(DataValidationError, match=r"masks/a.png"):
        load_folder_dataset(tmp_path / "images", tmp_path / "masks", num_classes=4)


def test_corrupt_file_in_dataset_is_named(tmp_path):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=2)
    (masks_dir / "img_01.png").write_bytes(np.random.default_rng(3).bytes(300))
    with pytest.raises(DataValidationError, match="img_01.png.*corrupt"):
        load_folder_dataset(images_dir, masks_dir, num_classes=2)


# ------------------------------------------------------------------------------ sizes and values up front


def test_huge_png_is_refused_from_its_header(tmp_path, monkeypatch):
    """(PNGs whose header lies about their size, with almost no data, are in tests/fuzz.)"""
    path = tmp_path / "huge.png"
    Image.new("L", (3000, 2000)).save(path)  # 9 kB of zeros on disk, 6 megapixels declared
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", str(2**20))
    with pytest.raises(DataValidationError, match=r"huge\.png: image of 6,000,000 voxels \(2000, 3000\) exceeds"):
        read_image(path)
    with pytest.raises(DataValidationError, match=r"mask of 6,000,000 voxels"):
        read_mask(path, 2)
    monkeypatch.delenv("MEDSEG_MAX_VOXELS")
    with pytest.raises(DataValidationError, match=r"huge\.png: image of 6,000,000 voxels .* limit of 1,000 voxels"):
        read_image(path, max_voxels=1000)
    assert read_image(path).shape == (2000, 3000)


def test_image_shape_reads_the_header_only(tmp_path):
    from medseg.formats.images import image_shape

    Image.new("L", (300, 200)).save(tmp_path / "h.png")
    assert image_shape(tmp_path / "h.png") == (200, 300)
    assert image_shape(_tif(tmp_path / "t.tif", np.zeros((7, 9), np.uint16))) == (7, 9)
    with pytest.raises(DataValidationError, match="not a file|not found"):
        image_shape(tmp_path / "missing.png")


def test_huge_tiff_is_refused_before_decoding(tmp_path):
    path = _tif(tmp_path / "big.tif", np.zeros((64, 64), np.uint8))
    with pytest.raises(
        DataValidationError, match=r"big\.tif: image of 4,096 voxels \(64, 64\) exceeds the limit of 100"
    ):
        read_image(path, max_voxels=100)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_float_tiff_is_refused_naming_the_file(tmp_path, value):
    arr = np.ones((6, 5), np.float32)
    arr[2, 3] = value
    arr[4, 1] = value
    with pytest.raises(DataValidationError, match=r"nan\.tif: image holds 2 NaN or infinite value\(s\) of 30"):
        read_image(_tif(tmp_path / "nan.tif", arr))


def test_complex_tiff_is_refused(tmp_path):
    with pytest.raises(DataValidationError, match=r"c\.tif: .*complex"):
        read_image(_tif(tmp_path / "c.tif", np.ones((4, 4), np.complex64)))


def test_folder_dataset_larger_than_the_memory_limit_is_refused_early(tmp_path, monkeypatch):
    images_dir, masks_dir, _, _ = _dataset(tmp_path, n=3, shape=(12, 10))
    monkeypatch.setenv("MEDSEG_MAX_DATASET_BYTES", "1000")  # 3 × 120 px × 5 bytes = 1800
    with pytest.raises(DataValidationError, match=r"images: the 3 images of this folder .* would take"):
        load_folder_dataset(images_dir, masks_dir, num_classes=2)
    monkeypatch.setenv("MEDSEG_MAX_DATASET_BYTES", "2000")
    assert load_folder_dataset(images_dir, masks_dir, num_classes=2)[0].shape == (3, 12, 10)
