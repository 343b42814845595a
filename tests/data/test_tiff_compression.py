"""Compressed TIFFs (LZW, Deflate, PackBits) read without the optional imagecodecs package (medseg.data.folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.data.folder import load_folder_dataset, read_image, read_mask
from medseg.errors import DataValidationError
from medseg.formats.images import image_shape

COMPRESSIONS = ["tiff_lzw", "tiff_adobe_deflate", "packbits"]


def _save(path: Path, array: np.ndarray, compression: str | None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array, **kwargs) if kwargs else Image.fromarray(array)
    img.save(path, compression=compression) if compression else img.save(path)
    return path


def _ramp(dtype, shape=(37, 29)) -> np.ndarray:
    hi = np.iinfo(dtype).max
    rng = np.random.default_rng(1)
    return (np.linspace(0, hi, shape[0] * shape[1]).reshape(shape) * rng.random(shape)).round().astype(dtype)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_compressed_tiff_read_back_exactly(tmp_path, compression, dtype):
    arr = _ramp(dtype)
    path = _save(tmp_path / f"img_{compression}.tif", arr, compression)
    out = read_image(path)
    assert out.dtype == dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert tuple(image_shape(path)) == arr.shape


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_compressed_tiff_masks(tmp_path, compression):
    mask = (np.arange(30 * 20).reshape(30, 20) % 4).astype(np.uint8)
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "m.tif", mask, compression), 4), mask)
    binary = ((np.arange(30 * 20).reshape(30, 20) % 3) == 0).astype(np.uint16) * 65535
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "b.tif", binary, compression), 2), binary // 65535)


def test_lzw_tifffile_alone_cannot_decode_it(tmp_path):
    """The case this fixes: without imagecodecs tifffile refuses LZW (if imagecodecs is installed, it reads it)."""
    tifffile = pytest.importorskip("tifffile")
    path = _save(tmp_path / "a.tif", _ramp(np.uint8), "tiff_lzw")
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="imagecodecs"):
            tifffile.imread(path)
    np.testing.assert_array_equal(read_image(path), _ramp(np.uint8))


def test_lzw_palette_tiff_is_read_as_indices(tmp_path):
    """The M-FISH DAPI images: LZW with an identity palette."""
    arr = _ramp(np.uint8)
    img = Image.fromarray(arr, mode="L").convert("P")
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    img.putdata(arr.ravel().tolist())
    path = tmp_path / "p.tif"
    img.save(path, compression="tiff_lzw")
    with Image.open(path) as check:
        assert check.mode == "P"
    np.testing.assert_array_equal(read_image(path), arr)
    np.testing.assert_array_equal(read_mask(path, 256), arr)


def test_lzw_float_and_rgb(tmp_path):
    f = np.random.default_rng(0).random((9, 11)).astype(np.float32)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "f.tif", f, "tiff_lzw")), f)
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 0] = 200
    grey = read_image(_save(tmp_path / "rgb.tif", rgb, "tiff_lzw"))
    assert grey.shape == (6, 7) and grey.dtype == np.uint8
    assert abs(int(grey[0, 0]) - round(0.299 * 200)) <= 1


def test_lzw_bilevel_same_as_uncompressed(tmp_path):
    bits = np.random.default_rng(2).random((10, 12)) > 0.5
    plain = _save(tmp_path / "plain.tif", bits, None)
    lzw = _save(tmp_path / "lzw.tif", bits, "tiff_lzw")
    np.testing.assert_array_equal(read_image(lzw), read_image(plain))
    np.testing.assert_array_equal(read_mask(lzw, 2), bits.astype(np.uint8))


def test_lzw_folder_dataset(tmp_path):
    images = [_ramp(np.uint8, (16, 12)) for _ in range(2)]
    for i, im in enumerate(images):
        _save(tmp_path / "images" / f"img_{i}.tif", im, "tiff_lzw")
        _save(tmp_path / "masks" / f"img_{i}.tif", (im > 100).astype(np.uint8) * 255, "tiff_lzw")
    x, y, names = load_folder_dataset(tmp_path / "images", tmp_path / "masks", num_classes=2)
    assert names == ["img_0", "img_1"] and x.shape == (2, 16, 12)
    np.testing.assert_allclose(x[1], images[1] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(y[0], images[0] > 100)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_corrupt_compressed_tiff_names_the_file(tmp_path, compression):
    path = _save(tmp_path / f"broken_{compression}.tif", _ramp(np.uint8, (64, 64)), compression)
    data = bytearray(path.read_bytes())
    # Pillow writes the pixel data right after the 8-byte header: overwrite it, keep the header and tags
    data[8 : 8 + 200] = bytes(range(200))
    path.write_bytes(bytes(data))
    try:
        out = read_image(path)
    except DataValidationError as exc:
        assert path.name in str(exc)
        if compression == "tiff_lzw":
            assert "imagecodecs" in str(exc) and "corrupt" in str(exc)
    else:  # PackBits has no checksum: garbage may decode to (wrong) pixels without an error; the shape holds
        assert out.shape == (64, 64) and compression == "packbits"


def test_garbage_tiff_names_the_file(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(DataValidationError, match=r"junk\.tif"):
        read_image(path)


def test_truncated_lzw_tiff_names_the_file(tmp_path):
    path = _save(tmp_path / "cut.tif", _ramp(np.uint8, (64, 64)), "tiff_lzw")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataValidationError, match=r"cut\.tif"):
        read_image(path)


def test_the_metaphase_reader_of_data_synth_reads_lzw(tmp_path):
    """`medseg data synth --metaphase X.tif` read LZW TIFFs with tifffile, which needs imagecodecs for LZW."""
    from PIL import Image

    from medseg.data.chromosome_crops import _load_grey

    arr = (np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) % 251).astype(np.uint8)
    path = tmp_path / "metaphase.tif"
    Image.fromarray(arr).save(path, compression="tiff_lzw")
    np.testing.assert_array_equal(_load_grey(path), arr)
