"""What several data sets share: reading as a Pommier-layout file (the ``synth:`` chromosome pairs and the
``mfish:`` sets are such files), reading as a UW-Madison folder (``synth:gi`` is one), telling a config of
volumes. Kept apart from the plug-in modules so that none imports another: each registers itself when
:mod:`medseg.data.sets` imports it, in that package's order."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import DataSet, Description, InfoRequest, Rows


def is_volume_config(cfg: Mapping) -> bool:
    """A config of volumes: ``task.spatial_dims: 3``."""
    return int(cfg.get("task", {}).get("spatial_dims", 2)) == 3


def describe_hdf5(path: Path, stray_labels: str, n: int | None, names: list[str] | None) -> Rows:
    """An HDF5 file read as training reads it: images, shape, pixels per label value, whether synthesized."""
    import numpy as np

    from medseg.config import DEFAULTS
    from medseg.data.datasets import load_data

    cfg = {**DEFAULTS["data"], "path": str(path), "stray_labels": stray_labels, "size": None}
    data = load_data(cfg, n or 4)
    found, counted = np.unique(data.labels, return_counts=True)
    label = (lambda v: f"{v} {names[v]}") if names else str
    rows = [
        ("images", str(len(data))),
        ("shape", str(data.images.shape[1:])),
        ("label pixels", ", ".join(f"{label(int(v))}: {c}" for v, c in zip(found, counted, strict=True))),
        ("synthesized", str(data.synthesized)),
    ]
    return rows + [("note", note) for note in data.notes]


class PommierLayout(DataSet):
    """A set read as a Pommier-layout file: loaded by :func:`~medseg.data.datasets.load_data`, described as one."""

    def load(self, cfg: dict, progress: bool = True):
        from medseg.data.datasets import load_data

        return load_data(cfg["data"], len(cfg["task"]["class_names"]))

    def describe(self, path: Path, request: InfoRequest) -> Description:
        return Description(str(path), describe_hdf5(path, request.stray_labels, request.n_classes, request.names))


def describe_uwgi(path: Path) -> list[str]:
    """Two lines on a UW-Madison GI folder: what the file names and train.csv say (nothing decoded), and how to
    train and analyse it."""
    from collections import Counter

    from medseg.data.uwgi import CLASSES, check_consistency, read_train_csv, scan_index

    rles = read_train_csv(path / "train.csv")
    index = scan_index(path)
    check_consistency(index, rles)
    scans = {(r.case, r.day) for r in index}
    sizes = Counter(f"{r.width}x{r.height}" for r in index)
    with_masks = sum(any(rles[r.id][c] for c in CLASSES) for r in index)
    per_organ = {c: sum(bool(rles[r.id][c]) for r in index) for c in CLASSES}
    return [
        f"{path}: UW-Madison GI-tract layout — {len(index):,} slices in {len(scans)} scans of "
        f"{len({r.case for r in index})} cases; {with_masks:,} slices with a mask, {len(index) - with_masks:,} "
        "without; slices per organ: "
        + ", ".join(f"{c} {n:,}" for c, n in per_organ.items())
        + "; sizes (W x H): "
        + ", ".join(f"{k} {v:,}" for k, v in sizes.most_common()),
        "train it with configs/gi/unet4.yaml (task.mode multilabel, data.format uwgi); the paper's "
        "analysis: medseg data analyze " + str(path),
    ]


class UWGILayout(DataSet):
    """A set read as a UW-Madison folder: loaded by :func:`~medseg.data.uwgi_dataset.load_uwgi_data`."""

    task = "gi"

    def load(self, cfg: dict, progress: bool = True):
        from medseg.data.uwgi_dataset import load_uwgi_data

        return load_uwgi_data(cfg["data"], cfg["task"], progress)
