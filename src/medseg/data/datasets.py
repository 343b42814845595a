"""One path from a config's ``data`` section to tensors: load → pad → in-memory dataset → transforms.

The whole chromosome set is small (13,434 × 128 × 128 bytes ≈ 220 MB as uint8), so it is held in memory
as uint8 and converted per batch; a generic 2D folder set goes through the same class. Because it is held
whole, its size is checked before it is converted: each image against the voxel budget, the whole set
against the memory limit (:mod:`medseg.formats.limits`), with a message naming the file.

Image size (``data.size``). With ``data.size: [H, W]`` every image is padded all round to that size
(the papers pad 94 × 93 to 128 × 128: padding loses nothing and is silent); an image *larger* than it is
centre-cropped, which throws pixels away for good — that is never silent: a warning (one line on the
terminal) and a note in ``data.notes`` (which reports show) say how many images lose what share of their
pixels and what to do instead. ``data.size: null`` keeps full resolution. Images of different sizes are then
held on one common canvas (the largest height × the largest width, each image padded centred as
:func:`~medseg.data.pommier.pad_to` does) with each image's own region recorded in
:attr:`SegmentationData.boxes`; every consumer crops an image back to its box before it is used
(:meth:`SegmentationData.item`, :class:`SegmentationDataset`, :func:`update_metrics`, and
``Predictor.predict_proba(..., boxes=...)``), so padding is never trained on, predicted or scored. One array
keeps every caller's ``data.images[idx]`` working, and its bytes (number of images × canvas) are what is
checked against the memory limit, so memory stays bounded by :mod:`medseg.formats.limits`; a set of very
different sizes pays for the canvas (``data.limit`` or splitting the set helps there).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.data.pommier import pad_to, read_groups, read_pommier_h5
from medseg.data.registry import data_set_named, synthesizer_names
from medseg.data.transforms import normalize_input
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.limits import check_dataset_bytes

Box = tuple[int, int, int, int]  # (top, left, height, width) of an image on the common canvas


@dataclass
class SegmentationData:
    """Images (N, H, W) float32 in [0, 1], labels (N, H, W) uint8 class indices, plus provenance.

    ``boxes``: None when every image fills the array (the usual case); otherwise the images differ in size
    (``data.size: null``) and each one's (top, left, height, width) region on the common (H, W) canvas —
    use :meth:`item` / :meth:`boxes_of` rather than the raw arrays wherever the padding must not count."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    source: str
    synthesized: bool = False
    notes: list[str] = field(default_factory=list)
    original_shape: tuple[int, ...] | None = None
    # Patient id of each item (3D volumes: splits are made by patient); None: every item is its own patient.
    groups: list[str] | None = None
    volume_info: dict | None = None  # 3D: each case's original shape and spacing before preprocessing
    boxes: list[Box] | None = None
    # Stratum of each item for stratified splits (splits.stratify; the GI data: organs in the image, 0-3).
    strata: list[int] | None = None
    # 2.5D (data.context_slices): for each item, the items fed as its input channels (its scan's neighbouring
    # slices, itself in the middle), shape (N, 2k + 1); None: each image is one channel.
    context: np.ndarray | None = None
    # A split that comes with the data (``medseg data mfish-pairs``' ``<stem>.splits.json``: held-out slides),
    # used when the config's ``splits.file`` is not set, so that every run on the file tests the same slides.
    split_file: str | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        """Content hash of the labels: ties a saved split to the exact data it was made for."""
        h = hashlib.sha1()
        h.update(str(self.labels.shape).encode())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()[:12]

    def boxes_of(self, indices: Sequence[int]) -> list[Box] | None:
        """The boxes of these items (None when every image fills the canvas)."""
        return None if self.boxes is None else [self.boxes[int(i)] for i in indices]

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Input and label of item ``i`` at the image's own size (cropped from the canvas): the image (H, W),
        or (2k + 1, H, W) with 2.5D context (:attr:`context`)."""
        image, label = self.input_of(i), self.labels[i]
        if self.boxes is None:
            return image, label
        return crop_box(image, self.boxes[i]), crop_box(label, self.boxes[i])

    def input_of(self, i: int) -> np.ndarray:
        """The network input of item ``i`` on the canvas: the image, or its 2.5D stack of slices."""
        return self.images[i] if self.context is None else self.images[self.context[int(i)]]

    def inputs(self, indices: Sequence[int]) -> np.ndarray:
        """The network inputs of several items: (n, H, W) images, or (n, 2k + 1, H, W) with 2.5D context —
        what :meth:`~medseg.inference.predictor.Predictor.predict_proba` takes."""
        idx = np.asarray(indices, dtype=np.int64)
        return self.images[idx] if self.context is None else self.images[self.context[idx]]


def crop_box(array, box: Box):
    """``array[..., top:top + h, left:left + w]``: an image, label or prediction cropped to its box."""
    top, left, h, w = box
    return array[..., top : top + h, left : left + w]


def update_metrics(metrics, pred, target, *, boxes: Sequence[Box] | None = None, spacing=None) -> None:
    """``metrics.update(pred, target, spacing)`` (a :class:`~medseg.metrics.SegmentationMetrics`) on a batch
    held on a common canvas: with ``boxes`` (one per item, :meth:`SegmentationData.boxes_of`) each item is
    cropped to its own image first, so the canvas padding is never scored; without them, one plain update."""
    if boxes is None:
        metrics.update(pred, target, spacing=spacing)
        return
    for k, box in enumerate(boxes):
        one_spacing = None if spacing is None else [spacing[k]]
        metrics.update(crop_box(pred[k : k + 1], box), crop_box(target[k : k + 1], box), spacing=one_spacing)


def crop_warning(shapes: Sequence[tuple[int, int]], size: Sequence[int], source: str) -> str | None:
    """The message for images that ``data.size`` centre-crops (None when none is larger than ``size``):
    how many images, what share of the pixels is cut, and what to do instead."""
    th, tw = int(size[0]), int(size[1])
    total = cut = n_cut = 0
    largest = (0, 0)
    for h, w in shapes:
        total += h * w
        kept = min(h, th) * min(w, tw)
        if kept < h * w:
            n_cut += 1
            cut += h * w - kept
            largest = max(largest, (h, w), key=lambda s: s[0] * s[1])
    if not n_cut:
        return None
    return (
        f"{source}: data.size {th}x{tw} is smaller than {n_cut} of {len(shapes)} images (largest "
        f"{largest[0]}x{largest[1]}), which are centre-cropped to it: {100 * cut / total:.1f} % of all pixels "
        f"({cut:,} of {total:,}) are cut away and never trained on or evaluated. Set data.size: null (full "
        "resolution) with data.patch_size: [H, W] to train on random patches of the whole images"
    )


CROP_MARK = "centre-cropped to it"  # in every crop message: the loader has already shown it as a warning


def warn_crop(notes: list[str], shapes, size, source: str) -> None:
    """Warn once (one ``warning:`` line from the CLI) and note in ``notes`` (reports show them) when
    ``data.size`` crops images: losing pixels must never be silent."""
    message = crop_warning(shapes, size, source)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=3)
        notes.append(message)


def resolve_data_path(data_cfg: dict) -> tuple[Path, bool]:
    """Returns the path to read and whether it is the project's synthesized data: a set named by its
    ``data.path`` (``synth:demo``, ``mfish:pairs``: :func:`~medseg.data.registry.data_set_named`, made here if
    missing), else the path itself, which must exist."""
    spec = str(data_cfg["path"])
    named = data_set_named(spec)
    if named is not None:
        return named.resolve(data_cfg)
    if spec.startswith("synth:"):
        raise DataValidationError(None, f"unknown synthesized set {spec!r}; use {synthesizer_names()}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataValidationError(
            path, "data not found (give an HDF5 file in the Pommier layout or a folder with images/ and masks/)"
        )
    return path, is_synthesized(path)


def is_synthesized(path: Path) -> bool:
    """Whether the provenance medseg wrote says SYNTHESIZED: a file's JSON sidecar (``medseg data synth``), a
    folder's ``manifest.json`` (``medseg data synth-gi``)."""
    if path.is_dir():
        sidecar = path / "manifest.json"
    else:
        sidecar = path.with_name(path.name + ".json")
        if not sidecar.exists():
            sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        import json

        try:
            return bool(json.loads(sidecar.read_text()).get("synthesized", False))
        except (ValueError, OSError, AttributeError):
            return False
    return False


def load_data(data_cfg: dict, num_classes: int) -> SegmentationData:
    """The 2D data set of a config's ``data`` section: a Pommier HDF5 file or an images/ + masks/ folder, sized
    by ``data.size`` (see the module docstring: padding is silent, cropping warns, null keeps each image's
    own size on a common canvas with :attr:`SegmentationData.boxes`)."""
    path, synthesized = resolve_data_path(data_cfg)
    for key, off in (("resize", False), ("context_slices", 0)):
        if (data_cfg.get(key) or off) != off:  # never ignored silently
            raise ConfigError(
                f"data.{key} is read for slice data in scans (the UW-Madison GI folder, "
                f"data.format: uwgi); {path} is not one: remove data.{key}"
                + (" (data.size pads or centre-crops 2D images)" if key == "resize" else "")
            )
    fmt = data_cfg.get("format", "auto")
    if fmt == "auto":
        fmt = "folder" if path.is_dir() else "pommier"
    size = tuple(data_cfg["size"]) if data_cfg.get("size") else None
    notes: list[str] = []
    boxes: list[Box] | None = None
    groups: list[str] | None = None
    split_file: str | None = None
    limit = data_cfg.get("limit")
    if fmt == "pommier":
        images, labels, report = read_pommier_h5(
            path,
            key=data_cfg.get("h5_key", "dataset_1"),
            num_classes=num_classes,
            stray_labels=data_cfg["stray_labels"],
        )
        if report.stray_pixels:
            notes.append(f"{path.name}: {report.summary()}")
        if limit:
            images, labels = images[: int(limit)], labels[: int(limit)]
        original = images.shape[1:]
        pixels = int(np.prod(size)) if size else int(np.prod(original))
        check_dataset_bytes(
            path,
            len(images) * pixels * (np.dtype(np.float32).itemsize + 1),
            what=f"{len(images):,} images of {'x'.join(map(str, size or original))} (float32 + labels)",
        )
        if size:
            warn_crop(notes, [tuple(original)] * len(images), size, path.name)
            images = pad_to(images, size, data_cfg["image_pad_value"])
            labels = pad_to(labels, size, 0)
        images = images.astype(np.float32) / 255.0
        names = [f"{path.stem}[{i}]" for i in range(len(images))]
        groups = read_groups(path, len(images))  # mfish-pairs files: the slide of each pair (split by slide)
        if groups is not None:
            ready = path.with_name(path.stem + ".splits.json")  # mfish-pairs' own split by slide
            split_file = str(ready) if ready.is_file() and not limit else None
            notes.append(
                f"{path.name}: pairs of {len(set(groups))} slides; splits keep each slide's pairs together"
                + (f" (the file's own split {ready.name}, unless splits.file says otherwise)" if split_file else "")
            )
    elif fmt == "folder":
        images, labels, names, original, boxes = _load_folder(path, data_cfg, num_classes, size, limit, notes)
    else:
        raise DataValidationError(
            path,
            f"unknown data format {fmt!r}; use auto, pommier, folder or uwgi (the "
            "UW-Madison folder, read by medseg.data.uwgi_dataset)",
        )
    return SegmentationData(
        np.ascontiguousarray(images, dtype=np.float32),
        np.ascontiguousarray(labels, dtype=np.uint8),
        names,
        str(path),
        synthesized,
        notes,
        tuple(original),
        boxes=boxes,
        groups=groups,
        split_file=split_file,
    )


def _load_folder(path: Path, data_cfg: dict, num_classes: int, size: tuple | None, limit, notes: list[str]) -> tuple:
    """An images/ + masks/ folder for :func:`load_data`: (images, labels, names, original shape, boxes); its
    notes are appended to ``notes``."""
    from medseg.data.folder import load_folder_dataset, pair_files, resolve_folder
    from medseg.formats.images import image_shape

    images_dir, masks_dir = resolve_folder(path)
    # The sizes from the headers (nothing decoded): what data.size would crop, or the common canvas.
    shapes = [tuple(int(v) for v in image_shape(p)[:2]) for p in pair_files(images_dir, masks_dir).images]
    used = shapes[: int(limit)] if limit else shapes
    load_size = size
    boxes: list[Box] | None = None
    if size:
        warn_crop(notes, used, size, path.name)
    elif len(set(shapes)) > 1:  # full resolution, images of different sizes: one canvas, boxes recorded
        load_size = (max(h for h, _ in shapes), max(w for _, w in shapes))
        boxes = [((load_size[0] - h) // 2, (load_size[1] - w) // 2, h, w) for h, w in used]
        small, large = (f(used, key=lambda s: s[0] * s[1]) for f in (min, max))
        notes.append(
            f"{path.name}: {len(set(used))} image sizes at full resolution (from "
            f"{small[0]}x{small[1]} to {large[0]}x{large[1]}), held on a "
            f"{load_size[0]}x{load_size[1]} canvas; each image is used and scored within its own size"
        )
    images, labels, names = load_folder_dataset(
        images_dir,
        masks_dir,
        num_classes=num_classes,
        size=load_size,
        mask_values=data_cfg.get("mask_values"),
        pad_value=data_cfg["image_pad_value"],
    )
    if limit:
        images, labels, names = images[: int(limit)], labels[: int(limit)], names[: int(limit)]
    original = images.shape[1:]
    return images, labels, names, original, boxes


class SegmentationDataset(Dataset):
    """Samples ``{"image": (C, H, W) float, "label": (H, W) long | (K, H, W), "index": i}`` from a subset of the
    data (C = 1, or 2k + 1 slices with 2.5D context; K label channels in multilabel tasks).

    Each image comes at its own size (cropped to its box when the data hold images of different sizes), fed
    as ``normalize`` says (``data.normalize``: :func:`~medseg.data.transforms.normalize_input`, computed on the
    whole image), then through ``transform`` (augmentation, patches)."""

    def __init__(self, data: SegmentationData, indices, transform: Callable | None = None, normalize: str = "range"):
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        idx = int(self.indices[i])
        image, label = self.data.item(idx)
        image = normalize_input(image, self.normalize)
        if self.data.context is None:  # one channel; a 2.5D stack has its channels already
            image = image[None]
        sample = {
            "image": torch.from_numpy(np.array(image, dtype=np.float32)),
            "label": torch.from_numpy(label.astype(np.int64)),
        }
        if self.transform is not None:
            sample = self.transform(sample)
        sample["index"] = idx
        return sample
