"""Size limits checked from headers, before any pixel array is allocated or decompressed.

A 62 KB PNG can declare 8000 × 8000 pixels, a 200-byte DICOM header 60000 × 60000, a 244 KB zip a 200 MiB
member: decoding first and looking at the size afterwards lets a hostile or broken file take all the
memory of a job. Every reader of medseg therefore reads the shape from the header (PNG/TIFF, DICOM
Rows × Columns × frames × slices, NIfTI dims, HDF5 dataset shapes) and calls :func:`check_voxels` before
it reads the data.

One budget, the **voxel budget**: at most :data:`DEFAULT_MAX_VOXELS` = 2**27 voxels (512 × 512 × 512) per
image or volume; a 2D image's pixels count as voxels. It is sized so that inference fits in memory: a
512³ CT is 256 MiB as int16, 512 MiB as float32, and the models resample it to their own grid. It is
overridden by the environment variable ``MEDSEG_MAX_VOXELS`` (read at each call, so a test or an operator
can change it without a restart) and by an explicit ``max_voxels`` argument (the server passes its
``ServerSettings.max_voxels``). This is what nnU-Net and MONAI users expect from a reader: a clear refusal
naming the file, not an out-of-memory kill.

Collections (the Pommier HDF5 ``dataset_1`` of N images, an image folder, a folder of volumes) are held in
memory whole; each image is checked against the voxel budget and the whole set's bytes against
:func:`dataset_bytes_limit` (half of the physical memory, ``MEDSEG_MAX_DATASET_BYTES`` to override).

Zips follow one :class:`~medseg.formats.zip_safety.ZipPolicy` (total declared uncompressed size, compression
ratio above 16 MiB, member count, safe member names), checked from the central directory before anything
is extracted — by the volume reader (``medseg data convert``, ``medseg predict``) and by the server alike:
see :mod:`medseg.formats.zip_safety`.

One class limit, :data:`MAX_CLASSES` = 256: labels are read and held in memory as uint8 class
indices (0..255), so a task has at most 256 classes. The mask reader training loads through (``read_mask``) and
``medseg plan`` both refuse more, so a plan never names a task training cannot take. A mask folder holding
hundreds of distinct values is most often a folder of grey images, not of masks.

All refusals are :class:`~medseg.errors.DataValidationError` with a one-line message naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from medseg.errors import DataValidationError

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MAX_CLASSES",
    "MAX_DATASET_BYTES_ENV",
    "MAX_VOXELS_ENV",
    "check_dataset_bytes",
    "check_voxels",
    "dataset_bytes_limit",
    "exception_text",
    "max_dicom_file_bytes",
    "printable",
    "voxel_budget",
]

MiB = 2**20
DEFAULT_MAX_VOXELS = 2**27  # 512 × 512 × 512
MAX_CLASSES = 256  # uint8 class indices
MAX_VOXELS_ENV = "MEDSEG_MAX_VOXELS"
MAX_DATASET_BYTES_ENV = "MEDSEG_MAX_DATASET_BYTES"
# A DICOM file holds at most max_voxels values of at most 8 bytes (Double Float Pixel Data), plus a header:
# anything larger is refused by its size on disk before it is parsed.
_DICOM_BYTES_PER_VOXEL = 8
_DICOM_HEADER_BYTES = 64 * MiB


def exception_text(exc: BaseException) -> str:
    """``Type: message`` on one line (error messages of medseg never span lines: logs and the web page
    show them as one entry)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def printable(name: str) -> str:
    """``name`` with control characters (a newline in a zip member's name...) written as escapes, so a
    message that names it stays one line."""
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in name)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return None
    try:
        value = int(float(raw)) if "e" in raw.lower() else int(raw)
    except ValueError:
        raise DataValidationError(
            None, f"environment variable {name}={os.environ[name]!r} is not a whole number"
        ) from None
    if value <= 0:
        raise DataValidationError(None, f"environment variable {name}={value} must be positive")
    return value


def voxel_budget(explicit: int | None = None) -> int:
    """The voxel budget: ``explicit`` if given, else ``$MEDSEG_MAX_VOXELS``, else :data:`DEFAULT_MAX_VOXELS`."""
    if explicit is not None:
        return int(explicit)
    return _env_int(MAX_VOXELS_ENV) or DEFAULT_MAX_VOXELS


def _count(shape: Iterable[int]) -> int:
    return math.prod(int(s) for s in shape)  # Python ints: a header's 60000 × 60000 × 60000 cannot overflow


def check_voxels(
    path: str | Path | None, shape: Sequence[int], what: str = "image", max_voxels: int | None = None
) -> int:
    """Refuse ``shape`` (read from a header) when it holds more voxels than the budget; the voxel count.

    Call it before the data are read: the point is that nothing of that size is ever allocated.
    """
    limit = voxel_budget(max_voxels)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise DataValidationError(path, f"{what} declares a negative size {shape}: a corrupt header")
    n = _count(shape)
    if n > limit:
        if max_voxels is not None:  # the caller's own budget (the server's setting): no environment variable to name
            problem = f"exceeds the limit of {limit:,} voxels; crop or resample it"
        else:
            problem = (
                f"exceeds the limit of {limit:,} voxels ({MAX_VOXELS_ENV}); crop or resample it, or raise "
                f"{MAX_VOXELS_ENV} if this machine has the memory"
            )
        raise DataValidationError(path, f"{what} of {n:,} voxels {shape} {problem}")
    return n


def max_dicom_file_bytes(max_voxels: int | None = None) -> int:
    """The largest DICOM file worth parsing under the voxel budget (8 bytes a voxel plus 64 MiB of header)."""
    return voxel_budget(max_voxels) * _DICOM_BYTES_PER_VOXEL + _DICOM_HEADER_BYTES


def dataset_bytes_limit() -> int:
    """How many bytes a whole data set may take in memory: ``$MEDSEG_MAX_DATASET_BYTES``, else half of the
    physical memory (the rest is for the model, the optimiser and the batches)."""
    env = _env_int(MAX_DATASET_BYTES_ENV)
    if env is not None:
        return env
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, ValueError, OSError):  # not POSIX: no limit of our own
        return 2**62


def check_dataset_bytes(path: str | Path | None, nbytes: int, what: str = "the data set") -> None:
    """Refuse a collection that would take more than :func:`dataset_bytes_limit` bytes in memory."""
    limit = dataset_bytes_limit()
    if nbytes > limit:
        raise DataValidationError(
            path,
            f"{what} would take {nbytes / 2**30:,.2f} GiB in memory, more than the limit of "
            f"{limit / 2**30:,.2f} GiB (half of this machine's memory, or {MAX_DATASET_BYTES_ENV}); "
            "use a subset (data.limit) or a smaller size",
        )
