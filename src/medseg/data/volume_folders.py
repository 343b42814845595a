"""3D volume datasets for `medseg train` / `cv` / `evaluate` (CTV thesis chapter 2): CT + label pairs,
preprocessed as in the thesis and held in memory as one :class:`~medseg.data.datasets.SegmentationData`.

``data.path`` may be

- ``synth:phantom`` — the project's CT-like phantom (:mod:`medseg.data.phantom`, DEMO DATA, not clinical),
  written once under ``$MEDSEG_HOME/synth/`` with ``data.phantom`` (count, shape, spacing, seed);
- a folder written by ``medseg data phantom`` (``manifest.json``: its HDF5, NIfTI or DICOM cases);
- a folder with ``images/`` and ``labels/`` holding volumes of the same names (NIfTI ``.nii``/``.nii.gz`` or
  HDF5 ``.h5``), nnU-Net's ``imagesTr``/``labelsTr`` too (``case_0000.nii.gz`` ↔ ``case.nii.gz``);
- a folder of ``<case>_image.nii.gz`` + ``<case>_label.nii.gz`` pairs, or of ``.h5`` files each holding an
  ``image`` and a ``label`` dataset (``medseg data convert`` / ``write_hdf5_volume(..., label=...)``).

Every image is clipped, normalised and resampled by :func:`~medseg.data.transforms3d.preprocess_volume`
(config ``preprocess``), every label by :func:`~medseg.data.transforms3d.preprocess_label` (nearest), so
all cases share one grid: images (N, D, H, W) float32, labels (N, C, D, H, W) uint8 for ``multilabel``
tasks (class c = label value c + 1, value 0 is background) or (N, D, H, W) class indices for
``multiclass``. Metrics computed on these arrays are on the preprocessed grid (as in the thesis, which
evaluated its 72 × 256 × 256 volumes); ``medseg predict`` maps predictions back to each input's grid.

Every volume is checked by its reader (voxel budget from the header, finite values, usable geometry) and
the preprocessed set, held in memory whole, against the memory limit of :mod:`medseg.formats.limits` once
the first case shows how large each one is: before the rest is read.

Splits are by patient (the thesis' 3-fold cross-validation by patient): ``SegmentationData.groups`` holds
each case's patient id — by default the case itself; ``data.patient_pattern`` (a regular expression
whose first group is the patient id, matched against the case name) groups several series of one patient.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from medseg.data.datasets import SegmentationData
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.hdf5 import HDF5_SUFFIXES
from medseg.formats.limits import check_dataset_bytes
from medseg.formats.nifti import NIFTI_SUFFIXES
from medseg.formats.volume_files import strip_suffix, suffix_of
from medseg.paths import medseg_home
from medseg.progress import Progress


def _suffix(path: Path) -> str | None:
    """The NIfTI / HDF5 suffix of a volume file, None for any other file."""
    s = suffix_of(path)
    return s if s in NIFTI_SUFFIXES + HDF5_SUFFIXES else None


def phantom_dir(settings: dict) -> Path:
    shape = "x".join(str(int(v)) for v in settings["shape"])
    return medseg_home() / "synth" / f"phantom_n{int(settings['n'])}_{shape}_seed{int(settings['seed'])}"


def ensure_phantom(settings: dict, progress: bool = True) -> Path:
    """The ``synth:phantom`` folder for these settings, written (HDF5 only: fast) if missing."""
    from medseg.data.phantom import write_phantom

    out = phantom_dir(settings)
    if not (out / "manifest.json").is_file():
        write_phantom(
            out,
            n=int(settings["n"]),
            formats=("hdf5",),
            shape=settings["shape"],
            spacing=settings["spacing"],
            seed=int(settings["seed"]),
            progress=progress,
            overwrite=True,
        )
    return out


def _manifest_pairs(folder: Path) -> list[tuple[str, Path, Path | None, str]]:
    """(case, image path, label path or None (label inside the HDF5), key) from a phantom manifest."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        cases = manifest["cases"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataValidationError(folder / "manifest.json", f"not a readable medseg phantom manifest ({exc})") from None
    pairs = []
    for case in cases:
        files, name = case.get("files", {}), case.get("case")
        if "hdf5" in files:
            pairs.append((name, folder / files["hdf5"], None, "h5"))
        elif "nifti_image" in files:
            pairs.append((name, folder / files["nifti_image"], folder / files["nifti_label"], "file"))
        elif "dicom" in files:
            pairs.append((name, folder / files["dicom"], folder / files["dicom_label"], "file"))
        else:
            raise DataValidationError(folder / "manifest.json", f"case {name!r} lists no image file")
    return pairs


def _folder_pairs(folder: Path) -> list[tuple[str, Path, Path | None, str]]:
    for img_name, lab_name in (("images", "labels"), ("imagesTr", "labelsTr")):
        images_dir, labels_dir = folder / img_name, folder / lab_name
        if images_dir.is_dir() and labels_dir.is_dir():
            labels = {strip_suffix(p): p for p in labels_dir.iterdir() if _suffix(p)}
            pairs, missing = [], []
            for p in sorted(images_dir.iterdir()):
                if not _suffix(p):
                    continue
                stem = strip_suffix(p)
                case = re.sub(r"_0000$", "", stem)  # nnU-Net's channel suffix
                lab = labels.get(stem) or labels.get(case)
                if lab is None:
                    missing.append(p.name)
                else:
                    pairs.append((case, p, lab, "file"))
            if missing:
                raise DataValidationError(
                    labels_dir, f"no label volume for {len(missing)} image(s): {', '.join(missing[:5])}"
                )
            return pairs
    pairs = []
    for p in sorted(folder.iterdir()):
        stem = strip_suffix(p)
        if _suffix(p) in NIFTI_SUFFIXES and stem.endswith("_image"):
            case = stem[: -len("_image")]
            lab = next(
                (folder / f"{case}_label{s}" for s in NIFTI_SUFFIXES if (folder / f"{case}_label{s}").is_file()), None
            )
            if lab is None:
                raise DataValidationError(p, f"no {case}_label.nii.gz beside it")
            pairs.append((case, p, lab, "file"))
        elif _suffix(p) in HDF5_SUFFIXES:
            pairs.append((stem, p, None, "h5"))
    return pairs


def volume_pairs(folder: Path) -> list[tuple[str, Path, Path | None, str]]:
    """The (case, image, label, kind) pairs a volume folder holds, sorted by case."""
    if (folder / "manifest.json").is_file():
        pairs = _manifest_pairs(folder)
    else:
        pairs = _folder_pairs(folder)
    if not pairs:
        raise DataValidationError(
            folder,
            "no volumes found: expected a phantom folder (manifest.json), images/ + "
            "labels/, <case>_image.nii.gz + <case>_label.nii.gz, or .h5 files with "
            "'image' and 'label' datasets",
        )
    return sorted(pairs, key=lambda p: p[0])


def _read_pair(image_path: Path, label_path: Path | None, kind: str):
    from medseg.formats.hdf5 import read_hdf5_volume
    from medseg.formats.volume_files import read_volume

    if kind == "h5":
        return read_hdf5_volume(image_path, "image"), read_hdf5_volume(image_path, "label")
    return read_volume(image_path), read_volume(label_path)


def _label_channels(label: np.ndarray, mode: str, n_classes: int, path: Path) -> np.ndarray:
    values = np.unique(label)
    top = n_classes if mode == "multilabel" else n_classes - 1
    bad = values[(values < 0) | (values > top)]
    if bad.size:
        raise DataValidationError(path, f"label values {bad.tolist()[:10]} outside 0..{top} for classes of this task")
    label = label.astype(np.uint8)
    if mode == "multiclass":
        return label
    return np.stack([label == c + 1 for c in range(n_classes)]).astype(np.uint8)


def patient_ids(cases: list[str], pattern: str | None) -> list[str]:
    if not pattern:
        return list(cases)
    rx = re.compile(pattern)
    out = []
    for case in cases:
        m = rx.search(case)
        if m is None:
            raise ConfigError(f"data.patient_pattern {pattern!r} does not match case {case!r}")
        out.append(m.group(1) if m.groups() else m.group(0))
    return out


def load_volume_data(cfg: dict, progress: bool = True) -> SegmentationData:
    """Read, check and preprocess every case of ``cfg['data']['path']`` (see the module docstring)."""
    from medseg.data.transforms3d import preprocess_label, preprocess_volume

    data_cfg = cfg["data"]
    spec = str(data_cfg["path"])
    synthesized = False
    if spec.startswith("synth:"):
        if spec != "synth:phantom":
            raise DataValidationError(None, f"unknown synthesized volume set {spec!r}; use synth:phantom")
        folder, synthesized = ensure_phantom(data_cfg["phantom"], progress), True
    else:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise DataValidationError(
                folder, "volume data not found (give a folder of CT volumes and labels, or synth:phantom)"
            )
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                synthesized = bool(json.loads(manifest.read_text()).get("demo", False))
            except (OSError, ValueError):
                synthesized = False
    pairs = volume_pairs(folder)
    if data_cfg.get("limit"):
        pairs = pairs[: int(data_cfg["limit"])]
    mode, n_classes = cfg["task"]["mode"], len(cfg["task"]["class_names"])
    images, labels, names, shapes, spacings = [], [], [], [], []
    for case, img_path, lab_path, kind in Progress(pairs, desc="reading volumes", unit="case", disable=not progress):
        img, lab = _read_pair(img_path, lab_path, kind)
        where = lab_path or img_path
        if lab.shape != img.shape:
            raise DataValidationError(
                where, f"label grid {lab.shape} differs from its image's {img.shape} ({img_path.name})"
            )
        images.append(preprocess_volume(img.array, cfg))
        labels.append(preprocess_label(_label_channels(lab.array, mode, n_classes, where), cfg))
        if len(images) == 1:
            check_dataset_bytes(
                folder,
                len(pairs) * (images[0].nbytes + labels[0].nbytes),
                what=f"{len(pairs)} preprocessed volumes of {images[0].shape}",
            )
        names.append(case)
        shapes.append(list(img.shape))
        spacings.append(list(img.spacing))
    groups = patient_ids(names, data_cfg.get("patient_pattern"))
    notes = [f"{len(names)} volumes of {len(set(groups))} patients, preprocessed to {tuple(images[0].shape)}"]
    return SegmentationData(
        np.stack(images),
        np.stack(labels),
        names,
        str(folder),
        synthesized,
        notes,
        tuple(images[0].shape),
        groups=groups,
        volume_info={"original_shapes": shapes, "spacings": spacings},
    )


__all__ = ["ensure_phantom", "load_volume_data", "patient_ids", "phantom_dir", "volume_pairs"]
