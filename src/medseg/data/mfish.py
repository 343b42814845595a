"""Real M-FISH metaphases (PSI / ADIR "M-FISH Image Set #1", as published in ``jeanpat/MFISH``) as a medseg
2D folder data set.

Published layout (``../shared/data/mfish/`` here; see its README): one folder per slide/patient
(``A01__XY``, ``P07__09``, …), each metaphase as ``<id>D.tif`` (DAPI counterstain, 8-bit grey, 517×645 or
568×768) and ``<id>K.tif`` (the expert karyotype: 0 background, 1–22 autosomes, 23 X, 24 Y, 255 where
chromosomes overlap). "EX" folders hold DAPI images without a karyotype and are left out.

:func:`write_semantic_folder` turns it into the generic ``images/`` + ``masks/`` folder
(:mod:`medseg.data.folder`) for whole-metaphase segmentation with three classes — background, chromosome,
overlap (karyotype 1–24 → 1, 255 → 2) — so the planner, trainer and reports see it as any user's own data.
Image names are ``<folder>__<id>`` so that a split can keep a slide's metaphases together (split by folder,
never by image: :func:`folder_of`). The licence notice (``README.TXT``) is copied beside the derived set, as
the licence requires. A karyotype value outside 0–24/255 is an error naming the file, never dropped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.data.writing import atomic_file
from medseg.errors import DataValidationError
from medseg.progress import Progress

__all__ = ["CLASS_NAMES", "Metaphase", "find_metaphases", "folder_of", "read_metaphase", "semantic_labels",
           "write_semantic_folder"]

CLASS_NAMES = ("background", "chromosome", "overlap")
OVERLAP_VALUE = 255  # the README's "-1"
NOTICE = "README.TXT"


@dataclass(frozen=True)
class Metaphase:
    folder: str  # slide / patient
    id: str
    dapi: Path
    karyotype: Path

    @property
    def name(self) -> str:
        return f"{self.folder}__{self.id}"


def folder_of(name: str) -> str:
    """The slide folder of an image name written by :func:`write_semantic_folder` (``A01__XY__A0101XY`` → ``A01__XY``)."""
    return name.rsplit("__", 1)[0]


def find_metaphases(root: str | Path) -> list[Metaphase]:
    """Every labelled metaphase under ``root`` (pairs ``<id>D.tif`` + ``<id>K.tif``), sorted by folder and id."""
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError(root, "not a folder: expected the M-FISH set (one sub-folder per slide)")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for dapi in sorted(folder.glob("*D.tif")):
            karyo = dapi.with_name(dapi.name[:-5] + "K.tif")
            if karyo.is_file():
                out.append(Metaphase(folder.name, dapi.name[:-5], dapi, karyo))
    if not out:
        raise DataValidationError(root, "no labelled metaphases (<id>D.tif with <id>K.tif) in its sub-folders")
    return out


def _read_tif(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.array(img)
    except (OSError, ValueError) as exc:
        raise DataValidationError(path, f"cannot read the TIFF ({exc})") from exc


def read_metaphase(m: Metaphase) -> tuple[np.ndarray, np.ndarray]:
    """(DAPI uint8 (H, W), karyotype uint8 (H, W)); shapes and karyotype values checked."""
    dapi, karyo = _read_tif(m.dapi), _read_tif(m.karyotype)
    if dapi.ndim != 2 or karyo.shape != dapi.shape:
        raise DataValidationError(m.karyotype, f"karyotype {karyo.shape} does not match the DAPI image {dapi.shape}")
    values = np.unique(karyo)
    bad = values[(values > 24) & (values != OVERLAP_VALUE)]
    if bad.size:
        raise DataValidationError(m.karyotype, f"karyotype values {bad.tolist()} are neither 0–24 nor 255 (overlap)")
    return dapi.astype(np.uint8), karyo.astype(np.uint8)


def semantic_labels(karyotype: np.ndarray) -> np.ndarray:
    """Background 0 / chromosome 1 (any of 1–24) / overlap 2 (255)."""
    out = (karyotype > 0).astype(np.uint8)
    out[karyotype == OVERLAP_VALUE] = 2
    return out


def write_semantic_folder(root: str | Path, out: str | Path, *, limit: int | None = None,
                          progress: bool = True) -> dict:
    """Write ``out/images/<folder>__<id>.png`` (DAPI) and ``out/masks/…png`` (0/1/2), ``manifest.json``
    (class names, each image's folder, pixel counts) and the licence notice; returns the manifest."""
    from PIL import Image

    root, out = Path(root), Path(out)
    metaphases = find_metaphases(root)[:limit]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    counts = np.zeros(len(CLASS_NAMES), np.int64)
    folders = {}
    for m in Progress(metaphases, desc="M-FISH metaphases", unit="image", disable=not progress):
        dapi, karyo = read_metaphase(m)
        labels = semantic_labels(karyo)
        counts += np.bincount(labels.ravel(), minlength=len(CLASS_NAMES))
        for sub, arr in (("images", dapi), ("masks", labels)):
            with atomic_file(out / sub / f"{m.name}.png", ".png") as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
        folders[m.name] = m.folder
    notice = root / NOTICE
    if notice.is_file():
        shutil.copyfile(notice, out / NOTICE)
    manifest = {"source": str(root), "dataset": "M-FISH Image Set #1 (PSI/ADIR), jeanpat/MFISH",
                "task": "whole-metaphase segmentation: background / chromosome / overlap",
                "class_names": list(CLASS_NAMES), "n_images": len(metaphases),
                "n_folders": len(set(folders.values())), "pixels_per_class": dict(zip(CLASS_NAMES, counts.tolist())),
                "folder_of_image": folders, "licence": NOTICE}
    with atomic_file(out / "manifest.json", ".json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest
