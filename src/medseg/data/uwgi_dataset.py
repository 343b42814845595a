"""The UW-Madison GI-tract competition folder as a medseg data set (``data.format: uwgi``).

The folder is read exactly as published (:mod:`medseg.data.uwgi`: ``train.csv`` + ``train/case*/case*_day*/
scans/*.png``, checked for consistency first) and held like every 2D set, as one
:class:`~medseg.data.datasets.SegmentationData`:

* images (N, H, W) float32: the 16-bit values mapped to [0, 1] (``uint16 / 65535``); the network input is
  then normalised per image by ``data.normalize`` (``minmax`` in the GI configs: MR intensities use a small,
  scan-dependent part of the 16-bit range, so each slice is stretched to [0, 1], as most competition
  solutions do; the paper does not say which);
* labels (N, 3, H, W) uint8, one channel per organ in ``task.class_names`` order (the competition's
  large_bowel, small_bowel, stomach, or any subset/order of them): overlaps are kept (multilabel task);
* grid: ``data.resize: true`` scales every slice to ``data.size`` (the paper: 128 × 128; images bilinear
  with antialiasing, masks nearest) and predictions are scaled back to each slice's own size;
  ``data.resize: false`` pads/centre-crops to ``data.size`` or, with ``data.size: null``, keeps full
  resolution on a common canvas with each slice's box (as for any folder of images);
* ``groups``: the case (``case123``) — a case's scans never straddle folds; ``strata``: the number of
  organs in the slice (0–3) for ``splits.stratify`` (the paper's StratifiedGroupKFold);
* 2.5D (``data.context_slices: k``, ``data.context_stride: s``): :attr:`SegmentationData.context` gives
  each slice the slices ``-k·s … +k·s`` of its own scan as input channels (clamped at the scan's ends);
* ``volume_info``: what the competition score needs to rebuild each scan at the original size —
  ``kind: uwgi``, the folder, each item's scan (``case{C}_day{D}``), slice number, original (H, W), pixel
  spacing and file (:func:`original_masks`, :func:`to_original_size`).

Reading a slice (:func:`read_slice`), putting slices on the grid (:func:`grid_of`, :func:`place_on_grid`), the
way back to a slice's own size (:func:`from_grid`) and the 2.5D neighbours (:func:`context_indices`) are pure
functions, shared with the competition submission writer (:mod:`medseg.inference.submission`): a model is fed
at prediction exactly as in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medseg.data.datasets import SegmentationData, resolve_data_path, warn_crop
from medseg.data.uwgi import CLASSES, ScanRecord, check_consistency, masks_for, read_scan, read_train_csv, scan_index
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.limits import check_dataset_bytes
from medseg.progress import Progress

KIND = "uwgi"
UINT16_MAX = 65535.0


def is_uwgi_folder(path: str | Path) -> bool:
    """A folder in the competition layout: ``train.csv`` beside ``train/``."""
    path = Path(path)
    return path.is_dir() and (path / "train.csv").is_file() and (path / "train").is_dir()


def is_uwgi_config(data_cfg: dict) -> bool:
    """Whether a config's ``data`` section names UW-Madison data: ``format: uwgi``, ``synth:gi``, or (format
    auto) a folder in the competition layout."""
    fmt, spec = data_cfg.get("format", "auto"), str(data_cfg.get("path", ""))
    if fmt == "uwgi" or (fmt == "auto" and spec == "synth:gi"):
        return True
    return fmt == "auto" and not spec.startswith("synth:") and is_uwgi_folder(Path(spec).expanduser())


def organ_channels(class_names: Sequence[str], where: str | Path | None = None) -> list[int]:
    """Index in :data:`~medseg.data.uwgi.CLASSES` of each of the task's classes (the label channels)."""
    unknown = [c for c in class_names if c not in CLASSES]
    if unknown or len(set(class_names)) != len(class_names):
        raise ConfigError(
            f"task.class_names {list(class_names)} for UW-Madison data ({where}) must name organs of "
            f"the competition, each once: {', '.join(CLASSES)} (task.mode: multilabel)"
        )
    return [CLASSES.index(c) for c in class_names]


def scan_of(record: ScanRecord) -> str:
    return f"case{record.case}_day{record.day}"


def read_slice(record: ScanRecord) -> np.ndarray:
    """The (H, W) float32 image of ``record`` as the network sees it before normalisation: ``uint16 / 65535``."""
    return read_scan(record).astype(np.float32) / UINT16_MAX


def context_indices(scans: Sequence[str], slices: Sequence[int], k: int, stride: int) -> np.ndarray | None:
    """(N, 2k + 1) item indices: for each item the items ``-k·stride … +k·stride`` positions away in its own
    scan (slices in number order), clamped to the scan's first/last slice; None for ``k = 0``."""
    if k <= 0:
        return None
    n = len(scans)
    out = np.empty((n, 2 * k + 1), dtype=np.int64)
    by_scan: dict[str, list[int]] = {}
    for i, scan in enumerate(scans):
        by_scan.setdefault(scan, []).append(i)
    offsets = np.arange(-k, k + 1) * int(stride)
    for members in by_scan.values():
        members = sorted(members, key=lambda i: slices[i])
        arr = np.asarray(members, dtype=np.int64)
        for pos, i in enumerate(members):
            out[i] = arr[np.clip(pos + offsets, 0, len(members) - 1)]
    return out


def resize_stack(arrays: np.ndarray, size: Sequence[int], *, labels: bool) -> np.ndarray:
    """(n, [C,] H, W) → (n, [C,] h, w): images bilinear with antialiasing (float32), 0/1 masks nearest."""
    x = torch.from_numpy(np.ascontiguousarray(arrays))
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    if labels:
        out = F.interpolate(x.float(), size=tuple(int(v) for v in size), mode="nearest").to(torch.uint8)
    else:
        out = F.interpolate(
            x.float(), size=tuple(int(v) for v in size), mode="bilinear", align_corners=False, antialias=True
        )
    out = out[:, 0] if squeeze else out
    return out.numpy()


def grid_of(settings: Mapping, shapes: Sequence[tuple[int, int]]) -> tuple[str, tuple[int, int]]:
    """How slices are put on one grid, from ``settings`` (the ``data`` section of a config, or the
    ``preprocessing`` of a model.json: the same keys ``size``, ``resize``): ``resize`` / ``pad`` to data.size,
    or ``canvas`` (full resolution, on the largest of ``shapes``)."""
    size = settings.get("size")
    if settings.get("resize"):
        if not size:
            raise ConfigError("data.resize: true needs data.size: [H, W] (the GI paper: [128, 128])")
        return "resize", (int(size[0]), int(size[1]))
    if size:
        return "pad", (int(size[0]), int(size[1]))
    if not shapes:
        raise ConfigError("data.size: null (full resolution) needs the slices' shapes to make a canvas")
    return "canvas", (max(int(h) for h, _ in shapes), max(int(w) for _, w in shapes))


def place_on_grid(
    images: np.ndarray,
    mode: str,
    grid: Sequence[int],
    *,
    pad_value: float | str = "border",
    masks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int, int, int] | None]:
    """Slices of ONE shape, (n, H, W) float images in [0, 1] (and optionally their (n, C, H, W) 0/1 masks), on
    the grid ``grid`` as training feeds them: ``resize`` (images bilinear with antialiasing, masks nearest),
    ``pad`` (centre pad with ``pad_value`` — a number or ``"border"``, :func:`~medseg.data.pommier.pad_to` — or
    centre crop; masks padded with 0) or ``canvas`` (at full resolution, centred on a zero canvas).

    Returns (images (n, h, w) float32, masks (n, C, h, w) uint8 or None, box): ``box`` = (top, left, H, W) of
    the slices on the canvas, None for resize/pad. Training (:func:`load_uwgi_data`) and the submission writer
    (:mod:`medseg.inference.submission`) both put slices on the grid here, so they cannot differ."""
    from medseg.data.pommier import pad_to

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"place_on_grid takes (n, H, W) slices of one shape, got {images.shape}")
    gh, gw = (int(v) for v in grid)
    h, w = images.shape[-2:]
    if mode == "resize":
        if (h, w) == (gh, gw):
            return images, masks, None
        return (
            resize_stack(images, (gh, gw), labels=False),
            None if masks is None else resize_stack(masks, (gh, gw), labels=True),
            None,
        )
    if mode == "pad":
        return (pad_to(images, (gh, gw), pad_value), None if masks is None else pad_to(masks, (gh, gw), 0), None)
    if mode != "canvas":
        raise ValueError(f"grid mode must be resize, pad or canvas, got {mode!r}")
    if h > gh or w > gw:
        raise ValueError(f"slices of {h}x{w} do not fit on a canvas of {gh}x{gw}")
    top, left = (gh - h) // 2, (gw - w) // 2
    canvas = np.zeros((len(images), gh, gw), np.float32)
    canvas[:, top : top + h, left : left + w] = images
    full = None
    if masks is not None:
        full = np.zeros((*masks.shape[:-2], gh, gw), np.uint8)
        full[..., top : top + h, left : left + w] = masks
    return canvas, full, (top, left, h, w)


def from_grid(proba: np.ndarray, mode: str, shape: Sequence[int], box: Sequence[int] | None = None) -> np.ndarray:
    """Probabilities on the grid, (C, h, w) or (n, C, h, w), → at the slices' own size ``shape`` = (H, W): scaled
    back (bilinear) after ``resize``; cut out of the canvas ``box`` (top, left, H, W) when given; otherwise
    (``pad``, or a canvas of one size) the centre crop/pad inverse of :func:`place_on_grid` — the slice's
    pixels that are on the grid, zeros for those cut away."""
    h, w = (int(v) for v in shape)
    if mode == "resize":
        if proba.shape[-2:] == (h, w):
            return proba
        x = torch.from_numpy(np.ascontiguousarray(proba, dtype=np.float32))
        squeeze = x.ndim == 3
        x = x[None] if squeeze else x
        out = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).numpy()
        return out[0] if squeeze else out
    gh, gw = proba.shape[-2:]
    if box is not None:
        top, left, bh, bw = (int(v) for v in box)
        return proba[..., top : top + bh, left : left + bw]
    out = np.zeros((*proba.shape[:-2], h, w), dtype=proba.dtype)
    top = (gh - h) // 2 if gh >= h else -((h - gh) // 2)
    left = (gw - w) // 2 if gw >= w else -((w - gw) // 2)
    ys, xs = max(top, 0), max(left, 0)
    ye, xe = min(top + h, gh), min(left + w, gw)
    out[..., ys - top : ye - top, xs - left : xe - left] = proba[..., ys:ye, xs:xe]
    return out


def load_uwgi_data(data_cfg: dict, task: dict, progress: bool = True):
    """Read, check and grid the competition folder ``data.path`` (``synth:gi`` made on first use; see the module
    docstring)."""
    root, synthesized = resolve_data_path(data_cfg)
    if task.get("mode") != "multilabel":
        raise ConfigError(
            f"UW-Madison data ({root}) has overlapping organs: set task.mode: multilabel (one sigmoid "
            "channel per organ)"
        )
    channels = organ_channels(task["class_names"], root)
    rles = read_train_csv(root / "train.csv")
    index = scan_index(root)
    check_consistency(index, rles)
    limit = data_cfg.get("limit")
    if limit:
        index = index[: int(limit)]
    shapes = [r.shape for r in index]
    mode, grid = grid_of(data_cfg, shapes)
    n = len(index)
    check_dataset_bytes(
        root,
        n * grid[0] * grid[1] * (4 + len(channels)),
        what=f"{n:,} slices of {grid[0]}x{grid[1]} (float32 + {len(channels)} masks)",
    )
    notes: list[str] = []
    if mode == "pad":
        warn_crop(notes, shapes, grid, root.name)
    images = np.zeros((n, *grid), dtype=np.float32)
    labels = np.zeros((n, len(channels), *grid), dtype=np.uint8)
    boxes = [] if mode == "canvas" and len(set(shapes)) > 1 else None
    strata = []
    pad_value = data_cfg.get("image_pad_value", "border")
    for i, record in enumerate(Progress(index, desc="reading GI slices", unit="slice", disable=not progress)):
        image = read_slice(record)
        masks = masks_for(record, rles).transpose(2, 0, 1)[channels]  # (C, H, W)
        strata.append(int(sum(bool(rles[record.id][c]) for c in CLASSES)))
        image, masks, box = place_on_grid(image[None], mode, grid, pad_value=pad_value, masks=masks[None])
        if boxes is not None:
            boxes.append(box)
        images[i] = image[0]
        labels[i] = masks[0]
    scans = [scan_of(r) for r in index]
    slices = [r.slice for r in index]
    k, stride = int(data_cfg.get("context_slices") or 0), int(data_cfg.get("context_stride") or 1)
    n_scans, n_cases = len(set(scans)), len({r.case for r in index})
    what = {
        "resize": f"resized to {grid[0]}x{grid[1]}",
        "pad": f"padded to {grid[0]}x{grid[1]}",
        "canvas": "at full resolution",
    }[mode]
    notes.append(
        f"{root.name}: {n:,} slices of {n_scans} scans, {n_cases} cases (UW-Madison layout), {what}"
        + (f"; 2.5D input of {2 * k + 1} slices {stride} apart" if k else "")
    )
    info = {
        "kind": KIND,
        "root": str(root),
        "grid": mode,
        "size": list(grid),
        "scans": scans,
        "slices": slices,
        "original_shapes": [list(s) for s in shapes],
        "spacings": [list(r.spacing) for r in index],
        "files": [str(r.path) for r in index],
        "case_day": [[r.case, r.day] for r in index],
        "channels": channels,
    }
    return SegmentationData(
        images,
        labels,
        [r.id for r in index],
        str(root),
        synthesized,
        notes,
        grid,
        groups=[f"case{r.case}" for r in index],
        volume_info=info,
        boxes=boxes,
        strata=strata,
        context=context_indices(scans, slices, k, stride),
    )


def is_uwgi_data(data) -> bool:
    return bool(data.volume_info) and data.volume_info.get("kind") == KIND


def to_original_size(proba: np.ndarray, data, i: int) -> np.ndarray:
    """(C, h, w) probabilities of item ``i`` on the data's grid → (C, H, W) at the slice's own size:
    scaled back (bilinear) after ``resize``, cropped back after ``pad`` / on the canvas (:func:`from_grid`)."""
    info = data.volume_info
    box = data.boxes[int(i)] if data.boxes is not None else None
    return from_grid(proba, info["grid"], info["original_shapes"][int(i)], box)


def original_masks(data, i: int, rles: dict | None = None) -> np.ndarray:
    """(C, H, W) uint8 true masks of item ``i`` at its own size, decoded again from ``train.csv``."""
    info = data.volume_info
    if rles is None:
        rles = read_train_csv(Path(info["root"]) / "train.csv")
    i = int(i)
    (h, w), (case, day) = info["original_shapes"][i], info["case_day"][i]
    record = ScanRecord(
        int(case), int(day), int(info["slices"][i]), Path(info["files"][i]), int(w), int(h), tuple(info["spacings"][i])
    )
    if record.id != data.names[i]:
        raise DataValidationError(record.path, f"item {i} is {data.names[i]}, its file says {record.id}")
    return masks_for(record, rles).transpose(2, 0, 1)[info["channels"]]


def scan_groups(data, indices: Sequence[int]) -> dict[str, list[int]]:
    """The items of ``indices`` by scan, each scan's slices in slice order."""
    info = data.volume_info
    out: dict[str, list[int]] = {}
    for i in indices:
        out.setdefault(info["scans"][int(i)], []).append(int(i))
    return {s: sorted(v, key=lambda i: info["slices"][i]) for s, v in out.items()}


__all__ = [
    "KIND",
    "UINT16_MAX",
    "context_indices",
    "from_grid",
    "grid_of",
    "is_uwgi_data",
    "is_uwgi_folder",
    "load_uwgi_data",
    "organ_channels",
    "original_masks",
    "place_on_grid",
    "read_slice",
    "resize_stack",
    "scan_groups",
    "scan_of",
    "to_original_size",
]
