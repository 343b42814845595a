"""Whole metaphases → chromosome instances: every chromosome whole as its own mask, the overlapping ones split by a
pair model (``medseg predict RUN metaphase.tif --pair-model PAIR_RUN``).

Two models, chained:

1. a **semantic** model of three classes — background / chromosome / overlap (``configs/mfish/metaphase_unet.yaml``,
   :func:`is_metaphase_model`) — run on the whole metaphase at full resolution (its recorded sliding window);
2. a **pair** model of four classes — 0 background, 1 chromosome A, 2 chromosome B, 3 overlap, Pommier's layout
   (any run trained on ``medseg data mfish-pairs`` / ``mfish-synth`` / the Pommier file), loaded with
   :meth:`~medseg.inference.predictor.Predictor.from_path`.

Separation (:func:`separate_instances`), per region of chromosome ∪ overlap — its 8-connected components, or,
when the semantic model has the fourth class *touching* (``configs/mfish/metaphase_touching_unet.yaml``), the
cores left without the contact pixels grown back over them (:func:`medseg.inference.regions.touching_regions`:
chromosomes that touch come apart; the regions a component was cut into beyond one are counted,
``parted_at_contacts``):

* objects that are no chromosome are left out and counted per rule (:class:`~medseg.inference.regions.DebrisRules`,
  relative to the metaphase's median object area): ``specks`` (under ``min_area`` px), ``small``, ``nuclei``
  (large and round), ``border_fragments`` (small, at the image's edge); each left-out object is kept in
  :attr:`InstanceResult.removed` with its rule;
* overlap regions (8-connected pixels of class 2) under ``min_overlap_px`` (10, as ``mfish-pairs``) are too small
  to be a crossing: their pixels count as plain chromosome;
* **no overlap**: the component is one chromosome (``how="whole"``);
* **one overlap**, ``crossings="geometry"`` (the default without a pair model): the arms around the overlap
  paired by their directions (:func:`medseg.inference.crossings.split_crossing`, ``how="geometry"``; kept whole
  as ``arms_unclear`` when the arms do not say clearly how). On the label maps' own targets of the held-out
  slides this parts 22 of 28 crossings of two and lifts instance F1 from 97.3 % (crossings kept whole) to 98.8 %;
* **several overlaps**, ``crossings="geometry"`` (``split_several``, on by default): the same pairing at every
  overlap (:func:`medseg.inference.crossings.split_crossings`: arms paired through any overlap are one chromosome),
  made only when every overlap is clear and lies between exactly two of the chromosomes found — else kept whole
  as ``several_overlaps``. On the validation slides V13 and V15 it parted 5 of 9 such clusters (instance F1
  91.97 → 92.21 %);
* **one overlap**, ``crossings="pair_model"`` (the default with one): the pair model runs on a 94 × 93 crop placed
  as ``mfish-pairs`` places a pair's crop
  (centred on the component's bounding box when it fits, else on the overlap's, shifted to stay inside the
  image; :func:`crop_origin`; a pair model trained on pairs shown alone, ``preprocessing.pair_isolate_px`` in its
  model.json, gets the crop with the component alone: :mod:`medseg.inference.pair_model`). Within the component,
  its label-1 pixels seed chromosome A and its label-2
  pixels chromosome B; every other non-overlap pixel of the component (where the pair model said background or
  overlap, or outside the crop) goes to the nearer seed (Euclidean distance); the overlap region found by the
  semantic model belongs to both (``how="pair_model"``). A, B each = own pixels + the overlap.
* **after the pair model**: where it declines a crossing of two (``pair_model_unsure``, ``pair_model_failed``)
  its arms are tried as without it (``arms_after_pair_model``, on by default; each crossing parted that way is
  counted as ``geometry`` and ``pair_model_declined``), so a weak pair model costs nothing against the arms
  alone; only what neither can part is kept whole (clusters of several overlaps stay whole with a pair model);
* **fallbacks** (the component is kept whole, one instance, ``how`` says why, and counted in
  :attr:`InstanceResult.counts`): ``several_overlaps`` (two or more overlap regions: a cluster of three or more
  chromosomes, or two crossing twice — the pair model is trained on one crossing of two; by geometry, when the
  arms do not say clearly how), ``no_pair_model``
  (none given, or ``crossings="whole"``), ``arms_unclear`` (see above), ``pair_model_failed`` (it found under
  ``min_part_px`` pixels of A-only or B-only inside the
  component: it cannot tell the two apart there), ``pair_model_unsure`` (its mean top-class probability over the
  component's own pixels in the crop is under ``min_pair_confidence``, 0.8). Whole is the choice because a
  karyotyper can still cut a cluster by hand, while a wrong cut would hand them two wrong chromosomes.

Output: :class:`InstanceResult` — the instances (raster order of their bounding boxes, ids from 1) with
bounding box, area, the ids they overlap, each one's boolean mask (cropped to its box); an int32 label map in
which every pixel holds the id of one instance covering it (at overlap pixels, where two instances lie, the
lower id) and :attr:`InstanceResult.shared` marking those pixels; the semantic label map; the counts.

This module must not import :mod:`medseg.training` (layering: inference never imports the trainer).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.errors import DataValidationError
from medseg.inference.crossings import split_crossing, split_crossings
from medseg.inference.instance_figure import (  # re-exported: tests import them from here
    draw_instance_figure,
    instance_colours,
    instance_figure,
)
from medseg.inference.pair_model import (  # re-exported: the server and the CLI import them from here
    MIN_PAIR_CONFIDENCE,
    MIN_PART_PX,
    bounding_box,
    check_pair_model,
    crop_origin,
    pair_model_split,
)
from medseg.inference.regions import (
    DEBRIS_RULES,
    TOUCHING_CLASS,
    DebrisRules,
    debris_rule,
    median_area,
    touching_regions,
)
from medseg.progress import Progress

__all__ = [
    "CROSSINGS",
    "METAPHASE_CLASSES",
    "TOUCHING_NAME",
    "FALLBACKS",
    "Instance",
    "InstanceResult",
    "check_pair_model",
    "crop_origin",
    "draw_instance_figure",
    "instance_colours",
    "instance_figure",
    "instance_summary",
    "is_metaphase_model",
    "predict_metaphase_file",
    "separate_instances",
    "separation_text",
    "write_instance_outputs",
]

METAPHASE_CLASSES = ("background", "chromosome", "overlap")
#: A metaphase model may add this class: the contact pixels of touching chromosomes (separation only; the
#: instance result's semantic map folds it into chromosome).
TOUCHING_NAME = "touching"
#: Why a component was kept whole (see the module docstring).
FALLBACKS = ("several_overlaps", "no_pair_model", "pair_model_failed", "pair_model_unsure", "arms_unclear")
#: How a crossing of two chromosomes is parted: ``auto`` (the pair model when one is given, else geometry), by the
#: pair model (kept whole without one), by the directions of its arms (:mod:`medseg.inference.crossings`), or not.
CROSSINGS = ("auto", "pair_model", "geometry", "whole")
MIN_AREA = 30  # px: smaller components are specks (the smallest real chromosome is ~60 px; median ≈ 420)
MIN_OVERLAP_PX = 10  # px: as mfish-pairs' PairOptions.min_overlap_px
_EIGHT = np.ones((3, 3), bool)


@dataclass
class Instance:
    """One chromosome: ``mask`` (bool, its bounding box ``bbox`` = (top, left, height, width) in the image)."""

    id: int
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    how: str  # whole | pair_model | one of FALLBACKS
    component: int
    touches_overlap: bool = False  # holds pixels the semantic model calls overlap
    overlaps_with: list[int] = field(default_factory=list)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, bool)
        t, left, h, w = self.bbox
        out[t : t + h, left : left + w] = self.mask
        return out

    def record(self) -> dict:
        return {
            "id": self.id,
            "bbox": {"top": self.bbox[0], "left": self.bbox[1], "height": self.bbox[2], "width": self.bbox[3]},
            "area": self.area,
            "touches_overlap": self.touches_overlap,
            "overlaps_with": list(self.overlaps_with),
            "separated_by": self.how,
        }


@dataclass
class InstanceResult:
    instances: list[Instance]
    label_map: np.ndarray  # int32 (H, W): 0 background, else the id of (the lower-id) instance covering the pixel
    shared: np.ndarray  # bool (H, W): pixels covered by two or more instances
    semantic: np.ndarray  # uint8 (H, W): 0 background, 1 chromosome, 2 overlap (the semantic model's)
    counts: dict
    removed: list[tuple[str, tuple[int, int, int, int], np.ndarray]] = field(default_factory=list)  # rule, box, mask

    def masks(self) -> list[np.ndarray]:
        """Every instance's full-size boolean mask, in id order."""
        return [i.full_mask(self.label_map.shape) for i in self.instances]


def is_metaphase_model(meta: dict) -> bool:
    """Whether a model (its model.json) segments background / chromosome / overlap [/ touching] (2D, multiclass)."""
    task = meta.get("task") or {}
    names = tuple(str(n).lower() for n in task.get("class_names") or ())
    return (
        names in (METAPHASE_CLASSES, (*METAPHASE_CLASSES, TOUCHING_NAME))
        and task.get("mode", "multiclass") == "multiclass"
        and int(task.get("spatial_dims", 2)) == 2
    )


def separate_instances(
    image: np.ndarray,
    semantic: np.ndarray,
    pair_predictor=None,
    *,
    min_area: int = MIN_AREA,
    min_overlap_px: int = MIN_OVERLAP_PX,
    min_part_px: int = MIN_PART_PX,
    min_pair_confidence: float = MIN_PAIR_CONFIDENCE,
    debris: DebrisRules | None = None,
    regions: np.ndarray | None = None,
    crossings: str = "auto",
    split_several: bool = True,
    arms_after_pair_model: bool = True,
    progress: bool = False,
) -> InstanceResult:
    """Chromosome instances from a metaphase's semantic labels (0 bg, 1 chromosome, 2 overlap, optionally 3
    touching) and its image (float (H, W) in [0, 1], what the pair model is fed); see the module docstring for
    every rule. ``debris``: the rules for what is no chromosome (default :class:`DebrisRules` with ``min_area``).
    ``regions``: int labels of the foreground found another way (the Otsu baseline's distance watershed) in
    place of :func:`~medseg.inference.regions.touching_regions`."""
    if crossings not in CROSSINGS:
        raise ValueError(f"crossings must be one of {', '.join(CROSSINGS)}, got {crossings!r}")
    if crossings == "auto":
        crossings = "geometry" if pair_predictor is None else "pair_model"
    image, semantic = np.asarray(image, np.float32), np.asarray(semantic)
    if image.shape != semantic.shape or image.ndim != 2:
        raise ValueError(
            f"image {image.shape} and semantic labels {semantic.shape} must be two 2-D arrays of one shape"
        )
    rules = debris if debris is not None else DebrisRules(min_area=min_area)
    counts = {
        "components": 0,
        **{k: 0 for k in DEBRIS_RULES},
        "parted_at_contacts": 0,
        "whole": 0,
        "pair_model": 0,
        "geometry": 0,
        "pair_model_declined": 0,
        **{k: 0 for k in FALLBACKS},
        "small_overlaps_ignored": 0,
    }
    comps, n = touching_regions(semantic) if regions is None else (np.asarray(regions, np.int32), int(np.max(regions)))
    counts["parted_at_contacts"] = n - ndimage.label(semantic > 0, _EIGHT)[1]
    contact = semantic == TOUCHING_CLASS
    semantic = np.where(contact, 1, semantic)  # contacts are chromosome pixels from here on
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    median = median_area(sizes[1:].tolist(), rules)
    found: list[tuple[tuple[int, int, int, int], np.ndarray, str, int, bool]] = []  # box, mask, how, comp, pair
    removed: list[tuple[str, tuple[int, int, int, int], np.ndarray]] = []
    for k, sl in enumerate(
        Progress(ndimage.find_objects(comps), desc="chromosome clusters", unit="cluster", disable=not progress), start=1
    ):
        if sl is None:
            continue
        comp = comps[sl] == k
        box = (sl[0].start, sl[1].start, comp.shape[0], comp.shape[1])
        rule = debris_rule(comp, box, semantic.shape, median, rules)
        if rule is not None:
            counts[rule] += 1
            removed.append((rule, box, comp))
            continue
        counts["components"] += 1
        ov_lab, n_ov = ndimage.label(comp & (semantic[sl] == 2), _EIGHT)
        ov_sizes = np.bincount(ov_lab.ravel(), minlength=n_ov + 1)
        big = [j for j in range(1, n_ov + 1) if ov_sizes[j] >= min_overlap_px]
        counts["small_overlaps_ignored"] += n_ov - len(big)
        top0, left0 = box[:2]
        if not big:
            found.append((box, comp, "whole", k, False))
            counts["whole"] += 1
            continue
        if len(big) > 1 and crossings == "geometry" and split_several:
            split = split_crossings(comp, [ov_lab == j for j in big], contact[sl], min_arm_px=min_part_px)
            how = "geometry" if split is not None else "several_overlaps"
        elif len(big) > 1 or crossings == "whole" or (crossings == "pair_model" and pair_predictor is None):
            how, split = ("several_overlaps" if len(big) > 1 else "no_pair_model"), None
        elif crossings == "geometry":
            split = split_crossing(comp, ov_lab == big[0], contact[sl], min_arm_px=min_part_px)
            how = "geometry" if split is not None else "arms_unclear"
        else:
            how, split = pair_model_split(
                pair_predictor, image, semantic.shape, comp, box, ov_lab == big[0], min_part_px, min_pair_confidence
            )
            if split is None and arms_after_pair_model:  # the pair model declined: the arms may still say how
                arms = split_crossing(comp, ov_lab == big[0], contact[sl], min_arm_px=min_part_px)
                if arms is not None:
                    counts["pair_model_declined"] += 1
                    how, split = "geometry", arms
        counts[how] += 1
        if split is None:
            found.append((box, comp, how, k, False))
            continue
        for part in split:
            pr0, pr1, pc0, pc1 = bounding_box(part)
            found.append(((top0 + pr0, left0 + pc0, pr1 - pr0, pc1 - pc0), part[pr0:pr1, pc0:pc1], how, k, True))
    return _instance_result(found, semantic, counts, removed)


def _instance_result(found: list, semantic: np.ndarray, counts: dict, removed: list) -> InstanceResult:
    """The instances of ``found`` (box, mask, how, component, from the pair model), numbered in reading order
    (top, then left), with the label map (lower ids win at shared pixels) and the shared pixels."""
    found.sort(key=lambda f: (f[0][0], f[0][1]))

    def touches(box, mask) -> bool:
        return bool((semantic[box[0] : box[0] + box[2], box[1] : box[1] + box[3]][mask] == 2).any())

    instances = [
        Instance(
            id=i,
            bbox=tuple(int(v) for v in box),
            mask=mask,
            how=how,
            component=comp,
            touches_overlap=touches(box, mask),
        )
        for i, (box, mask, how, comp, _) in enumerate(found, start=1)
    ]
    by_comp: dict[int, list[Instance]] = {}
    for inst in instances:
        by_comp.setdefault(inst.component, []).append(inst)
    for group in by_comp.values():  # the two halves of a split share the overlap
        if len(group) == 2:
            group[0].overlaps_with, group[1].overlaps_with = [group[1].id], [group[0].id]
    label_map = np.zeros(semantic.shape, np.int32)
    cover = np.zeros(semantic.shape, np.int16)
    for inst in reversed(instances):  # lower ids written last: they win at shared pixels
        t, left, h, w = inst.bbox
        label_map[t : t + h, left : left + w][inst.mask] = inst.id
        cover[t : t + h, left : left + w] += inst.mask
    counts["instances"] = len(instances)
    return InstanceResult(instances, label_map, cover >= 2, semantic.astype(np.uint8), counts, removed)


def instance_summary(
    result: InstanceResult,
    *,
    image: str,
    stem: str,
    semantic_model: str | None,
    pair_model: str | None,
    extra: list[dict] | None = None,
) -> dict:
    """The content of ``instances.json``: the image, its shape, the models, the semantic pixel counts, the counts
    of :func:`separate_instances` and one record per instance (:meth:`Instance.record`), each updated with its
    dict of ``extra`` keys when given (one per instance, in order: the karyotype's class, class_name,
    class_confidence from :func:`medseg.inference.karyotype.classify_instances`; the status keys of
    :func:`medseg.inference.instance_status.instance_statuses`). When the records carry statuses, ``statuses``
    holds their headline (:func:`~medseg.inference.instance_status.status_summary`)."""
    from medseg.inference.instance_status import status_summary

    semantic = result.semantic
    records = [i.record() for i in result.instances]
    for record, keys in zip(records, extra if extra is not None else [{}] * len(records), strict=True):
        record.update(keys)
    headline = status_summary(records) if any("status" in r for r in records) else None
    return {
        "image": image,
        "shape": list(semantic.shape),
        "semantic_model": semantic_model,
        "pair_model": pair_model,
        "pixels": {n: int((semantic == c).sum()) for c, n in enumerate(METAPHASE_CLASSES)},
        "n_instances": len(result.instances),
        "counts": result.counts,
        "label_map": f"{stem}_instance_labels.png: each pixel the id of one instance covering it (at overlap "
        "pixels the lower id); each instance whole in instances/chromosome_NNN_mask.png",
        "instances": records,
        **({"statuses": headline} if headline else {}),
    }


def separation_text(counts: dict) -> str:
    """ "N crossings split by the pair model / by their arms, M clusters kept whole": the figure's and the CLI's
    line."""
    split = [
        f"{counts[k]} crossings split by {by}"
        for k, by in (("pair_model", "the pair model"), ("geometry", "their arms"))
        if counts.get(k)
    ]
    return ", ".join(split or ["no crossing split"]) + f", {sum(counts[k] for k in FALLBACKS)} clusters kept whole"


def write_instance_outputs(
    folder: str | Path,
    image: np.ndarray,
    result: InstanceResult,
    summary: dict,
    *,
    stem: str,
    source: str | Path,
    margin: int = 4,
) -> Path:
    """Everything ``medseg predict`` writes for a metaphase, into the existing ``folder`` (the caller makes it
    complete atomically: :func:`predict_metaphase_file` renames it, the server publishes its job folder):
    ``<stem>_labels.png`` (semantic 0/1/2), ``<stem>_labels_color.png``, ``<stem>_instance_labels.png`` (16-bit
    instance ids, :attr:`InstanceResult.label_map`), ``instances/chromosome_NNN_mask.png`` + ``_cutout.png``
    (the grey image inside the mask, background zeroed, cut to the bounding box + ``margin`` px), the instance
    figure ``<stem>_instances.png`` (with the records' statuses, when they have them: marked per object, their
    headline as its title), ``summary`` as ``instances.json`` and, when a karyotyping model gave the
    instances classes, ``<stem>_karyogram.png`` (:mod:`medseg.inference.karyogram`). ``image``: float (H, W) in [0, 1];
    ``source`` names the image in an error and in the figure's title."""
    from PIL import Image

    from medseg.palette import colourize

    folder = Path(folder)
    if len(result.instances) > 65535:
        raise DataValidationError(source, f"{len(result.instances)} instances do not fit a 16-bit label map")
    semantic = result.semantic
    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(semantic).save(folder / f"{stem}_labels.png")
    Image.fromarray(colourize(semantic, 0)).save(folder / f"{stem}_labels_color.png")
    Image.fromarray(result.label_map.astype(np.uint16)).save(folder / f"{stem}_instance_labels.png")
    (folder / "instances").mkdir()
    h, w = image.shape
    for inst in result.instances:
        t, left, bh, bw = inst.bbox
        t0, l0 = max(0, t - margin), max(0, left - margin)
        t1, l1 = min(h, t + bh + margin), min(w, left + bw + margin)
        mask = inst.full_mask(image.shape)[t0:t1, l0:l1]
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "instances" / f"chromosome_{inst.id:03d}_mask.png")
        Image.fromarray(np.where(mask, grey[t0:t1, l0:l1], 0).astype(np.uint8)).save(
            folder / "instances" / f"chromosome_{inst.id:03d}_cutout.png"
        )
    records = summary.get("instances") or []
    headline = summary.get("statuses")  # the count a user reports, as the page's title gives it
    title = f"{Path(source).name}: " + (
        f"{headline['text']}\n{len(result.instances)} objects, "
        if headline
        else f"{len(result.instances)} chromosomes ("
    )
    title += separation_text(result.counts) + ("" if headline else ")")
    instance_figure(
        image,
        result,
        folder / f"{stem}_instances.png",
        title=title,
        statuses=records if headline and len(records) == len(result.instances) else None,
    )
    if any(r.get("class") is not None for r in records):  # a karyotyping model named them: the karyogram too
        from medseg.inference.karyogram import draw_karyogram

        draw_karyogram(
            grey,
            result.instances,
            records,
            folder / f"{stem}_karyogram.png",
            title=f"{Path(source).name}: karyogram of {len(records)} chromosomes",
        )
    (folder / "instances.json").write_text(json.dumps(summary, indent=1) + "\n")
    return folder


def predict_metaphase_file(
    predictor,
    pair_predictor,
    path: str | Path,
    out_dir: str | Path,
    *,
    margin: int = 4,
    progress: bool = True,
    classify=None,
    crossings: str = "auto",
) -> dict:
    """``medseg predict RUN metaphase.tif [--pair-model PAIR_RUN] [--crossings HOW] -o OUT``: writes
    ``OUT/<stem>/`` with
    ``<stem>_labels.png`` (semantic 0/1/2), ``<stem>_labels_color.png``, ``<stem>_instances.png`` (the instance
    figure), ``<stem>_instance_labels.png`` (16-bit instance ids, :attr:`InstanceResult.label_map`),
    ``instances.json`` (per instance: id, bbox, area, overlaps_with, separated_by; the counts) and
    ``instances/chromosome_NNN_mask.png`` + ``chromosome_NNN_cutout.png`` (the grey image inside the mask,
    background zeroed, cut to the bounding box + ``margin`` px) — ready for karyotyping
    (:func:`write_instance_outputs`, which the web server's jobs call too). Everything is written into a
    temporary folder beside it and renamed at the end (an earlier result for the same image is replaced only
    then). Returns the JSON's content."""
    from medseg.data.folder import normalize_intensity, read_image
    from medseg.inference.image import predict_arrays

    path, out_dir = Path(path), Path(out_dir)
    if not is_metaphase_model(predictor.meta):
        names = ", ".join(map(str, predictor.class_names))
        raise DataValidationError(
            path,
            f"the model segments {names}; chromosome instances need a model of "
            "background / chromosome / overlap (configs/mfish/metaphase_unet.yaml)",
        )
    raw = read_image(path)
    image = normalize_intensity(raw)
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise DataValidationError(
            path, f"image is {image.shape[1]} × {image.shape[0]} px (width × height): too small for a metaphase"
        )
    semantic = np.asarray(predict_arrays(predictor, image)).astype(np.uint8)
    result = separate_instances(image, semantic, pair_predictor, crossings=crossings, progress=progress)
    stem = path.stem
    final = out_dir / stem
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = instance_summary(
        result,
        image=str(path),
        stem=stem,
        semantic_model=predictor.meta.get("model", {}).get("name"),
        pair_model=None if pair_predictor is None else pair_predictor.meta.get("model", {}).get("name"),
        # hook: classify(image, instances) -> one dict of extra keys per instance
        extra=None if classify is None else classify(image, result.instances),
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=out_dir))
    try:
        write_instance_outputs(tmp, image, result, summary, stem=stem, source=path, margin=margin)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{stem}.old.", dir=out_dir))
            os.replace(final, old / stem)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["out"] = str(final)
    return summary
