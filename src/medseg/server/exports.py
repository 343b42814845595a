"""What a finished result offers for download, written once when its job finishes.

* the label map in the input's own format and geometry: NIfTI with the input's affine (every volume input;
  DICOM input too, for tools that do not read DICOM-SEG), HDF5 for HDF5 input, PNG (label values) for 2D, a
  zip of label PNGs named like the uploaded slices (and a NIfTI) for a zip of slice images;
* DICOM-SEG for DICOM input (highdicom): one binary segment per foreground class, referencing the uploaded
  series' instances frame by frame, algorithm type AUTOMATIC, the algorithm identified as medseg with the
  model version, so the segmentation can be traced to the exact weights in a PACS or a planning system;
* a summary (JSON and CSV) of the per-class volumes in ml (voxel count × product of the spacing / 1000; 2D:
  pixel counts, mm² only when the pixel spacing is known) and, with a reference, the Dice per class;
* for a metaphase model's result on an image, the chromosome instances (``instances``: a zip of every
  chromosome's mask and cut-out, the instance label map, the figure and ``instances.json``;
  :mod:`medseg.server.metaphase`).

Multi-label results (structures that may overlap, :mod:`medseg.server.channels`): every label file holds the
bit-packed map (value = Σ 2**c of the structures present; ``summary.label_encoding`` says so), so nothing
of an overlap is lost in PNG, HDF5 or NIfTI. Why a value per combination in the NIfTI rather than one
volume per structure: 3D Slicer (and ITK-SNAP, nnU-Net tooling) loads a 3D label map directly as a
segmentation, each value a segment (an overlap shows as its own segment, e.g. 3 = structures 0 and 1),
while a 4D NIfTI opens as a time sequence of volumes, not as a segmentation. For volumes with two
structures or more there is also ``label.seg.nrrd``, 3D Slicer's own segmentation file: one layer per
structure (overlaps kept as such), each segment named and coloured as in the viewer — what Slicer reads
best. DICOM-SEG has one segment per structure; its segments may overlap. The summary counts each
structure on its own (a pixel in two structures counts for both) and the pixels in several.

The thesis overwrote its one result file on every upload; these files live in the result's own folder,
so every earlier result stays downloadable.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

import medseg
from medseg.config_schema import scored_class_names
from medseg.errors import DataValidationError
from medseg.formats.dicom_headers import may_be_dicom
from medseg.formats.volume import Volume
from medseg.formats.volume_files import write_label_like
from medseg.formats.zip_safety import extract_zip, is_zip
from medseg.metrics.segmentation import binary_stats, scores_from_counts
from medseg.palette import channel_colours
from medseg.server.channels import encoding, file_value, overlap_count, structure_mask

DOWNLOADS = {  # format -> file name in the result folder
    "nifti": "label.nii.gz",
    "hdf5": "label.h5",
    "png": "label.png",
    "png-slices": "label-slices.zip",
    "slicer-seg": "label.seg.nrrd",
    "dicom-seg": "seg.dcm",
    "summary.json": "summary.json",
    "summary.csv": "summary.csv",
    "instances": "instances.zip",
    "karyogram": "karyogram.png",
}
#: The name a download is saved under where the stored one would mislead: a 2D label PNG holds class indices
#: (0, 1, 2, ...), black in an image viewer.
SAVED_AS = {"png": "label_class_indices.png"}
MEDIA_TYPES = {
    "nifti": "application/gzip",
    "hdf5": "application/x-hdf5",
    "png": "image/png",
    "dicom-seg": "application/dicom",
    "png-slices": "application/zip",
    "slicer-seg": "application/octet-stream",
    "summary.json": "application/json",
    "summary.csv": "text/csv",
    "instances": "application/zip",
    "karyogram": "image/png",
}


def formats_for(
    kind: str, input_format: str, channels: int = 0, instances: bool = False, karyogram: bool = False
) -> list[str]:
    """The download formats a result of this study offers, the label in the input's own format first.
    ``channels``: the structures of a multi-label result (0 for multiclass); with two or more, a volume's
    result also offers the 3D Slicer segmentation (``slicer-seg``), which keeps overlaps as layers.
    ``instances``: the result holds chromosome instances (``summary.instances``): their zip, ``instances``;
    ``karyogram``: a karyotyping model classed them (``summary.instances.karyogram``): the karyogram PNG."""
    if kind == "2d":
        label = ["png"]
    elif input_format == "hdf5":
        label = ["hdf5", "nifti"]
    elif input_format == "dicom":
        label = ["nifti", "dicom-seg"]
    elif input_format == "slices":
        label = ["png-slices", "nifti"]
    else:
        label = ["nifti"]
    if kind != "2d" and channels > 1:
        label.append("slicer-seg")
    return [
        *label,
        "summary.json",
        "summary.csv",
        *(["instances"] if instances else []),
        *(["karyogram"] if instances and karyogram else []),
    ]


def write_labels(
    labels: np.ndarray,
    folder: Path,
    *,
    kind: str,
    input_format: str,
    volume: Volume | None,
    structures: list[str] | None = None,
) -> None:
    """The label files of :func:`formats_for` (DICOM-SEG apart), each written atomically. ``structures``: the
    channel names of a multi-label (bit-packed) result, None for multiclass."""
    if kind == "2d":
        tmp = folder / ".label.png.tmp"
        Image.fromarray(np.asarray(labels[0], dtype=np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, folder / DOWNLOADS["png"])
        return
    for fmt in formats_for(kind, input_format, len(structures or [])):
        if fmt in ("nifti", "hdf5"):
            write_label_like(labels, volume, folder / DOWNLOADS[fmt])
        elif fmt == "png-slices":
            write_png_slices(labels, volume.meta.get("slice_names") or [], folder / DOWNLOADS[fmt])
        elif fmt == "slicer-seg":
            write_seg_nrrd(labels, volume, structures, folder / DOWNLOADS[fmt])


def write_png_slices(labels: np.ndarray, slice_names: list[str], path: Path) -> Path:
    """A zip of one label PNG (uint8 label values) per slice, each named like the uploaded slice it belongs to
    (its base name; ``slice_NNNN.png`` where there is none), in slice order."""
    tmp = path.with_name(f".{path.name}.tmp")
    taken: set[str] = set()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for k in range(labels.shape[0]):
            base = Path(str(slice_names[k]).replace("\\", "/")).name if k < len(slice_names) else ""
            stem = Path(base).stem or f"slice_{k:04d}"
            name, n = f"{stem}.png", 2
            while name in taken:
                name, n = f"{stem}_{n}.png", n + 1
            taken.add(name)
            buf = io.BytesIO()
            Image.fromarray(np.asarray(labels[k], dtype=np.uint8)).save(buf, format="PNG")
            zf.writestr(name, buf.getvalue())
    os.replace(tmp, path)
    return path


_TISSUE = (
    "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue"
    "~SCT^85756007^Tissue~^^~Anatomic codes - DICOM master list~^^~^^|"
)


def _nrrd_text(value: str) -> str:
    return " ".join(str(value).split()) or "structure"


def write_seg_nrrd(labels: np.ndarray, volume: Volume, structures: list[str], path: Path) -> Path:
    """3D Slicer's segmentation file (``.seg.nrrd``) of a bit-packed (D, H, W) label map on ``volume``'s grid:
    a 4D NRRD (list, x, y, z) with one layer per structure (value 1 in its layer), so overlapping structures
    stay overlapping, and Slicer's ``SegmentN_*`` fields naming and colouring each segment as in the viewer
    (Slicer's documentation: developer_guide/modules/segmentations, "Segmentation labelmap file format")."""
    labels = np.asarray(labels)
    n = len(structures)
    layers = np.stack([(labels >> c) & 1 for c in range(n)], axis=-1).astype(np.uint8)  # (z, y, x, list)
    a = volume.affine_lps()

    def vec(v) -> str:
        return "(" + ",".join(f"{float(x):.17g}" for x in v) + ")"

    d, h, w = labels.shape
    lines = [
        "NRRD0004",
        "# medseg multi-label result: one layer per structure (3D Slicer .seg.nrrd)",
        "type: unsigned char",
        "dimension: 4",
        "space: left-posterior-superior",
        f"sizes: {n} {w} {h} {d}",
        "space directions: none " + " ".join(vec(a[:3, i]) for i in range(3)),
        "kinds: list domain domain domain",
        "encoding: gzip",
        f"space origin: {vec(a[:3, 3])}",
        "Segmentation_ContainedRepresentationNames:=Binary labelmap|",
        "Segmentation_MasterRepresentation:=Binary labelmap",
        "Segmentation_SourceRepresentation:=Binary labelmap",
        "Segmentation_ReferenceImageExtentOffset:=0 0 0",
    ]
    colours = channel_colours(n)
    for c, name in enumerate(structures):
        name = _nrrd_text(name)
        zs, ys, xs = np.nonzero(layers[..., c])
        extent = f"{xs.min()} {xs.max()} {ys.min()} {ys.max()} {zs.min()} {zs.max()}" if len(zs) else "0 -1 0 -1 0 -1"
        lines += [
            f"Segment{c}_Color:=" + " ".join(f"{v / 255:.6g}" for v in colours[c]),
            f"Segment{c}_ColorAutoGenerated:=0",
            f"Segment{c}_Extent:={extent}",
            f"Segment{c}_ID:={name}",
            f"Segment{c}_LabelValue:=1",
            f"Segment{c}_Layer:={c}",
            f"Segment{c}_Name:={name}",
            f"Segment{c}_NameAutoGenerated:=0",
            f"Segment{c}_Tags:={_TISSUE}",
        ]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(("\n".join(lines) + "\n\n").encode("utf-8"))
        fh.write(gzip.compress(np.ascontiguousarray(layers).tobytes(), compresslevel=6))
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------ DICOM-SEG


def dicom_sources(input_dir: Path, files: list[str], work: Path, max_zip_bytes: int) -> list[Path]:
    """The uploaded series' files on disk: loose files as stored, a zip extracted into ``work`` with the
    volume reader's own zip-safe extraction (:func:`medseg.formats.zip_safety.extract_zip`)."""
    paths = [input_dir / f for f in files]
    if len(paths) == 1 and is_zip(paths[0]):
        work.mkdir(parents=True, exist_ok=True)
        return [p for p, _ in extract_zip(paths[0], work, max_zip_bytes, keep=may_be_dicom)]
    return paths


def write_dicom_seg(
    labels: np.ndarray,
    volume: Volume,
    source_files: list[Path],
    label_names: list[str],
    model_name: str,
    model_version: str,
    path: Path,
    *,
    values: list[int] | None = None,
    multilabel: bool = False,
) -> Path:
    """A DICOM Segmentation of ``labels`` (D, H, W) over the series ``volume`` was read from: one segment per
    label value of ``values`` (default every value but 0; the server passes :func:`scored_values`); with
    ``multilabel`` the labels are bit-packed and value v's segment is channel v - 1 (segments may overlap).

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
        raise DataValidationError(
            None, f"cannot write DICOM-SEG: {len(missing)} of the series' instances are missing from the stored upload"
        )
    sources = [by_uid[u] for u in order]
    values = list(range(1, len(label_names))) if values is None else list(values)
    mask = np.stack([structure_mask(labels, v, multilabel) for v in values], axis=-1).astype(np.uint8)  # (D, H, W, S)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medseg",
        version=model_version[:64],
        family=codes.cid7162.ArtificialIntelligence,
        source=f"medseg {medseg.__version__}",
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=label_names[v][:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=generate_uid(),
            tracking_id=label_names[v][:64],
        )
        for k, v in enumerate(values)
    ]
    with warnings.catch_warnings():
        # highdicom warns about the source's patient name (e.g. a one-part "ANONYMOUS"): not ours to change
        warnings.simplefilter("ignore", UserWarning)
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=mask,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=generate_uid(),
            series_number=900,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name=model_name[:64],
            software_versions=medseg.__version__,
            device_serial_number=model_version[:64],
            content_label="MEDSEG",
            content_description=f"medseg automatic segmentation, model {model_version}"[:64],
            series_description=f"medseg {model_version}"[:64],
            omit_empty_frames=False,
        )
    tmp = path.with_name(f".{path.name}.tmp")
    seg.save_as(tmp)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------ summary


def scored_values(task: dict, label_names: list[str]) -> list[int]:
    """The label values of a model's scored classes (every class but ``task.background``, as the metrics score
    them: :func:`medseg.config_schema.scored_class_names`), given the names of its label values."""
    return [label_names.index(name) for name in scored_class_names(task)]


def summarize(
    labels: np.ndarray,
    label_names: list[str],
    spacing: list[float | None] | None,
    kind: str,
    reference: np.ndarray | None = None,
    values: list[int] | None = None,
    multilabel: bool = False,
) -> dict:
    """Per scored class (label ``values``; default every value but 0): voxels and ml (3D) or pixels and mm² (2D,
    None without a spacing); with a reference: its voxel count and the Dice (both empty → 1, medseg's
    empty-mask convention). A stack of slices whose thickness is unknown (spacing [None, y, x]) has no ml
    (None) but the area summed over its slices in mm² (``area_mm2``, None without a pixel spacing).

    ``multilabel``: ``labels`` (and the reference) are bit-packed (:mod:`medseg.server.channels`); each class
    is counted on its own channel, so a pixel in two structures counts for both; a row's ``value`` is then
    the structure's value in the label files (2**channel), and the summary records ``label_encoding`` and
    ``overlap`` (pixels/voxels in two structures or more)."""
    classes = []
    pixel = float(spacing[1] * spacing[2]) if spacing and None not in spacing[1:] else None  # mm² per pixel
    if kind == "3d":
        known = spacing is not None and None not in spacing
        unit = float(np.prod(spacing)) / 1000.0 if known else None  # ml per voxel
    else:
        unit = pixel
    for v in range(1, len(label_names)) if values is None else values:
        pred = structure_mask(labels, v, multilabel)
        n = int(np.count_nonzero(pred))
        row = {"value": file_value(v, multilabel), "name": label_names[v]}
        if kind == "3d":
            row.update(voxels=n, volume_ml=None if unit is None else round(n * unit, 6))
            if unit is None:
                row.update(area_mm2=None if pixel is None else round(n * pixel, 6))
        else:
            row.update(pixels=n, area_mm2=None if unit is None else round(n * unit, 6))
        if reference is not None:
            stats = binary_stats(pred, structure_mask(reference, v, multilabel))
            row.update(
                reference_count=stats["tp"] + stats["fn"], dice=round(float(scores_from_counts(**stats)["dice"]), 6)
            )
        classes.append(row)
    out = {"kind": kind, "shape": list(labels.shape), "spacing": spacing, "classes": classes}
    if kind == "3d":
        out["voxel_volume_ml"] = unit
    if multilabel:
        out["multilabel"] = True
        out["label_encoding"] = encoding(label_names[1:])
        out["overlap"] = {
            "count": overlap_count(labels),
            "unit": "voxels" if kind == "3d" else "pixels",
            "text": "pixels/voxels in two structures or more (each counted in every structure)",
        }
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
