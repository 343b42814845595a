"""One path from a config's ``data`` section to tensors: load → pad → in-memory dataset → transforms.

The whole chromosome set is small (13,434 × 128 × 128 bytes ≈ 220 MB as uint8), so it is held in memory
as uint8 and converted per batch; a generic 2D folder set goes through the same class. Because it is held
whole, its size is checked before it is converted: each image against the voxel budget, the whole set
against the memory limit (:mod:`medseg.data.limits`), with a message naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.data.limits import check_dataset_bytes
from medseg.data.pommier import pad_to, read_pommier_h5
from medseg.errors import DataValidationError
from medseg.paths import medseg_home


@dataclass
class SegmentationData:
    """Images (N, H, W) float32 in [0, 1], labels (N, H, W) uint8 class indices, plus provenance."""

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

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        """Content hash of the labels: ties a saved split to the exact data it was made for."""
        h = hashlib.sha1()
        h.update(str(self.labels.shape).encode())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()[:12]


def synth_path(kind: str, n_pairs: int, seed: int) -> Path:
    if kind == "pommier":
        return medseg_home() / "synth" / f"pommier_13434_seed{seed}.h5"
    return medseg_home() / "synth" / f"demo_{n_pairs}_seed{seed}.h5"


def resolve_data_path(data_cfg: dict) -> tuple[Path, bool]:
    """Returns the path to read and whether it is the project's synthesized data (made here if missing)."""
    spec = str(data_cfg["path"])
    if spec.startswith("synth:"):
        kind = spec.split(":", 1)[1]
        if kind not in ("demo", "pommier"):
            raise DataValidationError(None, f"unknown synthesized set {spec!r}; use synth:demo or synth:pommier")
        path = synth_path(kind, int(data_cfg["synth_pairs"]), int(data_cfg["synth_seed"]))
        if not path.exists():
            from medseg.data.synth import run_synth

            run_synth(path, pommier=kind == "pommier", n_pairs=None if kind == "pommier" else int(data_cfg["synth_pairs"]),
                      seed=int(data_cfg["synth_seed"]))
        return path, True
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataValidationError(path, "data not found (give an HDF5 file in the Pommier layout or a folder with images/ and masks/)")
    return path, _is_synthesized(path)


def _is_synthesized(path: Path) -> bool:
    sidecar = path.with_name(path.name + ".json") if path.is_file() else None
    if sidecar is None or not sidecar.exists():
        sidecar = path.with_suffix(".json") if path.is_file() else None
    if sidecar is not None and sidecar.exists():
        import json

        try:
            return bool(json.loads(sidecar.read_text()).get("synthesized", False))
        except (ValueError, OSError):
            return False
    return False


def load_data(data_cfg: dict, num_classes: int) -> SegmentationData:
    path, synthesized = resolve_data_path(data_cfg)
    fmt = data_cfg.get("format", "auto")
    if fmt == "auto":
        fmt = "folder" if path.is_dir() else "pommier"
    size = tuple(data_cfg["size"]) if data_cfg.get("size") else None
    notes: list[str] = []
    if fmt == "pommier":
        images, labels, report = read_pommier_h5(path, key=data_cfg.get("h5_key", "dataset_1"), num_classes=num_classes,
                                                 stray_labels=data_cfg["stray_labels"])
        if report.stray_pixels:
            notes.append(f"{path.name}: {report.summary()}")
        limit = data_cfg.get("limit")
        if limit:
            images, labels = images[: int(limit)], labels[: int(limit)]
        original = images.shape[1:]
        pixels = int(np.prod(size)) if size else int(np.prod(original))
        check_dataset_bytes(path, len(images) * pixels * (np.dtype(np.float32).itemsize + 1),
                            what=f"{len(images):,} images of {'x'.join(map(str, size or original))} (float32 + labels)")
        if size:
            images = pad_to(images, size, data_cfg["image_pad_value"])
            labels = pad_to(labels, size, 0)
        images = images.astype(np.float32) / 255.0
        names = [f"{path.stem}[{i}]" for i in range(len(images))]
    elif fmt == "folder":
        from medseg.data.folder import load_folder_dataset, resolve_folder

        images_dir, masks_dir = resolve_folder(path)
        images, labels, names = load_folder_dataset(images_dir, masks_dir, num_classes=num_classes, size=size,
                                                    mask_values=data_cfg.get("mask_values"),
                                                    pad_value=data_cfg["image_pad_value"])
        limit = data_cfg.get("limit")
        if limit:
            images, labels, names = images[: int(limit)], labels[: int(limit)], names[: int(limit)]
        original = images.shape[1:]
    else:
        raise DataValidationError(path, f"unknown data format {fmt!r}; use auto, pommier or folder")
    return SegmentationData(np.ascontiguousarray(images, dtype=np.float32), np.ascontiguousarray(labels, dtype=np.uint8),
                            names, str(path), synthesized, notes, tuple(original))


class SegmentationDataset(Dataset):
    """Samples ``{"image": (1, H, W) float, "label": (H, W) long, "index": i}`` from a subset of the data."""

    def __init__(self, data: SegmentationData, indices, transform: Callable | None = None):
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        idx = int(self.indices[i])
        sample = {"image": torch.from_numpy(self.data.images[idx][None].copy()),
                  "label": torch.from_numpy(self.data.labels[idx].astype(np.int64))}
        if self.transform is not None:
            sample = self.transform(sample)
        sample["index"] = idx
        return sample
