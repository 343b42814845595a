"""Chromosome instances in the web system: a job on a metaphase model (background / chromosome / overlap,
:func:`~medseg.inference.instances.is_metaphase_model`) with a 2D image gives, besides the semantic result,
every chromosome whole as its own instance, as ``medseg predict RUN metaphase.tif
--pair-model PAIR_RUN`` does.

After the semantic labels (the worker's, as for any 2D model), :func:`~medseg.inference.instances.separate_instances`
splits each crossing of two chromosomes with the server's pair model (``medseg serve --pair-model``; without one
every crossing is kept whole and the result says so), the server's karyotyping model (``medseg serve
--karyotype-model``, when it has one) gives every instance its class by
:func:`~medseg.inference.karyotype.classify_instances` — ``class``, ``class_name``, ``class_confidence`` (and
``class_note`` when none) on each record, as ``medseg predict --karyotype-model`` adds them — and
:func:`~medseg.inference.instances.write_instance_outputs` — the one writer ``medseg predict`` uses too — writes
the files a karyotyper takes away. In the result folder:

* ``instances.zip`` (download ``instances``): ``<stem>/`` exactly as ``medseg predict`` writes it — the semantic and
  instance label maps, ``instances/chromosome_NNN_mask.png`` + ``_cutout.png`` per chromosome, the instance figure
  and ``instances.json``, plus ``chromosomes.csv`` (one row per chromosome:
  :func:`~medseg.inference.instance_status.chromosomes_csv`);
* ``instances.json`` (``GET /api/results/{id}/instances``, the page's table) and ``instance_labels.png`` (16-bit
  instance ids) beside it;
* ``karyogram.png`` (download ``karyogram``), with a karyotyping model that classed any chromosome: the karyogram
  of :mod:`medseg.inference.karyogram`, also in the zip;
* ``slices/instances/0000.png``: the viewer's instance layer (slice kind ``instances``), every chromosome in its own
  colour (:func:`instance_lut`: neighbours far apart), its fill half transparent and its outline opaque, overlap
  pixels (in two chromosomes) white.

Every record carries its status (single, crossing, clump with an estimated count, doubtful:
:mod:`medseg.inference.instance_status`) and ``statuses`` the headline built from them.

The result's summary keeps the counts only (``summary.instances``: with a karyotyping model also the number of
chromosomes per class), not the per-chromosome records, so a study list stays small whatever the image holds.
A segmentation that falls into more than :data:`MAX_INSTANCES` pieces is no metaphase: its semantic result is
kept, without instances, and a warning says why.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.data.folder import normalize_intensity
from medseg.inference.instance_figure import instance_colours
from medseg.inference.instance_status import chromosomes_csv, instance_statuses, status_summary
from medseg.inference.instances import (
    FALLBACKS,
    instance_summary,
    separate_instances,
    separation_text,
    write_instance_outputs,
)
from medseg.inference.karyotype import classify_instances
from medseg.server.slices import FILL_ALPHA, slice_file

log = logging.getLogger("medseg.server")
LAYER = "instances"  # the slice kind of the instance layer (and its folder under slices/)
FILES = {
    "json": "instances.json",
    "labels": "instance_labels.png",
    "zip": "instances.zip",
    "karyogram": "karyogram.png",
}
MAX_INSTANCES = 2000  # a metaphase holds ~46 chromosomes; thousands of pieces are noise, not chromosomes
NO_PAIR_NOTE = (
    "This server has no pair model: each crossing of two chromosomes is split by the directions of its arms "
    "where they say clearly how, else kept whole as one object (counted as two in the estimate): check the "
    "split ones, separate the others by hand, or ask the administrator for a pair model."
)
#: The fix only an operator can make: to the server log, not to the page.
NO_PAIR_LOG = "metaphase result without a pair model: start medseg serve with --pair-model PAIR_RUN to split crossings"
REASONS = {  # why a component was kept whole (medseg.inference.instances.FALLBACKS)
    "several_overlaps": "with two or more overlaps: three or more chromosomes, or two crossing twice",
    "no_pair_model": "a crossing of two, with no pair model to split it",
    "pair_model_failed": "a crossing of two that the pair model could not split",
    "pair_model_unsure": "a crossing of two whose split the pair model was unsure of",
    "arms_unclear": "a crossing of two whose arms do not say clearly how to split it",
}


def file_stem(name: str) -> str:
    """The uploaded file's name as a safe file stem (the zip's folder and its files' prefix)."""
    base = Path(str(name).replace("\\", "/")).name
    for suffix in (".tiff", ".tif", ".png"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._")[:60] or "image"


def instance_lut(n: int) -> np.ndarray:
    """(n + 1, 3) uint8: row i the viewer's colour of instance i (row 0 black). Ids follow the bounding boxes'
    raster order, so neighbours have near ids; consecutive palette colours are alike, so instance i takes colour
    (i − 1) · step mod n of :func:`~medseg.inference.instance_figure.instance_colours`, step ≈ 0.38 n and coprime
    to n: every colour once, neighbours far apart in the palette."""
    lut = np.zeros((n + 1, 3), np.uint8)
    if n:
        step = max(1, round(0.382 * n))
        while np.gcd(step, n) != 1:
            step += 1
        lut[1:] = instance_colours(n)[(np.arange(n) * step) % n]
    return lut


def instance_rgba(label_map: np.ndarray, shared: np.ndarray, n: int) -> np.ndarray:
    """(H, W) instance ids (0 none) → the viewer's RGBA layer: instance i in its colour of :func:`instance_lut`,
    fill alpha :data:`FILL_ALPHA`, its outline (4-neighbourhood: a pixel beside another id) opaque; ``shared``
    pixels opaque white."""
    ids = np.asarray(label_map)
    lut = instance_lut(n)
    out = np.zeros((*ids.shape, 4), np.uint8)
    out[..., :3] = lut[ids]
    padded = np.pad(ids, 1)
    edge = (
        (padded[:-2, 1:-1] != ids) | (padded[2:, 1:-1] != ids) | (padded[1:-1, :-2] != ids) | (padded[1:-1, 2:] != ids)
    )
    out[..., 3] = np.where(ids > 0, np.where(edge, 255, FILL_ALPHA), 0)
    out[np.asarray(shared, bool)] = 255
    return out


def _zip_folder(folder: Path, path: Path) -> None:
    """``folder`` as ``<folder name>/...`` in a zip (PNGs stored: they are compressed already)."""
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            kind = zipfile.ZIP_STORED if f.suffix == ".png" else zipfile.ZIP_DEFLATED
            zf.write(f, f"{folder.name}/{f.relative_to(folder).as_posix()}", compress_type=kind)


def class_counts(records: list[dict]) -> tuple[dict[str, int], int]:
    """({class name: chromosomes} in class order, chromosomes without a class) of classified instance records."""
    classes = sorted((r["class"], r["class_name"]) for r in records if r.get("class") is not None)
    counts: dict[str, int] = {}
    for _, name in classes:
        counts[name] = counts.get(name, 0) + 1
    return counts, len(records) - len(classes)


def classes_text(counts: dict[str, int], unclassified: int) -> str:
    """ "classes found: 1 ×2, 2 ×2, X ×1; 1 not classified" (the result's line)."""
    found = ", ".join(f"{name} ×{n}" for name, n in counts.items()) or "none"
    return f"classes found: {found}" + (f"; {unclassified} not classified" if unclassified else "")


def write_result_instances(
    entry,
    pair_predictor,
    image: np.ndarray,
    semantic: np.ndarray,
    out: Path,
    work: Path,
    *,
    study_name: str,
    karyotype_predictor=None,
) -> tuple[dict | None, list[str]]:
    """Instances of one metaphase into the result folder ``out`` (the module docstring lists the files); the
    predict-style folder is written under ``work`` first. ``image``: the stored 2D image (as read), ``semantic``
    the worker's (H, W) labels 0/1/2; ``karyotype_predictor``: the loaded ``entry.karyotype`` (voting by
    ``entry.karyotype_vote``), or None. Returns ``summary.instances`` (None when there are none to show) and
    warnings for the result."""
    grey = normalize_intensity(image)
    semantic = np.asarray(semantic, np.uint8)
    result = separate_instances(grey, semantic, pair_predictor)
    n = len(result.instances)
    if n > MAX_INSTANCES:
        return None, [
            f"the segmentation falls into {n} pieces (more than {MAX_INSTANCES}): this does not look like a "
            "metaphase, so no chromosome instances are given"
        ]
    pair = None if entry.pair is None else {"name": entry.pair.name, "version": entry.pair.version}
    if pair is None:
        log.info(NO_PAIR_LOG)
    stem = file_stem(study_name)
    karyotype = None if karyotype_predictor is None else entry.karyotype_model()  # {name, version, vote}
    # as medseg predict --karyotype-model: the class keys on every record
    classes = (
        None
        if karyotype is None
        else classify_instances(karyotype_predictor, grey, result.instances, vote=karyotype["vote"])
    )
    statuses = instance_statuses(result.instances, semantic.shape, grey)  # each object's status (single, clump, ...)
    extra = statuses if classes is None else [{**c, **s} for c, s in zip(classes, statuses, strict=True)]
    summary = instance_summary(
        result,
        image=study_name,
        stem=stem,
        semantic_model=entry.name,
        pair_model=None if pair is None else pair["name"],
        extra=extra,
    )
    summary["statuses"] = status_summary(summary["instances"])
    summary.update(semantic_model_version=entry.version, pair_model_version=None if pair is None else pair["version"])
    named = karyotype or {}
    summary.update(
        karyotype_model=named.get("name"),
        karyotype_model_version=named.get("version"),
        karyotype_vote=named.get("vote"),
    )
    folder = work / "instance-files" / stem
    folder.mkdir(parents=True)
    write_instance_outputs(folder, grey, result, summary, stem=stem, source=study_name)
    (folder / "chromosomes.csv").write_text(chromosomes_csv(summary["instances"]), encoding="utf-8")
    _zip_folder(folder, out / FILES["zip"])
    (out / FILES["json"]).write_bytes((folder / "instances.json").read_bytes())
    (out / FILES["labels"]).write_bytes((folder / f"{stem}_instance_labels.png").read_bytes())
    karyogram = folder / f"{stem}_karyogram.png"  # written when the karyotyping model named any chromosome
    if karyogram.is_file():  # also on its own: the page links it beside the zip
        (out / FILES["karyogram"]).write_bytes(karyogram.read_bytes())
    layer = out / "slices" / LAYER
    layer.mkdir(parents=True)
    Image.fromarray(instance_rgba(result.label_map, result.shared, n)).save(slice_file(layer, 0), compress_level=3)
    c = result.counts
    kept = {k: c[k] for k in FALLBACKS if c[k]}
    per_class = {}
    if karyotype is not None:
        found, unclassified = class_counts(summary["instances"])
        per_class = {
            "class_counts": found,
            "unclassified": unclassified,
            "classes_text": classes_text(found, unclassified),
        }
    return {
        "n": n,
        "counts": c,
        "pair_model": pair,
        "note": None if pair is not None else NO_PAIR_NOTE,
        "karyotype_model": karyotype,
        **per_class,
        "statuses": summary["statuses"],
        "karyogram": karyogram.is_file(),
        "alone": c["whole"],
        "split": c["pair_model"] + c["geometry"],
        "kept_whole": sum(c[k] for k in FALLBACKS),
        "kept_whole_why": {k: {"count": v, "reason": REASONS[k]} for k, v in kept.items()},
        "layer": LAYER,
        "text": (
            f"{n} objects: {c['whole']} alone, {separation_text(c)}"
            + (" (" + "; ".join(f"{v} × {REASONS[k]}" for k, v in kept.items()) + ")" if kept else "")
        ),
    }, []


def instance_table(path: Path) -> dict:
    """``instances.json`` of a result with each record's colour in the viewer's layer (``colour``, ``#rrggbb``)."""
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    records = data.get("instances") or []
    ids = [int(r.get("id", 0)) for r in records]
    lut = instance_lut(max(ids, default=0))
    for record, i in zip(records, ids, strict=True):
        if 1 <= i < len(lut):  # as instance_rgba draws it
            record["colour"] = "#{:02x}{:02x}{:02x}".format(*(int(v) for v in lut[i]))
    return data
