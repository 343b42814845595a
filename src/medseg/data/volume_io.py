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

    Objects without an image (RTSTRUCT, SR, DICOMDIR, files with no Rows/Columns) and localizer (scout)
    images are skipped and counted in ``meta["skipped_files"]``. Several image series in the input is an error unless
    ``series_uid`` picks one; the message lists them.

Zips are extracted member by member into a temporary folder (removed afterwards) under names made here,
never the members' own paths; members whose names are absolute or contain ``..`` are refused, and the
sum of the declared uncompressed sizes must stay under ``max_zip_bytes`` (default
:data:`MAX_ZIP_BYTES`, a guard against zip bombs; the copy also stops at the declared size).

NIfTI (:func:`read_nifti`, :func:`write_nifti`)
    nibabel arrays are (x, y, z) with a RAS affine; here they are transposed to (z, y, x) and the affine
    turned to LPS (diag(-1, -1, 1)), without reorienting any voxel. Written with sform and qform code 1
    (scanner). Labels are written as ``uint8``.

HDF5 (:func:`read_hdf5_volume`, :func:`write_hdf5_volume`)
    Datasets ``image`` (and optionally ``label``), gzip, one chunk per slice; each dataset carries the
    attributes ``spacing`` (z, y, x), ``origin`` (x, y, z), ``direction`` (3×3), ``modality``, ``axes`` = "zyx".

All writers write to a temporary name beside the destination and rename at the end.
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
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from medseg.data.pommier import default_file_mode, open_hdf5
from medseg.data.volume import Volume
from medseg.errors import DataValidationError

__all__ = [
    "MAX_ZIP_BYTES",
    "convert_series",
    "find_dicom_series",
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

MAX_ZIP_BYTES = 4 * 2**30  # 4 GiB of declared uncompressed content: a CT series is rarely above 1 GiB
DEFAULT_SPACING_RTOL = 0.1  # a gap may differ from the series' slice spacing by 10 % before it is an error
_DEFER_BYTES = 1024  # elements larger than this (PixelData) stay on disk until used
_NOT_DICOM_SUFFIXES = {
    ".json", ".txt", ".md", ".csv", ".xml", ".html", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif",
    ".tiff", ".nii", ".gz", ".h5", ".hdf5", ".zip", ".py", ".yaml", ".yml", ".ini", ".log", ".exe", ".bat", ".sh",
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


@dataclass
class _Slice:
    file: Path  # where pydicom reads it (a temporary copy for zip members)
    name: str  # what error messages call it: relative to the folder, the zip member's name
    ds: object  # pydicom Dataset, PixelData deferred


def _looks_like_dicom_name(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() not in _NOT_DICOM_SUFFIXES


def _read_header(file: Path):
    """The dataset with PixelData left on disk, or None if ``file`` is not a DICOM object."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(file, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DataValidationError(file, f"cannot read the file: {exc}") from exc
    has_preamble = len(head) == 132 and head[128:132] == b"DICM"
    if not has_preamble and not _looks_like_dicom_name(file):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(file), defer_size=_DEFER_BYTES, force=not has_preamble)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError, NotImplementedError) as exc:
        if has_preamble:
            raise DataValidationError(file, f"not a readable DICOM file: {exc}") from exc
        return None
    if not has_preamble and not any(k in ds for k in ("SOPClassUID", "ImagePositionPatient", "Modality")):
        return None  # force-read something that is not DICOM
    return ds


def _is_image(ds) -> bool:
    sop = str(ds.get("SOPClassUID", ""))
    if sop == "1.2.840.10008.1.3.10":  # Media Storage Directory (DICOMDIR)
        return False
    if any(str(v).upper() == "LOCALIZER" for v in (ds.get("ImageType") or [])):
        return False  # a scout view stored in the CT series: not a slice of the volume
    return "Rows" in ds and "Columns" in ds


def _safe_member(name: str) -> bool:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return False
    return ".." not in PurePosixPath(norm).parts


def _extract_zip(zpath: Path, dest: Path, max_bytes: int) -> list[tuple[Path, str]]:
    """Copy the zip's regular members into ``dest`` under made-up names; (file, display name) pairs."""
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataValidationError(zpath, f"not a readable zip archive: {exc}") from exc
    out: list[tuple[Path, str]] = []
    with zf:
        infos = zf.infolist()
        for info in infos:
            if not _safe_member(info.filename):
                raise DataValidationError(
                    zpath, f"refusing the archive: member {info.filename!r} has an absolute path or '..' "
                    "(path traversal); re-create the zip with relative member names")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes:
            raise DataValidationError(
                zpath, f"refusing the archive: its members declare {declared:,} bytes uncompressed, more than the "
                f"limit of {max_bytes:,} bytes (zip-bomb guard); raise max_zip_bytes if the series really is "
                "this large")
        total = 0
        for k, info in enumerate(infos):
            if info.is_dir():
                continue
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:  # a symbolic link
                continue
            if not _looks_like_dicom_name(Path(PurePosixPath(info.filename.replace("\\", "/")).name)):
                continue  # README.txt, __MACOSX/._x, ...
            target = dest / f"m{k:06d}"
            with zf.open(info) as src, open(target, "wb") as dst:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > max_bytes:
                        raise DataValidationError(zpath, f"refusing the archive: more than {max_bytes:,} bytes "
                                                         "uncompressed (zip-bomb guard)")
                    dst.write(chunk)
            out.append((target, info.filename))
    return out


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))


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


def _float_list(value) -> list[float]:
    return [float(v) for v in value]


def read_dicom_series(
    path: str | Path | Sequence[str | Path],
    *,
    require_modality: str | None = None,
    series_uid: str | None = None,
    spacing_rtol: float = DEFAULT_SPACING_RTOL,
    max_zip_bytes: int = MAX_ZIP_BYTES,
) -> Volume:
    """Read one DICOM image series (a folder, a ``.zip`` or a list of files) as a Volume in HU.

    ``require_modality="CT"`` refuses any other Modality. ``series_uid`` picks one series when the input
    holds several. ``spacing_rtol``: how far (relative) a distance between neighbouring slices may differ
    from the series' spacing before the series is declared to have missing (or extra) slices.
    Raises :class:`DataValidationError` naming the folder/zip and the offending file.
    """
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        if not files:
            raise DataValidationError(None, "no DICOM files given")
        where = files[0].parent if len({f.parent for f in files}) == 1 else Path(os.path.commonpath(files))
        return _read_series([(f, str(f)) for f in files], where, require_modality, series_uid, spacing_rtol,
                            explicit=True, source=where)
    path = Path(path)
    if not path.exists():
        raise DataValidationError(path, "not found (give a folder of DICOM files, a .zip or a list of files)")
    if path.is_dir():
        files = _candidate_files(path)
        entries = [(f, str(f.relative_to(path))) for f in files]
        return _read_series(entries, path, require_modality, series_uid, spacing_rtol, source=path)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="medseg-zip-") as tmp:
            members = _extract_zip(path, Path(tmp), max_zip_bytes)
            vol = _read_series(members, path, require_modality, series_uid, spacing_rtol, source=path)
            # pixels are read inside _read_series, so the temporary copies may now go
        return vol
    return _read_series([(path, path.name)], path.parent, require_modality, series_uid, spacing_rtol, explicit=True,
                        source=path)


def _read_series(entries: list[tuple[Path, str]], where: Path, require_modality, series_uid, spacing_rtol,
                 *, explicit: bool = False, source: Path) -> Volume:
    """``where``: the folder or zip that errors name; ``entries``: (file to read, name used in messages)."""
    slices: list[_Slice] = []
    skipped = 0
    for file, name in entries:
        try:
            ds = _read_header(file)
        except DataValidationError as exc:
            raise DataValidationError(where, f"{name}: {exc.problem}") from exc
        if ds is None:
            if explicit:
                raise DataValidationError(where, f"{name} is not a DICOM file")
            skipped += 1
            continue
        if not _is_image(ds):
            skipped += 1
            continue
        slices.append(_Slice(file, name, ds))
    if not slices:
        raise DataValidationError(where, f"no DICOM image files found ({len(entries)} files looked at, "
                                         f"{skipped} skipped as non-DICOM or non-image objects)")

    # --- one series
    groups: dict[str, list[_Slice]] = defaultdict(list)
    for s in slices:
        groups[str(s.ds.get("SeriesInstanceUID", ""))].append(s)
    if series_uid is not None:
        if series_uid not in groups:
            raise DataValidationError(where, f"no series with SeriesInstanceUID {series_uid}; found: "
                                             + ", ".join(sorted(groups)))
        slices = groups[series_uid]
    elif len(groups) > 1:
        listing = "; ".join(
            f"{uid or '(no UID)'}: {len(g)} files, Modality {g[0].ds.get('Modality', '?')}"
            + (f", '{g[0].ds.SeriesDescription}'" if g[0].ds.get("SeriesDescription") else "")
            + f", e.g. {g[0].name}"
            for uid, g in sorted(groups.items(), key=lambda kv: -len(kv[1])))
        raise DataValidationError(
            where, f"mixed series: {len(groups)} different SeriesInstanceUIDs in one input ({listing}); choose one "
                   "with series_uid=... or put each series in its own folder")
    first = slices[0]
    modality = str(first.ds.get("Modality", "")) or None
    if require_modality is not None:
        for s in slices:
            m = str(s.ds.get("Modality", ""))
            if m.upper() != require_modality.upper():
                raise DataValidationError(where, f"{s.name}: Modality is {m or '(missing)'}, a {require_modality} "
                                                 "series is required")

    # --- per-file checks on the headers
    for s in slices:
        if "PixelData" not in s.ds:
            raise DataValidationError(where, f"{s.name}: no pixel data (PixelData element missing)")
        if int(s.ds.get("SamplesPerPixel", 1)) != 1:
            raise DataValidationError(where, f"{s.name}: {s.ds.SamplesPerPixel} samples per pixel (colour); "
                                             "a grey CT/MR image has 1")
        if int(s.ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DataValidationError(where, f"{s.name}: multi-frame (enhanced) DICOM with {s.ds.NumberOfFrames} "
                                             "frames is not supported; export the series as one file per slice")
    _check_decoders(slices, where)
    sizes = Counter((int(s.ds.Rows), int(s.ds.Columns)) for s in slices)
    if len(sizes) > 1:
        desc = ", ".join(
            f"{n} file(s) of {r}×{c} (e.g. {next(s.name for s in slices if (s.ds.Rows, s.ds.Columns) == (r, c))})"
            for (r, c), n in sizes.most_common())
        raise DataValidationError(where, f"mixed slice sizes (Rows×Columns) in one series: {desc}")
    rows, cols = next(iter(sizes))

    # --- geometry
    for key in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        for s in slices:
            if key not in s.ds and not (key != "PixelSpacing" and len(slices) == 1):
                raise DataValidationError(where, f"{s.name}: no {key}; cannot place the slice in the patient")
    iop = np.array(_float_list(first.ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])))
    row_dir, col_dir = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    for s in slices:
        other = np.array(_float_list(s.ds.get("ImageOrientationPatient", iop)))
        if np.abs(other - iop).max() > 1e-3:
            raise DataValidationError(where, f"{s.name}: ImageOrientationPatient {other.tolist()} differs from "
                                             f"{iop.tolist()} ({first.name}); the files are not one volume")
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    positions = np.array([_float_list(s.ds.get("ImagePositionPatient", [0, 0, 0])) for s in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    pixel_spacing = _float_list(first.ds.PixelSpacing)  # row spacing (y), column spacing (x)
    for s in slices:
        if np.abs(np.array(_float_list(s.ds.PixelSpacing)) - pixel_spacing).max() > 1e-4:
            raise DataValidationError(where, f"{s.name}: PixelSpacing {list(s.ds.PixelSpacing)} differs from "
                                             f"{pixel_spacing} ({first.name})")
    n = len(slices)
    if n > 1:
        gaps = np.diff(along)
        dup = np.flatnonzero(gaps < 1e-3)
        if dup.size:
            i = int(dup[0])
            raise DataValidationError(
                where, f"two slices at the same position ({along[i]:.3f} mm along the normal): {slices[i].name} and "
                       f"{slices[i + 1].name} (several acquisitions or echoes in one series?)")
        step = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - step) > max(spacing_rtol * step, 1e-3))
        if bad.size:
            i = int(bad[0])
            missing = gaps[i] / step - 1
            what = (f"about {round(missing)} slice(s) missing" if missing > 0.5 else "irregular slice spacing")
            raise DataValidationError(
                where, f"slice spacing is not uniform: gap of {gaps[i]:.3f} mm between slice {i} ({slices[i].name}, "
                       f"{along[i]:.3f} mm along the normal) and slice {i + 1} ({slices[i + 1].name}, "
                       f"{along[i + 1]:.3f} mm) where the series' spacing is {step:.3f} mm: {what} "
                       f"({len(bad)} irregular gap(s) in {n} slices)")
        z_spacing = float((along[-1] - along[0]) / (n - 1))
        lateral = positions - positions[0] - np.outer(along - along[0], normal)
        if np.linalg.norm(lateral, axis=1).max() > max(0.05 * z_spacing, 0.01):
            warnings.warn(f"{where}: slice positions do not advance along the slice normal (gantry tilt?); "
                          "the volume's z axis is the normal, as in ITK", stacklevel=3)
    else:
        ds = first.ds
        z_spacing = float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 0) or 1.0)

    # --- pixels
    slopes = np.array([float(s.ds.get("RescaleSlope", 1) or 1) for s in slices])
    intercepts = np.array([float(s.ds.get("RescaleIntercept", 0) or 0) for s in slices])
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    out = np.empty((n, rows, cols), np.int32 if integral else np.float32)
    for k, s in enumerate(slices):
        try:
            raw = s.ds.pixel_array
        except Exception as exc:
            raise DataValidationError(where, f"{s.name}: cannot decode the pixel data: {exc}") from exc
        if raw.shape != (rows, cols):
            raise DataValidationError(where, f"{s.name}: pixel data of shape {raw.shape}, expected {(rows, cols)}")
        if integral:
            out[k] = raw.astype(np.int32) * int(slopes[k]) + int(intercepts[k])
        else:
            out[k] = raw.astype(np.float64) * slopes[k] + intercepts[k]
    if integral:
        lo, hi = (int(out.min()), int(out.max())) if out.size else (0, 0)
        out = out.astype(np.int16) if -32768 <= lo and hi <= 32767 else out.astype(np.float32)

    direction = np.stack([row_dir, col_dir, normal], axis=1)
    meta = {
        "format": "dicom",
        "source": str(source),
        "SeriesInstanceUID": str(first.ds.get("SeriesInstanceUID", "")),
        "StudyInstanceUID": str(first.ds.get("StudyInstanceUID", "")),
        "FrameOfReferenceUID": str(first.ds.get("FrameOfReferenceUID", "")),
        "SeriesDescription": str(first.ds.get("SeriesDescription", "")),
        "sop_instance_uids": [str(s.ds.get("SOPInstanceUID", "")) for s in slices],
        "files": [s.name for s in slices],  # relative to "source" (a folder or zip)
        "rescale_slope": sorted(set(slopes.tolist())),
        "rescale_intercept": sorted(set(intercepts.tolist())),
        "transfer_syntax": str(getattr(getattr(first.ds, "file_meta", None), "TransferSyntaxUID", "")),
        "skipped_files": skipped,
    }
    return Volume(out, (z_spacing, pixel_spacing[0], pixel_spacing[1]), tuple(positions[0]), direction,
                  modality, meta)


def _check_decoders(slices: list[_Slice], where: Path) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    seen: dict[str, str | None] = {}
    for s in slices:
        fm = getattr(s.ds, "file_meta", None)
        ts = str(getattr(fm, "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
        if ts not in seen:
            uid = UID(ts)
            problem = None
            if uid.is_compressed:
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
            ds = next((d for f in _candidate_files(tpath) if (d := _read_header(f)) is not None), None)
            if ds is None:
                raise DataValidationError(tpath, "no DICOM file to use as a template")
        else:
            ds = _read_header(tpath)
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


def read_nifti(path: str | Path) -> Volume:
    """A NIfTI-1/2 file as a Volume: (x, y, z) → (z, y, x), RAS affine → LPS origin/direction/spacing."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise DataValidationError(path, "not found")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise DataValidationError(path, f"not a readable NIfTI file: {exc}") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataValidationError(path, f"a 3D volume is needed; the image is {data.ndim}D with shape {data.shape}")
    affine_lps = _LPS_RAS @ np.asarray(img.affine, dtype=float)
    m = affine_lps[:3, :3]
    spacing_xyz = np.linalg.norm(m, axis=0)
    if np.any(spacing_xyz <= 0):
        raise DataValidationError(path, f"degenerate affine (a zero voxel size): {img.affine.tolist()}")
    descrip = img.header.get("descrip")
    descrip = descrip.item().decode("latin-1", "replace") if descrip is not None else ""
    modality = descrip.split("modality=", 1)[1].split()[0] if "modality=" in descrip else None
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    return Volume(array, (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]), tuple(affine_lps[:3, 3]),
                  m / spacing_xyz, modality or None, {"format": "nifti", "source": str(path)})


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


def _geometry_attrs(volume: Volume) -> dict:
    return {
        "spacing": np.asarray(volume.spacing, float), "origin": np.asarray(volume.origin, float),
        "direction": np.asarray(volume.direction, float), "axes": "zyx", "modality": volume.modality or "",
        "meta": json.dumps(_json_safe({k: v for k, v in volume.meta.items()
                                       if k not in ("sop_instance_uids", "files")})),
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
            f.attrs["medseg_format"] = "volume"
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


def read_hdf5_volume(path: str | Path, key: str = "image") -> Volume:
    """Dataset ``key`` of an HDF5 file with its geometry attributes (on the dataset, else on the file)."""
    import h5py

    path = Path(path)
    with open_hdf5(path) as f:
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise DataValidationError(path, f"no dataset {key!r}; datasets here: {sorted(_h5_datasets(f))}")
        d = f[key]
        if d.ndim != 3:
            raise DataValidationError(path, f"dataset {key!r} has shape {d.shape}; a volume is (D, H, W)")

        def attr(name, shape, default=None):
            value = d.attrs.get(name, f.attrs.get(name))
            if value is None:
                if default is None:
                    raise DataValidationError(path, f"dataset {key!r} has no {name!r} attribute (write the file "
                                                    "with write_hdf5_volume, or add spacing/origin/direction)")
                return default
            value = np.asarray(value, float)
            if value.shape != shape:
                raise DataValidationError(path, f"attribute {name!r} of {key!r} has shape {value.shape}, "
                                                f"expected {shape}")
            return value

        spacing = attr("spacing", (3,))
        origin = attr("origin", (3,), np.zeros(3))
        direction = attr("direction", (3, 3), np.eye(3))
        array = d[()]
        modality = d.attrs.get("modality", "")
        modality = (modality.decode() if isinstance(modality, bytes) else str(modality)) or None
        try:
            meta = json.loads(d.attrs.get("meta", "{}"))
        except (TypeError, ValueError):
            meta = {}
    meta.update({"format": "hdf5", "source": str(path), "key": key})
    return Volume(array, tuple(spacing), tuple(origin), direction, modality, meta)


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


def read_volume(path: str | Path, *, key: str | None = None, **dicom_options) -> Volume:
    """Read a volume whatever its format (see :func:`volume_format`). For HDF5, ``key`` defaults to
    "image" (or "label" in a file that holds only a label); ``dicom_options`` go to read_dicom_series."""
    path = Path(path)
    fmt = volume_format(path)
    if fmt == "nifti":
        return read_nifti(path)
    if fmt == "hdf5":
        if key is None:
            import h5py

            key = "image"
            try:
                with h5py.File(path, "r") as f:
                    if "image" not in f and "label" in f:
                        key = "label"
            except OSError as exc:
                raise DataValidationError(path, f"not a readable HDF5 file: {exc}") from exc
        return read_hdf5_volume(path, key)
    return read_dicom_series(path, **dicom_options)


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
            "dtype": str(vol.array.dtype), "error": None}


def convert_series(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    fmt: Literal["hdf5", "nifti"] = "hdf5",
    workers: int | None = None,
    *,
    require_modality: str | None = None,
    progress: bool = True,
    fail_fast: bool = False,
) -> list[dict]:
    """Convert many volumes (DICOM folders/zips, NIfTI, HDF5) to ``fmt`` in ``out_dir``, in parallel.

    One process per worker (``workers`` default: CPU count, at most one per input; ``1`` runs here).
    Output names come from the inputs (``series01/`` → ``series01.h5``; clashes get ``_2``...). Returns one
    dict per input, in input order: ``input, output, seconds (read + write), read_seconds, write_seconds,
    shape, spacing, dtype, error``; a failed input has ``error`` set (its message) and ``output`` None,
    unless ``fail_fast`` re-raises the first failure.
    """
    from tqdm.auto import tqdm

    if fmt not in ("hdf5", "nifti"):
        raise ValueError(f"fmt must be 'hdf5' or 'nifti', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    jobs = [(str(Path(p)), str(_output_path(Path(p), out_dir, fmt, taken))) for p in inputs]
    read_options = {} if require_modality is None else {"require_modality": require_modality}
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

    bar = tqdm(total=len(jobs), desc="convert", unit="series", disable=not progress)
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
    progress: bool = True,
) -> dict:
    """The body of ``medseg data convert INPUT... -o OUT_DIR [--format hdf5|nifti] [--workers N] [--scan]``.

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
    results = convert_series(expanded, out_dir, fmt, workers, require_modality=require_modality, progress=progress)
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["error"] is None]
    return {
        "out_dir": str(out_dir), "format": fmt, "converted": len(ok), "failed": len(results) - len(ok),
        "wall_seconds": round(wall, 3),
        "seconds_per_series": round(float(np.mean([r["seconds"] for r in ok])), 4) if ok else None,
        "results": results,
    }
