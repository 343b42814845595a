"""Segment a whole CT volume with a trained 3D model and give the labels back on the input's own grid.

The model was trained on volumes preprocessed by :func:`medseg.data.transforms3d.preprocess_volume`
(clip, normalise, resample to ``depth`` × ``size_xy``) with the settings recorded in its ``model.json``
(``preprocessing.volume``); the same settings are applied here, the probabilities are resampled back to
the input's shape (trilinear) and thresholded (multilabel) or arg-maxed (multiclass). The returned
:class:`~medseg.formats.volume.Volume` carries the input's spacing, origin and direction, so
``write_label_like`` writes it in the input's geometry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.volume import Volume
from medseg.inference.predictor import Predictor


def volume_settings(predictor: Predictor) -> dict:
    """The preprocessing recorded with a 3D model (thesis defaults where a model predates the record)."""
    from medseg.data.transforms3d import preprocess_settings

    recorded = (predictor.meta.get("preprocessing") or {}).get("volume")
    return preprocess_settings({"preprocess": recorded} if recorded else None)


def label_map(predictor: Predictor, proba: np.ndarray) -> np.ndarray:
    """Probabilities (C, *S) → one uint8 label map (*S): argmax for exclusive classes; for multilabel models
    class ``c`` (1-based) where its probability is > 0.5 and highest among those above (0 = none)."""
    if predictor.mode == "multiclass":
        return proba.argmax(0).astype(np.uint8)
    above = proba > 0.5
    best = proba.argmax(0).astype(np.uint8) + 1
    return np.where(above.any(0), best, 0).astype(np.uint8)


def label_names(meta: dict) -> list[str]:
    """Names of the label values a model (its ``model.json``) writes, index = value: a multiclass model's
    classes; a multilabel model's classes behind a "background" 0 (:func:`label_map`)."""
    names = list(meta["task"]["class_names"])
    return names if meta["task"].get("mode", "multiclass") == "multiclass" else ["background", *names]


def display_background(meta: dict) -> int | None:
    """The label value drawn as background (black, transparent in the viewer) for a model's label maps: a
    multiclass model's ``task.background`` (None: every class is drawn), a multilabel model's "no channel" 0."""
    task = meta["task"]
    if task.get("mode", "multiclass") != "multiclass":
        return 0
    return task.get("background", 0)


def class_names_of_labels(predictor: Predictor) -> list[str]:
    """Names of the values :func:`label_map` writes, index = value (0 = background)."""
    return label_names(predictor.meta)


def predict_volume(
    predictor: Predictor, volume: Volume, *, progress: Callable[[float], None] | None = None
) -> tuple[Volume, np.ndarray]:
    """(label Volume uint8 on ``volume``'s grid, probabilities (C, D, H, W) float32 on that grid).

    ``progress`` (optional) is called with fractions in [0, 1] as the work advances.
    """
    from medseg.data.transforms3d import preprocess_volume, restore_shape

    if predictor.spatial_dims != 3:
        raise DataValidationError(volume.meta.get("source"), "this model segments 2D images, not volumes")
    report = progress or (lambda f: None)
    report(0.05)
    settings = volume_settings(predictor)
    pre = preprocess_volume(volume.array, {"preprocess": settings})
    report(0.2)
    proba = predictor.predict_proba(pre[None])[0]
    report(0.85)
    proba = restore_shape(proba, volume.shape, mode="trilinear", align_corners=bool(settings["align_corners"]))
    labels = label_map(predictor, proba)
    report(1.0)
    return volume.with_array(
        labels, modality=None, meta={"kind": "label", "classes": class_names_of_labels(predictor)}
    ), proba


def class_volumes_ml(labels: np.ndarray, spacing, names: list[str]) -> dict[str, float]:
    """Volume in ml of each foreground value of a label map (voxels × voxel volume in mm³ / 1000)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=len(names))
    return {name: round(float(counts[v]) * voxel_ml, 3) for v, name in enumerate(names) if v > 0}


def predict_volume_file(predictor: Predictor, path: Path, out_dir: Path, *, allow_gaps: bool = False) -> dict:
    """``medseg predict`` for one volume (NIfTI, HDF5, DICOM folder or zip): writes ``<case>_label`` in the
    input's format and geometry (NIfTI for DICOM input) and ``<case>_summary.json`` (per-class ml).
    ``allow_gaps``: a DICOM series with whole slices missing is filled and reported instead of refused."""
    import json

    from medseg.formats.volume_files import read_volume, strip_suffix, write_label_like

    path = Path(path)
    volume = read_volume(path, allow_gaps=allow_gaps)
    labels, _ = predict_volume(predictor, volume)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = strip_suffix(path) if path.is_file() else path.name
    fmt = volume.meta.get("format")
    suffix = ".h5" if fmt == "hdf5" else ".nii.gz"
    written = write_label_like(labels.array, volume, out_dir / f"{stem}_label{suffix}")
    names = class_names_of_labels(predictor)
    summary = {
        "input": str(path),
        "shape": list(volume.shape),
        "spacing_mm": list(volume.spacing),
        "label_file": str(written),
        "model": predictor.meta.get("model", {}).get("name"),
        "labels": {str(v): n for v, n in enumerate(names)},
        "volume_ml": class_volumes_ml(labels.array, volume.spacing, names),
    }
    tmp = out_dir / f".{stem}_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out_dir / f"{stem}_summary.json")
    return summary


__all__ = [
    "class_names_of_labels",
    "class_volumes_ml",
    "label_map",
    "label_names",
    "predict_volume",
    "predict_volume_file",
    "volume_settings",
]
