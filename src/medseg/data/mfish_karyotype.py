"""Karyotyping set: every REAL isolated M-FISH chromosome as a DAPI cut-out labelled with its class
(``data.path: mfish:karyotype``; built on first use by :mod:`medseg.data.mfish_sets`).

medseg has one training loop, a segmentation loop (:mod:`medseg.training.trainer`). To keep it one, the
chromosome classifier is a **per-pixel classifier of the cut-out with a vote**:

* **Input** — the DAPI cut-out of one chromosome: its grey values inside its mask, the background zeroed,
  centred (its bounding box) on a fixed square canvas of :data:`CANVAS` pixels (:func:`chromosome_cutout`). The
  canvas was chosen from the data: the largest isolated chromosome of the 133 labelled metaphases has a
  bounding box of 119 × 52 px (P11, a chromosome 1), so 119 + 2 × :data:`MARGIN` fits 128. A chromosome that does
  not fit is **left out and counted, never rescaled**: its length is a class cue (chromosome 1 is the longest,
  21/22/Y the shortest).
* **Label** — mask × class: 0 background, 1–22 the autosomes, 23 X, 24 Y (:data:`KARYOTYPE_CLASSES`, 25 classes).
  Any 2D medseg model trains on it with the existing ``train`` / ``cv`` / ``evaluate`` commands
  (``configs/mfish/karyotype_unet.yaml``).
* **Vote** — a chromosome's class is the argmax over classes 1–24 of the mean softmax probability over its mask
  pixels (soft vote, the default) or the most frequent pixel argmax (``majority``);
  :mod:`medseg.metrics.karyotype`. Inference builds each predicted instance's cut-out with the same
  :func:`chromosome_cutout` (:mod:`medseg.inference.karyotype`).

Which chromosomes: those of :func:`medseg.data.mfish_pairs.isolated_chromosomes` (no overlap pixel next to
them: the label map says their whole extent) of every labelled metaphase; left out and counted are specks
(under :data:`MIN_AREA` px, as the instance separation's speck rule), chromosomes cut by the metaphase's edge
(not whole: their length would lie) and those too large for the canvas. A chromosome lying against another
(no overlap between them) is kept: its own mask cuts it out.

Split by slide. The test set is **exactly the held-out slides of** ``medseg data mfish-pairs``
(:func:`medseg.data.mfish_pairs.held_out_slides` over the pairs cut from the same metaphases: A20, P09, V18, V27
with the default seed), so a chained pipeline (semantic model → pair model → classifier) is tested on slides
none of its models saw. ``<stem>.splits.json`` names those slides (``{"test": [...]}``); the validation folds are
drawn by slide from the rest by ``splits.*`` (each chromosome's slide is its split group, HDF5 dataset
``slide``).

``mfish:karyotype-upright`` (``layout="upright"``) holds the same chromosomes and split as upright cut-outs
relative to their metaphase (64 × 32, :func:`medseg.data.karyotype_features.upright_cutout`): the input of
``configs/mfish/karyotype_upright.yaml``. Both sets carry every chromosome's raw hand-made features (HDF5
``features``, :data:`~medseg.data.karyotype_features.FEATURE_NAMES`), the classical baseline's input.

Layout: the Pommier HDF5 layout the existing readers take (``dataset_1``: N × 128 × 128 × 2 uint8, image and
label), plus ``slide``, ``folder``, ``image`` (metaphase id), ``class`` (1–24), ``area`` and ``in_rearrangement``
(its class is named by a structural rearrangement of its cell's karyotype, :mod:`medseg.data.iscn`) per chromosome;
``<stem>.json`` (provenance: REAL data, counts per class in training and test, what was left out and why),
``<stem>.splits.json``, ``<stem>.README.TXT`` (the set's licence notice, as the licence requires).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.data.iscn import read_case_karyotype, rearranged_classes
from medseg.data.karyotype_features import (
    FEATURE_NAMES,
    INTENSITY_LEVEL,
    UPRIGHT_SHAPE,
    chromosome_features,
    metaphase_cutouts,
    upright_median_length,
)
from medseg.data.mfish import find_metaphases, find_unlabelled, licence_notice, read_metaphase, slide_of
from medseg.errors import DataValidationError
from medseg.progress import Progress

__all__ = [
    "CANVAS",
    "KARYOTYPE_CLASSES",
    "LAYOUTS",
    "MARGIN",
    "MIN_AREA",
    "chromosome_cutout",
    "class_name",
    "is_karyotype_task",
    "run_mfish_karyotype",
]

#: Class 0 background, then the karyotype classes as the label maps number them (1–22, 23 = X, 24 = Y).
KARYOTYPE_CLASSES = ("background", *(str(c) for c in range(1, 23)), "X", "Y")
CANVAS = 128  # px, square: the largest isolated chromosome's box (119 px) + 2 × MARGIN fits
MARGIN = 4  # px of background kept around a chromosome's bounding box on the canvas
LAYOUTS = ("canvas", "upright")  # unscaled on a square canvas / upright, scaled to its metaphase
MIN_AREA = 30  # px: smaller isolated components are specks (as medseg.inference.instances.MIN_AREA)
_DATASET = "M-FISH Image Set #1 (PSI / Advanced Digital Imaging Research, 2000), as published in jeanpat/MFISH"


def class_name(cls: int) -> str:
    """The karyotype name of class ``cls`` (1–22, X for 23, Y for 24)."""
    return KARYOTYPE_CLASSES[int(cls)]


def is_karyotype_task(class_names) -> bool:
    """Whether a task's classes are the karyotype's (:data:`KARYOTYPE_CLASSES`, background first)."""
    return [str(c) for c in class_names] == list(KARYOTYPE_CLASSES)


def chromosome_cutout(
    grey: np.ndarray, mask: np.ndarray, size: int = CANVAS, margin: int = MARGIN
) -> tuple[np.ndarray, np.ndarray] | None:
    """The cut-out of one chromosome on a ``size`` × ``size`` canvas: ``grey`` (2-D uint8, any window holding the
    chromosome) inside ``mask`` (bool, same shape), 0 elsewhere, its bounding box centred on the canvas (an odd
    difference puts the extra pixel at the bottom / right). Returns (image uint8, mask bool) on the canvas, or
    None when the box is larger than ``size - 2 * margin`` along either axis — never rescaled (length is a class
    cue). The one cut-out rule of the training set and of inference (:mod:`medseg.inference.karyotype`)."""
    grey, mask = np.asarray(grey), np.asarray(mask, bool)
    if grey.shape != mask.shape or grey.ndim != 2:
        raise ValueError(f"grey {grey.shape} and mask {mask.shape} must be two 2-D arrays of one shape")
    if grey.dtype != np.uint8:
        raise ValueError(f"grey must be uint8 (the DAPI image as stored), got {grey.dtype}")
    if not mask.any():
        raise ValueError("empty mask: no chromosome to cut out")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    h, w = r1 - r0, c1 - c0
    if max(h, w) > size - 2 * margin:
        return None
    box = mask[r0:r1, c0:c1]
    image = np.zeros((size, size), np.uint8)
    canvas_mask = np.zeros((size, size), bool)
    top, left = (size - h) // 2, (size - w) // 2
    image[top : top + h, left : left + w] = np.where(box, grey[r0:r1, c0:c1], 0)
    canvas_mask[top : top + h, left : left + w] = box
    return image, canvas_mask


def run_mfish_karyotype(
    src: str | Path,
    output: str | Path,
    *,
    size: int = CANVAS,
    margin: int = MARGIN,
    min_area: int = MIN_AREA,
    split_seed: int = 0,
    limit: int | None = None,
    layout: str = "canvas",
    upright_shape: tuple[int, int] = UPRIGHT_SHAPE,
    leave_out_rearranged: bool = False,
    crossed: bool = False,
    progress: bool = True,
) -> dict:
    """Write the karyotyping set of the M-FISH folder ``src`` to ``output`` (``.h5``) and its sidecars (see the
    module docstring); ``limit``: only the first N labelled metaphases; ``layout``: ``canvas`` (unscaled on the
    ``size`` square) or ``upright`` (:func:`medseg.data.karyotype_features.upright_cutout` on an ``upright_shape``
    canvas); ``leave_out_rearranged``: the training slides' chromosomes in a structural rearrangement of their
    cell (:mod:`medseg.data.iscn`) are left out and counted (the held-out slides keep all); ``crossed``: the
    training slides' chromosomes that cross one other chromosome are added (the held-out slides keep their
    isolated chromosomes only, so the test set stays the same). Every file is written
    under a temporary name and renamed at the end. Returns the summary (the JSON's content plus the paths)."""
    from medseg.data.mfish_pairs import held_out_slides

    started = time.perf_counter()
    src, output = Path(src), Path(output)
    if output.suffix.lower() != ".h5":
        raise ValueError(f"output {output} must be an .h5 file")
    json_path = output.with_suffix(".json")
    splits_path = output.with_name(output.stem + ".splits.json")
    licence_path = output.with_name(output.stem + ".README.TXT")
    metaphases = find_metaphases(src)
    if limit is not None:
        metaphases = metaphases[: int(limit)]
    notice, notice_text = licence_notice(src)

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    shape = (size, size) if layout == "canvas" else tuple(int(v) for v in upright_shape)
    cut = _cut_chromosomes(metaphases, layout, shape, size, margin, min_area, progress, crossed=crossed)
    if not cut.images:
        raise DataValidationError(src, f"no isolated chromosome in the {len(metaphases)} metaphase(s) read")
    test_slides = held_out_slides(cut.pair_slides, seed=split_seed) if cut.pair_slides else []
    if crossed:  # training material only: the test set stays the isolated chromosomes of the held-out slides
        cut.leave_out([r["crossed"] and r["slide"] in test_slides for r in cut.records], "crossed_on_held_out_slides")
    if leave_out_rearranged:
        cut.leave_out([r["in_rearrangement"] and r["slide"] not in test_slides for r in cut.records])
    summary = _karyotype_summary(
        cut,
        src,
        metaphases,
        limit,
        layout,
        shape,
        margin,
        min_area,
        split_seed,
        test_slides,
        splits_path.name,
        licence_path.name if notice else None,
        notice_text,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    temps = {
        output: output.with_name(f".{output.name}.karyo-tmp"),
        json_path: json_path.with_name(f".{json_path.name}.karyo-tmp"),
        splits_path: splits_path.with_name(f".{splits_path.name}.karyo-tmp"),
    }
    if notice is not None:
        temps[licence_path] = licence_path.with_name(f".{licence_path.name}.karyo-tmp")
    _write_karyotype_set(
        temps,
        output,
        json_path,
        splits_path,
        licence_path,
        notice,
        cut,
        dict(summary, chromosomes=cut.records),
        test_slides,
    )
    summary.update(
        output=str(output),
        json=str(json_path),
        splits=str(splits_path),
        seconds=round(time.perf_counter() - started, 2),
    )
    return summary


@dataclass
class _Cutouts:
    """What :func:`_cut_chromosomes` gathers from the metaphases: one entry per kept chromosome in ``images``,
    ``labels``, ``records`` and ``features``; the slide of every real pair (the held-out slides are
    mfish-pairs', the same rule); what was left out and why; the largest chromosome box seen."""

    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    records: list = field(default_factory=list)
    features: list = field(default_factory=list)
    pair_slides: list[str] = field(default_factory=list)
    karyotypes: dict = field(default_factory=dict)  # folder → its Case Info karyotype (ISCN) or None
    left_out: Counter = field(
        default_factory=lambda: Counter({"speck": 0, "at_metaphase_border": 0, "too_large_for_canvas": 0})
    )
    largest: tuple = (0, 0)
    shrunk_to_fit: int = 0

    def leave_out(self, drop: list[bool], why: str = "in_rearrangement_on_training_slides") -> None:
        """Drop the chromosomes flagged in ``drop`` (counted under ``why``)."""
        keep = [k for k, d in enumerate(drop) if not d]
        self.left_out[why] = len(drop) - len(keep)
        for name in ("images", "labels", "records", "features"):
            setattr(self, name, [getattr(self, name)[k] for k in keep])


def _cut_chromosomes(
    metaphases, layout: str, shape: tuple, size: int, margin: int, min_area: int, progress: bool, crossed: bool = False
) -> _Cutouts:
    """The cut-out, label, record and raw features of every whole isolated chromosome of ``metaphases`` — and
    with ``crossed`` of every whole chromosome crossing one other (:func:`~medseg.data.mfish_pair_crops.
    crossed_chromosomes`; record ``crossed``), measured against the medians of the metaphase's isolated ones."""
    from medseg.data.mfish_pair_crops import crossed_chromosomes, isolated_chromosomes, pairs_from_karyotype

    cut = _Cutouts()
    for m in Progress(metaphases, desc="M-FISH chromosomes", unit="image", disable=not progress):
        dapi, karyo = read_metaphase(m)
        if m.folder not in cut.karyotypes:
            cut.karyotypes[m.folder] = read_case_karyotype(m.dapi.parent)
        rearranged = rearranged_classes(cut.karyotypes[m.folder])
        pairs, _ = pairs_from_karyotype(dapi, karyo, folder=m.folder, image_id=m.id)
        cut.pair_slides += [slide_of(m.folder)] * len(pairs)
        chromosomes, specks = isolated_chromosomes(
            dapi, karyo, margin=0, min_px=min_area, folder=m.folder, image_id=m.id
        )
        cut.left_out["speck"] += specks
        whole = [ch for ch in chromosomes if not ch.at_border]
        cut.left_out["at_metaphase_border"] += len(chromosomes) - len(whole)
        if not whole:
            continue
        isolated = len(whole)
        if crossed:
            found = crossed_chromosomes(dapi, karyo, min_px=min_area, folder=m.folder, image_id=m.id)
            whole += [ch for ch in found if not ch.at_border]
        raw, upright = (
            metaphase_cutouts([(ch.image, ch.mask) for ch in whole], shape, reference=isolated)
            if layout == "upright"
            else (np.stack([chromosome_features(ch.image, ch.mask) for ch in whole]), None)
        )
        for k, (ch, row) in enumerate(zip(whole, raw, strict=True)):
            cut.largest = max(cut.largest, ch.mask.shape, key=max)
            if upright is not None:
                image, mask, shrunk = upright[k]
                cut.shrunk_to_fit += shrunk
            else:
                canvas = chromosome_cutout(ch.image, ch.mask, size, margin)
                if canvas is None:
                    cut.left_out["too_large_for_canvas"] += 1
                    continue
                image, mask = canvas
            cut.images.append(image)
            cut.labels.append(mask.astype(np.uint8) * np.uint8(ch.cls))
            cut.features.append(row)
            cut.records.append(
                {
                    "slide": slide_of(m.folder),
                    "folder": m.folder,
                    "image": m.id,
                    "class": ch.cls,
                    "area": ch.area,
                    "touches_other": ch.touches_other,
                    "in_rearrangement": ch.cls in rearranged,
                    "crossed": k >= isolated,
                    "box": [int(v) for v in ch.box],
                }
            )
    return cut


def _karyotype_summary(
    cut: _Cutouts,
    src: Path,
    metaphases,
    limit,
    layout: str,
    shape: tuple,
    margin: int,
    min_area: int,
    split_seed: int,
    test_slides: list[str],
    splits_file: str,
    licence_file: str | None,
    notice_text,
) -> dict:
    """The set's provenance record (the JSON sidecar without the per-chromosome records)."""
    import medseg

    records = cut.records
    slides = [r["slide"] for r in records]
    test = set(test_slides)
    per_class = {}
    for c in range(1, len(KARYOTYPE_CLASSES)):
        n_test = sum(1 for r in records if r["class"] == c and r["slide"] in test)
        n_all = sum(1 for r in records if r["class"] == c)
        per_class[class_name(c)] = {"train": n_all - n_test, "test": n_test}
    return {
        "synthesized": False,
        "real": True,
        "what": "mfish:karyotype - REAL isolated M-FISH chromosomes, one DAPI cut-out each, labelled mask x class",
        "format": "pommier",
        "dataset": _DATASET,
        "medseg_version": medseg.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {
            "path": str(src.resolve()),
            "n_metaphases": len(metaphases),
            "limit": limit,
            "n_unlabelled_skipped": len(find_unlabelled(src)),
        },
        "layout": layout,
        "canvas": list(shape),
        "upright": {
            "median_length_px": upright_median_length(shape),
            "median_intensity_grey": INTENSITY_LEVEL,
            "shrunk_to_fit": cut.shrunk_to_fit,
        }
        if layout == "upright"
        else None,
        "features": {
            "names": list(FEATURE_NAMES),
            "what": "raw per chromosome (HDF5 dataset 'features'); divide "
            "each column by its metaphase's median (medseg.data.karyotype_features.per_metaphase)",
        },
        "margin": margin,
        "min_area": min_area,
        "largest_box": list(cut.largest),
        "n_images": len(cut.images),
        "class_names": list(KARYOTYPE_CLASSES),
        "labels": "0 background; 1-22 autosomes, 23 X, 24 Y: the chromosome's mask times its class",
        "image": (
            "DAPI grey values inside the chromosome's mask, 0 elsewhere, its bounding box centred on the canvas "
            "(never rescaled)"
        )
        if layout == "canvas"
        else (
            "DAPI / the metaphase's median chromosome grey x 96, rotated to its long axis (brighter half up), "
            f"scaled so the metaphase's median chromosome is {upright_median_length(shape):g} px long, 0 outside it"
        ),
        "left_out": dict(cut.left_out),
        "touching_another_chromosome_kept": sum(r["touches_other"] for r in records),
        "crossed": {
            "what": "training slides' chromosomes crossing one other, with the overlap (data.mfish_karyotype_crossed)",
            "train": sum(1 for r in records if r.get("crossed")),
        },
        "karyotypes": cut.karyotypes,
        "in_rearrangement": {
            "what": "chromosomes whose class a structural rearrangement of their cell's karyotype names "
            "(medseg.data.iscn.rearranged_classes): the label map may paint a piece of it on another's body",
            "train": sum(1 for r in records if r["in_rearrangement"] and r["slide"] not in test),
            "test": sum(1 for r in records if r["in_rearrangement"] and r["slide"] in test),
        },
        "held_out_slides": test_slides,
        "held_out_rule": f"the held-out slides of `medseg data mfish-pairs` (split_seed {split_seed}) on the same "
        "metaphases (medseg.data.mfish_pairs.held_out_slides)",
        "n_train": sum(1 for s in slides if s not in test),
        "n_test": sum(1 for s in slides if s in test),
        "per_class": per_class,
        "chromosomes_per_slide": dict(sorted(Counter(slides).items())),
        "split_by": "slide (HDF5 dataset 'slide'); test = held_out_slides, folds drawn by slide from the rest",
        "splits_file": splits_file,
        "licence": {"file": licence_file, "notice": notice_text},
    }


def _write_karyotype_set(
    temps: dict,
    output: Path,
    json_path: Path,
    splits_path: Path,
    licence_path: Path,
    notice: Path | None,
    cut: _Cutouts,
    provenance: dict,
    test_slides: list[str],
) -> None:
    """The HDF5 set, its JSON, split and licence sidecars, under the temporary names of ``temps``: all of them
    or none."""
    import h5py

    from medseg.data.pommier import give_default_mode, write_pommier_h5
    from medseg.formats.atomic import atomic_files

    records = cut.records
    with atomic_files(temps):  # all of them or none
        write_pommier_h5(temps[output], np.stack(cut.images), np.stack(cut.labels))
        with h5py.File(temps[output], "a") as f:
            text = h5py.string_dtype("utf-8")
            for key in ("slide", "folder", "image"):
                f.create_dataset(key, data=np.array([r[key] for r in records], dtype=object), dtype=text)
            f.create_dataset("class", data=np.array([r["class"] for r in records], np.uint8))
            f.create_dataset("area", data=np.array([r["area"] for r in records], np.int32))
            f.create_dataset("in_rearrangement", data=np.array([r["in_rearrangement"] for r in records], np.uint8))
            f.create_dataset("features", data=np.stack(cut.features).astype(np.float32))
            f.attrs["source"] = _DATASET + " -- REAL data; licence notice in the .README.TXT beside this file"
        temps[json_path].write_text(json.dumps(provenance, indent=1) + "\n")
        temps[splits_path].write_text(json.dumps({"test": test_slides}, indent=1) + "\n")
        for p in (temps[json_path], temps[splits_path]):
            give_default_mode(p)
        if notice is not None:
            shutil.copyfile(notice, temps[licence_path])
