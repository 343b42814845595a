"""What a finished result offers for download, written once when its job finishes.

* the label map in the input's own format and geometry: NIfTI with the input's affine (every volume input;
  DICOM input too, for tools that do not read DICOM-SEG), HDF5 for HDF5 input, PNG (label values) for 2D;
* DICOM-SEG for DICOM input (highdicom): one binary segment per foreground class, referencing the uploaded
  series' instances frame by frame, algorithm type AUTOMATIC, the algorithm identified as medseg with the
  model version, so the segmentation can be traced to the exact weights in a PACS or a planning system;
* a summary (JSON and CSV) of the per-class volumes in ml (voxel count × product of the spacing / 1000; 2D:
  pixel counts, mm² only when the pixel spacing is known) and, with a reference, the Dice per class.

The thesis overwrote its one result file on every upload; these files live in the result's own folder,
so every earlier result stays downloadable.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

import medseg
from medseg.config_schema import scored_class_names
from medseg.data.volume import Volume
from medseg.data.dicom_headers import may_be_dicom
from medseg.data.safe_zip import extract_zip, is_zip
from medseg.data.volume_io import write_label_like
from medseg.errors import DataValidationError
from medseg.metrics.segmentation import binary_stats, scores_from_counts

DOWNLOADS = {  # format -> file name in the result folder
    "nifti": "label.nii.gz",
    "hdf5": "label.h5",
    "png": "label.png",
    "dicom-seg": "seg.dcm",
    "summary.json": "summary.json",
    "summary.csv": "summary.csv",
}
MEDIA_TYPES = {
    "nifti": "application/gzip", "hdf5": "application/x-hdf5", "png": "image/png", "dicom-seg": "application/dicom",
    "summary.json": "application/json", "summary.csv": "text/csv",
}


def formats_for(kind: str, input_format: str) -> list[str]:
    """The download formats a result of this study offers, the label in the input's own format first."""
    if kind == "2d":
        label = ["png"]
    elif input_format == "hdf5":
        label = ["hdf5", "nifti"]
    elif input_format == "dicom":
        label = ["nifti", "dicom-seg"]
    else:
        label = ["nifti"]
    return [*label, "summary.json", "summary.csv"]


def write_labels(labels: np.ndarray, folder: Path, *, kind: str, input_format: str, volume: Volume | None) -> None:
    """The label files of :func:`formats_for` (DICOM-SEG apart), each written atomically."""
    if kind == "2d":
        tmp = folder / ".label.png.tmp"
        Image.fromarray(np.asarray(labels[0], dtype=np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, folder / DOWNLOADS["png"])
        return
    for fmt in formats_for(kind, input_format):
        if fmt in ("nifti", "hdf5"):
            write_label_like(labels, volume, folder / DOWNLOADS[fmt])


# ------------------------------------------------------------------------------------------------ DICOM-SEG


def dicom_sources(input_dir: Path, files: list[str], work: Path, max_zip_bytes: int) -> list[Path]:
    """The uploaded series' files on disk: loose files as stored, a zip extracted into ``work`` with the
    volume reader's own zip-safe extraction (:func:`medseg.data.safe_zip.extract_zip`)."""
    paths = [input_dir / f for f in files]
    if len(paths) == 1 and is_zip(paths[0]):
        work.mkdir(parents=True, exist_ok=True)
        return [p for p, _ in extract_zip(paths[0], work, max_zip_bytes, keep=may_be_dicom)]
    return paths


def write_dicom_seg(labels: np.ndarray, volume: Volume, source_files: list[Path], label_names: list[str],
                    model_name: str, model_version: str, path: Path, *, values: list[int] | None = None) -> Path:
    """A DICOM Segmentation of ``labels`` (D, H, W) over the series ``volume`` was read from: one segment per
    label value of ``values`` (default every value but 0; the server passes :func:`scored_values`).

    The source instances are put in the volume's slice order (``meta["sop_instance_uids"]``), so frame k of
    every segment is slice k; empty frames are kept, so the object has D × (number of classes) frames.
    """
    import highdicom as hd
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    by_uid = {}
    for f in source_files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue  # a README or other non-DICOM member: the volume reader skipped it too
        by_uid[str(ds.get("SOPInstanceUID", ""))] = ds
    order = volume.meta.get("sop_instance_uids") or []
    missing = [u for u in order if u not in by_uid]
    if not order or missing:
        raise DataValidationError(None, f"cannot write DICOM-SEG: {len(missing)} of the series' instances are "
                                        "missing from the stored upload")
    sources = [by_uid[u] for u in order]
    values = list(range(1, len(label_names))) if values is None else list(values)
    mask = np.stack([labels == v for v in values], axis=-1).astype(np.uint8)  # (D, H, W, segments)
    algorithm = hd.AlgorithmIdentificationSequence(name="medseg", version=model_version[:64],
                                                   family=codes.cid7162.ArtificialIntelligence,
                                                   source=f"medseg {medseg.__version__}")
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k + 1, segment_label=label_names[v][:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=generate_uid(), tracking_id=label_names[v][:64])
        for k, v in enumerate(values)]
    with warnings.catch_warnings():
        # highdicom warns about the source's patient name (e.g. a one-part "ANONYMOUS"): not ours to change
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments, series_instance_uid=generate_uid(), series_number=900,
            sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medseg",
            manufacturer_model_name=model_name[:64], software_versions=medseg.__version__,
            device_serial_number=model_version[:64], content_label="MEDSEG",
            content_description=f"medseg automatic segmentation, model {model_version}"[:64],
            series_description=f"medseg {model_version}"[:64], omit_empty_frames=False)
    tmp = path.with_name(f".{path.name}.tmp")
    seg.save_as(tmp)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------ summary


def scored_values(task: dict, label_names: list[str]) -> list[int]:
    """The label values of a model's scored classes (every class but ``task.background``, as the metrics score
    them: :func:`medseg.config_schema.scored_class_names`), given the names of its label values."""
    return [label_names.index(name) for name in scored_class_names(task)]


def summarize(labels: np.ndarray, label_names: list[str], spacing: list[float] | None, kind: str,
              reference: np.ndarray | None = None, values: list[int] | None = None) -> dict:
    """Per scored class (label ``values``; default every value but 0): voxels and ml (3D) or pixels and mm² (2D,
    None without a spacing); with a reference: its voxel count and the Dice (both empty → 1, medseg's
    empty-mask convention)."""
    classes = []
    if kind == "3d":
        unit = float(np.prod(spacing)) / 1000.0  # ml per voxel
    else:
        unit = float(spacing[1] * spacing[2]) if spacing else None  # mm² per pixel
    for v in range(1, len(label_names)) if values is None else values:
        pred = labels == v
        n = int(np.count_nonzero(pred))
        row = {"value": v, "name": label_names[v]}
        if kind == "3d":
            row.update(voxels=n, volume_ml=round(n * unit, 6))
        else:
            row.update(pixels=n, area_mm2=None if unit is None else round(n * unit, 6))
        if reference is not None:
            stats = binary_stats(pred, reference == v)
            row.update(reference_count=stats["tp"] + stats["fn"],
                       dice=round(float(scores_from_counts(**stats)["dice"]), 6))
        classes.append(row)
    out = {"kind": kind, "shape": list(labels.shape), "spacing": spacing, "classes": classes}
    if kind == "3d":
        out["voxel_volume_ml"] = unit
    return out


def write_summary(summary: dict, folder: Path) -> None:
    """``summary.json`` (everything) and ``summary.csv`` (one row per class), atomically."""
    import json

    rows = summary["classes"]
    columns = list(rows[0]) if rows else ["value", "name"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    for name, text in (("summary.json", json.dumps(summary, indent=2) + "\n"), ("summary.csv", buf.getvalue())):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
