"""DICOM series in and out: :func:`read_dicom_series` (a folder, a ``.zip`` or a list of files → a
:class:`~medseg.formats.volume.Volume` in HU), :func:`write_dicom_series`, :func:`find_dicom_series`.

The steps of a read live beside this module: :mod:`medseg.formats.dicom_headers` (each file: is it a slice,
the quick reject of bytes that are not DICOM, its header parsed and checked) and
:mod:`medseg.formats.dicom_geometry` (the series: one series, per-file checks, slice order, gaps, pixels).
Zips are read through :mod:`medseg.formats.zip_safety`.

Reading (:func:`read_dicom_series`)
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
    The voxel budget (:mod:`medseg.formats.limits`: Rows × Columns × frames × slices) is checked on the
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

Zips follow :class:`~medseg.formats.zip_safety.ZipPolicy` (the same policy as the server's uploads): the central
directory is checked first (member count, declared size, compression ratio, absolute or ``..`` member
names); the members that may be DICOM by name are then extracted one by one into a temporary folder
(removed afterwards) under names made here, never the members' own paths, and the copy stops at the
declared size (:func:`medseg.formats.zip_safety.extract_zip`).

The series is written into a temporary folder beside its destination and renamed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.atomic import default_file_mode, temp_sibling
from medseg.formats.dicom_geometry import check_slices, one_series, series_geometry, series_pixels
from medseg.formats.dicom_headers import (
    DEFAULT_SPACING_RTOL,
    DicomSlice,
    NonImage,
    SeriesOptions,
    candidate_files,
    may_be_dicom,
    name_role,
    parse_slice,
    read_header,
)
from medseg.formats.limits import check_voxels, printable
from medseg.formats.volume import Volume, validate_volume
from medseg.formats.zip_safety import ZipPolicy, extract_zip, is_zip

__all__ = ["DEFAULT_SPACING_RTOL", "find_dicom_series", "read_dicom_series", "write_dicom_series"]


# ------------------------------------------------------------------------------------------------ read


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
    options = SeriesOptions(require_modality, series_uid, spacing_rtol, allow_gaps, max_voxels)
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
        entries = [(f, printable(str(f.relative_to(path)))) for f in candidate_files(path)]
        return _read_series(entries, path, options, source=path)
    if path.suffix.lower() == ".zip" or is_zip(path):
        policy = zip_policy or ZipPolicy()
        if max_zip_bytes is not None:
            policy = replace(policy, max_bytes=int(max_zip_bytes))
        skipped: list[str] = []
        with tempfile.TemporaryDirectory(prefix="medseg-zip-") as tmp:
            members = extract_zip(path, Path(tmp), policy, skipped, keep=may_be_dicom)
            # pixels are read inside _read_series, so the temporary copies may go afterwards
            return _read_series(members, path, options, source=path, skipped=skipped)
    return _read_series([(path, printable(path.name))], path.parent, options, explicit=True, source=path)


def _read_series(
    entries: list[tuple[Path, str]],
    where: Path,
    options: SeriesOptions,
    *,
    explicit: bool = False,
    source: Path,
    skipped: list[str] | None = None,
) -> Volume:
    """``where``: the folder or zip that errors name; ``entries``: (file to read, name used in messages).
    ``explicit``: the files were named one by one, so each must be DICOM. ``skipped``: names already left
    out (zip members that are not DICOM by name); the non-DICOM and non-image files met here are added."""
    slices: list[DicomSlice] = []
    non_images: list[NonImage] = []
    skipped = list(skipped or [])
    looked_at = len(entries) + len(skipped)
    for file, name in entries:
        role = name_role(name)
        if role == "other" and not explicit:
            skipped.append(name)
            continue
        try:
            ds = read_header(file, role, options.max_voxels)
        except DataValidationError as exc:
            raise DataValidationError(where, f"{name}: {exc.problem}") from exc
        if ds is None:
            if explicit:
                raise DataValidationError(where, f"{name} is not a DICOM file")
            skipped.append(name)
            continue
        item = parse_slice(file, name, ds, where, options)
        if isinstance(item, NonImage):
            skipped.append(name)
            non_images.append(item)
        else:
            slices.append(item)
    if not slices:
        raise DataValidationError(
            where,
            f"no DICOM image files found ({looked_at} files looked at, {len(skipped)} "
            "skipped as non-DICOM or non-image objects)",
        )
    slices = one_series(slices, where, options)
    for item in non_images:  # RTSTRUCT, SR, KO... have series of their own: one in the image series is damaged
        if item.kind == "no image" and item.series_uid == slices[0].series_uid:
            raise DataValidationError(
                where,
                f"{item.name}: no Rows/Columns in an object of the image series "
                f"{item.series_uid or '(no UID)'}: a damaged slice?",
            )
    check_slices(slices, where)
    geometry = series_geometry(slices, where, options)
    slices = geometry.slices
    n_total = int(geometry.index[-1]) + 1
    check_voxels(where, (n_total, slices[0].rows, slices[0].cols), "the series", options.max_voxels)
    for g in geometry.gaps:
        warnings.warn(
            f"{where}: {g['slices_filled']} missing slice(s) between {g['after']} and {g['before']} "
            f"(a {g['gap_mm']:.3f} mm gap) filled with the series' minimum value",
            stacklevel=3,
        )
    out = series_pixels(slices, geometry.index, n_total, where)
    first = slices[0]
    by_index = dict(zip(geometry.index.tolist(), slices, strict=True))
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
    volume = Volume(
        out,
        (geometry.z_spacing, *first.pixel_spacing),
        tuple(geometry.origin),
        geometry.direction,
        first.modality or None,
        meta,
    )
    return validate_volume(volume, where, "the series")


# ------------------------------------------------------------------------------------------------ write


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


_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_SOP_CLASS = {"CT": _CT_IMAGE_STORAGE, "MR": _MR_IMAGE_STORAGE}
_TEMPLATE_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Manufacturer",
    "InstitutionName",
    "KVP",
    "PatientPosition",
    "BodyPartExamined",
)


def _template_values(template) -> dict:
    if template is None:
        return {}
    import pydicom

    if not isinstance(template, pydicom.Dataset):
        tpath = Path(template)
        if tpath.is_dir():
            ds = next((d for f in candidate_files(tpath) if (d := read_header(f, name_role(f.name))) is not None), None)
            if ds is None:
                raise DataValidationError(tpath, "no DICOM file to use as a template")
        else:
            ds = read_header(tpath, name_role(tpath.name))
            if ds is None:
                raise DataValidationError(tpath, "not a DICOM file (template)")
        template = ds
    return {k: template.get(k) for k in _TEMPLATE_KEYWORDS if k in template and template.get(k) not in (None, "")}


def _series_attributes(volume: Volume, template, modality: str, series_number: int, series_description: str) -> dict:
    """The attributes every slice of the series shares, by keyword: patient, study and Frame of Reference
    (from ``template``, else ``volume.meta``, else made up), and a new series."""
    from pydicom.uid import generate_uid

    common = {
        "PatientName": "ANONYMOUS",
        "PatientID": "ANON",
        "PatientBirthDate": "",
        "PatientSex": "",
        "StudyInstanceUID": volume.meta.get("StudyInstanceUID") or generate_uid(),
        "FrameOfReferenceUID": volume.meta.get("FrameOfReferenceUID") or generate_uid(),
        "StudyDate": datetime.now().strftime("%Y%m%d"),
        "StudyTime": datetime.now().strftime("%H%M%S"),
        "StudyID": "1",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "PositionReferenceIndicator": "",
        "Manufacturer": "medseg",
        "KVP": "",
    }
    common.update(_template_values(template))
    series_uid = generate_uid()
    now = datetime.now()
    return {
        "SpecificCharacterSet": "ISO_IR 192",
        "ImageType": ["DERIVED", "SECONDARY", "AXIAL"],
        **common,
        "Modality": modality,
        "SeriesInstanceUID": series_uid,
        "SeriesNumber": series_number,
        "SeriesDescription": series_description[:64],
        "SeriesDate": now.strftime("%Y%m%d"),
        "ContentDate": now.strftime("%Y%m%d"),
        "SeriesTime": now.strftime("%H%M%S"),
        "ContentTime": now.strftime("%H%M%S"),
    }


def _slice_dataset(
    k: int,
    pixels: np.ndarray,
    volume: Volume,
    *,
    sop_class: str,
    modality: str,
    series: dict,
    iop: list[str],
    slope: float,
    intercept: float,
    window_center: float,
):
    """The dataset of slice ``k`` (0-based): the attributes the series shares, a new SOPInstanceUID, the
    slice's number, position and pixels, the pixel encoding, the rescale to HU and the display window."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sz, sy, sx = volume.spacing
    direction = volume.direction
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    for kw, val in series.items():
        setattr(ds, kw, val)
    ds.InstanceNumber = k + 1
    ds.AcquisitionNumber = 1
    pos = np.asarray(volume.origin) + k * sz * direction[:, 2]
    ds.ImagePositionPatient = [_ds(v) for v in pos]
    ds.ImageOrientationPatient = iop
    ds.SliceLocation = _ds(float(pos @ np.cross(direction[:, 0], direction[:, 1])))
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.SliceThickness = _ds(sz)
    ds.SpacingBetweenSlices = _ds(sz)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = _ds(slope)
    ds.RescaleIntercept = _ds(intercept)
    if modality == "CT":
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = _ds(40.0), _ds(400.0)
    else:
        ds.WindowCenter, ds.WindowWidth = _ds(window_center), _ds(max(1.0, float(np.ptp(volume.array))))
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _publish_series(tmp: Path, folder: Path) -> None:
    """Give the written series the default permissions and put it at ``folder``, replacing what is there
    (the old one is moved aside first and restored if the move fails)."""
    mode = default_file_mode()
    for f in tmp.iterdir():
        os.chmod(f, mode)
    os.chmod(tmp, mode | ((mode & 0o444) >> 2))  # rw-r--r-- -> rwxr-xr-x: a folder needs x to be entered
    if folder.exists():  # move the old one aside, put the new one in place, then delete the old one
        old = temp_sibling(folder, ".old")
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
    folder = Path(folder)
    occupied = folder.is_dir() and any(folder.iterdir()) or folder.is_file()
    if occupied and not overwrite:
        raise DataValidationError(folder, "already exists; pass overwrite=True to replace it")
    modality = (volume.modality or "CT").upper()
    sop_class = _SOP_CLASS.get(modality, _CT_IMAGE_STORAGE)
    if modality not in _SOP_CLASS:
        modality = "CT"
    stored, slope, intercept = _stored_values(volume.array)
    n = len(stored)
    _sz, _sy, _sx = volume.spacing  # a spacing of another length fails here, before anything is written
    direction = volume.direction
    series = _series_attributes(volume, template, modality, series_number, series_description)
    iop = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
    window_center = float(np.median(volume.array)) if volume.array.size else 0.0
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder)
    tmp.mkdir()
    try:
        for k in range(n):
            ds = _slice_dataset(
                k,
                stored[k],
                volume,
                sop_class=sop_class,
                modality=modality,
                series=series,
                iop=iop,
                slope=slope,
                intercept=intercept,
                window_center=window_center,
            )
            ds.save_as(tmp / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
        _publish_series(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
