"""The data fingerprint `medseg plan` configures training from (nnU-Net's "dataset fingerprint").

:func:`fingerprint` reads a data set with medseg's own readers and describes it as plain JSON data:

* ``kind``: ``folder2d`` (``images/`` + ``masks/`` PNG/TIFF, :mod:`medseg.data.folder`), ``volumes3d`` (any
  volume folder :func:`medseg.data.volume_folders.volume_pairs` knows: NIfTI, HDF5, DICOM via a phantom manifest) or
  ``pommier`` (an HDF5 file in the Pommier layout); ``synth:phantom`` / ``synth:demo`` / ``synth:pommier``
  are the project's synthesized sets, made on first use;
* ``spatial_dims``, ``n_cases`` and ``n_sampled`` (the cases whose pixels were read for the statistics);
* ``shape`` (min / median / max per axis: (H, W) or (D, H, W) = (z, y, x)) and, for volumes, ``spacing``
  (median / min / max per axis in mm, ``anisotropy`` = coarsest / finest median spacing, ``extent_mm`` = the
  volumes' physical size, shape × spacing, per axis);
* ``intensity``: per channel (medseg reads grey images: one), statistics over all sampled voxels
  (``global``) and over the voxels inside a label (``foreground``): mean, std, min, max, median and the
  0.5 / 99.5 percentiles, in the stored units (grey values, Hounsfield units);
* ``dtype`` and ``bits`` of the stored images (8 / 16-bit PNG, int16 CT...), ``max_value``;
* ``label_values`` found in the masks as stored (0/255 masks give [0, 255]), their voxel counts
  (``label_voxels``) and the number of cases holding each (``label_cases``);
* ``modality`` where the files say it (DICOM Modality, medseg's NIfTI description, HDF5 attribute,
  nnU-Net's ``dataset.json``), else null; ``label_names`` from a ``dataset.json`` beside the data.

Memory stays bounded: cases are read one at a time; at most ``max_cases`` cases (spread evenly over the
sorted list) are read for the intensity statistics and, in 3D, for shapes and spacings; at most
``voxels_per_case`` voxels of each, drawn at random (seeded), inside and outside the labels enter the
statistics. Every 2D mask is read (labels are small and a class missed here would make training fail on
its first unseen value); image sizes come from the file headers of every image.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.progress import Progress

DEFAULT_MAX_CASES = 200
DEFAULT_VOXELS_PER_CASE = 10_000
PERCENTILES = (0.5, 99.5)
_POMMIER_CHUNK = 512  # images read from a Pommier file at once (512 × 94 × 93 × 2 bytes ≈ 9 MB)


# --- helpers --------------------------------------------------------------------------------------------


def _sample_indices(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)`` (first and last included): the statistics see
    the whole set, not its first cases."""
    if n <= k:
        return list(range(n))
    return sorted({round(v) for v in np.linspace(0, n - 1, k)})


def _draw(values: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``k`` of ``values`` (1D), drawn without replacement, as float64."""
    values = np.asarray(values).ravel()
    if values.size > k:
        values = values[rng.choice(values.size, size=k, replace=False)]
    return values.astype(np.float64)


def intensity_stats(values: np.ndarray) -> dict | None:
    """Mean, std, min, max, median and the 0.5 / 99.5 percentiles of ``values`` (None when empty)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return None
    lo, hi = np.percentile(v, PERCENTILES)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "median": float(np.median(v)),
        "p00_5": float(lo),
        "p99_5": float(hi),
        "n_voxels": int(v.size),
    }


def _axis_stats(rows: list[list[float]], cast=float) -> dict:
    arr = np.asarray(rows, dtype=np.float64)
    return {
        "min": [cast(v) for v in arr.min(0)],
        "median": [cast(v) for v in np.median(arr, 0)],
        "max": [cast(v) for v in arr.max(0)],
    }


def _bits(dtype: np.dtype) -> int:
    return int(np.dtype(dtype).itemsize * 8)


class _Collector:
    """Gathers what every kind of data set reports: shapes, spacings, dtypes, modalities, label counts and
    the sampled intensities (bounded: ``voxels_per_case`` per case, inside and outside the labels)."""

    def __init__(self, voxels_per_case: int, seed: int):
        self.k = int(voxels_per_case)
        self.rng = np.random.default_rng(seed)
        self.shapes: list[list[int]] = []
        self.spacings: list[list[float]] = []
        self.extents: list[list[float]] = []  # shape × spacing, mm
        self.dtypes: Counter[str] = Counter()
        self.modalities: Counter[str] = Counter()
        self.label_voxels: Counter[int] = Counter()
        self.label_cases: Counter[int] = Counter()
        self.global_values: list[np.ndarray] = []
        self.fg_values: list[np.ndarray] = []
        self.max_value = -math.inf
        self.n_sampled = 0

    def labels(self, label: np.ndarray) -> None:
        values, counts = np.unique(np.asarray(label), return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            self.label_voxels[int(v)] += int(c)
            self.label_cases[int(v)] += 1

    def image(self, image: np.ndarray, label: np.ndarray | None) -> None:
        image = np.asarray(image)
        self.n_sampled += 1
        self.dtypes[str(image.dtype)] += 1
        self.max_value = max(self.max_value, float(image.max()))
        self.global_values.append(_draw(image, self.k, self.rng))
        if label is not None and label.shape == image.shape:
            fg = np.asarray(label) > 0
            if fg.any():
                self.fg_values.append(_draw(image[fg], self.k, self.rng))

    def result(self, **fields) -> dict:
        dtype = self.dtypes.most_common(1)[0][0] if self.dtypes else None
        spacing = None
        if self.spacings:
            spacing = _axis_stats(self.spacings)
            med = spacing["median"]
            spacing["anisotropy"] = float(max(med) / min(med))
            spacing["extent_mm"] = _axis_stats(self.extents)
        total = sum(self.label_voxels.values())
        values = sorted(self.label_voxels)
        out = {
            "shape": _axis_stats(self.shapes, int) if self.shapes else None,
            "spacing": spacing,
            "dtype": dtype,
            "dtypes": dict(self.dtypes),
            "bits": _bits(dtype) if dtype else None,
            "max_value": None if self.max_value == -math.inf else float(self.max_value),
            "modality": self.modalities.most_common(1)[0][0] if self.modalities else None,
            "label_values": values,
            "label_voxels": {str(v): int(self.label_voxels[v]) for v in values},
            "label_frequency": {str(v): float(self.label_voxels[v] / total) for v in values} if total else {},
            "label_cases": {str(v): int(self.label_cases[v]) for v in values},
            "n_sampled": self.n_sampled,
            "intensity": [
                {
                    "channel": 0,
                    "global": intensity_stats(np.concatenate(self.global_values)) if self.global_values else None,
                    "foreground": intensity_stats(np.concatenate(self.fg_values)) if self.fg_values else None,
                }
            ],
        }
        out.update(fields)
        return out


def _dataset_json(folder: Path) -> tuple[dict[int, str], str | None]:
    """Label names {value: name} and the modality of channel 0 from nnU-Net's ``dataset.json`` (v1: labels
    {"0": "background"}, modality {"0": "CT"}; v2: labels {"background": 0}, channel_names {"0": "CT"})."""
    path = folder / "dataset.json"
    if not path.is_file():
        return {}, None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataValidationError(path, f"not readable JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(meta, dict):
        raise DataValidationError(path, "expected a JSON object (nnU-Net's dataset.json)")
    names: dict[int, str] = {}
    labels = meta.get("labels") or {}
    if isinstance(labels, dict):
        for key, value in labels.items():
            try:
                if isinstance(value, int) and not isinstance(value, bool):  # v2: name -> value
                    names[int(value)] = str(key)
                else:  # v1: "value" -> name
                    names[int(key)] = str(value)
            except (TypeError, ValueError):
                raise DataValidationError(
                    path, f"labels entry {key!r}: {value!r} is not a label value and a name"
                ) from None
    channels = meta.get("channel_names") or meta.get("modality") or {}
    modality = channels.get("0") if isinstance(channels, dict) else None
    return names, (str(modality) if modality else None)


# --- the three kinds of data sets -----------------------------------------------------------------------


def _read_mask_values(path: Path) -> np.ndarray:
    """A 2D mask as stored (grey values, palette indices), without mapping them to classes."""
    from medseg.data.folder import read_image, read_mask

    try:
        return read_mask(path, 256)  # every uint8 value kept as it is; palette masks as their indices
    except DataValidationError:
        grey = read_image(path)  # a 16-bit mask (0/65535) has values read_mask cannot keep as classes
        if grey.dtype.kind in "ui" and grey.size and int(grey.max()) > 255:
            return grey
        raise


def _check_class_count(masks_dir: Path, mask_path: Path, n_values: int) -> None:
    """Refuse masks holding more distinct values than a task can have classes (:data:`MAX_CLASSES`, uint8
    labels): each stored value becomes a class, so the plan would name a task that training then refuses.
    Raised at the file that crosses the limit, so the message can name it."""
    from medseg.formats.limits import MAX_CLASSES

    if n_values > MAX_CLASSES:
        raise DataValidationError(
            mask_path,
            f"the masks hold {n_values} distinct values so far (this file included), "
            f"more than the {MAX_CLASSES} classes a task can have (one class per "
            "stored value; labels are uint8); masks must hold class indices or one "
            f"grey value per class: is {masks_dir.name}/ a folder of grey images?",
        )


def _folder2d(
    root: Path, images_dir: Path, masks_dir: Path, max_cases: int, collector: _Collector, progress: bool
) -> dict:
    from medseg.data.folder import pair_files, read_image
    from medseg.formats.images import image_shape

    pairs = pair_files(images_dir, masks_dir)
    sampled = set(_sample_indices(len(pairs), max_cases))
    for i, (img_path, mask_path) in enumerate(
        Progress(
            list(zip(pairs.images, pairs.masks, strict=True)), desc="fingerprint", unit="image", disable=not progress
        )
    ):
        collector.shapes.append(list(image_shape(img_path))[:2])
        mask = _read_mask_values(mask_path)
        collector.labels(mask)
        _check_class_count(masks_dir, mask_path, len(collector.label_voxels))
        if i in sampled:
            image = read_image(img_path)
            if image.shape != mask.shape:
                raise DataValidationError(
                    img_path,
                    f"image is {image.shape[0]}x{image.shape[1]} (HxW) but its mask "
                    f"{mask_path} is {mask.shape[0]}x{mask.shape[1]}",
                )
            collector.image(image, mask)
    shapes = {tuple(s) for s in collector.shapes}
    return collector.result(
        kind="folder2d", spatial_dims=2, n_cases=len(pairs), same_shape=len(shapes) == 1, path=str(root)
    )


def _volumes3d(folder: Path, spec: str, max_cases: int, collector: _Collector, progress: bool) -> dict:
    from medseg.data.volume_folders import volume_pairs
    from medseg.formats.hdf5 import read_hdf5_volume
    from medseg.formats.volume_files import read_volume

    pairs = volume_pairs(folder)
    sampled = _sample_indices(len(pairs), max_cases)
    for i in Progress(sampled, desc="fingerprint", unit="volume", disable=not progress):
        case, img_path, lab_path, kind = pairs[i]
        if kind == "h5":
            image, label = read_hdf5_volume(img_path, "image"), read_hdf5_volume(img_path, "label")
        else:
            image, label = read_volume(img_path), read_volume(lab_path)
        if label.shape != image.shape:
            raise DataValidationError(
                lab_path or img_path, f"label grid {label.shape} differs from its image's {image.shape} (case {case})"
            )
        collector.shapes.append(list(image.shape))
        collector.spacings.append([float(s) for s in image.spacing])
        collector.extents.append([n * float(s) for n, s in zip(image.shape, image.spacing, strict=True)])
        if image.modality:
            collector.modalities[str(image.modality).upper()] += 1
        collector.labels(label.array)
        collector.image(image.array, label.array)
    return collector.result(kind="volumes3d", spatial_dims=3, n_cases=len(pairs), path=spec)


def _pommier_key(f, path: Path, key: str | None) -> str:
    import h5py

    if key is not None:
        return key
    if "dataset_1" in f:
        return "dataset_1"
    for name, obj in f.items():
        if isinstance(obj, h5py.Dataset) and obj.ndim == 4 and obj.shape[-1] == 2:
            return name
    raise DataValidationError(
        path,
        f"no dataset of images and labels (N x H x W x 2, the Pommier layout) "
        f"among {sorted(f.keys())}; a 2D data set is a folder of images/ + masks/, a 3D "
        "one a folder of volumes",
    )


def _pommier(path: Path, spec: str, key: str | None, max_cases: int, collector: _Collector, progress: bool) -> dict:
    import h5py

    from medseg.formats.hdf5 import hdf5_errors, open_hdf5

    with open_hdf5(path) as f, hdf5_errors(path):
        key = _pommier_key(f, path, key)
        ds = f.get(key, None)
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 4 or ds.shape[-1] != 2 or ds.shape[0] == 0:
            raise DataValidationError(path, f"dataset {key!r} is not N x H x W x 2 (image, label) with N >= 1")
        if ds.dtype != np.uint8:
            raise DataValidationError(path, f"dataset {key!r} has dtype {ds.dtype}; the Pommier layout is uint8")
        n = int(ds.shape[0])
        sampled = set(_sample_indices(n, max_cases))
        bar = Progress(total=n, desc="fingerprint", unit="image", disable=not progress)
        for start in range(0, n, _POMMIER_CHUNK):
            block = ds[start : start + _POMMIER_CHUNK]
            images, labels = block[..., 0], block[..., 1]
            counts = np.bincount(labels.ravel().astype(np.int64), minlength=1)
            present = [np.unique(lab) for lab in labels]
            for v, c in enumerate(counts.tolist()):
                if c:
                    collector.label_voxels[v] += int(c)
                    collector.label_cases[v] += sum(int(v in p) for p in present)
            for j in range(len(block)):
                if start + j in sampled:
                    collector.image(images[j], labels[j])
            bar.update(len(block))
        bar.close()
        shape = [int(ds.shape[1]), int(ds.shape[2])]
    collector.shapes.append(shape)
    return collector.result(kind="pommier", spatial_dims=2, n_cases=n, same_shape=True, h5_key=key, path=spec)


# --- entry point ----------------------------------------------------------------------------------------


def _is_2d_folder(path: Path) -> tuple[Path, Path] | None:
    """``(images/, masks/)`` when ``path`` holds PNG/TIFF images in an ``images/`` folder, else None."""
    from medseg.data.folder import IMAGE_SUFFIXES, resolve_folder

    subdirs = {p.name.lower(): p for p in path.iterdir() if p.is_dir()}
    images = subdirs.get("images")
    if images is None or not any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.iterdir()):
        return None
    return resolve_folder(path)


def fingerprint(
    data_path: str | Path,
    *,
    max_cases: int = DEFAULT_MAX_CASES,
    voxels_per_case: int = DEFAULT_VOXELS_PER_CASE,
    seed: int = 0,
    h5_key: str | None = None,
    progress: bool = True,
) -> dict:
    """Describe the data set at ``data_path`` (see the module docstring): a JSON-safe dict.

    Raises :class:`DataValidationError` naming the path when it is no data set medseg can read, and
    whatever the readers raise for a damaged file (naming that file).
    """
    if max_cases < 1 or voxels_per_case < 1:
        raise ValueError(f"max_cases and voxels_per_case must be >= 1, got {max_cases}, {voxels_per_case}")
    spec = str(data_path)
    from medseg.data.uwgi_dataset import is_uwgi_config

    if is_uwgi_config({"path": spec, "format": "auto"}):  # slices in scans with their own recipe: the GI configs
        raise DataValidationError(
            spec,
            "is UW-Madison GI-tract data (train.csv + train/ scans), which medseg trains "
            "with the paper's recipe instead of a plan: medseg cv configs/gi/unet4.yaml "
            f"--set data.path={spec} (README: 'GI tract (UW-Madison)')",
        )
    collector = _Collector(voxels_per_case, seed)
    label_names: dict[int, str] = {}
    meta_modality = None
    if spec.startswith("synth:"):
        if spec == "synth:phantom":
            from medseg.config import DEFAULTS
            from medseg.data.volume_folders import ensure_phantom

            out = _volumes3d(
                ensure_phantom(DEFAULTS["data"]["phantom"], progress), spec, max_cases, collector, progress
            )
        else:
            from medseg.config import DEFAULTS
            from medseg.data.datasets import resolve_data_path

            path, _ = resolve_data_path({**DEFAULTS["data"], "path": spec})
            out = _pommier(path, spec, h5_key, max_cases, collector, progress)
        out["synthesized"] = True
    else:
        path = Path(spec).expanduser().absolute()  # a plan written elsewhere still finds its data
        if not path.exists():
            raise DataValidationError(
                path,
                "data not found (give a folder of images/ + masks/, a folder of volumes or a Pommier-layout HDF5 file)",
            )
        if path.is_file():
            from medseg.formats.hdf5 import HDF5_SUFFIXES

            if not path.name.lower().endswith(HDF5_SUFFIXES):
                raise DataValidationError(
                    path,
                    "not a data set: give a folder of images/ + masks/ (2D), a folder of "
                    "volumes (3D) or an HDF5 file in the Pommier layout",
                )
            out = _pommier(path, str(path), h5_key, max_cases, collector, progress)
        else:
            label_names, meta_modality = _dataset_json(path)
            folders = _is_2d_folder(path)
            if folders is not None:
                out = _folder2d(path, *folders, max_cases, collector, progress)
            else:
                out = _volumes3d(path, str(path), max_cases, collector, progress)
        out["synthesized"] = False
    if meta_modality and not out["modality"]:
        out["modality"] = meta_modality.upper()
    out["label_names"] = {str(v): name for v, name in sorted(label_names.items())}
    out["sampling"] = {"max_cases": int(max_cases), "voxels_per_case": int(voxels_per_case), "seed": int(seed)}
    return out


__all__ = ["DEFAULT_MAX_CASES", "DEFAULT_VOXELS_PER_CASE", "fingerprint", "intensity_stats"]
