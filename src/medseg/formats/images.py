"""The one checked reader of 2D image files (PNG, TIFF) that every 2D data set reads through.

The generic folder set (:mod:`medseg.data.folder`), the M-FISH metaphases (:mod:`medseg.data.mfish`), the
synthesizers' source images and the GI-tract scans all read their pixels here, so the same checks guard every
one of them and a new reader cannot forget one:

* the size is read from the header (PIL's ``Image.open`` and tifffile's page tags decode nothing) and checked
  against the voxel budget of :mod:`medseg.formats.limits` before a pixel is decoded: a 170 KB LZW TIFF can
  declare 13,000 × 13,000 pixels;
* a file holds exactly one 2D image: a multi-page TIFF or an animated PNG is refused, never read as its
  first page;
* the values are real, finite numbers (NaN/inf, complex and non-numeric pixels are refused,
  :func:`medseg.formats.volume.check_values`), and label maps hold integers (:func:`check_integer_labels`):
  a NaN cast to a label would silently become class 0;
* any decoder failure is a :class:`~medseg.errors.DataValidationError` naming the file, on one line.

:func:`read_stored` returns the pixels as stored (dtype, palette indices, channels); :func:`open_image` hands a
reader that needs Pillow's own conversions a PIL image whose header passed the same checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.limits import check_voxels, exception_text, voxel_budget
from medseg.formats.volume import check_values

__all__ = ["check_header", "check_integer_labels", "image_shape", "open_image", "read_stored"]


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(path, "file not found" if not path.exists() else "not a file")
    return path


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Any error of the decoder inside the block becomes a DataValidationError naming the file. Pillow and
    tifffile raise many types on bad bytes (OSError, SyntaxError, ValueError, struct.error, zlib.error,
    TiffFileError, EOFError, IndexError, ...); none of them should reach the user as a traceback."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the voxel budget decides
            yield
    except DataValidationError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow refuses above 2 × Image.MAX_IMAGE_PIXELS (179 M) before medseg sees the size; with the default
        # budget (134 M voxels) such an image is over the budget too, so say it in the budget's words.
        raise DataValidationError(
            path,
            f"the image's header declares more pixels than the limit of "
            f"{voxel_budget():,} voxels allows (Pillow: {exception_text(exc)})",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - see the docstring
        kind = (
            "a TIFF image; the file may be corrupt or not a TIFF"
            if _is_tiff(path)
            else "a PNG/TIFF image; the file may be corrupt or not an image"
        )
        raise DataValidationError(path, f"cannot be read as {kind} ({exception_text(exc)})") from exc


def _tiff_first_page(path: Path, tif):
    """The one page of a single-image TIFF (a stack or an empty file is refused)."""
    n_pages = len(tif.pages)
    if n_pages == 0:
        raise DataValidationError(path, "TIFF file holds no image; the file may be corrupt")
    if n_pages > 1:
        raise DataValidationError(path, f"TIFF file holds {n_pages} pages (a stack); expected one 2D image per file")
    return tif.pages[0]


def _tiff_shape(page) -> tuple[int, ...]:
    """Height × width (× depth for a volumetric page) from a TIFF page's tags, whatever its samples."""
    depth = int(getattr(page, "imagedepth", 1) or 1)
    return (int(page.imagelength), int(page.imagewidth)) + ((depth,) if depth > 1 else ())


def _pil_shape(img) -> tuple[int, int]:
    width, height = img.size
    return int(height), int(width)


def check_header(path: Path, img, what: str = "image", max_voxels: int | None = None) -> None:
    """The size against the budget and a single frame, from an opened but not yet decoded PIL image (for a
    reader that opens the file itself to word its own decoding errors)."""
    check_voxels(path, _pil_shape(img), what, max_voxels)
    n_frames = getattr(img, "n_frames", 1)
    if n_frames > 1:
        noun = "pages (a stack)" if _is_tiff(path) else "frames"
        raise DataValidationError(path, f"image file holds {n_frames} {noun}; expected one 2D image per file")


def image_shape(path: str | Path) -> tuple[int, ...]:
    """The (H, W) a PNG/TIFF header declares, read without decoding a pixel (for size checks, e.g. the
    server's before it reads an upload). Raises DataValidationError for a missing or unreadable file."""
    import tifffile
    from PIL import Image

    path = _existing_file(path)
    with _decoding(path):
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                return _tiff_shape(_tiff_first_page(path, tif))
        with Image.open(path) as img:
            return _pil_shape(img)


@contextmanager
def open_image(path: str | Path, what: str = "image", max_voxels: int | None = None):
    """A PIL image of ``path`` whose header passed the checks (voxel budget, one frame), not yet decoded: for
    readers that keep Pillow's own conversions (``convert("L")``). Opening errors and the checks' refusals are
    DataValidationErrors naming the file; decoding in the block is the caller's to guard."""
    from PIL import Image

    path = _existing_file(path)
    with _decoding(path):
        img = Image.open(path)
        try:
            check_header(path, img, what, max_voxels)
        except BaseException:
            img.close()
            raise
    with img:
        yield img


def read_stored(
    path: str | Path, what: str = "image", max_voxels: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a PNG/TIFF as stored. Returns the array, (H, W) or (H, W, C), and for a palette image the
    (H, W, 3) colours its indices stand for (else None). Raises DataValidationError naming the file for a
    missing, unreadable or corrupt file, a size over the voxel budget (from the header, before decoding),
    a multi-page or multi-frame file, and non-numeric or non-finite pixels; ``what`` names the file's role
    in the messages ("image", "mask", "karyotype label map")."""
    path = _existing_file(path)
    with _decoding(path):
        if _is_tiff(path):
            arr, colours = _read_tiff(path, what, max_voxels), None
        else:
            arr, colours = _read_pil(path, what, max_voxels)
    check_values(path, arr, what)
    if not arr.dtype.isnative:  # big-endian TIFF / PNG "I;16B": native order, so uint16 stays uint16
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, colours


def check_integer_labels(path: str | Path, arr: np.ndarray, what: str = "mask") -> None:
    """Refuse a label map that does not hold integers: a float map must be integer-valued (its NaN/inf are
    refused by :func:`read_stored` already; a cast would turn them into class 0), other kinds integer or bool."""
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise DataValidationError(
                path, f"{what} has dtype {arr.dtype} with non-integer values; {what}s must hold integer labels"
            )
    elif arr.dtype.kind not in "uib":
        raise DataValidationError(path, f"{what} has dtype {arr.dtype}; expected integer labels")


def _tifffile_decodes(page) -> bool:
    """Whether tifffile can decode this page as installed: without the optional ``imagecodecs`` package it
    has no LZW (the usual microscopy compression) nor JPEG, only none, Deflate/zlib, PackBits and a few more."""
    from tifffile import TIFF

    try:
        return page.compression in TIFF.DECOMPRESSORS and page.predictor in TIFF.PREDICTORS
    except Exception:  # noqa: BLE001 - an unknown tag value: let the decoder say what is wrong
        return True


def _read_tiff(path: Path, what: str, max_voxels: int | None) -> np.ndarray:
    """A TIFF's one page as stored. tifffile decodes it where it can; a compression it needs ``imagecodecs`` for
    (LZW above all) is decoded by Pillow instead, with the same result (palette pages: their indices)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = _tiff_first_page(path, tif)
        check_voxels(path, _tiff_shape(page), what, max_voxels)
        if _tifffile_decodes(page):
            arr = page.asarray()
            separate = int(getattr(page, "planarconfig", 1)) == 2  # PLANARCONFIG.SEPARATE: (C, H, W)
        else:
            arr, separate = _read_tiff_pillow(path, page), False
    arr = np.asarray(arr)
    if separate and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    # (1, H, W) or (H, W, 1): a single plane stored with an extra axis.
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


def _read_tiff_pillow(path: Path, page) -> np.ndarray:
    """Decode a TIFF page tifffile cannot (without imagecodecs) with Pillow, which has LZW, Deflate and PackBits
    built in. Channels last; palette pages as their indices, bilevel as bool, as tifffile gives them."""
    from PIL import Image

    try:
        compression = page.compression.name
    except AttributeError:
        compression = str(page.compression)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("CMYK", "YCbCr", "LAB"):
                img = img.convert("RGB")
            return np.array(img)  # bilevel ("1"): bool, as tifffile gives it
    except Exception as exc:  # noqa: BLE001 - say which decoders were tried; _decoding names the file
        raise DataValidationError(
            path,
            f"cannot decode this TIFF's {compression} compression: tifffile needs the optional imagecodecs "
            f"package for it (pip install imagecodecs) and Pillow failed ({exception_text(exc)}); the file "
            "may be corrupt",
        ) from exc


def _read_pil(path: Path, what: str, max_voxels: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image

    with Image.open(path) as img:  # reads the header only: the size is known, nothing is decoded yet
        check_header(path, img, what, max_voxels)
        img.load()
        mode = img.mode
        if mode == "P":
            # Palette image: the indices (for masks they are the class indices) and, for the image
            # reader, the colours they stand for.
            return np.array(img), np.asarray(img.convert("RGB"))
        if mode in ("CMYK", "YCbCr", "LAB", "HSV", "PA"):
            img = img.convert("RGBA" if mode == "PA" else "RGB")
        arr = np.array(img)
    if mode == "1":
        arr = arr.astype(np.uint8)  # bilevel: 0/1
    elif mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # 16-bit grey opened as 32-bit int by some Pillow versions
    return arr, None
