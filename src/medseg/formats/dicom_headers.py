"""DICOM files, one at a time: which files of a series input are slices, the quick reject of bytes that
are not DICOM, and each slice's header parsed once and checked (:func:`read_header`, :func:`parse_slice`).

Used by the series reader :mod:`medseg.formats.dicom` (see its docstring for the rules: which names are
skipped unread, which must be DICOM, what is skipped as a non-image object) and by the DICOM writer (its
templates). Without the 'DICM' marker, a file's first bytes are checked before pydicom parses anything
(megabytes of zeros named ``.dcm`` are refused in microseconds, not seconds), and a file larger than any
image within the voxel budget is refused by its size. A header value that cannot be used is an error
naming the file; pydicom's own warnings are silenced (:func:`quiet_pydicom`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.limits import MAX_VOXELS_ENV, check_voxels, exception_text, max_dicom_file_bytes

__all__ = [
    "DEFAULT_SPACING_RTOL",
    "DicomSlice",
    "NameRole",
    "NonImage",
    "SeriesOptions",
    "candidate_files",
    "is_dicom_file",
    "may_be_dicom",
    "name_role",
    "parse_slice",
    "quiet_pydicom",
    "read_header",
]

DEFAULT_SPACING_RTOL = 0.1  # a gap may differ from the series' slice spacing by 10 % before it is an error
_DEFER_BYTES = 1024  # elements larger than this (PixelData) stay on disk until used
_NOT_DICOM_SUFFIXES = {
    ".json",
    ".txt",
    ".md",
    ".csv",
    ".xml",
    ".html",
    ".pdf",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".nii",
    ".gz",
    ".h5",
    ".hdf5",
    ".zip",
    ".py",
    ".yaml",
    ".yml",
    ".ini",
    ".log",
    ".exe",
    ".bat",
    ".sh",
    ".db",
    ".inf",
    ".htm",
    ".js",
    ".css",
    ".ico",
    ".dll",
    ".jar",
    ".rtf",
    ".doc",
    ".docx",
    ".xls",
    ".xlsx",
    ".toml",
    ".cfg",
    ".nrrd",
    ".mha",
    ".mhd",
    ".plist",
}

_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
# The two-letter value representations: an explicit-VR element has one of them at bytes 4-5.
_VRS = {
    vr.encode()
    for vr in (
        "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV"
    ).split()
}
NameRole = Literal["dicom", "unknown", "other"]


@dataclass
class DicomSlice:
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
class SeriesOptions:
    """What the caller of :func:`~medseg.formats.dicom.read_dicom_series` asked for, passed down to the steps
    of the read."""

    require_modality: str | None = None
    series_uid: str | None = None
    spacing_rtol: float = DEFAULT_SPACING_RTOL
    allow_gaps: bool = False
    max_voxels: int | None = None


def name_role(name: str) -> NameRole:
    """What a file's name says (see :mod:`medseg.formats.dicom`): "dicom" (.dcm, .dicom, .dic, .ima), "other" (hidden,
    under __MACOSX, or a suffix that is never DICOM: README.txt, .json, ...), "unknown" (no suffix, or one
    that says nothing, such as PACS exports' IM000012 or UID-named 1.2.840.113619.2.55.3.12)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return "other"
    suffix = PurePosixPath(parts[-1]).suffix.lower()
    if suffix in _DICOM_SUFFIXES:
        return "dicom"
    return "other" if suffix in _NOT_DICOM_SUFFIXES else "unknown"


def may_be_dicom(name: str) -> bool:
    """Whether a file or zip member of this name may be a slice: its :func:`name_role` is not "other"."""
    return name_role(name) != "other"


def _starts_like_dicom(head: bytes, size: int) -> bool:
    """Whether ``head`` (the 8 bytes after the 'DICM' marker, or a file's first 8) is the first element of a
    DICOM object: group 0x0002 (file meta) or 0x0008 (the lowest group of any image dataset), little endian,
    with an explicit VR (two letters) or an implicit 32-bit length that fits in the file. Checked before
    pydicom parses anything: ``dcmread(force=True)`` takes seconds to give up on megabytes of zeros."""
    if len(head) < 8 or int.from_bytes(head[:2], "little") not in (0x0002, 0x0008):
        return False
    length = int.from_bytes(head[4:8], "little")
    return head[4:6] in _VRS or length <= size or length == 0xFFFFFFFF


def is_dicom_file(file: str | Path) -> bool:
    """Whether a file's bytes say it is DICOM, whatever its name (``IM000012``, a UID, no suffix): the 'DICM'
    marker at byte 128, or a DICOM element at byte 0 (a file written without the preamble), the rule
    :func:`read_header` applies to names that say nothing. A file that cannot be read is not."""
    file = Path(file)
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(140)
    except OSError:
        return False
    return head[128:132] == b"DICM" or _starts_like_dicom(head[:8], size)


def read_header(file: Path, role: NameRole = "dicom", max_voxels: int | None = None):
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
            raise DataValidationError(
                file,
                "is not a readable DICOM file: no 'DICM' marker at byte 128 and no DICOM "
                "element at its start (damaged, truncated, or not DICOM)",
            )
        if role == "unknown" and not any(head[:128]):
            raise DataValidationError(
                file, "starts with zero bytes but has no 'DICM' marker: a damaged or truncated DICOM file"
            )
        return None
    limit = max_dicom_file_bytes(max_voxels)
    if size > limit:
        raise DataValidationError(
            file,
            f"is {size:,} bytes, more than any image within the voxel budget needs ({limit:,} bytes; {MAX_VOXELS_ENV})",
        )
    import pydicom

    try:
        with quiet_pydicom():
            return pydicom.dcmread(str(file), defer_size=_DEFER_BYTES, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files; all mean the same
        raise DataValidationError(file, f"not a readable DICOM file ({exception_text(exc)})") from exc


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """pydicom warns about every odd value it meets ("invalid value for VR UI ..."); the checks here decide
    what is an error and say so in one line naming the file, so its warnings are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _HeaderProblem(ValueError):
    """A header value that cannot be used; parse_slice adds the file's name."""


def _value(ds, keyword: str):
    """``ds.get(keyword)``; pydicom converts a value when it is first read, so a damaged one fails here."""
    try:
        with quiet_pydicom():
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
class NonImage:
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
    with quiet_pydicom():
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


def parse_slice(file: Path, name: str, ds, where: Path, options: SeriesOptions) -> DicomSlice | NonImage:
    """The slice's header values, checked, or what the object is if it is not a slice. pydicom converts
    values lazily, so a damaged element fails when first read: any failure here is an error naming the file."""
    try:
        _check_extent(file, ds)
        kind = _object_kind(ds)
        if kind != "image":
            return NonImage(name, kind, _text(ds, "SeriesInstanceUID"))
        rows, cols = int(_number(ds, "Rows", 0)), int(_number(ds, "Columns", 0))
        frames = int(_number(ds, "NumberOfFrames", 1))
        if rows <= 0 or cols <= 0 or frames <= 0:
            raise _HeaderProblem(f"Rows {rows} × Columns {cols} × NumberOfFrames {frames}: an empty image")
        check_voxels(None, (frames, rows, cols), "the slice", options.max_voxels)
        meta = getattr(ds, "file_meta", None)
        s = DicomSlice(
            file,
            name,
            ds,
            series_uid=_text(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"),
            rows=rows,
            cols=cols,
            frames=frames,
            samples=int(_number(ds, "SamplesPerPixel", 1)),
            transfer_syntax=(_text(meta, "TransferSyntaxUID") if meta is not None else "") or "1.2.840.10008.1.2",
            position=_numbers(ds, "ImagePositionPatient", 3),
            orientation=_numbers(ds, "ImageOrientationPatient", 6),
            pixel_spacing=_numbers(ds, "PixelSpacing", 2),
            slope=_number(ds, "RescaleSlope", 1.0) or 1.0,
            intercept=_number(ds, "RescaleIntercept", 0.0),
            thickness=abs(_number(ds, "SpacingBetweenSlices", 0.0)) or abs(_number(ds, "SliceThickness", 0.0)) or 1.0,
            sop_uid=_text(ds, "SOPInstanceUID"),
            study_uid=_text(ds, "StudyInstanceUID"),
            frame_uid=_text(ds, "FrameOfReferenceUID"),
            description=_text(ds, "SeriesDescription"),
        )
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
            raise _HeaderProblem(
                f"truncated: {keyword_for_tag(tag) or tag} declares {length:,} bytes, the file "
                f"ends after {max(0, size - tell):,}"
            )


def candidate_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, recursively, sorted (which of them are slices is decided by name and content)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())
