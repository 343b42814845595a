"""A Kaggle submission for the UW-Madison GI Tract competition: ``submission.csv`` (``id,class,predicted``).

``medseg predict RUN FOLDER --format submission --out DIR`` (:func:`write_submission`). FOLDER is in the
competition layout (:mod:`medseg.data.uwgi`): a root holding ``test/`` (Kaggle's hidden test set) or ``train/``
(to score one's own folds), or that ``test/`` / ``train/`` folder itself::

    <FOLDER>/test/case{C}/case{C}_day{D}/scans/slice_{SSSS}_{W}_{H}_{pw}_{ph}.png

Each scan (a case on one day) is read, put on the model's grid exactly as training did — the same functions
of :mod:`medseg.data.uwgi_dataset`: ``uint16 / 65535`` (:func:`~medseg.data.uwgi_dataset.read_slice`), resize /
pad / canvas (:func:`~medseg.data.uwgi_dataset.place_on_grid`), the 2.5D neighbours of the scan
(:func:`~medseg.data.uwgi_dataset.context_indices`) — and predicted in batches by the
:class:`~medseg.inference.predictor.Predictor` (per-image normalisation, sliding window, TTA and the average
of the folds' probabilities as recorded in model.json). The probabilities are scaled (or cropped) back to each
slice's own size (:func:`~medseg.data.uwgi_dataset.from_grid`), thresholded (``> threshold``, 0.5: as the
competition score of ``medseg evaluate``) and run-length encoded (:func:`~medseg.data.uwgi.rle_encode`): one row
per slice and class, in ``task.class_names`` order, the empty string for no organ.

``submission.csv`` appears only once complete (written beside and renamed); ``submission.json`` beside it
records the model, the folder, the counts and the timing (total seconds; ms per slice for reading, for the
prediction and for the RLE + writing).
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.data.uwgi import CLASSES, ScanRecord, rle_encode, scan_index
from medseg.data.uwgi_dataset import context_indices, from_grid, grid_of, place_on_grid, read_slice, scan_of
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.atomic import atomic_file
from medseg.progress import Progress

__all__ = [
    "COLUMNS",
    "SUBMISSION_CSV",
    "SUBMISSION_JSON",
    "check_submission_model",
    "resolve_scan_folder",
    "write_submission",
]

SUBMISSION_CSV = "submission.csv"
SUBMISSION_JSON = "submission.json"
#: The competition's submission columns.
COLUMNS = ("id", "class", "predicted")

_CASE_DIR = re.compile(r"case\d+")
_LAYOUT = "case{C}/case{C}_day{D}/scans/slice_{SSSS}_{W}_{H}_{pw}_{ph}.png"


def _model_name(predictor, model: str | Path | None) -> str:
    if model is not None:
        return str(model)
    arch = (predictor.meta.get("model") or {}).get("name", "?")
    return f"the {arch} model"


def check_submission_model(predictor, model: str | Path | None = None) -> list[str]:
    """The model's classes, if it can make a submission: a 2D multilabel model (organs overlap) whose classes
    are organs of the competition (each once) and whose input channels are its 2.5D slices; otherwise a
    :class:`~medseg.errors.DataValidationError` naming ``model`` (its folder) and the problem."""
    name = _model_name(predictor, model)
    where = Path(model) if model is not None else None
    prefix = "" if where is not None else f"{name}: "
    task = predictor.meta.get("task") or {}
    if int(task.get("spatial_dims", 2)) != 2:
        raise DataValidationError(
            where, f"{prefix}a competition submission needs a 2D model of the GI slices; this one segments 3D volumes"
        )
    if task.get("mode") != "multilabel":
        raise DataValidationError(
            where,
            f"{prefix}a competition submission needs a multilabel model (one sigmoid "
            f"channel per organ: organs overlap); this one is {task.get('mode')!r} with "
            f"classes {', '.join(map(str, task.get('class_names', [])))}",
        )
    names = [str(c) for c in task.get("class_names", [])]
    unknown = [c for c in names if c not in CLASSES]
    if not names or unknown or len(set(names)) != len(names):
        raise DataValidationError(
            where,
            f"{prefix}its classes ({', '.join(names)}) must be organs of the "
            f"competition, each once: {', '.join(CLASSES)}",
        )
    pre = predictor.meta.get("preprocessing") or {}
    k = int(pre.get("context_slices") or 0)
    in_channels = ((predictor.meta.get("model") or {}).get("kwargs") or {}).get("in_channels")
    if in_channels is not None and int(in_channels) != 1 + 2 * k:
        raise DataValidationError(
            where,
            f"{prefix}the network takes {in_channels} input channel(s), its "
            f"preprocessing.context_slices {k} gives {1 + 2 * k}",
        )
    return names


def resolve_scan_folder(folder: str | Path) -> tuple[Path, str]:
    """(root, subdir) of a competition folder: ``FOLDER/test`` if there is one, else ``FOLDER/train``; or FOLDER
    itself when it holds the ``case{C}`` folders (a ``test/`` or ``train/`` given explicitly)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataValidationError(
            folder,
            "folder not found"
            if not folder.exists()
            else "not a folder: give a competition folder holding test/ or train/",
        )
    for sub in ("test", "train"):
        if (folder / sub).is_dir():
            return folder, sub
    if any(p.is_dir() and _CASE_DIR.fullmatch(p.name) for p in folder.iterdir()):
        return folder.parent, folder.name
    raise DataValidationError(
        folder,
        f"no scans found: expected test/{_LAYOUT} or train/{_LAYOUT} (Kaggle's layout), "
        f"or {_LAYOUT} in this folder itself",
    )


def _index(folder: Path) -> tuple[Path, list[ScanRecord]]:
    root, subdir = resolve_scan_folder(folder)
    try:
        return root / subdir, scan_index(root, subdir=subdir)
    except DataValidationError as exc:
        if subdir == "test" and exc.path == root / "test" and (root / "train").is_dir():
            raise DataValidationError(
                exc.path, f"{exc.problem} (to predict the training scans instead, give {root / 'train'})"
            ) from None
        raise


def _by_scan(index: Sequence[ScanRecord]) -> list[list[ScanRecord]]:
    scans: dict[str, list[ScanRecord]] = {}
    for r in index:  # scan_index sorts by (case, day, slice)
        scans.setdefault(scan_of(r), []).append(r)
    return list(scans.values())


def _grid_scan(records: Sequence[ScanRecord], pre: dict, mode: str | None, grid: tuple[int, int] | None):
    """A scan's slices on the model's grid: (n, h, w) images, the grid mode, each slice's canvas box (None for
    resize/pad and for a canvas of the slices' own size)."""
    shapes = [r.shape for r in records]
    if mode is None:  # canvas (data.size: null): full resolution, on the scan's own largest slice
        mode, grid = grid_of(pre, shapes)
    images = np.zeros((len(records), *grid), np.float32)
    boxes: list | None = [None] * len(records)
    pad_value = pre.get("image_pad_value", "border")
    for shape in dict.fromkeys(shapes):  # a scan's slices normally share one size; several are placed apart
        idx = [i for i, s in enumerate(shapes) if s == shape]
        stack = np.stack([read_slice(records[i]) for i in idx])
        placed, _, box = place_on_grid(stack, mode, grid, pad_value=pad_value)
        images[idx] = placed
        for i in idx:
            boxes[i] = box
    if mode != "canvas" or len(set(shapes)) == 1:
        boxes = None  # one size on its own canvas: the whole grid is the slice (as in training)
    return images, mode, boxes


def write_submission(
    predictor,
    folder: str | Path,
    out_dir: str | Path,
    *,
    progress: bool = True,
    threshold: float = 0.5,
    model: str | Path | None = None,
) -> dict:
    """Predict every slice of the competition ``folder`` and write ``out_dir/submission.csv`` (``id,class,
    predicted``; see the module docstring) and ``out_dir/submission.json``; returns what the JSON records.

    ``predictor``: a :class:`~medseg.inference.predictor.Predictor` (one fold, or several whose probabilities
    it averages). ``model``: the model's folder, named in errors and recorded. Nothing is written when the
    model or the folder cannot be used, and ``submission.csv`` never appears half-written."""
    start = time.perf_counter()
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number between 0 and 1, got {threshold!r}") from None
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(
            f"threshold must be at least 0 and below 1 (a pixel is an organ where its probability "
            f"is above it), got {threshold}"
        )
    names = check_submission_model(predictor, model)
    scans_dir, index = _index(Path(folder))
    pre = dict(predictor.meta.get("preprocessing") or {})
    k, stride = int(pre.get("context_slices") or 0), int(pre.get("context_stride") or 1)
    mode, grid = grid_of(pre, []) if (pre.get("resize") or pre.get("size")) else (None, None)
    scans = _by_scan(index)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / SUBMISSION_CSV, out_dir / SUBMISSION_JSON
    t_read = t_predict = t_write = 0.0
    batch = max(1, int(getattr(predictor, "batch_size", 32)))
    positive = dict.fromkeys(names, 0)
    n_rows = 0
    bar = Progress(total=len(index), desc="predicting GI slices", unit="slice", disable=not progress)
    try:
        with atomic_file(csv_path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            for records in scans:
                t0 = time.perf_counter()
                images, scan_mode, boxes = _grid_scan(records, pre, mode, grid)
                ctx = context_indices([scan_of(r) for r in records], [r.slice for r in records], k, stride)
                t_read += time.perf_counter() - t0
                for lo in range(0, len(records), batch):
                    t0 = time.perf_counter()
                    part = slice(lo, lo + batch)
                    inputs = images[part] if ctx is None else images[ctx[part]]  # (b, h, w) | (b, 2k+1, h, w)
                    proba = predictor.predict_proba(inputs, boxes=None if boxes is None else boxes[part])
                    masks = [
                        from_grid(proba[j], scan_mode, r.shape, None if boxes is None else boxes[lo + j]) > threshold
                        for j, r in enumerate(records[part])
                    ]
                    t1 = time.perf_counter()
                    t_predict += t1 - t0
                    for r, m in zip(records[part], masks, strict=True):
                        for c, name in enumerate(names):
                            rle = rle_encode(m[c])
                            positive[name] += bool(rle)
                            writer.writerow((r.id, name, rle))
                    n_rows += len(masks) * len(names)
                    t_write += time.perf_counter() - t1
                    bar.update(len(masks))
    finally:
        bar.close()
    n = len(index)
    ms = lambda seconds: round(1000.0 * seconds / n, 3)  # noqa: E731
    summary = {
        "csv": str(csv_path),
        "columns": list(COLUMNS),
        "folder": str(scans_dir),
        "model": str(model) if model is not None else (predictor.meta.get("model") or {}).get("name"),
        "n_models": len(getattr(predictor, "models", [])),
        "tta": bool(getattr(predictor, "tta", False)),
        "device": str(getattr(predictor, "device", "")),
        "classes": names,
        "threshold": threshold,
        "grid": mode or "canvas",
        "size": list(grid) if grid else None,
        "context_slices": k,
        "context_stride": stride,
        "n_scans": len(scans),
        "n_slices": n,
        "n_rows": n_rows,
        "slices_with_organ": positive,
        "read_ms_per_slice": ms(t_read),
        "predict_ms_per_slice": ms(t_predict),
        "rle_write_ms_per_slice": ms(t_write),
    }
    summary["total_seconds"] = round(time.perf_counter() - start, 4)
    summary["total_ms_per_slice"] = ms(summary["total_seconds"])
    with atomic_file(json_path, ".json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    summary["json"] = str(json_path)
    return summary
