"""Real M-FISH metaphases (PSI / ADIR "M-FISH Image Set #1", as published in ``jeanpat/MFISH``) as a medseg
2D folder data set.

Published layout (``../shared/data/mfish/`` here; see its README): one folder per slide and karyotype
(``A01__XY``, ``P07__09``, …; ``A02__15``, ``A02__18`` and ``A02__XY`` are three karyotypes found on slide ``A02``:
:func:`slide_of`), each metaphase as ``<id>D.tif`` (DAPI counterstain, 8-bit grey, 517×645 or
568×768) and ``<id>K.tif`` (the expert karyotype: 0 background, 1–22 autosomes, 23 X, 24 Y, 255 where
chromosomes overlap). The 17 "EX" (extreme) metaphases are published as DAPI images without a karyotype:
they are skipped and counted (:func:`find_unlabelled`). Any other DAPI image without its ``K`` label map, or a
label map without its DAPI image, is an error naming the file, never skipped silently; so is a label map whose
shape differs from its DAPI image's or that holds a value outside 0, 1–24, 255.

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

from medseg.errors import DataValidationError
from medseg.formats.atomic import atomic_file
from medseg.formats.images import check_integer_labels, read_stored
from medseg.progress import Progress

__all__ = [
    "CLASS_NAMES",
    "Metaphase",
    "check_karyotype",
    "find_metaphases",
    "find_unlabelled",
    "folder_of",
    "is_mfish_folder",
    "is_unlabelled_code",
    "licence_notice",
    "near_duplicates",
    "near_duplicates_text",
    "read_metaphase",
    "semantic_labels",
    "slide_of",
    "survey",
    "thumbnail",
    "write_semantic_folder",
]

CLASS_NAMES = ("background", "chromosome", "overlap")
OVERLAP_VALUE = 255  # the README's "-1"
NOTICE = "README.TXT"
#: Pearson correlation of two thumbnails above which two DAPI images are one metaphase (:func:`near_duplicates`).
#: On the published set the three such pairs reach 0.993-1.0; the next most alike two metaphases 0.81.
DUPLICATE_CORRELATION = 0.95
THUMBNAIL = (64, 80)


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
    """The slide folder of an image name written by :func:`write_semantic_folder`
    (``A01__XY__A0101XY`` → ``A01__XY``)."""
    return name.rsplit("__", 1)[0]


def is_unlabelled_code(folder: str, ident: str) -> bool:
    """Whether a metaphase is one of the "EX" (extreme, very difficult to karyotype) images the set publishes
    without a label map: karyotype code ``EX`` at the end of its id (``A3001EX``) or of its folder (``A30__EX``)."""
    return ident.upper().endswith("EX") or folder.upper().endswith("__EX")


def _scan(root: str | Path) -> tuple[list[Metaphase], list[Path]]:
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError(root, "not a folder: expected the M-FISH set (one sub-folder per slide)")
    out: list[Metaphase] = []
    unlabelled: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".tif", ".tiff"))
        dapis, karyos = _by_id(files, "D", "DAPI image"), _by_id(files, "K", "karyotype label map")
        for ident in sorted(karyos.keys() - dapis.keys()):
            raise DataValidationError(karyos[ident], f"karyotype label map without its DAPI image {ident}D.tif")
        for ident in sorted(dapis):
            if ident in karyos:
                out.append(Metaphase(folder.name, ident, dapis[ident], karyos[ident]))
            elif is_unlabelled_code(folder.name, ident):
                unlabelled.append(dapis[ident])
            else:
                raise DataValidationError(
                    dapis[ident],
                    f"DAPI image without its karyotype label map {ident}K.tif; only the 'EX' (extreme) "
                    "metaphases are published without one (karyotype code EX in the image or folder "
                    "name); restore the label map or remove the image",
                )
    return out, unlabelled


def _by_id(files: list[Path], code: str, what: str) -> dict[str, Path]:
    """{metaphase id: file} of the files whose stem ends in ``code``. Two files for one id (``K.tif`` beside
    ``K.tiff``, or ``k.tif``) are an error: which one is the truth cannot be told, so none is picked."""
    out: dict[str, Path] = {}
    for p in files:
        if p.stem[-1:].upper() != code:
            continue
        ident = p.stem[:-1]
        if ident in out:
            raise DataValidationError(
                p, f"a second {what} for metaphase {ident} (also {out[ident].name}); keep one file per metaphase"
            )
        out[ident] = p
    return out


def slide_of(folder: str) -> str:
    """The slide of a folder: probe set + slide number, ``A02__15`` → ``A02``. One slide's metaphases can lie in
    several folders (one per karyotype found on it: ``A02__15``, ``A02__18``, ``A02__XY``), and slide numbers are
    unique across probe sets, so the slide, not the folder, is the unit a split must keep together."""
    return folder.split("__", 1)[0]


def find_metaphases(root: str | Path) -> list[Metaphase]:
    """Every labelled metaphase under ``root`` (pairs ``<id>D.tif`` + ``<id>K.tif``), sorted by folder and id.

    Rule for a missing label map: an "EX" metaphase (:func:`is_unlabelled_code`) without one is skipped (count
    them with :func:`find_unlabelled`); any other DAPI image without its ``K`` file, or a ``K`` file without its
    DAPI image, raises :class:`DataValidationError` naming the file."""
    out, _ = _scan(root)
    if not out:
        raise DataValidationError(root, "no labelled metaphases (<id>D.tif with <id>K.tif) in its sub-folders")
    return out


def find_unlabelled(root: str | Path) -> list[Path]:
    """The DAPI images of the "EX" metaphases, published without a label map (skipped by :func:`find_metaphases`)."""
    return _scan(root)[1]


def is_mfish_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like the M-FISH set: no ``images/`` sub-folder, and a sub-folder holding a
    ``<id>D.tif`` DAPI image (cheap: lists file names only)."""
    path = Path(path)
    if not path.is_dir() or any((path / n).is_dir() for n in ("images", "Images")):
        return False
    for folder in path.iterdir():
        if folder.is_dir() and any(p.stem[-1:].upper() == "D" for p in folder.glob("*.tif")):
            return True
    return False


def _read_tif(path: Path, what: str = "karyotype label map") -> np.ndarray:
    """One M-FISH TIFF as stored (8-bit; palette images as their indices: the DAPI images carry an identity
    palette), through the shared checked reader: size from the header within the voxel budget, one page,
    finite values (:func:`medseg.formats.images.read_stored`)."""
    arr, _ = read_stored(path, what)
    if arr.ndim != 2:
        raise DataValidationError(path, f"expected a 2-D grey TIFF, got an array of shape {arr.shape}")
    return arr


def check_karyotype(path: str | Path, karyo: np.ndarray) -> None:
    """Raise :class:`DataValidationError` naming ``path`` unless every value of ``karyo`` is 0 (background),
    1–24 (chromosome class: 1–22, 23 X, 24 Y) or 255 (overlap)."""
    check_integer_labels(path, np.asarray(karyo), "karyotype label map")
    values, counts = np.unique(np.asarray(karyo), return_counts=True)
    bad = (values < 0) | ((values > 24) & (values != OVERLAP_VALUE))
    if bad.any():
        listed = ", ".join(
            f"{v} ({c} px)" for v, c in zip(values[bad].tolist()[:20], counts[bad].tolist()[:20], strict=True)
        )
        raise DataValidationError(
            path, f"karyotype values [{listed}] are neither 0 (background), 1–24 (chromosome class) nor 255 (overlap)"
        )


def read_metaphase(m: Metaphase) -> tuple[np.ndarray, np.ndarray]:
    """(DAPI uint8 (H, W), karyotype uint8 (H, W)); shapes and karyotype values checked (errors name the file)."""
    dapi, karyo = _read_tif(m.dapi, "DAPI image"), _read_tif(m.karyotype)
    if karyo.shape != dapi.shape:
        raise DataValidationError(
            m.karyotype,
            f"karyotype label map is {karyo.shape[0]}x{karyo.shape[1]} but its "
            f"DAPI image {m.dapi.name} is {dapi.shape[0]}x{dapi.shape[1]} (HxW); "
            "they must have the same shape",
        )
    check_karyotype(m.karyotype, karyo)
    if dapi.dtype != np.uint8:
        raise DataValidationError(m.dapi, f"DAPI image has dtype {dapi.dtype}; the M-FISH set is 8-bit")
    return dapi, karyo.astype(np.uint8)


def semantic_labels(karyotype: np.ndarray) -> np.ndarray:
    """Background 0 / chromosome 1 (any of 1–24) / overlap 2 (255)."""
    out = (karyotype > 0).astype(np.uint8)
    out[karyotype == OVERLAP_VALUE] = 2
    return out


def write_semantic_folder(
    root: str | Path, out: str | Path, *, limit: int | None = None, progress: bool = True
) -> dict:
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
    manifest = {
        "source": str(root),
        "dataset": "M-FISH Image Set #1 (PSI/ADIR), jeanpat/MFISH",
        "task": "whole-metaphase segmentation: background / chromosome / overlap",
        "class_names": list(CLASS_NAMES),
        "n_images": len(metaphases),
        "n_folders": len(set(folders.values())),
        "pixels_per_class": dict(zip(CLASS_NAMES, counts.tolist(), strict=True)),
        "folder_of_image": folders,
        "licence": NOTICE,
    }
    with atomic_file(out / "manifest.json", ".json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


def licence_notice(root: str | Path) -> tuple[Path | None, str | None]:
    """The set's licence notice: ``(README.TXT path, its copyright notice and two disclaimer paragraphs)``, the
    text the licence requires with every copy (``(None, None)`` when ``root`` has no README.TXT)."""
    path = Path(root) / NOTICE
    if not path.is_file():
        return None, None
    text = path.read_text(encoding="utf-8", errors="replace")
    head = text.split("\n---", 1)[0].strip()
    return path, head


def thumbnail(dapi: np.ndarray) -> np.ndarray:
    """A DAPI image as a unit vector for :func:`near_duplicates`: shrunk to :data:`THUMBNAIL` (anti-aliased, so
    noise and small shifts do not count), less its mean, divided by its norm."""
    from skimage.transform import resize

    small = resize(np.asarray(dapi, np.float32), THUMBNAIL, anti_aliasing=True).ravel()
    small = small - small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 0 else small


def near_duplicates(
    names: list[str], images: list[np.ndarray], *, threshold: float = DUPLICATE_CORRELATION
) -> list[dict]:
    """Pairs of images of one shape whose :func:`thumbnail` correlation is at least ``threshold``: the same
    metaphase published twice (the set holds one identical pair, V1301XY = V1304XY, and two imaged or exported
    twice with other contrast: V1805XY ~ V2704XY across two slides, A0402XY ~ A0403XY). Counted twice, such a
    metaphase weighs double in a score; split across training and test, it leaks. Each pair ``{"first",
    "second", "correlation"}`` in the order given."""
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    shapes = [np.shape(im) for im in images]
    thumbs = np.stack([thumbnail(im) for im in images]) if images else np.zeros((0, 1))
    corr = thumbs @ thumbs.T
    return [
        {"first": names[i], "second": names[j], "correlation": round(float(corr[i, j]), 4)}
        for i in range(len(names))
        for j in range(i + 1, len(names))
        if shapes[i] == shapes[j] and corr[i, j] >= threshold
    ]


def near_duplicates_text(pairs: list[dict]) -> str:
    """The pairs of :func:`near_duplicates` as one line ("a ~ b (r = 0.998); …"), empty when there are none."""
    return "; ".join(f"{d['first']} ~ {d['second']} (r = {d['correlation']:.3f})" for d in pairs)


def survey(root: str | Path, *, progress: bool = True) -> dict:
    """What ``medseg data info`` shows for an M-FISH source folder: slides, labelled and unlabelled ("EX")
    metaphases, image shapes, the label values (pixels and files per value) and the metaphases published twice
    (:func:`near_duplicates`). Every label map is read and
    checked as :func:`read_metaphase` does, so a bad file is an error naming it."""
    from collections import Counter

    from scipy import ndimage

    metaphases, unlabelled = _scan(root)
    if not metaphases:
        raise DataValidationError(root, "no labelled metaphases (<id>D.tif with <id>K.tif) in its sub-folders")
    shapes: Counter = Counter()
    pixels: Counter = Counter()
    files: Counter = Counter()
    overlaps = 0
    dapis = []
    for m in Progress(metaphases, desc="M-FISH metaphases", unit="image", disable=not progress):
        dapi, karyo = read_metaphase(m)
        dapis.append(dapi)
        shapes[dapi.shape] += 1
        values, counts = np.unique(karyo, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            pixels[v] += c
            files[v] += 1
        overlaps += ndimage.label(karyo == OVERLAP_VALUE, np.ones((3, 3), bool))[1]
    notice, _ = licence_notice(root)
    folders = {m.folder for m in metaphases} | {p.parent.name for p in unlabelled}
    return {
        "root": str(root),
        "n_folders": len(folders),
        "n_slides": len({slide_of(f) for f in folders}),
        "n_labelled": len(metaphases),
        "n_unlabelled": len(unlabelled),
        "shapes": {f"{h}x{w}": n for (h, w), n in shapes.most_common()},
        "label_pixels": dict(sorted(pixels.items())),
        "label_files": dict(sorted(files.items())),
        "overlap_regions": int(overlaps),
        "near_duplicates": near_duplicates([m.name for m in metaphases], dapis),
        "licence": str(notice) if notice else None,
    }
