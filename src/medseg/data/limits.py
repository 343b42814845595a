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

Zips follow one :class:`ZipPolicy` (total declared uncompressed size, compression ratio above 16 MiB,
member count, safe member names), checked by :func:`check_zip` from the central directory before anything
is extracted — by the volume reader (``medseg data convert``, ``medseg predict``) and by the server alike.

All refusals are :class:`~medseg.errors.DataValidationError` with a one-line message naming the file.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medseg.errors import DataValidationError

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MAX_DATASET_BYTES_ENV",
    "MAX_VOXELS_ENV",
    "MAX_ZIP_BYTES",
    "ZipPolicy",
    "check_dataset_bytes",
    "check_voxels",
    "check_zip",
    "check_zip_members",
    "dataset_bytes_limit",
    "exception_text",
    "max_dicom_file_bytes",
    "printable",
    "safe_member_name",
    "voxel_budget",
]

MiB = 2**20
DEFAULT_MAX_VOXELS = 2**27  # 512 × 512 × 512
MAX_VOXELS_ENV = "MEDSEG_MAX_VOXELS"
MAX_DATASET_BYTES_ENV = "MEDSEG_MAX_DATASET_BYTES"
MAX_ZIP_BYTES = 4 * 2**30  # 4 GiB of declared uncompressed content: a CT series is rarely above 1 GiB
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
        raise DataValidationError(None, f"environment variable {name}={os.environ[name]!r} is not a whole "
                                        "number") from None
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


def check_voxels(path: str | Path | None, shape: Sequence[int], what: str = "image",
                 max_voxels: int | None = None) -> int:
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
            problem = (f"exceeds the limit of {limit:,} voxels ({MAX_VOXELS_ENV}); crop or resample it, or raise "
                       f"{MAX_VOXELS_ENV} if this machine has the memory")
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
            path, f"{what} would take {nbytes / 2**30:,.2f} GiB in memory, more than the limit of "
                  f"{limit / 2**30:,.2f} GiB (half of this machine's memory, or {MAX_DATASET_BYTES_ENV}); "
                  "use a subset (data.limit) or a smaller size")


# ------------------------------------------------------------------------------------------------ zips


@dataclass(frozen=True)
class ZipPolicy:
    """What an archive may hold: ``max_bytes`` declared uncompressed in all, ``max_ratio`` uncompressed /
    compressed for the archive and for each member once they unpack to more than ``ratio_from`` bytes
    (a CT slice compresses 2–5 to 1, a bomb 1000 to 1), ``max_members`` entries."""

    max_bytes: int = MAX_ZIP_BYTES
    max_ratio: float = 100.0
    max_members: int = 20_000
    ratio_from: int = 16 * MiB


def safe_member_name(name: str) -> bool:
    """False for absolute member names (``/x``, ``C:x``) and names with a ``..`` part (path traversal)."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return False
    return ".." not in PurePosixPath(norm).parts


def check_zip_members(path: str | Path, infos: Sequence[zipfile.ZipInfo], policy: ZipPolicy | None = None) -> None:
    """Refuse an archive whose central directory (``infos``) breaks ``policy``: too many members, unsafe
    names, too many bytes declared, or a compression ratio only a zip bomb has."""
    policy = policy or ZipPolicy()
    if len(infos) > policy.max_members:
        raise DataValidationError(path, f"refusing the archive: it has {len(infos):,} members, more than the limit "
                                        f"of {policy.max_members:,}")
    for info in infos:
        if not safe_member_name(info.filename):
            raise DataValidationError(path, f"refusing the archive: member {info.filename!r} has an absolute path or "
                                            "'..' (path traversal); re-create the zip with relative member names")
    declared = sum(i.file_size for i in infos)
    if declared > policy.max_bytes:
        raise DataValidationError(path, f"refusing the archive: it unpacks to {declared:,} bytes, more than the "
                                        f"limit of {policy.max_bytes:,} bytes (zip-bomb guard)")
    packed = sum(i.compress_size for i in infos)
    for size, compressed, what in [(declared, packed, "the archive"),
                                   *((i.file_size, i.compress_size, f"member {i.filename!r}") for i in infos)]:
        if size > policy.ratio_from and size > policy.max_ratio * max(compressed, 1):
            raise DataValidationError(path, f"refusing the archive: {what} is compressed "
                                            f"{size / max(compressed, 1):,.0f} to 1 (more than "
                                            f"{policy.max_ratio:g} to 1: a zip bomb?)")


def check_zip(path: str | Path, policy: ZipPolicy | None = None) -> list[zipfile.ZipInfo]:
    """Open ``path`` as a zip and check its central directory against ``policy``; its members.

    Nothing is extracted: a refusal costs the reading of the directory only.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DataValidationError(path, f"not a readable zip archive ({exception_text(exc)})") from exc
    check_zip_members(path, infos, policy)
    return infos
