"""A DICOM series put together from its parsed slices (:mod:`medseg.formats.dicom_headers`): the one series
asked for, the per-file checks (grey, single frame, one size, decodable, placed in the patient), the
geometry with its gaps (:func:`series_geometry`) and the pixels in HU (:func:`series_pixels`).

Slices are ordered by ImagePositionPatient projected on the slice normal; a gap of whole missing slices is
refused naming the files on each side, or, with ``allow_gaps``, filled with the series' minimum value. See
:mod:`medseg.formats.dicom` for the rules, and for :func:`~medseg.formats.dicom.read_dicom_series`,
which runs these steps.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.dicom_headers import DicomSlice, SeriesOptions, quiet_pydicom
from medseg.formats.limits import exception_text

__all__ = ["SeriesGeometry", "check_slices", "one_series", "series_geometry", "series_pixels"]


def one_series(slices: list[DicomSlice], where: Path, options: SeriesOptions) -> list[DicomSlice]:
    """The slices of the one series asked for (``series_uid``, or the only one), of the required modality."""
    groups: dict[str, list[DicomSlice]] = defaultdict(list)
    for s in slices:
        groups[s.series_uid].append(s)
    if options.series_uid is not None:
        if options.series_uid not in groups:
            raise DataValidationError(
                where, f"no series with SeriesInstanceUID {options.series_uid}; found: " + ", ".join(sorted(groups))
            )
        slices = groups[options.series_uid]
    elif len(groups) > 1:
        listing = "; ".join(
            f"{uid or '(no UID)'}: {len(g)} files, Modality {g[0].modality or '?'}"
            + (f", '{g[0].description}'" if g[0].description else "")
            + f", e.g. {g[0].name}"
            for uid, g in sorted(groups.items(), key=lambda kv: -len(kv[1]))
        )
        raise DataValidationError(
            where,
            f"mixed series: {len(groups)} different SeriesInstanceUIDs in one input ({listing}); choose one "
            "with series_uid=... or put each series in its own folder",
        )
    if options.require_modality is not None:
        for s in slices:
            if s.modality.upper() != options.require_modality.upper():
                raise DataValidationError(
                    where,
                    f"{s.name}: Modality is {s.modality or '(missing)'}, a "
                    f"{options.require_modality} series is required",
                )
    return slices


def check_slices(slices: list[DicomSlice], where: Path) -> None:
    """Per-file checks on the headers: grey single-frame images of one size that can be decoded here, each
    with the geometry tags that place it in the patient."""
    for s in slices:
        if s.samples != 1:
            raise DataValidationError(
                where, f"{s.name}: {s.samples} samples per pixel (colour); a grey CT/MR image has 1"
            )
        if s.frames > 1:
            raise DataValidationError(
                where,
                f"{s.name}: multi-frame (enhanced) DICOM with {s.frames} frames is not "
                "supported; export the series as one file per slice",
            )
    _check_decoders(slices, where)
    sizes = Counter((s.rows, s.cols) for s in slices)
    if len(sizes) > 1:
        desc = ", ".join(
            f"{n} file(s) of {r}×{c} (e.g. {next(s.name for s in slices if (s.rows, s.cols) == (r, c))})"
            for (r, c), n in sizes.most_common()
        )
        raise DataValidationError(where, f"mixed slice sizes (Rows×Columns) in one series: {desc}")
    for key, attr in (
        ("ImageOrientationPatient", "orientation"),
        ("ImagePositionPatient", "position"),
        ("PixelSpacing", "pixel_spacing"),
    ):
        for s in slices:
            if getattr(s, attr) is None and (key == "PixelSpacing" or len(slices) > 1):
                raise DataValidationError(where, f"{s.name}: no {key}; cannot place the slice in the patient")


@dataclass
class SeriesGeometry:
    slices: list[DicomSlice]  # in position order along the slice normal
    index: np.ndarray  # where each of them goes in the volume
    z_spacing: float
    origin: np.ndarray
    direction: np.ndarray
    gaps: list[dict]


def series_geometry(slices: list[DicomSlice], where: Path, options: SeriesOptions) -> SeriesGeometry:
    """Order ``slices`` by their position along the slice normal and place them on a uniform grid.

    A gap of whole missing slices is refused naming the files on each side, the gap in mm and the slices
    missing — or, with ``options.allow_gaps``, left for :func:`series_pixels` to fill (``index`` skips them).
    """
    first = slices[0]
    iop = first.orientation if first.orientation is not None else np.array([1.0, 0, 0, 0, 1, 0])
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if min(np.linalg.norm(row_dir), np.linalg.norm(col_dir), np.linalg.norm(normal)) < 1e-6:
        raise DataValidationError(
            where, f"{first.name}: ImageOrientationPatient {iop.tolist()} does not give two independent axes"
        )
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    for s in slices:
        other = s.orientation if s.orientation is not None else iop
        if np.abs(other - iop).max() > 1e-3:
            raise DataValidationError(
                where,
                f"{s.name}: ImageOrientationPatient {other.tolist()} differs from "
                f"{iop.tolist()} ({first.name}); the files are not one volume",
            )
    positions = np.array([s.position if s.position is not None else np.zeros(3) for s in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]
    for s in slices:
        if np.abs(s.pixel_spacing - first.pixel_spacing).max() > 1e-4:
            raise DataValidationError(
                where,
                f"{s.name}: PixelSpacing {s.pixel_spacing.tolist()} differs from "
                f"{first.pixel_spacing.tolist()} ({first.name})",
            )
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
                where,
                f"two slices at the same position ({along[i]:.3f} mm along the normal): {slices[i].name} and "
                f"{slices[i + 1].name} (several acquisitions or echoes in one series?)",
            )
        step = float(np.median(diffs))
        tol = max(options.spacing_rtol * step, 1e-3)
        bad = np.flatnonzero(np.abs(diffs - step) > tol)
        missing = np.zeros(n, int)
        for i in bad.tolist():
            k = int(round(diffs[i] / step)) - 1
            whole = k >= 1 and abs(diffs[i] - (k + 1) * step) <= tol
            if not (whole and options.allow_gaps):
                what = (
                    f"{k} slice(s) missing; pass allow_gaps=True (medseg data convert / predict: --allow-gaps) "
                    "to fill them with the "
                    "series' minimum value"
                    if whole
                    else "irregular slice spacing (not a whole number of missing slices)"
                )
                raise DataValidationError(
                    where,
                    f"slice spacing is not uniform: gap of {diffs[i]:.3f} mm between slice {i} "
                    f"({slices[i].name}, {along[i]:.3f} mm along the normal) and slice {i + 1} "
                    f"({slices[i + 1].name}, {along[i + 1]:.3f} mm) where the series' spacing is {step:.3f} mm: "
                    f"{what} ({len(bad)} irregular gap(s) in {n} slices)",
                )
            missing[i + 1] = k
            gaps.append(
                {
                    "after": slices[i].name,
                    "before": slices[i + 1].name,
                    "after_mm": round(float(along[i]), 4),
                    "before_mm": round(float(along[i + 1]), 4),
                    "gap_mm": round(float(diffs[i]), 4),
                    "slices_filled": k,
                }
            )
        index = index + np.cumsum(missing)
        z_spacing = float((along[-1] - along[0]) / index[-1])
        lateral = positions - positions[0] - np.outer(along - along[0], normal)
        if np.linalg.norm(lateral, axis=1).max() > max(0.05 * z_spacing, 0.01):
            warnings.warn(
                f"{where}: slice positions do not advance along the slice normal (gantry tilt?); "
                "the volume's z axis is the normal, as in ITK",
                stacklevel=4,
            )
    return SeriesGeometry(slices, index, z_spacing, positions[0], np.stack([row_dir, col_dir, normal], axis=1), gaps)


def series_pixels(slices: list[DicomSlice], index: np.ndarray, n_total: int, where: Path) -> np.ndarray:
    """The slices' stored values mapped with RescaleSlope/Intercept, slice k at ``index[k]``; slices of the
    grid that no file fills (gaps) get the minimum value of the series. int16 when exact, else float32."""
    rows, cols = slices[0].rows, slices[0].cols
    slopes = np.array([s.slope for s in slices])
    intercepts = np.array([s.intercept for s in slices])
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    out = np.empty((n_total, rows, cols), np.int32 if integral else np.float32)
    for k, s in zip(index.tolist(), slices, strict=True):
        try:
            with quiet_pydicom():
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


def _check_decoders(slices: list[DicomSlice], where: Path) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    seen: dict[str, str | None] = {}
    for s in slices:
        ts = s.transfer_syntax
        if ts not in seen:
            with quiet_pydicom():
                uid = UID(ts)
                known = uid.is_transfer_syntax
            problem = None
            if not known:
                problem = f"unknown transfer syntax {ts!r}: the pixel data cannot be decoded"
            elif uid.is_compressed:
                try:
                    decoder = get_decoder(uid)
                    if not decoder.is_available:
                        problem = (
                            f"no decoder for its compressed transfer syntax {uid.name} ({ts}) is installed; "
                            f"install one of: {'; '.join(decoder.missing_dependencies)}"
                        )
                except (NotImplementedError, ValueError):
                    problem = f"pydicom has no decoder for the transfer syntax {uid.name} ({ts})"
            seen[ts] = problem
        if seen[ts]:
            raise DataValidationError(where, f"{s.name}: {seen[ts]}")
