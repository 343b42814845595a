"""Volumes in and out: DICOM series, NIfTI and HDF5, with their geometry (``medseg data convert``).

Every reader returns a :class:`~medseg.data.volume.Volume` — array (D, H, W) = (z, y, x), spacing (z, y, x)
mm, origin (x, y, z) LPS mm, direction columns = x, y, z axes in LPS — and every writer takes one, so a
volume keeps its place in the patient whatever file it goes through (DICOM → NIfTI → Volume gives the same
grid, to DS rounding, and the same voxel values).

DICOM series (:func:`read_dicom_series`)
    A folder (searched recursively), a ``.zip`` or a list of files. Slices are ordered by
    ImagePositionPatient projected on the slice normal (row cosine × column cosine of
    ImageOrientationPatient), never by file name or InstanceNumber; the z axis of the volume is that
    normal, the origin the position of the first slice along it, the z spacing the (uniform) distance
    between positions, x/y spacing PixelSpacing (row spacing = y, column spacing = x). Stored values are
    mapped with RescaleSlope/RescaleIntercept (per slice) to HU: ``int16`` when slope and intercept are
    integers and the result fits (exact), otherwise ``float32``. A gantry tilt (positions that do not
    advance along the normal) is warned about and the normal is kept, as ITK does.

    Each file is parsed once: ``dcmread(defer_size=...)`` reads the header and leaves PixelData on disk
    (file offset only); the geometry, series, size and transfer-syntax checks run on the headers of
    all files first, so a bad series fails before any pixel is decoded, and only then are the pixels read.
    This does what "headers with stop_before_pixels, then pixels" does without parsing each header twice.
    The voxel budget (:mod:`medseg.data.limits`: Rows × Columns × frames × slices) is checked on the
    headers, before the volume is allocated.

    **No slice is lost silently.** Which files are slices is decided by name first, then by content:

    - hidden files, anything under ``__MACOSX/`` and names with a suffix that is never DICOM (``README.txt``,
      ``.json``, ``.png``, ``Thumbs.db``, ...) are skipped unread;
    - ``.dcm``, ``.dicom``, ``.dic``, ``.ima`` files must be DICOM;
    - files with no suffix or an unknown one (PACS and CD exports name slices ``IM000012``, ``I10`` or by
      their UID ``1.2.840.113619.2.55.3.12``) are DICOM when their bytes say so: the 'DICM' marker at byte
      128, or a DICOM element (group 0002 or 0008) at byte 0. They must then be readable. Such a file that is
      empty or starts with zero bytes (where a lost preamble would be) is a damaged slice, an error too.
      Any other (``README``, ``LICENSE``, ``VERSION`` of a CD export) is skipped, as it carries no image.

    Every file that must be DICOM and cannot be read — empty, truncated (PixelData running past the end of
    the file is seen from the header), garbage, a numeric tag such as ImagePositionPatient that does not
    parse, pixels that do not decode — is an error naming that file, wherever it sits in the series.
    Objects that positively carry no slice — DICOMDIR, RTSTRUCT, SR and other non-image SOP classes, and
    localizer (scout) images — are skipped; an image SOP class without Rows/Columns is a truncated slice
    and an error. Skipped files are counted in ``meta["skipped_files"]`` and named in
    ``meta["skipped_names"]``. Several image series in the input is an error unless ``series_uid`` picks
    one; the message lists them. Without the 'DICM' marker, the first bytes are checked before pydicom
    parses anything (megabytes of zeros named ``.dcm`` are refused in microseconds, not seconds), and a
    file larger than any image within the voxel budget is refused by its size.

    **Gaps.** Positions whose distance is a whole number of slice spacings (within ``spacing_rtol``) mean
    missing slices: refused by default, naming the files on each side of the gap, the gap in mm and the
    number of slices missing. With ``allow_gaps=True`` (``medseg data convert/predict --allow-gaps``) the
    missing slices are filled with the series' minimum value, so the geometry stays true (as 3D Slicer
    does when it loads such a series), warned about and listed in ``meta["gaps"]`` (the neighbouring
    files, their positions, the gap and the slices filled); ``meta["files"]`` and
    ``meta["sop_instance_uids"]`` stay one entry per volume slice, "" for a filled one. Irregular spacing
    that is not whole slices is always an error.

Zips follow :class:`~medseg.data.limits.ZipPolicy` (the same policy as the server's uploads): the central
directory is checked first (member count, declared size, compression ratio, absolute or ``..`` member
names); the members are then extracted one by one into a temporary folder (removed afterwards) under names
made here, never the members' own paths, and the copy stops at the declared size.

NIfTI (:func:`read_nifti`, :func:`write_nifti`)
    nibabel arrays are (x, y, z) with a RAS affine; here they are transposed to (z, y, x) and the affine
    turned to LPS (diag(-1, -1, 1)), without reorienting any voxel. Written with sform and qform code 1
    (scanner). Labels are written as ``uint8``. The header's shape and data type are checked before the
    data are read (voxel budget; complex and RGB data refused rather than cast), and voxel sizes that are
    zero, negative or NaN are refused (nibabel would silently set 0 and -1 to 1).

HDF5 (:func:`read_hdf5_volume`, :func:`write_hdf5_volume`)
    Datasets ``image`` (and optionally ``label``), gzip, one chunk per slice; each dataset carries the
    attributes ``spacing`` (z, y, x), ``origin`` (x, y, z), ``direction`` (3×3), ``modality``, ``axes`` = "zyx".
    Every access runs under :func:`medseg.data.pommier.hdf5_errors`: a corrupt file is a
    DataValidationError naming it, whatever h5py raises.

Every reader returns through :func:`medseg.data.volume.validate_volume` (finite real values, positive finite
spacing, usable direction). :func:`header_shape` gives the shape a file's header declares, for checks
before reading (the server's). All writers write to a temporary name beside the destination and rename
at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
import warnings
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from medseg.data.limits import (
    MAX_VOXELS_ENV,
    MAX_ZIP_BYTES,
    ZipPolicy,
    check_voxels,
    check_zip_members,
    exception_text,
    max_dicom_file_bytes,
    printable,
)
from medseg.data.pommier import default_file_mode, hdf5_errors, open_hdf5
from medseg.data.volume import Volume, check_dtype, validate_volume
from medseg.errors import DataValidationError

__all__ = [
    "MAX_ZIP_BYTES",
    "convert_series",
    "find_dicom_series",
    "hdf5_shape",
    "header_shape",
    "nifti_shape",
    "read_dicom_series",
    "read_hdf5_volume",
    "read_nifti",
    "read_volume",
    "run_convert",
    "volume_format",
    "write_dicom_series",
    "write_hdf5_volume",
    "write_label_like",
    "write_nifti",
    "write_volume",
]

DEFAULT_SPACING_RTOL = 0.1  # a gap may differ from the series' slice spacing by 10 % before it is an error
_DEFER_BYTES = 1024  # elements larger than this (PixelData) stay on disk until used
_NOT_DICOM_SUFFIXES = {
    ".json", ".txt", ".md", ".csv", ".xml", ".html", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif",
    ".tiff", ".nii", ".gz", ".h5", ".hdf5", ".zip", ".py", ".yaml", ".yml", ".ini", ".log", ".exe", ".bat", ".sh",
    ".db", ".inf", ".htm", ".js", ".css", ".ico", ".dll", ".jar", ".rtf", ".doc", ".docx", ".xls", ".xlsx", ".toml",
    ".cfg", ".nrrd", ".mha", ".mhd", ".plist",
}
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_SOP_CLASS = {"CT": _CT_IMAGE_STORAGE, "MR": _MR_IMAGE_STORAGE}
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_HDF5_SUFFIXES = (".h5", ".hdf5")
_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------------ helpers


def _temp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh name beside ``path`` (same file system, so os.replace is atomic), ending with ``suffix``."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


def _file_mode() -> int:
    """The mode an ordinary new file gets (0666 & ~umask); mkstemp-like temporaries start at 0600."""
    return default_file_mode()


def _suffix_of(path: Path) -> str:
    name = path.name.lower()
    for s in _NIFTI_SUFFIXES + _HDF5_SUFFIXES + (".zip",):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _strip_suffix(path: Path) -> str:
    name = path.name
    suffix = _suffix_of(path)
    if suffix and name.lower().endswith(suffix):
        return name[: -len(suffix)]
    return name


def _json_safe(meta: dict) -> dict:
    """The part of ``meta`` that JSON can hold (values it cannot hold are written as strings)."""
    return json.loads(json.dumps(meta, default=str))


# ------------------------------------------------------------------------------------------------ DICOM read

_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
# The two-letter value representations: an explicit-VR element has one of them at bytes 4-5.
_VRS = {vr.encode() for vr in (
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV").split()}
NameRole = Literal["dicom", "unknown", "other"]


@dataclass
class _Slice:
    """One image file of a series, its header parsed once (every value the series needs, checked)."""

    file: Path  # where pydicom reads it (a temporary copy for zip members)
    name: str  # what error messages call it: relative to the folder, the zip member's name
    ds: object  # pydicom Dataset, PixelData deferred
    series_uid: str
    modality: str
    rows: int
    cols: int
    frames: int
    samples: int
    transfer_syntax: str
    position: np.ndarray | None  # ImagePositionPatient (None when absent)
    orientation: np.ndarray | None  # ImageOrientationPatient
    pixel_spacing: np.ndarray | None  # PixelSpacing (row, column)
    slope: float
    intercept: float
    thickness: float  # SpacingBetweenSlices, else SliceThickness, else 1 (used for a single slice only)
    sop_uid: str
    study_uid: str
    frame_uid: str  # FrameOfReferenceUID
    description: str  # SeriesDescription


@dataclass(frozen=True)
class _SeriesOptions:
    """What the caller of :func:`read_dicom_series` asked for, passed down to the steps of the read."""

    require_modality: str | None = None
    series_uid: str | None = None
    spacing_rtol: float = DEFAULT_SPACING_RTOL
    allow_gaps: bool = False
    max_voxels: int | None = None


def _name_role(name: str) -> NameRole:
    """What a file's name says (see the module docstring): "dicom" (.dcm, .dicom, .dic, .ima), "other" (hidden,
    under __MACOSX, or a suffix that is never DICOM: README.txt, .json, ...), "unknown" (no suffix, or one
    that says nothing, such as PACS exports' IM000012 or UID-named 1.2.840.113619.2.55.3.12)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return "other"
    suffix = PurePosixPath(parts[-1]).suffix.lower()
    if suffix in _DICOM_SUFFIXES:
        return "dicom"
    return "other" if suffix in _NOT_DICOM_SUFFIXES else "unknown"


def _starts_like_dicom(head: bytes, size: int) -> bool:
    """Whether ``head`` (the 8 bytes after the 'DICM' marker, or a file's first 8) is the first element of a
    DICOM object: group 0x0002 (file meta) or 0x0008 (the lowest group of any image dataset), little endian,
    with an explicit VR (two letters) or an implicit 32-bit length that fits in the file. Checked before
    pydicom parses anything: ``dcmread(force=True)`` takes seconds to give up on megabytes of zeros."""
    if len(head) < 8 or int.from_bytes(head[:2], "little") not in (0x0002, 0x0008):
        return False
    length = int.from_bytes(head[4:8], "little")
    return head[4:6] in _VRS or length <= size or length == 0xFFFFFFFF


def _read_header(file: Path, role: NameRole = "dicom", max_voxels: int | None = None):
    """The dataset with PixelData left on disk, or None for a file that is not DICOM and may be skipped.

    A file that must be DICOM — it has the 'DICM' marker, a DICOM name (``role == "dicom"``), DICOM-like first
    bytes, or an unknown name and no content (empty, or zeros where the preamble would be: a damaged
    slice) — and cannot be parsed is an error naming it. Bytes that are not DICOM are recognised from the
    first 140 bytes, so refusing a large file costs no parsing; a file larger than any image under the
    voxel budget is refused by its size.
    """
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(140)
    except OSError as exc:
        raise DataValidationError(file, f"cannot read the file ({exception_text(exc)})") from exc
    marker = head[128:132] == b"DICM"
    if not _starts_like_dicom(head[132:140] if marker else head[:8], size):
        if marker:
            raise DataValidationError(file, "has the 'DICM' marker but no DICOM element after it: a damaged DICOM file")
        if size == 0 and role != "other":
            raise DataValidationError(file, "is empty (0 bytes): a DICOM file lost in copying?")
        if role == "dicom":
            raise DataValidationError(file, "is not a readable DICOM file: no 'DICM' marker at byte 128 and no DICOM "
                                            "element at its start (damaged, truncated, or not DICOM)")
        if role == "unknown" and not any(head[:128]):
            raise DataValidationError(file, "starts with zero bytes but has no 'DICM' marker: a damaged or truncated "
                                            "DICOM file")
        return None
    limit = max_dicom_file_bytes(max_voxels)
    if size > limit:
        raise DataValidationError(file, f"is {size:,} bytes, more than any image within the voxel budget needs "
                                        f"({limit:,} bytes; {MAX_VOXELS_ENV})")
    import pydicom

    try:
        with _quiet():
            return pydicom.dcmread(str(file), defer_size=_DEFER_BYTES, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files; all mean the same
        raise DataValidationError(file, f"not a readable DICOM file ({exception_text(exc)})") from exc


@contextmanager
def _quiet() -> Iterator[None]:
    """pydicom warns about every odd value it meets ("invalid value for VR UI ..."); the checks here decide
    what is an error and say so in one line naming the file, so its warnings are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _HeaderProblem(ValueError):
    """A header value that cannot be used; _parse_slice adds the file's name."""


def _value(ds, keyword: str):
    """``ds.get(keyword)``; pydicom converts a value when it is first read, so a damaged one fails here."""
    try:
        with _quiet():
            return ds.get(keyword)
    except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, struct.error, UnicodeError, ...
        raise _HeaderProblem(f"{keyword} cannot be read ({exception_text(exc)})") from exc


def _numbers(ds, keyword: str, count: int) -> np.ndarray | None:
    """A numeric tag as ``count`` finite floats, or None when absent."""
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    values = list(value) if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)) else [value]
    try:
        arr = np.array([float(v) for v in values], float)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _HeaderProblem(f"{keyword} {' '.join(str(value).split())[:80]!r} is not numeric") from exc
    if arr.shape != (count,) or not np.all(np.isfinite(arr)):
        raise _HeaderProblem(f"{keyword} {arr.tolist()[:8]} must be {count} finite number(s)")
    return arr


def _number(ds, keyword: str, default: float) -> float:
    arr = _numbers(ds, keyword, 1)
    return default if arr is None else float(arr[0])


def _text(ds, keyword: str) -> str:
    value = _value(ds, keyword)
    return "" if value is None else " ".join(str(value).split())


@dataclass(frozen=True)
class _NonImage:
    """A DICOM object that is not a slice of the volume (skipped)."""

    name: str
    kind: Literal["directory", "localizer", "no image"]
    series_uid: str


def _object_kind(ds) -> Literal["image", "directory", "localizer", "no image"]:
    """What a parsed object is: a DICOMDIR, a localizer (scout) image, an object that positively carries no
    image (a valid non-image SOP class: RTSTRUCT, SR, presentation state, ...), or an image. An object with
    an image SOP class, a damaged SOPClassUID or none, and no Rows/Columns is a truncated slice: an error."""
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    with _quiet():
        sop = UID(_text(ds, "SOPClassUID"))
    if _DICOMDIR_CLASS in (sop, _text(meta, "MediaStorageSOPClassUID") if meta is not None else ""):
        return "directory"
    image_type = _value(ds, "ImageType") or []
    image_type = [image_type] if isinstance(image_type, str) else list(image_type)
    if any(str(v).upper() == "LOCALIZER" for v in image_type):
        return "localizer"  # a scout view stored in the CT series: not a slice of the volume
    if "Rows" in ds and "Columns" in ds:
        return "image"
    if sop and sop.is_valid and "Image" not in sop.name:
        return "no image"
    what = f"a {sop.name} object" if sop else "no SOPClassUID"
    raise _HeaderProblem(f"no Rows/Columns ({what}): a truncated or damaged image file")


def _parse_slice(file: Path, name: str, ds, where: Path, options: _SeriesOptions) -> _Slice | _NonImage:
    """The slice's header values, checked, or what the object is if it is not a slice. pydicom converts
    values lazily, so a damaged element fails when first read: any failure here is an error naming the file."""
    try:
        _check_extent(file, ds)
        kind = _object_kind(ds)
        if kind != "image":
            return _NonImage(name, kind, _text(ds, "SeriesInstanceUID"))
        rows, cols = int(_number(ds, "Rows", 0)), int(_number(ds, "Columns", 0))
        frames = int(_number(ds, "NumberOfFrames", 1))
        if rows <= 0 or cols <= 0 or frames <= 0:
            raise _HeaderProblem(f"Rows {rows} × Columns {cols} × NumberOfFrames {frames}: an empty image")
        check_voxels(None, (frames, rows, cols), "the slice", options.max_voxels)
        meta = getattr(ds, "file_meta", None)
        s = _Slice(
            file, name, ds, series_uid=_text(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"), rows=rows, cols=cols, frames=frames,
            samples=int(_number(ds, "SamplesPerPixel", 1)),
            transfer_syntax=(_text(meta, "TransferSyntaxUID") if meta is not None else "") or "1.2.840.10008.1.2",
            position=_numbers(ds, "ImagePositionPatient", 3), orientation=_numbers(ds, "ImageOrientationPatient", 6),
            pixel_spacing=_numbers(ds, "PixelSpacing", 2), slope=_number(ds, "RescaleSlope", 1.0) or 1.0,
            intercept=_number(ds, "RescaleIntercept", 0.0),
            thickness=abs(_number(ds, "SpacingBetweenSlices", 0.0)) or abs(_number(ds, "SliceThickness", 0.0)) or 1.0,
            sop_uid=_text(ds, "SOPInstanceUID"), study_uid=_text(ds, "StudyInstanceUID"),
            frame_uid=_text(ds, "FrameOfReferenceUID"), description=_text(ds, "SeriesDescription"))
        if _PIXEL_DATA not in ds:
            raise _HeaderProblem("no pixel data (PixelData element missing)")
    except DataValidationError as exc:
        raise DataValidationError(where, f"{name}: {exc.problem}") from exc
    except _HeaderProblem as exc:
        raise DataValidationError(where, f"{name}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise DataValidationError(where, f"{name}: unreadable DICOM header ({exception_text(exc)})") from exc
    return s


_PIXEL_DATA = 0x7FE00010


def _check_extent(file: Path, ds) -> None:
    """Refuse a truncated file: pydicom stops at the end of a file without an error, so truncation shows only
    as an element (PixelData, or the last one read) declaring more bytes than the file holds. Checked on the
    raw elements, before any value is converted or any pixel decoded."""
    from pydicom.datadict import keyword_for_tag

    tags = set(ds.keys())
    if not tags:
        return
    size = file.stat().st_size
    for tag in sorted({max(tags), _PIXEL_DATA} & tags):
        elem = ds.get_item(tag, keep_deferred=True)
        tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
        if tell is not None and length is not None and length != 0xFFFFFFFF and tell + length > size:
            raise _HeaderProblem(f"truncated: {keyword_for_tag(tag) or tag} declares {length:,} bytes, the file "
                                 f"ends after {max(0, size - tell):,}")


def _extract_zip(zpath: Path, dest: Path, policy: ZipPolicy | int | None = None,
                 skipped: list[str] | None = None) -> list[tuple[Path, str]]:
    """Copy the zip's members that may be DICOM into ``dest`` under made-up names; (file, member name) pairs.

    The archive is checked against ``policy`` (a :class:`~medseg.data.limits.ZipPolicy`, or just its
    ``max_bytes``) before anything is extracted; the copy also stops at the declared size. Members that are
    not DICOM by name (README.txt, __MACOSX/...), directories and links are not extracted; their names go to
    ``skipped``. A member that cannot be decompressed is an error naming it.
    """
    if not isinstance(policy, ZipPolicy):
        policy = ZipPolicy() if policy is None else ZipPolicy(max_bytes=int(policy))
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DataValidationError(zpath, f"not a readable zip archive ({exception_text(exc)})") from exc
    out: list[tuple[Path, str]] = []
    with zf:
        infos = zf.infolist()
        check_zip_members(zpath, infos, policy)
        total = 0
        for k, info in enumerate(infos):
            if info.is_dir():
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000 or _name_role(info.filename) == "other":
                if skipped is not None:
                    skipped.append(printable(info.filename))  # a symbolic link, README.txt, __MACOSX/._x, ...
                continue
            target = dest / f"m{k:06d}"
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > policy.max_bytes:
                            raise DataValidationError(zpath, f"refusing the archive: more than {policy.max_bytes:,} "
                                                             "bytes uncompressed (zip-bomb guard)")
                        dst.write(chunk)
            except DataValidationError:
                raise
            except Exception as exc:  # noqa: BLE001 - zipfile/zlib/bz2/lzma raise many types on a damaged member
                raise DataValidationError(zpath, f"member {info.filename!r} cannot be extracted "
                                                 f"({exception_text(exc)})") from exc
            out.append((target, printable(info.filename)))
    return out


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def find_dicom_series(root: str | Path) -> list[Path]:
    """Folders under ``root`` (itself included) that directly hold DICOM files (by the 'DICM' preamble)."""
    root = Path(root)
    found = []
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        for f in folder.iterdir():
            if f.is_file():
                try:
                    with open(f, "rb") as fh:
                        fh.seek(128)
                        if fh.read(4) == b"DICM":
                            found.append(folder)
                            break
                except OSError:
                    continue
    return found


def read_dicom_series(
    path: str | Path | Sequence[str | Path],
    *,
    require_modality: str | None = None,
    series_uid: str | None = None,
    spacing_rtol: float = DEFAULT_SPACING_RTOL,
    allow_gaps: bool = False,
    max_voxels: int | None = None,
    zip_policy: ZipPolicy | None = None,
    max_zip_bytes: int | None = None,
) -> Volume:
    """Read one DICOM image series (a folder, a ``.zip`` or a list of files) as a Volume in HU.

    ``require_modality="CT"`` refuses any other Modality. ``series_uid`` picks one series when the input
    holds several. ``spacing_rtol``: how far (relative) a distance between neighbouring slices may differ
    from the series' spacing before the series is declared to have missing (or extra) slices. A gap of
    whole missing slices is an error unless ``allow_gaps`` (then filled, see the module docstring).
    ``max_voxels``: the voxel budget (default ``$MEDSEG_MAX_VOXELS`` or 2**27), checked on the headers.
    ``zip_policy`` (``max_zip_bytes`` overrides its ``max_bytes``) limits what a zip may unpack to.
    Raises :class:`DataValidationError` naming the folder/zip and the offending file.
    """
    options = _SeriesOptions(require_modality, series_uid, spacing_rtol, allow_gaps, max_voxels)
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        if not files:
            raise DataValidationError(None, "no DICOM files given")
        where = files[0].parent if len({f.parent for f in files}) == 1 else Path(os.path.commonpath(files))
        return _read_series([(f, printable(str(f))) for f in files], where, options, explicit=True, source=where)
    path = Path(path)
    if not path.exists():
        raise DataValidationError(path, "not found (give a folder of DICOM files, a .zip or a list of files)")
    if path.is_dir():
        entries = [(f, printable(str(f.relative_to(path)))) for f in _candidate_files(path)]
        return _read_series(entries, path, options, source=path)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        policy = zip_policy or ZipPolicy()
        if max_zip_bytes is not None:
            policy = replace(policy, max_bytes=int(max_zip_bytes))
        skipped: list[str] = []
        with tempfile.TemporaryDirectory(prefix="medseg-zip-") as tmp:
            members = _extract_zip(path, Path(tmp), policy, skipped)
            # pixels are read inside _read_series, so the temporary copies may go afterwards
            return _read_series(members, path, options, source=path, skipped=skipped)
    return _read_series([(path, printable(path.name))], path.parent, options, explicit=True, source=path)


def _read_series(entries: list[tuple[Path, str]], where: Path, options: _SeriesOptions, *, explicit: bool = False,
                 source: Path, skipped: list[str] | None = None) -> Volume:
    """``where``: the folder or zip that errors name; ``entries``: (file to read, name used in messages).
    ``explicit``: the files were named one by one, so each must be DICOM. ``skipped``: names already left
    out (zip members that are not DICOM by name); the non-DICOM and non-image files met here are added."""
    slices: list[_Slice] = []
    non_images: list[_NonImage] = []
    skipped = list(skipped or [])
    looked_at = len(entries) + len(skipped)
    for file, name in entries:
        role = _name_role(name)
        if role == "other" and not explicit:
            skipped.append(name)
            continue
        try:
            ds = _read_header(file, role, options.max_voxels)
        except DataValidationError as exc:
            raise DataValidationError(where, f"{name}: {exc.problem}") from exc
        if ds is None:
            if explicit:
                raise DataValidationError(where, f"{name} is not a DICOM file")
            skipped.append(name)
            continue
        item = _parse_slice(file, name, ds, where, options)
        if isinstance(item, _NonImage):
            skipped.append(name)
            non_images.append(item)
        else:
            slices.append(item)
    if not slices:
        raise DataValidationError(where, f"no DICOM image files found ({looked_at} files looked at, {len(skipped)} "
                                         "skipped as non-DICOM or non-image objects)")
    slices = _one_series(slices, where, options)
    for item in non_images:  # RTSTRUCT, SR, KO... have series of their own: one in the image series is damaged
        if item.kind == "no image" and item.series_uid == slices[0].series_uid:
            raise DataValidationError(where, f"{item.name}: no Rows/Columns in an object of the image series "
                                             f"{item.series_uid or '(no UID)'}: a damaged slice?")
    _check_slices(slices, where)
    geometry = _geometry(slices, where, options)
    slices = geometry.slices
    n_total = int(geometry.index[-1]) + 1
    check_voxels(where, (n_total, slices[0].rows, slices[0].cols), "the series", options.max_voxels)
    for g in geometry.gaps:
        warnings.warn(f"{where}: {g['slices_filled']} missing slice(s) between {g['after']} and {g['before']} "
                      f"(a {g['gap_mm']:.3f} mm gap) filled with the series' minimum value", stacklevel=3)
    out = _pixels(slices, geometry.index, n_total, where)
    first = slices[0]
    by_index = dict(zip(geometry.index.tolist(), slices))
    meta = {
        "format": "dicom",
        "source": str(source),
        "SeriesInstanceUID": first.series_uid,
        "StudyInstanceUID": first.study_uid,
        "FrameOfReferenceUID": first.frame_uid,
        "SeriesDescription": first.description,
        # one entry per slice of the volume, "" for slices filled in a gap (allow_gaps)
        "sop_instance_uids": [by_index[k].sop_uid if k in by_index else "" for k in range(n_total)],
        "files": [by_index[k].name if k in by_index else "" for k in range(n_total)],  # relative to "source"
        "rescale_slope": sorted({s.slope for s in slices}),
        "rescale_intercept": sorted({s.intercept for s in slices}),
        "transfer_syntax": first.transfer_syntax,
        "skipped_files": len(skipped),
        "skipped_names": skipped,
    }
    if geometry.gaps:
        meta["gaps"] = geometry.gaps
    volume = Volume(out, (geometry.z_spacing, *first.pixel_spacing), tuple(geometry.origin), geometry.direction,
                    first.modality or None, meta)
    return validate_volume(volume, where, "the series")


def _one_series(slices: list[_Slice], where: Path, options: _SeriesOptions) -> list[_Slice]:
    """The slices of the one series asked for (``series_uid``, or the only one), of the required modality."""
    groups: dict[str, list[_Slice]] = defaultdict(list)
    for s in slices:
        groups[s.series_uid].append(s)
    if options.series_uid is not None:
        if options.series_uid not in groups:
            raise DataValidationError(where, f"no series with SeriesInstanceUID {options.series_uid}; found: "
                                             + ", ".join(sorted(groups)))
        slices = groups[options.series_uid]
    elif len(groups) > 1:
        listing = "; ".join(
            f"{uid or '(no UID)'}: {len(g)} files, Modality {g[0].modality or '?'}"
            + (f", '{g[0].description}'" if g[0].description else "")
            + f", e.g. {g[0].name}"
            for uid, g in sorted(groups.items(), key=lambda kv: -len(kv[1])))
        raise DataValidationError(
            where, f"mixed series: {len(groups)} different SeriesInstanceUIDs in one input ({listing}); choose one "
                   "with series_uid=... or put each series in its own folder")
    if options.require_modality is not None:
        for s in slices:
            if s.modality.upper() != options.require_modality.upper():
                raise DataValidationError(where, f"{s.name}: Modality is {s.modality or '(missing)'}, a "
                                                 f"{options.require_modality} series is required")
    return slices


def _check_slices(slices: list[_Slice], where: Path) -> None:
    """Per-file checks on the headers: grey single-frame images of one size that can be decoded here, each
    with the geometry tags that place it in the patient."""
    for s in slices:
        if s.samples != 1:
            raise DataValidationError(where, f"{s.name}: {s.samples} samples per pixel (colour); a grey CT/MR "
                                             "image has 1")
        if s.frames > 1:
            raise DataValidationError(where, f"{s.name}: multi-frame (enhanced) DICOM with {s.frames} frames is not "
                                             "supported; export the series as one file per slice")
    _check_decoders(slices, where)
    sizes = Counter((s.rows, s.cols) for s in slices)
    if len(sizes) > 1:
        desc = ", ".join(f"{n} file(s) of {r}×{c} (e.g. {next(s.name for s in slices if (s.rows, s.cols) == (r, c))})"
                         for (r, c), n in sizes.most_common())
        raise DataValidationError(where, f"mixed slice sizes (Rows×Columns) in one series: {desc}")
    for key, attr in (("ImageOrientationPatient", "orientation"), ("ImagePositionPatient", "position"),
                      ("PixelSpacing", "pixel_spacing")):
        for s in slices:
            if getattr(s, attr) is None and (key == "PixelSpacing" or len(slices) > 1):
                raise DataValidationError(where, f"{s.name}: no {key}; cannot place the slice in the patient")


@dataclass
class _Geometry:
    slices: list[_Slice]  # in position order along the slice normal
    index: np.ndarray  # where each of them goes in the volume
    z_spacing: float
    origin: np.ndarray
    direction: np.ndarray
    gaps: list[dict]


def _geometry(slices: list[_Slice], where: Path, options: _SeriesOptions) -> _Geometry:
    """Order ``slices`` by their position along the slice normal and place them on a uniform grid.

    A gap of whole missing slices is refused naming the files on each side, the gap in mm and the slices
    missing — or, with ``options.allow_gaps``, left for :func:`_pixels` to fill (``index`` skips them).
    """
    first = slices[0]
    iop = first.orientation if first.orientation is not None else np.array([1.0, 0, 0, 0, 1, 0])
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if min(np.linalg.norm(row_dir), np.linalg.norm(col_dir), np.linalg.norm(normal)) < 1e-6:
        raise DataValidationError(where, f"{first.name}: ImageOrientationPatient {iop.tolist()} does not give two "
                                         "independent axes")
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    for s in slices:
        other = s.orientation if s.orientation is not None else iop
        if np.abs(other - iop).max() > 1e-3:
            raise DataValidationError(where, f"{s.name}: ImageOrientationPatient {other.tolist()} differs from "
                                             f"{iop.tolist()} ({first.name}); the files are not one volume")
    positions = np.array([s.position if s.position is not None else np.zeros(3) for s in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    for s in slices:
        if np.abs(s.pixel_spacing - first.pixel_spacing).max() > 1e-4:
            raise DataValidationError(where, f"{s.name}: PixelSpacing {s.pixel_spacing.tolist()} differs from "
                                             f"{first.pixel_spacing.tolist()} ({first.name})")
    n = len(slices)
    index, gaps = np.arange(n), []
    if n == 1:
        z_spacing = first.thickness
    else:
        diffs = np.diff(along)
        dup = np.flatnonzero(diffs < 1e-3)
        if dup.size:
            i = int(dup[0])
            raise DataValidationError(
                where, f"two slices at the same position ({along[i]:.3f} mm along the normal): {slices[i].name} and "
                       f"{slices[i + 1].name} (several acquisitions or echoes in one series?)")
        step = float(np.median(diffs))
        tol = max(options.spacing_rtol * step, 1e-3)
        bad = np.flatnonzero(np.abs(diffs - step) > tol)
        missing = np.zeros(n, int)
        for i in bad.tolist():
            k = int(round(diffs[i] / step)) - 1
            whole = k >= 1 and abs(diffs[i] - (k + 1) * step) <= tol
            if not (whole and options.allow_gaps):
                what = (f"{k} slice(s) missing; pass allow_gaps=True (CLI: --allow-gaps) to fill them with the "
                        "series' minimum value" if whole else "irregular slice spacing (not a whole number of "
                                                               "missing slices)")
                raise DataValidationError(
                    where, f"slice spacing is not uniform: gap of {diffs[i]:.3f} mm between slice {i} "
                           f"({slices[i].name}, {along[i]:.3f} mm along the normal) and slice {i + 1} "
                           f"({slices[i + 1].name}, {along[i + 1]:.3f} mm) where the series' spacing is {step:.3f} mm: "
                           f"{what} ({len(bad)} irregular gap(s) in {n} slices)")
            missing[i + 1] = k
            gaps.append({"after": slices[i].name, "before": slices[i + 1].name, "after_mm": round(float(along[i]), 4),
                         "before_mm": round(float(along[i + 1]), 4), "gap_mm": round(float(diffs[i]), 4),
                         "slices_filled": k})
        index = index + np.cumsum(missing)
        z_spacing = float((along[-1] - along[0]) / index[-1])
        lateral = positions - positions[0] - np.outer(along - along[0], normal)
        if np.linalg.norm(lateral, axis=1).max() > max(0.05 * z_spacing, 0.01):
            warnings.warn(f"{where}: slice positions do not advance along the slice normal (gantry tilt?); "
                          "the volume's z axis is the normal, as in ITK", stacklevel=4)
    return _Geometry(slices, index, z_spacing, positions[0], np.stack([row_dir, col_dir, normal], axis=1), gaps)


def _pixels(slices: list[_Slice], index: np.ndarray, n_total: int, where: Path) -> np.ndarray:
    """The slices' stored values mapped with RescaleSlope/Intercept, slice k at ``index[k]``; slices of the
    grid that no file fills (gaps) get the minimum value of the series. int16 when exact, else float32."""
    rows, cols = slices[0].rows, slices[0].cols
    slopes = np.array([s.slope for s in slices])
    intercepts = np.array([s.intercept for s in slices])
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    out = np.empty((n_total, rows, cols), np.int32 if integral else np.float32)
    for k, s in zip(index.tolist(), slices):
        try:
            with _quiet():
                raw = s.ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean "cannot decode"
            raise DataValidationError(where, f"{s.name}: cannot decode the pixel data ({exception_text(exc)})") from exc
        if raw.shape != (rows, cols):
            raise DataValidationError(where, f"{s.name}: pixel data of shape {raw.shape}, expected {(rows, cols)}")
        if integral:
            out[k] = raw.astype(np.int32) * int(s.slope) + int(s.intercept)
        else:
            out[k] = raw.astype(np.float64) * s.slope + s.intercept
    if len(slices) < n_total:
        filled = np.ones(n_total, bool)
        filled[index] = False
        out[filled] = min(out[k].min() for k in index.tolist())
    if integral:
        lo, hi = int(out.min()), int(out.max())
        out = out.astype(np.int16) if -32768 <= lo and hi <= 32767 else out.astype(np.float32)
    return out


def _check_decoders(slices: list[_Slice], where: Path) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    seen: dict[str, str | None] = {}
    for s in slices:
        ts = s.transfer_syntax
        if ts not in seen:
            with _quiet():
                uid = UID(ts)
                known = uid.is_transfer_syntax
            problem = None
            if not known:
                problem = f"unknown transfer syntax {ts!r}: the pixel data cannot be decoded"
            elif uid.is_compressed:
                try:
                    decoder = get_decoder(uid)
                    if not decoder.is_available:
                        problem = (f"no decoder for its compressed transfer syntax {uid.name} ({ts}) is installed; "
                                   f"install one of: {'; '.join(decoder.missing_dependencies)}")
                except (NotImplementedError, ValueError):
                    problem = f"pydicom has no decoder for the transfer syntax {uid.name} ({ts})"
            seen[ts] = problem
        if seen[ts]:
            raise DataValidationError(where, f"{s.name}: {seen[ts]}")


# ------------------------------------------------------------------------------------------------ DICOM write


def _ds(value: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    v = float(value)
    return format_number_as_ds(0.0 if abs(v) < 1e-12 else v)


def _stored_values(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """int16 stored values and (slope, intercept) with array ≈ stored × slope + intercept (exact for integers)."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.int16)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    integral = np.issubdtype(a.dtype, np.integer) or bool(np.all(np.mod(a, 1) == 0))
    if integral and -32768 <= lo and hi <= 32767:
        return a.astype(np.int16), 1.0, 0.0
    if integral and hi - lo <= 65535:
        intercept = lo + 32768
        return (a.astype(np.int64) - int(intercept)).astype(np.int16), 1.0, intercept
    slope = (hi - lo) / 65534 if hi > lo else 1.0
    intercept = lo + 32767 * slope
    stored = np.clip(np.round((a.astype(np.float64) - intercept) / slope), -32767, 32767).astype(np.int16)
    return stored, slope, intercept


_TEMPLATE_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate",
    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "Manufacturer", "InstitutionName", "KVP", "PatientPosition", "BodyPartExamined",
)


def _template_values(template) -> dict:
    if template is None:
        return {}
    import pydicom

    if not isinstance(template, pydicom.Dataset):
        tpath = Path(template)
        if tpath.is_dir():
            ds = next((d for f in _candidate_files(tpath) if (d := _read_header(f, _name_role(f.name))) is not None),
                      None)
            if ds is None:
                raise DataValidationError(tpath, "no DICOM file to use as a template")
        else:
            ds = _read_header(tpath, _name_role(tpath.name))
            if ds is None:
                raise DataValidationError(tpath, "not a DICOM file (template)")
        template = ds
    return {k: template.get(k) for k in _TEMPLATE_KEYWORDS if k in template and template.get(k) not in (None, "")}


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    template=None,
    series_description: str = "medseg volume",
    series_number: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` as a DICOM image series, one file per slice (``IM0001.dcm``...), atomically.

    CT Image Storage (MR Image Storage when ``volume.modality == "MR"``), Explicit VR Little Endian,
    int16 stored values with RescaleSlope/RescaleIntercept (exact for integer HU; non-integer values are
    quantized to 65,535 levels over their range), ImagePositionPatient = origin + k · z spacing · z axis,
    ImageOrientationPatient = the x and y axes, PixelSpacing = (y, x) spacing, SliceThickness and
    SpacingBetweenSlices = z spacing. Patient/study attributes (and the Frame of Reference) come from
    ``template`` (a pydicom Dataset, a DICOM file or a series folder) when given, else from the Study/Frame
    of Reference UIDs in ``volume.meta``, else are made up; the SeriesInstanceUID is always new.
    The series is written into a temporary folder beside ``folder`` and renamed at the end.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    occupied = folder.is_dir() and any(folder.iterdir()) or folder.is_file()
    if occupied and not overwrite:
        raise DataValidationError(folder, "already exists; pass overwrite=True to replace it")
    modality = (volume.modality or "CT").upper()
    sop_class = _SOP_CLASS.get(modality, _CT_IMAGE_STORAGE)
    if modality not in _SOP_CLASS:
        modality = "CT"
    stored, slope, intercept = _stored_values(volume.array)
    n, rows, cols = stored.shape
    sz, sy, sx = volume.spacing
    direction = volume.direction
    origin = np.asarray(volume.origin)
    common = {
        "PatientName": "ANONYMOUS", "PatientID": "ANON", "PatientBirthDate": "", "PatientSex": "",
        "StudyInstanceUID": volume.meta.get("StudyInstanceUID") or generate_uid(),
        "FrameOfReferenceUID": volume.meta.get("FrameOfReferenceUID") or generate_uid(),
        "StudyDate": datetime.now().strftime("%Y%m%d"), "StudyTime": datetime.now().strftime("%H%M%S"),
        "StudyID": "1", "AccessionNumber": "", "ReferringPhysicianName": "", "PositionReferenceIndicator": "",
        "Manufacturer": "medseg", "KVP": "",
    }
    common.update(_template_values(template))
    series_uid = generate_uid()
    now = datetime.now()
    iop = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
    window_center = (float(np.median(volume.array)) if volume.array.size else 0.0)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(folder)
    tmp.mkdir()
    try:
        for k in range(n):
            sop_uid = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop_uid
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            for kw, val in common.items():
                setattr(ds, kw, val)
            ds.Modality = modality
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = series_number
            ds.SeriesDescription = series_description[:64]
            ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
            ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
            ds.InstanceNumber = k + 1
            ds.AcquisitionNumber = 1
            pos = origin + k * sz * direction[:, 2]
            ds.ImagePositionPatient = [_ds(v) for v in pos]
            ds.ImageOrientationPatient = iop
            ds.SliceLocation = _ds(float(pos @ np.cross(direction[:, 0], direction[:, 1])))
            ds.PixelSpacing = [_ds(sy), _ds(sx)]
            ds.SliceThickness = _ds(sz)
            ds.SpacingBetweenSlices = _ds(sz)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = rows, cols
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 1
            ds.RescaleSlope = _ds(slope)
            ds.RescaleIntercept = _ds(intercept)
            if modality == "CT":
                ds.RescaleType = "HU"
                ds.WindowCenter, ds.WindowWidth = _ds(40.0), _ds(400.0)
            else:
                ds.WindowCenter, ds.WindowWidth = _ds(window_center), _ds(max(1.0, float(np.ptp(volume.array))))
            ds.PixelData = np.ascontiguousarray(stored[k], dtype="<i2").tobytes()
            ds["PixelData"].VR = "OW"
            ds.save_as(tmp / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
        mode = _file_mode()
        for f in tmp.iterdir():
            os.chmod(f, mode)
        os.chmod(tmp, mode | ((mode & 0o444) >> 2))  # rw-r--r-- -> rwxr-xr-x: a folder needs x to be entered
        if folder.exists():  # move the old one aside, put the new one in place, then delete the old one
            old = _temp_sibling(folder, ".old")
            os.replace(folder, old)
            try:
                os.replace(tmp, folder)
            except BaseException:
                os.replace(old, folder)
                raise
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ------------------------------------------------------------------------------------------------ NIfTI


def _label_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.size and (not np.all(np.mod(a, 1) == 0) or a.min() < 0 or a.max() > 255):
        raise DataValidationError(path, f"a label map must hold integers 0..255; got values {a.min()}..{a.max()} "
                                        f"({a.dtype})")
    return a.astype(np.uint8)


def _nifti_header(path: Path):
    """The nibabel image (its data stay on disk) and the header as stored, before nibabel's silent fixes
    (on loading it sets zero voxel sizes to 1 and negative ones to their absolute value)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    if not path.exists():
        raise DataValidationError(path, "not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = nib.load(str(path))
            with ImageOpener(str(path)) as fh:
                stored = type(img.header).from_fileobj(fh, check=False)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types (ImageFileError, HeaderDataError, EOFError...)
        raise DataValidationError(path, f"not a readable NIfTI file ({exception_text(exc)})") from exc
    return img, stored


def nifti_shape(path: str | Path) -> tuple[int, ...]:
    """The shape (x, y, z, ...) a NIfTI header declares; nothing of the data is read."""
    return tuple(int(n) for n in _nifti_header(Path(path))[0].shape)


def read_nifti(path: str | Path, *, max_voxels: int | None = None) -> Volume:
    """A NIfTI-1/2 file as a Volume: (x, y, z) → (z, y, x), RAS affine → LPS origin/direction/spacing.

    The voxel budget (``max_voxels``) and the data type are checked on the header before the data are read.
    """
    path = Path(path)
    img, stored = _nifti_header(path)
    shape = tuple(int(n) for n in img.shape)
    check_voxels(path, shape, "the NIfTI image", max_voxels)
    try:
        check_dtype(path, img.get_data_dtype(), "the NIfTI image")
        spatial = min(3, len(shape))
        pixdim = np.asarray(stored["pixdim"], float)[1:1 + spatial]
        if int(stored["sform_code"]) == 0 and not (np.all(np.isfinite(pixdim)) and np.all(pixdim > 0)):
            raise DataValidationError(path, f"voxel sizes (pixdim) {pixdim.tolist()}: each must be a finite positive "
                                            "number")
        affine = np.asarray(img.affine, dtype=float)
        descrip = img.header.get("descrip")
        data = np.asanyarray(img.dataobj)
    except DataValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated data, bad scaling, a header nibabel cannot map...
        raise DataValidationError(path, f"not a readable NIfTI file ({exception_text(exc)})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataValidationError(path, f"a 3D volume is needed; the image is {data.ndim}D with shape {data.shape}")
    if not np.all(np.isfinite(affine)):
        raise DataValidationError(path, f"the affine holds NaN or infinite values: {affine.round(4).tolist()}")
    affine_lps = _LPS_RAS @ affine
    m = affine_lps[:3, :3]
    spacing_xyz = np.linalg.norm(m, axis=0)
    if np.any(spacing_xyz <= 0):
        raise DataValidationError(path, f"degenerate affine (a zero voxel size): {affine.round(4).tolist()}")
    descrip = descrip.item().decode("latin-1", "replace") if descrip is not None else ""
    modality = descrip.split("modality=", 1)[1].split()[0] if "modality=" in descrip else None
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    volume = Volume(array, (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]), tuple(affine_lps[:3, 3]),
                    m / spacing_xyz, modality or None, {"format": "nifti", "source": str(path)})
    return validate_volume(volume, path)


def write_nifti(volume: Volume, path: str | Path, *, label: bool = False) -> Path:
    """Write ``volume`` as NIfTI (``.nii`` or ``.nii.gz``) with its RAS affine; ``label=True`` → uint8."""
    import nibabel as nib

    path = Path(path)
    if _suffix_of(path) not in _NIFTI_SUFFIXES:
        raise DataValidationError(path, "a NIfTI file name ends with .nii or .nii.gz")
    data = _label_uint8(volume.array, path) if label else np.asarray(volume.array)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    affine = volume.affine_ras()
    img = nib.Nifti1Image(data.transpose(2, 1, 0), affine)
    img.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-orthogonal affine lives in the sform; the qform gets its nearest
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
    img.header["descrip"] = (f"medseg modality={volume.modality}" if volume.modality else "medseg")[:79].encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, _suffix_of(path))
    try:
        nib.save(img, str(tmp))
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------------------------------ HDF5


_INLINE_TEXT_BYTES = 32 * 1024  # below the 64 KiB an attribute may take in an object header


def _text_attr(text: str):
    """A string attribute stored fixed-length, inside the object header: a variable-length string lives in
    the file's global heap, and libhdf5 (seen with 2.0) can loop forever reading a damaged global heap.
    Only a text too long for the header (never the case for medseg's own) stays variable-length."""
    data = text.encode("utf-8")
    return np.bytes_(data) if len(data) <= _INLINE_TEXT_BYTES else text


def _geometry_attrs(volume: Volume) -> dict:
    meta = json.dumps(_json_safe({k: v for k, v in volume.meta.items()  # per-file lists may outgrow an attribute
                                  if k not in ("sop_instance_uids", "files", "skipped_names")}))
    return {
        "spacing": np.asarray(volume.spacing, float), "origin": np.asarray(volume.origin, float),
        "direction": np.asarray(volume.direction, float), "axes": _text_attr("zyx"),
        "modality": _text_attr(volume.modality or ""), "meta": _text_attr(meta),
    }


def write_hdf5_volume(volume: Volume, path: str | Path, key: str = "image",
                      label: Volume | np.ndarray | None = None, *, compression_level: int = 4) -> Path:
    """Write ``volume`` (dataset ``key``) and optionally ``label`` (dataset ``label``, uint8) to HDF5, gzip,
    one chunk per slice, geometry as dataset attributes; atomically."""
    import h5py

    path = Path(path)
    arrays = {key: (np.asarray(volume.array), volume)}
    if label is not None:
        lab = label.array if isinstance(label, Volume) else label
        lab = _label_uint8(lab, path)
        if lab.shape != volume.shape:
            raise DataValidationError(path, f"label shape {lab.shape} differs from the image's {volume.shape}")
        arrays["label"] = (lab, volume)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, ".h5")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["medseg_format"] = _text_attr("volume")
            f.attrs["version"] = 1
            for name, (arr, geo) in arrays.items():
                if arr.dtype == bool:
                    arr = arr.astype(np.uint8)
                chunks = (1, *arr.shape[1:]) if arr.size else None
                d = f.create_dataset(name, data=arr, chunks=chunks, compression="gzip" if arr.size else None,
                                     compression_opts=compression_level if arr.size else None, shuffle=bool(arr.size))
                for k, v in _geometry_attrs(geo).items():
                    d.attrs[k] = v
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _hdf5_dataset(f, path: Path, key: str | None):
    """Dataset ``key`` of the open file ``f`` (None: "image", or "label" in a file that holds only a label)."""
    import h5py

    if key is None:
        key = "label" if "image" not in f and "label" in f else "image"
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise DataValidationError(path, f"no dataset {key!r}; datasets here: {sorted(_h5_datasets(f))}")
    return f[key]


def hdf5_shape(path: str | Path, key: str | None = None) -> tuple[int, ...]:
    """The shape of dataset ``key`` (default as :func:`read_hdf5_volume`) from the file's metadata, nothing
    of the data read."""
    path = Path(path)
    with open_hdf5(path) as f:
        return tuple(int(n) for n in _hdf5_dataset(f, path, key).shape)


def _attr_array(path: Path, key: str, name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, float)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(path, f"attribute {name!r} of {key!r} is {' '.join(str(value).split())[:80]!r}, "
                                        "not numbers") from exc
    if array.shape != shape:
        raise DataValidationError(path, f"attribute {name!r} of {key!r} has shape {array.shape}, expected {shape}")
    return array


def _attr_text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_hdf5_volume(path: str | Path, key: str | None = "image", *, max_voxels: int | None = None) -> Volume:
    """Dataset ``key`` of an HDF5 file with its geometry attributes (on the dataset, else on the file).

    ``key=None``: "image", or "label" in a file that holds only a label. The voxel budget (``max_voxels``)
    and the data type are checked on the dataset's metadata before the data are read.
    """
    path = Path(path)
    with open_hdf5(path) as f:
        d = _hdf5_dataset(f, path, key)
        key = key if key is not None else d.name.lstrip("/")
        if d.ndim != 3:
            raise DataValidationError(path, f"dataset {key!r} has shape {d.shape}; a volume is (D, H, W)")
        check_voxels(path, d.shape, f"dataset {key!r}", max_voxels)
        check_dtype(path, d.dtype, f"dataset {key!r}")

        def attr(name, shape, default=None):
            value = d.attrs.get(name, f.attrs.get(name))
            if value is None:
                if default is None:
                    raise DataValidationError(path, f"dataset {key!r} has no {name!r} attribute (write the file "
                                                    "with write_hdf5_volume, or add spacing/origin/direction)")
                return default
            return _attr_array(path, key, name, value, shape)

        spacing = attr("spacing", (3,))
        origin = attr("origin", (3,), np.zeros(3))
        direction = attr("direction", (3, 3), np.eye(3))
        array = d[()]
        modality = _attr_text(d.attrs.get("modality", "")) or None
        try:
            meta = json.loads(_attr_text(d.attrs.get("meta", "{}")))
        except (ValueError, RecursionError):
            meta = {}
    meta = meta if isinstance(meta, dict) else {}
    meta.update({"format": "hdf5", "source": str(path), "key": key})
    return validate_volume(Volume(array, tuple(spacing), tuple(origin), direction, modality, meta), path,
                           f"dataset {key!r}")


def _h5_datasets(f) -> list[str]:
    import h5py

    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


# ------------------------------------------------------------------------------------------------ dispatch

VolumeFormat = Literal["dicom", "nifti", "hdf5"]


def volume_format(path: str | Path) -> VolumeFormat:
    """"nifti" (.nii, .nii.gz), "hdf5" (.h5, .hdf5) or "dicom" (a folder, a .zip, a .dcm file)."""
    path = Path(path)
    suffix = _suffix_of(path)
    if suffix in _NIFTI_SUFFIXES:
        return "nifti"
    if suffix in _HDF5_SUFFIXES:
        return "hdf5"
    if path.is_dir() or suffix in (".zip", ".dcm") or not suffix:
        return "dicom"
    raise DataValidationError(path, "unknown volume format; give .nii/.nii.gz, .h5/.hdf5, a DICOM folder or a .zip")


def read_volume(path: str | Path, *, key: str | None = None, max_voxels: int | None = None,
                **dicom_options) -> Volume:
    """Read a volume whatever its format (see :func:`volume_format`). For HDF5, ``key`` defaults to
    "image" (or "label" in a file that holds only a label); ``dicom_options`` go to read_dicom_series
    (e.g. ``allow_gaps``). ``max_voxels``: the voxel budget (default ``$MEDSEG_MAX_VOXELS`` or 2**27)."""
    path = Path(path)
    fmt = volume_format(path)
    if fmt == "nifti":
        return read_nifti(path, max_voxels=max_voxels)
    if fmt == "hdf5":
        return read_hdf5_volume(path, key, max_voxels=max_voxels)
    return read_dicom_series(path, max_voxels=max_voxels, **dicom_options)


def header_shape(path: str | Path, fmt: str) -> tuple[int, ...]:
    """The shape a file's header declares, read without decoding any data: ``fmt`` "png"/"tiff" (H, W),
    "nifti" (x, y, z, ...), "hdf5" (the volume dataset's shape). For size checks before a file is read
    (the server's upload check uses it with its own voxel budget). Raises DataValidationError when the
    header cannot be read."""
    if fmt in ("png", "tiff"):
        from medseg.data.folder import image_shape

        return image_shape(path)
    if fmt == "nifti":
        return nifti_shape(path)
    if fmt == "hdf5":
        return hdf5_shape(path)
    raise ValueError(f"no header shape for format {fmt!r}; use png, tiff, nifti or hdf5")


def write_volume(volume: Volume, path: str | Path, *, label: bool = False, **options) -> Path:
    """Write by the name: .nii/.nii.gz → NIfTI, .h5/.hdf5 → HDF5, anything else → a DICOM series folder."""
    path = Path(path)
    suffix = _suffix_of(path)
    if suffix in _NIFTI_SUFFIXES:
        return write_nifti(volume, path, label=label)
    if suffix in _HDF5_SUFFIXES:
        if label:
            return write_hdf5_volume(volume.with_array(_label_uint8(volume.array, path)), path, key="label")
        return write_hdf5_volume(volume, path, **options)
    if suffix == ".zip":
        raise DataValidationError(path, "writing a zip is not supported; give a folder for a DICOM series")
    if label:
        raise DataValidationError(path, "a label map is written as NIfTI or HDF5 here (DICOM-SEG is not "
                                        "supported yet); use a .nii.gz or .h5 name")
    return write_dicom_series(volume, path, **options)


def write_label_like(label_array: np.ndarray, reference: Volume, path: str | Path) -> Path:
    """Write a label map (uint8) on ``reference``'s grid, in the reference's format.

    ``path`` with a .nii/.nii.gz/.h5/.hdf5 suffix decides the format; a path without one gets the
    reference's format suffix (``.nii.gz`` for NIfTI, ``.h5`` for HDF5) — and ``.nii.gz`` for a DICOM
    reference, since DICOM-SEG is not written here. In HDF5 the label is the dataset ``label``.
    """
    path = Path(path)
    label_array = np.asarray(label_array)
    if label_array.shape != reference.shape:
        raise DataValidationError(path, f"label shape {label_array.shape} differs from the reference volume's "
                                        f"{reference.shape}")
    suffix = _suffix_of(path)
    if suffix not in _NIFTI_SUFFIXES + _HDF5_SUFFIXES:
        fmt = reference.meta.get("format", "dicom")
        path = path.with_name(path.name + (".h5" if fmt == "hdf5" else ".nii.gz"))
    label = reference.with_array(_label_uint8(label_array, path), modality=None, meta={"kind": "label"})
    return write_volume(label, path, label=True)


# ------------------------------------------------------------------------------------------------ convert


def _output_path(inp: Path, out_dir: Path, fmt: str, taken: set[str]) -> Path:
    stem = _strip_suffix(inp) or "volume"
    ext = ".h5" if fmt == "hdf5" else ".nii.gz"
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}_{k}", k + 1
    taken.add(name)
    return out_dir / f"{name}{ext}"


def _convert_job(inp: str, out: str, fmt: str, read_options: dict) -> dict:
    """_convert_one for a worker process: a failure comes back as a result (DataValidationError does not
    survive pickling, its __init__ takes (path, problem)), raised again in the parent by _raise_error."""
    try:
        return _convert_one(inp, out, fmt, read_options)
    except DataValidationError as exc:
        return {"input": inp, "error": str(exc), "_error": ("DataValidationError", str(exc.path) if exc.path else None,
                                                           exc.problem)}
    except (OSError, ValueError) as exc:
        return {"input": inp, "error": str(exc), "_error": (type(exc).__name__, None, str(exc))}


def _raise_error(result: dict) -> None:
    kind, path, problem = result["_error"]
    if kind == "DataValidationError":
        raise DataValidationError(path, problem)
    raise (OSError if kind in ("OSError", "FileNotFoundError", "PermissionError") else ValueError)(problem)


def _convert_one(inp: str, out: str, fmt: str, read_options: dict) -> dict:
    t0 = time.perf_counter()
    vol = read_volume(Path(inp), **read_options)
    t1 = time.perf_counter()
    if fmt == "hdf5":
        write_hdf5_volume(vol, out)
    else:
        write_nifti(vol, out)
    t2 = time.perf_counter()
    return {"input": inp, "output": out, "seconds": round(t2 - t0, 4), "read_seconds": round(t1 - t0, 4),
            "write_seconds": round(t2 - t1, 4), "shape": list(vol.shape), "spacing": list(vol.spacing),
            "dtype": str(vol.array.dtype), "skipped_files": vol.meta.get("skipped_files", 0),
            "gaps": vol.meta.get("gaps", []), "error": None}


def convert_series(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    fmt: Literal["hdf5", "nifti"] = "hdf5",
    workers: int | None = None,
    *,
    require_modality: str | None = None,
    allow_gaps: bool = False,
    progress: bool = True,
    fail_fast: bool = False,
) -> list[dict]:
    """Convert many volumes (DICOM folders/zips, NIfTI, HDF5) to ``fmt`` in ``out_dir``, in parallel.

    One process per worker (``workers`` default: CPU count, at most one per input; ``1`` runs here).
    Output names come from the inputs (``series01/`` → ``series01.h5``; clashes get ``_2``...). Returns one
    dict per input, in input order: ``input, output, seconds (read + write), read_seconds, write_seconds,
    shape, spacing, dtype, skipped_files, gaps, error``; a failed input has ``error`` set (its message) and
    ``output`` None (nothing is left in ``out_dir`` for it), unless ``fail_fast`` re-raises the first failure.
    ``allow_gaps``: fill whole missing slices of DICOM series (see the module docstring) instead of failing.
    """
    from medseg.progress import Progress

    if fmt not in ("hdf5", "nifti"):
        raise ValueError(f"fmt must be 'hdf5' or 'nifti', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    jobs = [(str(Path(p)), str(_output_path(Path(p), out_dir, fmt, taken))) for p in inputs]
    read_options: dict = {} if require_modality is None else {"require_modality": require_modality}
    if allow_gaps:
        read_options["allow_gaps"] = True
    workers = min(len(jobs), workers or os.cpu_count() or 1) if jobs else 1
    results: list[dict | None] = [None] * len(jobs)

    def finish(i: int, result: dict) -> None:
        if result.get("error"):
            if fail_fast:
                _raise_error(result)
            result = {"input": jobs[i][0], "output": None, "seconds": None, "shape": None, "spacing": None,
                      "error": result["error"]}
        results[i] = result
        bar.update()

    bar = Progress(total=len(jobs), desc="convert", unit="series", disable=not progress)
    try:
        if workers <= 1:
            for i, (inp, out) in enumerate(jobs):
                finish(i, _convert_job(inp, out, fmt, read_options))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_convert_job, inp, out, fmt, read_options): i
                           for i, (inp, out) in enumerate(jobs)}
                try:
                    for fut in as_completed(futures):
                        finish(futures[fut], fut.result())
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # fail_fast / Ctrl-C: start no more series
                    raise
    finally:
        bar.close()
    return results  # type: ignore[return-value]


def run_convert(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    fmt: Literal["hdf5", "nifti"] = "hdf5",
    workers: int | None = None,
    *,
    require_modality: str | None = None,
    scan: bool = False,
    allow_gaps: bool = False,
    progress: bool = True,
) -> dict:
    """The body of ``medseg data convert INPUT... -o OUT_DIR [--format hdf5|nifti] [--workers N] [--scan]
    [--allow-gaps]``.

    ``scan=True`` replaces each input folder by the series folders found under it
    (:func:`find_dicom_series`). Returns a summary: the per-series results, counts, total wall seconds
    and the mean seconds per converted series. The caller prints it and exits non-zero if ``failed``.
    """
    expanded: list[Path] = []
    for p in map(Path, inputs):
        if scan and p.is_dir():
            found = find_dicom_series(p)
            if not found:
                raise DataValidationError(p, "no folder with DICOM files under it")
            expanded.extend(found)
        else:
            expanded.append(p)
    t0 = time.perf_counter()
    results = convert_series(expanded, out_dir, fmt, workers, require_modality=require_modality, allow_gaps=allow_gaps,
                             progress=progress)
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["error"] is None]
    return {
        "out_dir": str(out_dir), "format": fmt, "converted": len(ok), "failed": len(results) - len(ok),
        "wall_seconds": round(wall, 3),
        "seconds_per_series": round(float(np.mean([r["seconds"] for r in ok])), 4) if ok else None,
        "results": results,
    }
