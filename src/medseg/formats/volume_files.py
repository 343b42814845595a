"""Volumes in and out whatever their format (``medseg data convert``): :func:`read_volume`,
:func:`write_volume`, :func:`write_label_like`, :func:`volume_format`, :func:`header_shape`, and the
parallel conversion :func:`convert_series` / :func:`run_convert`.

Every reader returns a :class:`~medseg.formats.volume.Volume` — array (D, H, W) = (z, y, x), spacing (z, y, x)
mm, origin (x, y, z) LPS mm, direction columns = x, y, z axes in LPS — and every writer takes one, so a
volume keeps its place in the patient whatever file it goes through (DICOM → NIfTI → Volume gives the same
grid, to DS rounding, and the same voxel values).

The formats live in their own modules, to which this one dispatches by the file's name:

- DICOM series (a folder, a ``.zip``, ``.dcm`` files): :mod:`medseg.formats.dicom`, zips through
  :mod:`medseg.formats.zip_safety` (the one zip policy, shared with the server);
- NIfTI (``.nii``, ``.nii.gz``): :mod:`medseg.formats.nifti`;
- HDF5 (``.h5``, ``.hdf5``): :mod:`medseg.formats.hdf5`.

Their readers and writers are importable from here too. Every reader returns through
:func:`medseg.formats.volume.validate_volume` (finite real values, positive finite spacing, usable direction).
:func:`header_shape` gives the shape a file's header declares, for checks before reading (the server's).
All writers write to a temporary name beside the destination and rename at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.atomic import label_uint8
from medseg.formats.dicom import find_dicom_series, read_dicom_series, write_dicom_series
from medseg.formats.hdf5 import HDF5_SUFFIXES, hdf5_shape, read_hdf5_volume, write_hdf5_volume
from medseg.formats.nifti import NIFTI_SUFFIXES, nifti_shape, read_nifti, write_nifti
from medseg.formats.volume import Volume

__all__ = [
    "HDF5_SUFFIXES",
    "NIFTI_SUFFIXES",
    "VolumeFormat",
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
    "strip_suffix",
    "suffix_of",
    "volume_format",
    "write_dicom_series",
    "write_hdf5_volume",
    "write_label_like",
    "write_nifti",
    "write_volume",
]


# ------------------------------------------------------------------------------------------------ names


def suffix_of(path: Path) -> str:
    """The volume suffix of ``path``, lower case: ``.nii.gz``, ``.nii``, ``.h5``, ``.hdf5``, ``.zip``, else its
    last suffix (``""`` for none)."""
    name = path.name.lower()
    for s in NIFTI_SUFFIXES + HDF5_SUFFIXES + (".zip",):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def strip_suffix(path: Path) -> str:
    """The name of ``path`` without its :func:`suffix_of` (``case.nii.gz`` → ``case``)."""
    name = path.name
    suffix = suffix_of(path)
    if suffix and name.lower().endswith(suffix):
        return name[: -len(suffix)]
    return name


# ------------------------------------------------------------------------------------------------ dispatch

VolumeFormat = Literal["dicom", "nifti", "hdf5"]


def volume_format(path: str | Path) -> VolumeFormat:
    """ "nifti" (.nii, .nii.gz), "hdf5" (.h5, .hdf5) or "dicom" (a folder, a .zip, a .dcm file)."""
    path = Path(path)
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if path.is_dir() or suffix in (".zip", ".dcm") or not suffix:
        return "dicom"
    raise DataValidationError(path, "unknown volume format; give .nii/.nii.gz, .h5/.hdf5, a DICOM folder or a .zip")


def read_volume(path: str | Path, *, key: str | None = None, max_voxels: int | None = None, **dicom_options) -> Volume:
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
        from medseg.formats.images import image_shape

        return image_shape(path)
    if fmt == "nifti":
        return nifti_shape(path)
    if fmt == "hdf5":
        return hdf5_shape(path)
    raise ValueError(f"no header shape for format {fmt!r}; use png, tiff, nifti or hdf5")


def write_volume(volume: Volume, path: str | Path, *, label: bool = False, **options) -> Path:
    """Write by the name: .nii/.nii.gz → NIfTI, .h5/.hdf5 → HDF5, anything else → a DICOM series folder."""
    path = Path(path)
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return write_nifti(volume, path, label=label)
    if suffix in HDF5_SUFFIXES:
        if label:
            return write_hdf5_volume(volume.with_array(label_uint8(volume.array, path)), path, key="label")
        return write_hdf5_volume(volume, path, **options)
    if suffix == ".zip":
        raise DataValidationError(path, "writing a zip is not supported; give a folder for a DICOM series")
    if label:
        raise DataValidationError(
            path,
            "a label map is written as NIfTI or HDF5 here (DICOM-SEG is not supported yet); use a .nii.gz or .h5 name",
        )
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
        raise DataValidationError(
            path, f"label shape {label_array.shape} differs from the reference volume's {reference.shape}"
        )
    suffix = suffix_of(path)
    if suffix not in NIFTI_SUFFIXES + HDF5_SUFFIXES:
        fmt = reference.meta.get("format", "dicom")
        path = path.with_name(path.name + (".h5" if fmt == "hdf5" else ".nii.gz"))
    label = reference.with_array(label_uint8(label_array, path), modality=None, meta={"kind": "label"})
    return write_volume(label, path, label=True)


# ------------------------------------------------------------------------------------------------ convert


def _output_path(inp: Path, out_dir: Path, fmt: str, taken: set[str]) -> Path:
    stem = strip_suffix(inp) or "volume"
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
        return {
            "input": inp,
            "error": str(exc),
            "_error": ("DataValidationError", str(exc.path) if exc.path else None, exc.problem),
        }
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
    return {
        "input": inp,
        "output": out,
        "seconds": round(t2 - t0, 4),
        "read_seconds": round(t1 - t0, 4),
        "write_seconds": round(t2 - t1, 4),
        "shape": list(vol.shape),
        "spacing": list(vol.spacing),
        "dtype": str(vol.array.dtype),
        "skipped_files": vol.meta.get("skipped_files", 0),
        "gaps": vol.meta.get("gaps", []),
        "error": None,
    }


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
            result = {
                "input": jobs[i][0],
                "output": None,
                "seconds": None,
                "shape": None,
                "spacing": None,
                "error": result["error"],
            }
        results[i] = result
        bar.update()

    bar = Progress(total=len(jobs), desc="convert", unit="series", disable=not progress)
    try:
        if workers <= 1:
            for i, (inp, out) in enumerate(jobs):
                finish(i, _convert_job(inp, out, fmt, read_options))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {
                    pool.submit(_convert_job, inp, out, fmt, read_options): i for i, (inp, out) in enumerate(jobs)
                }
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
    results = convert_series(
        expanded, out_dir, fmt, workers, require_modality=require_modality, allow_gaps=allow_gaps, progress=progress
    )
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["error"] is None]
    return {
        "out_dir": str(out_dir),
        "format": fmt,
        "converted": len(ok),
        "failed": len(results) - len(ok),
        "wall_seconds": round(wall, 3),
        "seconds_per_series": round(float(np.mean([r["seconds"] for r in ok])), 4) if ok else None,
        "results": results,
    }
