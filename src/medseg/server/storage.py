"""Studies on disk: checking an upload before anything is queued, storing it whole or not at all, reading it
back for a job, and deleting it.

An upload is received into its own staging folder under ``server/tmp`` (:mod:`medseg.server.upload`),
then checked here by reading it completely once, with medseg's own readers, so a file that cannot be
segmented is refused at once with the file and the problem named (and shown on the page), instead of
failing later in the queue. Only when every check has passed is the staging folder renamed into
``server/studies/<id>`` (one atomic rename on one file system) and only then are the database rows
written; a failure at any point removes the staging folder. A crash between rename and insert leaves a
folder without a row, which :func:`cleanup` removes at the next start.

Status codes of a refusal: 415 for a file type that is not taken at all (by its name), 422 for a file of a
known type whose content cannot be used (corrupt, no image, wrong dimensions, unsupported pixel data,
unsafe or oversized zip, a model of the other dimensionality or modality), 400 for a malformed request.

Stacks of slices: a 2D model trained on slices of scans (:func:`medseg.server.registry.takes_stacks`, e.g.
the GI-tract models) also takes a volume (NIfTI, HDF5, DICOM) or a zip of slice PNG/TIFF images of one scan
(input format ``slices``, :mod:`medseg.server.stacks`); both are studies of kind ``3d`` segmented slice by
slice. A zip of slices gets the same zip check before extraction and the same header-first size checks.

Modality: a model that needs CT (its model.json says so, or it was trained on intensities clipped to a
fixed window: :func:`~medseg.server.registry.needed_modality`) refuses an input that records another
modality (DICOM Modality, or the modality a NIfTI/HDF5 written by medseg keeps) with 422 naming both,
at upload and at re-run: its numbers would be fed through a window meant for CT values and the
delineation would look plausible and be wrong. An input that records no modality is accepted, since most
NIfTI files do not, with a warning in the result (``summary.warnings``, shown on the page); so is an
input to a 3D model that records nothing, when the values do not look like Hounsfield units.

Zips are checked before anything is extracted with the one zip policy of medseg
(:func:`medseg.formats.zip_safety.check_zip`: member count, total declared size, compression ratio, absolute or
``..`` member names) and then read by the volume reader, whose ``extract_zip`` copies at most the declared
bytes. PNG/TIFF, NIfTI and HDF5 images are checked for their voxel count from the header before their data
are decompressed (DICOM by its reader, on the headers). HDF5 files are read once in a child process with a
time limit first (:func:`_probe_hdf5`): libhdf5 can loop forever on some damaged files.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.data.folder import read_image, read_mask
from medseg.errors import DataValidationError
from medseg.formats.atomic import label_uint8
from medseg.formats.dicom import read_dicom_series
from medseg.formats.limits import check_voxels
from medseg.formats.volume import Volume
from medseg.formats.volume_files import header_shape, read_volume, write_label_like
from medseg.formats.zip_safety import ZipPolicy, check_zip
from medseg.server import auth, stacks
from medseg.server.db import Database, now_iso
from medseg.server.registry import ModelEntry
from medseg.server.settings import ServerSettings
from medseg.server.slices import display_window, looks_like_hu
from medseg.server.upload import Received, ReceivedFile, UploadRefused

IMAGE_2D = {".png": "png", ".tif": "tiff", ".tiff": "tiff"}
REFERENCE_2D = "reference.png"  # the reference as label values, whatever coding it was uploaded in
REFERENCE_3D = "reference.nii.gz"
ACCEPTED = (
    "PNG/TIFF images, NIfTI (.nii, .nii.gz), HDF5 (.h5, .hdf5), a DICOM series (a .zip or the .dcm files), or "
    "a .zip of the PNG/TIFF slices of one scan"
)


# ------------------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class StudyPaths:
    """``studies/<id>/``: input/ (as uploaded), reference/ (as label values), slices/image and
    slices/reference (shared by all results), results/<result id>/ (labels, exports, slices/)."""

    root: Path
    input: Path
    reference: Path
    image_slices: Path
    reference_slices: Path

    def result(self, result_id: str) -> Path:
        return self.root / "results" / result_id


def study_paths(settings: ServerSettings, study_id: str) -> StudyPaths:
    root = settings.studies_dir / study_id
    slices = root / "slices"
    return StudyPaths(root, root / "input", root / "reference", slices / "image", slices / "reference")


def new_id() -> str:
    """Random, so ids say nothing about how many studies exist or whose they are."""
    return secrets.token_hex(8)


# ------------------------------------------------------------------------------------------------ reading


def input_format_of(name: str, path: Path) -> str | None:
    """png | tiff | nifti | hdf5 | zip | dicom, by the name (and the DICOM preamble), or None."""
    lower = name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        return "nifti"
    if lower.endswith((".h5", ".hdf5")):
        return "hdf5"
    suffix = Path(lower).suffix
    if suffix in IMAGE_2D:
        return IMAGE_2D[suffix]
    if suffix == ".zip":
        return "zip"
    if suffix in (".dcm", ".dicom", "") or _has_dicom_preamble(path):
        return "dicom"
    return None


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_input(input_dir: Path, input_format: str, files: list[str], settings: ServerSettings) -> np.ndarray | Volume:
    """A stored input as medseg reads it: a 2D array as stored (PNG/TIFF) or a Volume (a zip of slices: the
    stack, :func:`medseg.server.stacks.read_slice_zip`). The readers check this server's voxel budget on the
    headers, before decoding, and its zip policy."""
    paths = [input_dir / f for f in files]
    budget = {"max_voxels": settings.max_voxels}
    if input_format in ("png", "tiff"):
        return read_image(paths[0], **budget)
    if input_format == stacks.FORMAT:
        return stacks.read_slice_zip(paths[0], settings.tmp_dir, policy=zip_policy(settings), **budget)
    if input_format in ("nifti", "hdf5"):
        return read_volume(paths[0], **budget)
    if len(paths) == 1 and input_format_of(files[0], paths[0]) == "zip":
        return read_dicom_series(paths[0], zip_policy=zip_policy(settings), **budget)
    return read_dicom_series(paths, **budget)


def read_reference(paths: StudyPaths) -> np.ndarray:
    """The stored reference as (D, H, W) uint8 label values (2D: D = 1)."""
    png = paths.reference / REFERENCE_2D
    if png.is_file():
        return read_image(png).astype(np.uint8)[None]
    return read_volume(paths.reference / REFERENCE_3D).array.astype(np.uint8)


def zip_policy(settings: ServerSettings) -> ZipPolicy:
    """The zip policy of this server: the volume reader's :class:`~medseg.formats.zip_safety.ZipPolicy` with the
    limits of ``settings`` (pass it to ``read_dicom_series(zip_policy=...)`` too, so both apply the same)."""
    return ZipPolicy(
        max_bytes=settings.max_unzipped_bytes, max_ratio=settings.max_zip_ratio, max_members=settings.max_zip_members
    )


def check_upload_zip(path: Path, shown: str, settings: ServerSettings) -> None:
    """Refuse unsafe or oversized archives before a byte is extracted, with the same check the volume reader
    applies to every zip (:func:`medseg.formats.zip_safety.check_zip`; the reader re-checks while copying)."""
    try:
        check_zip(path, zip_policy(settings))
    except DataValidationError as exc:
        raise UploadRefused(422, exc.problem, shown) from exc


def _probe_hdf5(path: Path, shown: str, settings: ServerSettings) -> None:
    """Read an uploaded HDF5 file once in a child process with a time limit before this process touches it.

    libhdf5 can loop forever on some damaged files (seen: a corrupt global heap under a variable-length
    string attribute makes reading that attribute spin, libhdf5 2.0 / h5py 3.16) without raising; in the
    server's process that would hang the request and then the worker for every user. The child is killed
    after ``settings.hdf5_probe_seconds``. Its other failures are left to the read that follows here, which
    names the problem (the same code on the same bytes: it fails the same way, without hanging)."""
    code = (
        "import sys; from medseg.formats.volume_files import read_volume; "
        "read_volume(sys.argv[1], max_voxels=int(sys.argv[2]))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        subprocess.run(
            [sys.executable, "-c", code, str(path), str(settings.max_voxels)],
            capture_output=True,
            timeout=settings.hdf5_probe_seconds,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UploadRefused(
            422,
            f"reading the HDF5 file did not finish within {settings.hdf5_probe_seconds:g} s: "
            "its metadata are damaged so that the HDF5 library loops",
            shown,
        ) from None


def check_header_size(path: Path, fmt: str, shown: str, settings: ServerSettings) -> None:
    """The voxel count a PNG/TIFF, NIfTI or HDF5 header declares (:func:`medseg.formats.volume_files.header_shape`,
    the shape the readers check themselves) against this server's ``max_voxels``, before any data are
    decompressed. DICOM series are checked by their reader, on the headers (give it ``max_voxels``).
    Unreadable headers pass here and are named by the full read that follows."""
    if fmt not in ("png", "tiff", "nifti", "hdf5"):
        return
    try:
        shape = header_shape(path, fmt)
    except DataValidationError:
        return
    try:
        check_voxels(path, shape, "the image", settings.max_voxels)
    except DataValidationError as exc:
        raise UploadRefused(422, exc.problem, shown) from exc


# ------------------------------------------------------------------------------------------------ storing


class _Staged:
    """Translates errors raised while reading staged files into refusals that name the client's file."""

    def __init__(self, staging: Path, received: Received):
        self.staging = staging
        self.names = {f.path: f.filename for f in received.files}
        inputs = received.of("files")
        if inputs:  # the readers name the folder for an error of the series as a whole
            self.names[staging / "input"] = (
                inputs[0].filename if len(inputs) == 1 else f"DICOM series ({len(inputs)} files)"
            )

    def refusal(self, exc: Exception, default: str | None) -> UploadRefused:
        if isinstance(exc, UploadRefused):
            return exc
        if isinstance(exc, DataValidationError):
            path, problem = exc.path, exc.problem
            name, sep, rest = problem.partition(": ")
            if sep and path is not None and path / name in self.names:  # the series reader names the slice
                path, problem = path / name, rest
            shown = self.names.get(path, path.name if path is not None else default)
        else:
            shown, problem = default, f"cannot be read ({type(exc).__name__}: {exc})"
        for folder in (self.staging / "input", self.staging / "reference-upload", self.staging):
            problem = problem.replace(f"{folder}/", "").replace(str(folder), "")
        return UploadRefused(422, problem, shown)


def _input_format(inputs: list[ReceivedFile]) -> str:
    formats = [input_format_of(f.filename, f.path) for f in inputs]
    if len(inputs) == 1:
        if formats[0] is None:
            raise UploadRefused(415, f"unsupported file type; give {ACCEPTED}", inputs[0].filename)
        if formats[0] == "zip":
            return stacks.FORMAT if stacks.zip_holds_slices(inputs[0].path) else "dicom"
        return formats[0]
    for f, fmt in zip(inputs, formats, strict=True):
        if fmt != "dicom":
            raise UploadRefused(
                415 if fmt is None else 400,
                "several files are read as one DICOM series, and this is not a DICOM file; upload "
                "one image or volume per study",
                f.filename,
            )
    return "dicom"


def _content_hash(inputs: list[ReceivedFile]) -> str:
    """sha256 of the uploaded bytes; for several files, of their sorted "sha256  name" lines (sha256sum's
    format), so the same series uploaded in another order has the same hash."""
    if len(inputs) == 1:
        return inputs[0].sha256
    lines = sorted(f"{f.sha256}  {f.filename}\n" for f in inputs)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _store_reference(
    ref: ReceivedFile, kind: str, image: np.ndarray | Volume, model: ModelEntry, staging: Path, settings: ServerSettings
) -> None:
    """Check the reference label against the image's grid and store it as label values (PNG / NIfTI on the
    image's geometry), so every later result compares against the same values."""
    fmt = input_format_of(ref.filename, ref.path)
    out = staging / "reference"
    out.mkdir(parents=True, exist_ok=True)
    if kind == "2d":
        if fmt not in ("png", "tiff"):
            raise UploadRefused(415, "the reference of a 2D image must be a PNG/TIFF label image", ref.filename)
        # a multi-label model's reference is read in its result's bit coding (medseg.server.channels)
        labels = read_mask(
            ref.path, min(256, 2 ** (len(model.labels) - 1)) if model.multilabel else max(2, len(model.labels))
        )
        if labels.shape != image.shape:
            raise UploadRefused(
                422,
                f"the reference is {labels.shape[1]} × {labels.shape[0]} pixels (width × "
                f"height), the image {image.shape[1]} × {image.shape[0]}: not the same grid",
                ref.filename,
            )
        from PIL import Image

        Image.fromarray(labels).save(out / REFERENCE_2D)
        return
    if fmt not in ("nifti", "hdf5"):
        raise UploadRefused(
            415, "the reference of a volume must be a NIfTI (.nii, .nii.gz) or HDF5 (.h5) label", ref.filename
        )
    key = None
    if fmt == "hdf5":
        from medseg.formats.hdf5 import open_hdf5

        _probe_hdf5(ref.path, ref.filename, settings)
        with open_hdf5(ref.path) as f:
            key = "label" if "label" in f else None
    ref_volume = read_volume(ref.path, key=key, max_voxels=settings.max_voxels)
    if ref_volume.shape != image.shape:
        raise UploadRefused(
            422, f"the reference has shape {ref_volume.shape}, the image {image.shape}: not the same grid", ref.filename
        )
    if not np.allclose(ref_volume.spacing, image.spacing, rtol=1e-3, atol=1e-4):
        raise UploadRefused(
            422,
            f"the reference's voxel spacing {tuple(round(s, 4) for s in ref_volume.spacing)} mm "
            f"differs from the image's {tuple(round(s, 4) for s in image.spacing)} mm",
            ref.filename,
        )
    write_label_like(label_uint8(ref_volume.array, ref.path), image, out / REFERENCE_3D)


def model_refusal(model: ModelEntry, kind: str, input_format: str) -> str | None:
    """Why ``model`` cannot segment a study of this kind and input format (None: it can). A 3D model takes
    volumes (not images, not a zip of slice images, which has no volume geometry); a 2D model takes images,
    and volumes and zips of slices only when it segments stacks of slices (:func:`takes_stacks`)."""
    if model.spatial_dims == 3:
        if kind == "2d":
            return f"a 2D image cannot be segmented by model {model.id!r}, which segments 3D volumes"
        if input_format == stacks.FORMAT:
            return (
                f"a zip of 2D slice images cannot be segmented by model {model.id!r}, which segments 3D volumes "
                "(NIfTI, HDF5, DICOM)"
            )
        return None
    if kind == "3d" and not model.takes_stacks:
        what = "a zip of slice images" if input_format == stacks.FORMAT else "a volume"
        return (
            f"{what} cannot be segmented by model {model.id!r}, which segments 2D images one at a time (it was "
            "not trained on the slices of scans: no 2.5D input, not multi-label)"
        )
    return None


def check_modality(model: ModelEntry, modality: str | None, shown: str) -> None:
    """422 when the input records a modality other than the one ``model`` needs (module docstring)."""
    needed, why = model.modality
    if needed and modality and modality.upper() != needed:
        raise UploadRefused(
            422,
            f"the input's modality is {modality}, but model {model.id!r} needs {needed} ({why}); choose another model",
            shown,
        )


def modality_warnings(model: ModelEntry, image: np.ndarray | Volume) -> list[str]:
    """What the result should say about a volume whose modality is not known to suit ``model``."""
    if not isinstance(image, Volume) or model.spatial_dims != 3:
        return []
    needed, why = model.modality
    array = image.array
    not_hu = (
        ""
        if looks_like_hu(array, image.modality)
        else f"its values ({float(array.min()):g} to {float(array.max()):g}) do not look like CT Hounsfield units"
    )
    if needed and not image.modality:
        return [
            f"the input records no modality, and model {model.id!r} needs {needed} ({why}): check that it is "
            f"{needed}" + (f"; {not_hu}" if needed == "CT" and not_hu else "")
        ]
    if not needed and not_hu:
        return [
            f"model {model.id!r} does not record which modality it was trained on, and "
            + (f"the input is {image.modality}, not CT" if image.modality else not_hu)
            + ": check the result"
        ]
    return []


def store_upload(
    db: Database, settings: ServerSettings, user_id: int, model: ModelEntry, received: Received, staging: Path
) -> str:
    """Check the staged upload, move it into place, insert the study and its queued result; the study id.

    Raises :class:`UploadRefused`; the caller removes ``staging`` in every case.
    """
    inputs, refs = received.of("files"), received.of("reference")
    if not inputs:
        raise UploadRefused(400, "no file uploaded: send the image or volume in the form field 'files'")
    if len(refs) > 1:
        raise UploadRefused(400, "send at most one reference label file")
    fmt = _input_format(inputs)
    kind = "2d" if fmt in ("png", "tiff") else "3d"
    shown = inputs[0].filename if len(inputs) == 1 else f"DICOM series ({len(inputs)} files)"
    refusal = model_refusal(model, kind, fmt)
    if refusal:
        raise UploadRefused(422, f"{refusal}; choose another model", shown)
    if fmt == stacks.FORMAT and refs:
        raise UploadRefused(
            422,
            "a reference label cannot be compared with a zip of slices; upload the scan as a "
            "NIfTI volume with a NIfTI reference",
            refs[0].filename,
        )
    staged = _Staged(staging, received)
    try:
        if (
            fmt in ("dicom", stacks.FORMAT)
            and len(inputs) == 1
            and input_format_of(inputs[0].filename, inputs[0].path) == "zip"
        ):
            check_upload_zip(inputs[0].path, shown, settings)
        if len(inputs) == 1:
            check_header_size(inputs[0].path, fmt, shown, settings)
        if fmt == "hdf5":
            _probe_hdf5(inputs[0].path, shown, settings)
        files = [f.path.name for f in inputs]
        image = read_input(staging / "input", fmt, files, settings)
        # Size (against settings.max_voxels, from the header), emptiness and NaN/inf are refused by the readers
        # themselves (medseg.formats.limits, medseg.formats.volume.validate_volume / check_values).
        array = image.array if isinstance(image, Volume) else image
    except Exception as exc:
        raise staged.refusal(exc, shown) from exc
    modality = image.modality if isinstance(image, Volume) else None
    check_modality(model, modality, shown)
    if refs:
        try:
            _store_reference(refs[0], kind, image, model, staging, settings)
        except Exception as exc:
            raise staged.refusal(exc, refs[0].filename) from exc
    shutil.rmtree(staging / "reference-upload", ignore_errors=True)

    if len(inputs) > 1:  # loose DICOM files: the series' own description says more than a file name
        described = image.meta.get("SeriesDescription") or inputs[0].filename
        shown = f"{described} ({len(inputs)} DICOM files)"
    study_id = new_id()
    sha = _content_hash(inputs)
    study = {
        "id": study_id,
        "user_id": user_id,
        "name": shown,
        "kind": kind,
        "input_format": fmt,
        "input_files": files,
        "input_sha256": sha,
        "input_bytes": sum(f.size for f in inputs),
        "reference_file": refs[0].filename if refs else None,
        "shape": list(image.shape) if isinstance(image, Volume) else [1, *array.shape],
        "spacing": (stacks.study_spacing(image) if fmt == stacks.FORMAT else list(image.spacing))
        if isinstance(image, Volume)
        else None,
        "window": display_window(array, modality),
        "modality": modality,
        "created_at": now_iso(),
    }
    target = study_paths(settings, study_id).root
    staging.rename(target)
    try:
        db.add_study(study, new_result(study_id, sha, model))
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return study_id


def new_result(study_id: str, input_sha256: str, model: ModelEntry) -> dict:
    """A queued result (job) row for ``model`` on a study."""
    return {
        "id": new_id(),
        "study_id": study_id,
        "model_id": model.id,
        "model_name": model.name,
        "model_version": model.version,
        "model_demo": int(model.demo),
        "input_sha256": input_sha256,
        "status": "queued",
        "progress": 0.0,
        "attempts": 0,
        "created_at": now_iso(),
    }


# ------------------------------------------------------------------------------------------------ removing


def discard(settings: ServerSettings, path: Path) -> None:
    """Remove a folder: renamed into tmp first (atomic), so no reader sees it half deleted."""
    if not path.exists():
        return
    trash = settings.tmp_dir / f"deleted-{new_id()}"
    try:
        path.rename(trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def remove_user(db: Database, settings: ServerSettings, username: str) -> tuple[auth.User, int]:
    """Remove a user: their rows first (:func:`auth.remove_user`: sessions, studies, results; a job then
    finds nothing to publish into), then their study folders. Returns the user and how many studies went."""
    user, study_ids = auth.remove_user(db, username)
    for study_id in study_ids:
        discard(settings, study_paths(settings, study_id).root)
    return user, len(study_ids)


def cleanup(settings: ServerSettings, db: Database) -> dict:
    """At start-up: empty tmp (uploads and jobs a killed server left), remove study and result folders that
    have no database row. Returns what was removed, for the log."""
    removed = {"tmp": 0, "studies": 0, "results": 0}
    for p in settings.tmp_dir.iterdir():
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed["tmp"] += 1
    known = db.study_ids()
    for p in settings.studies_dir.iterdir():
        if p.name not in known:
            shutil.rmtree(p, ignore_errors=True)
            removed["studies"] += 1
            continue
        results = p / "results"
        if results.is_dir():
            ids = {r["id"] for r in db.results_of(p.name)}
            for r in results.iterdir():
                if r.name not in ids:
                    shutil.rmtree(r, ignore_errors=True)
                    removed["results"] += 1
    return removed


def study_json_fields(study: dict) -> dict:
    """The study's columns as the API shows them (no user id, no file system paths)."""
    keys = (
        "id",
        "name",
        "kind",
        "input_format",
        "input_files",
        "input_sha256",
        "input_bytes",
        "shape",
        "spacing",
        "modality",
        "window",
        "created_at",
    )
    out = {k: study[k] for k in keys}
    out["reference_file"] = study["reference_file"]
    out["has_reference"] = study["reference_file"] is not None
    return out
