"""Whole M-FISH metaphases as a 3-class training set (background / chromosome / overlap), read straight from the
published folder: ``data.format: mfish`` (or ``auto`` on a folder :func:`medseg.data.mfish.is_mfish_folder`
recognises), dispatched from :func:`medseg.data.registry.load_any_data`.

Why a reader and not :func:`medseg.data.mfish.write_semantic_folder` + a split file (the choice this module
makes): reading the TIFFs where they lie makes no second copy of licensed data to keep in step (nor a licence
notice to carry along), and the reader knows each metaphase's **slide**, so :attr:`SegmentationData.groups` is
the slide and every split medseg draws on it — the test set *and* the validation folds — keeps a slide's
metaphases together (a plain image folder would split validation by image).

The held-out test slides are those of ``medseg data mfish-pairs`` (:func:`pair_test_slides`: the slides whose
metaphases give overlapping pairs, split by :func:`medseg.data.mfish_pairs.held_out_slides` with seed 0, the
default of ``mfish-pairs``), so a pair model trained on the pairs' training slides is never evaluated on one of
its own training slides when the two models are chained (:mod:`medseg.inference.instances`). On the 133
labelled metaphases: 26 slides, 22 with pairs, test slides A20, P09, V18, V27 (17 metaphases). Slides without
pairs are training (or validation) slides. The split is written once as a names file under
``$MEDSEG_HOME/mfish/`` and handed to the split machinery as the data's own split
(``SegmentationData.split_file``; ``splits.file`` in the config still wins): the validation folds are then drawn
by slide from the rest (``splits.n_folds`` / ``val_fraction`` / ``seed``).

Images: the DAPI counterstain divided by 255 (as every 8-bit image in medseg; ``data.normalize`` applies on top),
labels :func:`medseg.data.mfish.semantic_labels`. ``data.size: null`` (the config's choice: full resolution,
patches, sliding-window validation) holds the 517×645 and 568×768 metaphases on one canvas with each one's box,
as the folder reader does; a ``data.size`` pads / centre-crops (with the usual warning when it crops).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from medseg.data.datasets import SegmentationData, warn_crop
from medseg.data.mfish import (
    CLASS_NAMES,
    find_metaphases,
    is_mfish_folder,
    read_metaphase,
    semantic_labels,
    slide_of,
)
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.atomic import atomic_file
from medseg.formats.images import image_shape
from medseg.formats.limits import check_dataset_bytes, check_voxels
from medseg.paths import medseg_home
from medseg.progress import Progress

__all__ = [
    "PAIR_SPLIT_SEED",
    "TOUCHING",
    "is_mfish_config",
    "load_mfish_metaphases",
    "pair_split_file",
    "pair_test_slides",
    "touching_labels",
]

#: ``medseg data mfish-pairs``' default ``split_seed``: the pairs' held-out slides are drawn with it.
PAIR_SPLIT_SEED = 0
#: The fourth class of ``data.mfish_touching_px`` > 0: where two chromosomes touch.
TOUCHING = "touching"


def touching_labels(karyo: np.ndarray, px: int = 1) -> np.ndarray:
    """Background 0 / chromosome 1 / overlap 2 / touching 3: :func:`~medseg.data.mfish.semantic_labels` with every
    chromosome pixel within ``px`` pixels (chessboard distance) of a pixel of *another class* made 3.

    Why a contact class rather than a distance or centre map (StarDist's star-convex polygons, Cellpose's flows):
    chromosomes are long, bent and often thinner than the line where they touch, so a distance-to-border map
    has its maxima spread along the axis and a seeded watershed on it cuts one chromosome into several; a
    star-convex polygon cannot hold a bent one. What the separation needs is only *where* two chromosomes meet,
    and the label map says it exactly: the instances of ``evaluate-metaphases`` are each class's connected
    components, so two chromosomes touch where two class values meet (two copies of one class touching are one
    instance there too). Removing the contact pixels leaves one core per chromosome (a crossing stays one core,
    joined through its overlap, for the pair model), and a seeded watershed grows the cores back over them
    (:func:`medseg.inference.instances.touching_regions`) — the boundary-class method of nucleus segmentation
    (e.g. Caicedo et al. 2019, the 2018 Data Science Bowl's three-class U-Nets), one more softmax class through the
    same Trainer. Overlap pixels (255) stay overlap: they join, not part, the two chromosomes of a crossing."""
    from scipy import ndimage

    from medseg.data.mfish import OVERLAP_VALUE

    karyo = np.asarray(karyo)
    labels = semantic_labels(karyo)
    if px <= 0:
        return labels
    chrom = (karyo > 0) & (karyo != OVERLAP_VALUE)
    value = karyo.astype(np.int32)
    size = 2 * int(px) + 1
    high = ndimage.maximum_filter(np.where(chrom, value, -1), size=size)  # largest class within px
    low = ndimage.minimum_filter(np.where(chrom, value, 1 << 20), size=size)  # smallest class within px
    labels[chrom & ((high != value) | (low != value))] = 3
    return labels


def is_mfish_config(data_cfg: dict) -> bool:
    """Whether a config's ``data`` section names whole M-FISH metaphases: ``format: mfish``, or ``format: auto``
    with a folder in the published layout (sub-folders of ``<id>D.tif`` + ``<id>K.tif``)."""
    fmt, spec = data_cfg.get("format", "auto"), str(data_cfg.get("path", ""))
    if fmt == "mfish":
        return True
    return fmt == "auto" and ":" not in spec.split("/", 1)[0] and is_mfish_folder(Path(spec).expanduser())


def pair_test_slides(root: str | Path, *, seed: int = PAIR_SPLIT_SEED, progress: bool = False) -> dict:
    """The held-out slides of ``medseg data mfish-pairs ROOT`` (default options, ``split_seed`` ``seed``):
    ``{"test": [...], "pair_slides": [...], "all_slides": [...]}``, sorted. The test slides are
    :func:`~medseg.data.mfish_pairs.held_out_slides` over the slide of every pair
    (:func:`~medseg.data.mfish_pairs.pair_slides`: the pairs are cut as that command cuts them, not written; ≈ 4 s)."""
    from medseg.data.mfish_pairs import held_out_slides, pair_slides

    slides, every = pair_slides(root, progress=progress)
    return {"test": held_out_slides(slides, seed=seed), "pair_slides": sorted(set(slides)), "all_slides": every}


def pair_split_file(root: str | Path, *, seed: int = PAIR_SPLIT_SEED, progress: bool = False) -> Path:
    """A names split file ``{test: [slide, ...]}`` holding :func:`pair_test_slides`, written once under
    ``$MEDSEG_HOME/mfish/`` (keyed by the folder's path and the seed) and reused; the provenance is in its
    comment lines."""
    root = Path(root).resolve()
    digest = hashlib.sha256(f"{root}|{seed}".encode()).hexdigest()[:10]
    path = medseg_home() / "mfish" / f"metaphase_split_{root.name}-{digest}_s{seed}.yaml"
    if path.is_file():
        return path
    slides = pair_test_slides(root, seed=seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"# Whole-metaphase split of {root}, by slide (medseg.data.mfish_metaphase).\n"
        f"# test: the held-out slides of `medseg data mfish-pairs` (group_splits over the {len(slides['pair_slides'])} "
        f"slides with pairs, seed {seed}),\n# so a pair model trained on the pairs' training slides is never tested "
        f"on them. All slides: {', '.join(slides['all_slides'])}.\n"
        f"test: {json.dumps(slides['test'])}\n"
    )
    with atomic_file(path, ".yaml") as tmp:
        tmp.write_text(text)
    return path


def load_mfish_metaphases(cfg: dict, progress: bool = True) -> SegmentationData:
    """The labelled metaphases of ``cfg['data']['path']`` as 3-class data (see the module docstring)."""
    data_cfg = cfg["data"]
    root = Path(str(data_cfg["path"])).expanduser()
    names_cfg = list(cfg["task"]["class_names"])
    touching_px = int(data_cfg.get("mfish_touching_px") or 0)
    names = (*CLASS_NAMES, TOUCHING) if touching_px > 0 else CLASS_NAMES
    if len(names_cfg) != len(names):
        raise ConfigError(
            f"data.format mfish with data.mfish_touching_px {touching_px} gives {len(names)} classes "
            f"({', '.join(names)}); task.class_names has {len(names_cfg)} ({', '.join(names_cfg)}): "
            f"set task.class_names: [{', '.join(names)}]"
        )
    if not root.is_dir() or not is_mfish_folder(root):
        raise DataValidationError(
            root,
            "not the M-FISH set (data.format: mfish): expected sub-folders (one per "
            "slide) of <id>D.tif DAPI images with <id>K.tif label maps",
        )
    for key, off in (("resize", False), ("context_slices", 0), ("mask_values", None)):
        if (data_cfg.get(key) or off) != off:
            raise ConfigError(f"data.{key} is not read for the M-FISH metaphases ({root}): remove it")
    metaphases = find_metaphases(root)
    limit = data_cfg.get("limit")
    if limit:
        metaphases = metaphases[: int(limit)]
    size = tuple(int(v) for v in data_cfg["size"]) if data_cfg.get("size") else None
    shapes = []
    for m in metaphases:  # header only: the canvas and the memory check come before anything is decoded
        shape = image_shape(m.dapi)
        check_voxels(m.dapi, shape, "DAPI image")
        shapes.append(shape[:2])
    canvas = size or (max(h for h, _ in shapes), max(w for _, w in shapes))
    check_dataset_bytes(
        root,
        len(metaphases) * canvas[0] * canvas[1] * 5,
        what=f"{len(metaphases)} metaphases on a {canvas[0]}x{canvas[1]} canvas (float32 + labels)",
    )
    notes: list[str] = []
    if size:
        warn_crop(notes, shapes, size, root.name)
    images = np.zeros((len(metaphases), *canvas), np.float32)
    labels = np.zeros((len(metaphases), *canvas), np.uint8)
    boxes = []
    from medseg.data.pommier import pad_to

    for k, m in enumerate(Progress(metaphases, desc="M-FISH metaphases", unit="image", disable=not progress)):
        dapi, karyo = read_metaphase(m)
        if size:
            images[k] = pad_to(dapi.astype(np.float32) / 255.0, size, data_cfg.get("image_pad_value", "border"))
            labels[k] = pad_to(touching_labels(karyo, touching_px), size, 0)
        else:
            h, w = dapi.shape
            top, left = (canvas[0] - h) // 2, (canvas[1] - w) // 2
            images[k, top : top + h, left : left + w] = dapi.astype(np.float32) / 255.0
            labels[k, top : top + h, left : left + w] = touching_labels(karyo, touching_px)
            boxes.append((top, left, h, w))
    groups = [slide_of(m.folder) for m in metaphases]
    if not size and len(set(shapes)) == 1:
        boxes = None  # every metaphase fills the canvas
    notes.append(
        f"{root.name}: {len(metaphases)} REAL M-FISH metaphases of {len(set(groups))} slides "
        f"(background / chromosome / overlap); splits keep each slide's metaphases together"
    )
    data = SegmentationData(
        images,
        labels,
        [m.name for m in metaphases],
        str(root),
        False,
        notes,
        tuple(canvas),
        groups=groups,
        boxes=boxes if not size else None,
    )
    split = pair_split_file(root, progress=progress)
    from medseg.data.splits import read_split_file

    test = read_split_file(split).get("test") or []
    if set(test) <= set(groups):
        # the data's own split (used when splits.file is not set; medseg.data.runs.splits_for)
        data.split_file = str(split)
        notes.append(f"held-out test slides {', '.join(test)} = those of `medseg data mfish-pairs` ({split})")
    else:  # data.limit left some test slide out: the names would not resolve
        notes.append(
            f"data.limit {limit} leaves out held-out slides of the pairs' split; the split is drawn by "
            "slide from what is loaded (not the pairs' test slides)"
        )
    return data
