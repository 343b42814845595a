"""Chromosome instances against the M-FISH label maps (``medseg evaluate-metaphases``).

**True instances** (:func:`true_instances`) come from the karyotype label map (0 background, 1–24 class, 255
overlap) by ``mfish-pairs``' rule: a chromosome of class c is a connected component (8-neighbourhood) of the
class-c pixels together with every overlap region (255) that borders class c, so an overlap pixel belongs to
every chromosome around it and a chromosome cut in two by a crossing is one chromosome. Components under
``min_area`` pixels (specks of a class) are left out. Two copies of one class crossing each other come out as
one true instance: the label map cannot tell them apart (2 % of the overlaps, data README).

**Matching**: one-to-one by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) maximising the
summed IoU over the pairs with IoU ≥ 0.5 (at that threshold each instance has at most one such partner when the
instances do not overlap, so greedy and Hungarian agree almost always; Hungarian is the one without an order).
TP: matched pairs; FP: predictions without a match; FN: true chromosomes without one. Precision TP/(TP+FP),
recall TP/(TP+FN), F1 their harmonic mean (1 when there is nothing to find and nothing was found).

**Split**: a true chromosome g for which two or more predictions p each lie mostly inside it
(|p ∩ g| ≥ ½|p|) and together cover at least half of it (|(∪p) ∩ g| ≥ ½|g|): one chromosome cut into pieces.
**Merge**: a prediction p that holds at least half of each of two or more true chromosomes (|p ∩ g| ≥ ½|g| for
≥ 2 g): chromosomes fused into one. Both rules count the pixels **outside the label map's overlaps** (255): those
belong to two chromosomes at once, so they say nothing about which one a prediction is. Counted on whole masks, a
crossing split correctly would be a merge whenever the overlap is half of the smaller chromosome or more (its
crossing partner's half holds the overlap, hence half of it) — 5 of the 6 "merges" of correctly split crossings on
the validation slides V13 and V15 were that. A chromosome lying wholly in overlaps keeps its whole mask.

**Semantic** IoU of the overlap class (predicted class 2 vs label 255) and of the chromosome foreground
(predicted 1 ∪ 2 vs label > 0): per metaphase (NaN when both are empty) and pooled (summed intersections over
summed unions). Per metaphase and pooled (summed counts) for everything.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.errors import DataValidationError
from medseg.evaluation.instance_overlap import intersections
from medseg.evaluation.metaphase_report import per_metaphase_figure, report_markdown
from medseg.inference.regions import DebrisRules

__all__ = ["IOU_THRESHOLD", "evaluate_metaphases", "match_instances", "pool", "score_metaphase", "true_instances"]

IOU_THRESHOLD = 0.5
COVER = 0.5  # the "mostly inside" / "at least half" share of the split and merge rules
MIN_TRUE_AREA = 10
_EIGHT = np.ones((3, 3), bool)


def true_instances(karyo: np.ndarray, *, min_area: int = MIN_TRUE_AREA) -> list[np.ndarray]:
    """Full-size boolean masks of the label map's chromosomes (see the module docstring), in raster order of
    their first pixel."""
    from medseg.data.mfish import OVERLAP_VALUE
    from medseg.data.mfish_pair_crops import _overlap_regions  # the pairs' own rule: which classes border an overlap

    karyo = np.asarray(karyo)
    ov = _overlap_regions(karyo, 1)
    out: list[tuple[int, np.ndarray]] = []
    for c in np.unique(karyo):
        c = int(c)
        if c == 0 or c == OVERLAP_VALUE:
            continue
        bordering = [k for k, classes in enumerate(ov.classes, start=1) if c in classes]
        region = (karyo == c) | (np.isin(ov.labelled, bordering) if bordering else False)
        labelled, n = ndimage.label(region, _EIGHT)
        for sl_k, _ in enumerate(ndimage.find_objects(labelled), start=1):
            m = labelled == sl_k
            if not (m & (karyo == c)).any() or (m & (karyo == c)).sum() < min_area:
                continue
            out.append((int(np.flatnonzero(m.ravel())[0]), m))
    out.sort(key=lambda t: t[0])
    return [m for _, m in out]


def _flat(masks: list[np.ndarray]) -> list[np.ndarray]:
    return [np.flatnonzero(np.asarray(m).ravel()) for m in masks]


def match_instances(
    pred_masks: list[np.ndarray],
    true_masks: list[np.ndarray],
    *,
    threshold: float = IOU_THRESHOLD,
    shared: np.ndarray | None = None,
) -> dict:
    """Counts for one image: ``tp``, ``fp``, ``fn``, ``split``, ``merge``, ``n_pred``, ``n_true``, the matched
    pairs ``matches`` [(pred index, true index, IoU)] and their mean IoU (see the module docstring). ``shared``:
    the boolean map of the truth's overlap pixels, left out of the split and merge rules."""
    flat_shared = None if shared is None else np.flatnonzero(np.asarray(shared).ravel())
    return match_flat(_flat(pred_masks), _flat(true_masks), threshold=threshold, shared=flat_shared)


def _outside(masks: list[np.ndarray], shared: np.ndarray | None) -> list[np.ndarray]:
    """Each instance's pixels outside ``shared`` (sorted flat indices); one wholly inside keeps all of its own."""
    if shared is None or not shared.size:
        return masks
    own = [np.setdiff1d(m, shared, assume_unique=True) for m in masks]
    return [o if o.size else m for o, m in zip(own, masks, strict=True)]


def match_flat(
    pred: list[np.ndarray],
    true: list[np.ndarray],
    *,
    threshold: float = IOU_THRESHOLD,
    shared: np.ndarray | None = None,
) -> dict:
    """:func:`match_instances` on instances given as sorted flat pixel indices (``shared`` too)."""
    from scipy.optimize import linear_sum_assignment

    inter = intersections(pred, true)
    area_p = np.array([p.size for p in pred], np.int64)
    area_t = np.array([g.size for g in true], np.int64)
    union = area_p[:, None] + area_t[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    matches = []
    if iou.size:
        eligible = np.where(iou >= threshold, iou, 0.0)
        rows, cols = linear_sum_assignment(-eligible)
        matches = [
            (int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold
        ]
    tp = len(matches)
    # split and merge: on the pixels outside the truth's overlaps (see the module docstring)
    pred_own, true_own = _outside(pred, shared), _outside(true, shared)
    if shared is not None and shared.size:
        inter = intersections(pred_own, true_own)
        area_p = np.array([p.size for p in pred_own], np.int64)
        area_t = np.array([g.size for g in true_own], np.int64)
    inside = inter >= COVER * np.maximum(area_p[:, None], 1)  # p mostly inside g
    split = 0
    for j, g in enumerate(true_own):
        pieces = np.flatnonzero(inside[:, j])
        if len(pieces) >= 2:
            covered = np.unique(np.concatenate([pred_own[i] for i in pieces]))
            if np.intersect1d(covered, g, assume_unique=True).size >= COVER * g.size:
                split += 1
    holds = inter >= COVER * np.maximum(area_t[None, :], 1)  # p holds at least half of g
    merge = int((holds.sum(axis=1) >= 2).sum()) if holds.size else 0
    return {
        "n_pred": len(pred),
        "n_true": len(true),
        "tp": tp,
        "fp": len(pred) - tp,
        "fn": len(true) - tp,
        "split": split,
        "merge": merge,
        "matched_iou": float(np.mean([m[2] for m in matches])) if matches else None,
        "matches": matches,
    }


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else (1.0 if not fn else 0.0)
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _iou(pred: np.ndarray, true: np.ndarray) -> tuple[int, int]:
    return int((pred & true).sum()), int((pred | true).sum())


def score_metaphase(pred_masks: list[np.ndarray], semantic: np.ndarray, karyo: np.ndarray) -> dict:
    """One metaphase: instance counts and rates, and the semantic IoUs (with their pixel counts, for pooling)."""
    from medseg.data.mfish import OVERLAP_VALUE

    m = match_instances(pred_masks, true_instances(karyo), shared=karyo == OVERLAP_VALUE)
    ov_i, ov_u = _iou(semantic == 2, karyo == OVERLAP_VALUE)
    fg_i, fg_u = _iou(semantic > 0, karyo > 0)
    row = {k: v for k, v in m.items() if k != "matches"}
    row.update(_prf(m["tp"], m["fp"], m["fn"]))
    row.update(
        overlap_iou=ov_i / ov_u if ov_u else math.nan,
        overlap_inter=ov_i,
        overlap_union=ov_u,
        chromosome_iou=fg_i / fg_u if fg_u else math.nan,
        chromosome_inter=fg_i,
        chromosome_union=fg_u,
    )
    return row


def pool(rows: list[dict]) -> dict:
    """Pooled over metaphases: summed counts, precision / recall / F1 of the sums, IoUs of the summed pixels,
    and the mean of the per-metaphase F1 beside them."""
    keys = ("n_pred", "n_true", "tp", "fp", "fn", "split", "merge")
    out = {k: int(sum(r[k] for r in rows)) for k in keys}
    out.update(_prf(out["tp"], out["fp"], out["fn"]))
    for name in ("overlap", "chromosome"):
        i, u = sum(r[f"{name}_inter"] for r in rows), sum(r[f"{name}_union"] for r in rows)
        out[f"{name}_iou"] = i / u if u else math.nan
    out["mean_f1_per_metaphase"] = float(np.mean([r["f1"] for r in rows])) if rows else math.nan
    out["n_metaphases"] = len(rows)
    return out


def _clean(value):
    """JSON without NaN (null instead)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _removed_true(result, karyo: np.ndarray, true: list[np.ndarray]) -> dict:
    """Per debris rule: how many objects it left out, and how many of those were a true chromosome (IoU ≥ 0.5
    with one) — what each rule cost."""
    by_rule: dict[str, list[np.ndarray]] = {}
    width = karyo.shape[1]
    for rule, (t, left, _, _), mask in result.removed:  # flat indices from the crop: no full-size mask per speck
        rows, cols = np.nonzero(mask)
        by_rule.setdefault(rule, []).append(np.sort((rows + t) * width + cols + left))
    # one matching per rule, not per object: a metaphase may shed thousands of specks (IoU >= 0.5 pairs one to one)
    flat_true = _flat(true)
    return {
        rule: {"removed": len(objs), "true_chromosomes": match_flat(objs, flat_true)["tp"] if true else 0}
        for rule, objs in by_rule.items()
    }


def _group_pools(rows: list[dict], key) -> dict:
    """Pooled figures per group of metaphases (a slide; an imaging system, the slide's first letter)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    keep = (
        "n_metaphases",
        "n_true",
        "n_pred",
        "tp",
        "split",
        "merge",
        "precision",
        "recall",
        "f1",
        "mean_f1_per_metaphase",
    )
    out = {}
    for name, members in sorted(groups.items()):
        pooled = pool(members)
        out[name] = {k: pooled[k] for k in keep} | {"lowest_f1": min(r["f1"] for r in members)}
    return out


def _load_predictors(model, pair_model, data: Path, *, baseline: str | None, device: str, trust_code: bool):
    """The semantic predictor (None with the Otsu baseline) and the pair predictor (or None), checked: one of
    a model or the baseline, a model of background / chromosome / overlap, a pair model of four classes."""
    from medseg.inference.instances import check_pair_model, is_metaphase_model
    from medseg.inference.predictor import Predictor

    if baseline not in (None, "otsu"):
        raise DataValidationError(data, f"no baseline {baseline!r}: the one there is, otsu")
    if (model is None) == (baseline is None):
        raise DataValidationError(data, "evaluate-metaphases takes a semantic model or --baseline otsu, one of them")
    predictor = None if model is None else Predictor.from_path(model, device=device, tta=None, trust_code=trust_code)
    if predictor is not None and not is_metaphase_model(predictor.meta):
        raise DataValidationError(
            model,
            f"the model segments {', '.join(map(str, predictor.class_names))}; instances "
            "need background / chromosome / overlap (configs/mfish/metaphase_unet.yaml)",
        )
    pair = None
    if pair_model is not None:
        pair = Predictor.from_path(pair_model, device=device, tta=None, trust_code=trust_code)
        check_pair_model(pair.meta, pair_model)
    return predictor, pair


def _chosen_metaphases(data: Path, slides: str, limit: int | None) -> tuple[set[str], list]:
    """The slides ``slides`` names (``test``, ``all`` or a comma-separated list) and their labelled metaphases,
    the first ``limit`` of them."""
    from medseg.data.mfish import find_metaphases, slide_of
    from medseg.data.mfish_metaphase import pair_test_slides

    metaphases = find_metaphases(data)
    if slides == "test":
        chosen = set(pair_test_slides(data)["test"])
    elif slides == "all":
        chosen = {slide_of(m.folder) for m in metaphases}
    else:
        chosen = {s.strip() for s in slides.split(",") if s.strip()}
        unknown = chosen - {slide_of(m.folder) for m in metaphases}
        if unknown:
            raise DataValidationError(
                data,
                f"no slide {', '.join(sorted(unknown))} here (--slides takes test, all or slide ids such as A20,P09)",
            )
    metaphases = [m for m in metaphases if slide_of(m.folder) in chosen][:limit]
    if not metaphases:
        raise DataValidationError(data, f"no labelled metaphase on the slides asked for ({slides})")
    return chosen, metaphases


def _score_one_metaphase(m, predictor, pair, debris, crossings: str = "auto") -> tuple[dict, tuple]:
    """One metaphase segmented, separated and scored: its row, and what its instance figure needs (the image,
    the separation, the label map, the statuses)."""
    from medseg.data.mfish import read_metaphase, slide_of
    from medseg.evaluation.status_accuracy import score_statuses
    from medseg.inference.image import predict_arrays
    from medseg.inference.instance_status import instance_statuses
    from medseg.inference.instances import separate_instances
    from medseg.inference.otsu_baseline import otsu_instances

    dapi, karyo = read_metaphase(m)
    image = dapi.astype(np.float32) / 255.0
    t0 = time.perf_counter()
    if predictor is None:
        result = otsu_instances(image, debris=debris)
        semantic, t1 = result.semantic, t0
    else:
        semantic = np.asarray(predict_arrays(predictor, image)).astype(np.uint8)
        t1 = time.perf_counter()
        result = separate_instances(image, semantic, pair, debris=debris, crossings=crossings)
    t2 = time.perf_counter()
    true = true_instances(karyo)
    masks = result.masks()
    statuses = instance_statuses(result.instances, image.shape, image)  # as predict and the server give them
    row = {
        "metaphase": m.name,
        "slide": slide_of(m.folder),
        **score_metaphase(masks, semantic, karyo),
        "separation": result.counts,
        "segment_s": round(t1 - t0, 3),
        "separate_s": round(t2 - t1, 3),
        "statuses": score_statuses(statuses, _flat(masks), _flat(true), karyo),
    }
    return row, (image, result, karyo, statuses, true)


def _metrics(
    rows: list[dict],
    pooled: dict,
    *,
    data: Path,
    chosen: set[str],
    slides: str,
    model,
    pair_model,
    baseline,
    debris,
    removed: dict,
    counts: dict,
    started: float,
    notice_text,
) -> dict:
    """``metrics.json``: the set, the definitions, the pooled figures (all, per slide, per imaging system) and
    each metaphase's row."""
    from medseg.evaluation.status_accuracy import RULES, pool_statuses

    return {
        "data": f"REAL M-FISH metaphases ({data})",
        "slides": sorted(chosen),
        "slides_rule": slides,
        "n_metaphases": len(rows),
        "model": str(model),
        "pair_model": None if pair_model is None else str(pair_model),
        "iou_threshold": IOU_THRESHOLD,
        "matching": "Hungarian, maximising summed IoU over pairs with IoU >= 0.5",
        "definitions": {
            "split": "a true chromosome with >= 2 predictions each >= 50 % inside it, together covering >= 50 % of it",
            "merge": "a prediction holding >= 50 % of each of >= 2 true chromosomes",
            "true_instances": "each class value's 8-connected components with the overlap regions "
            "bordering that class (mfish-pairs' rule)",
            "status_right": RULES,
        },
        "baseline": baseline,
        "debris_rules": (debris or DebrisRules()).record(),
        "debris_removed": removed,
        "pooled": pooled,
        "status_accuracy": pool_statuses([r["statuses"] for r in rows]),
        "per_slide": _group_pools(rows, lambda r: r["slide"]),
        "per_system": _group_pools(rows, lambda r: r["slide"][:1]),
        "seconds_per_metaphase": {
            k: round(float(np.mean([r[k] for r in rows])), 3) for k in ("segment_s", "separate_s")
        },
        "separation": counts,
        "per_metaphase": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "licence": notice_text,
    }


def evaluate_metaphases(
    model: str | Path | None,
    data: str | Path,
    out_dir: str | Path,
    *,
    pair_model: str | Path | None = None,
    slides: str = "test",
    limit: int | None = None,
    device: str = "auto",
    trust_code: bool = False,
    progress: bool = True,
    baseline: str | None = None,
    debris=None,
    crossings: str = "auto",
) -> dict:
    """Body of ``medseg evaluate-metaphases``: the semantic ``model`` (+ ``pair_model``) on the labelled metaphases
    of the M-FISH folder ``data`` — those of the held-out test slides of ``medseg data mfish-pairs``
    (``slides="test"``, :func:`medseg.data.mfish_metaphase.pair_test_slides`), or ``"all"``, or a comma-separated
    list of slides — scored per metaphase and pooled; writes ``metrics.json``, ``report.md``, ``per_metaphase.png``
    and the instance figure (truth | prediction) of the metaphase with the lowest F1, and the data's licence
    notice (``README.TXT``: the figures are derived from the set). Returns the metrics.

    ``baseline="otsu"``: no model — Otsu's threshold + distance watershed (:mod:`medseg.inference.otsu_baseline`),
    scored the same way. ``debris``: :class:`~medseg.inference.regions.DebrisRules` (default: on); per rule the
    objects it left out and how many of them were true chromosomes are in ``debris_removed``. Per slide and per
    imaging system (the slide's letter: A, P, V) the pooled figures are in ``per_slide`` / ``per_system``; each
    metaphase's seconds for segmentation and separation in its row. Each object's status
    (:func:`medseg.inference.instance_status.instance_statuses`) is scored against the label map
    (:mod:`medseg.evaluation.status_accuracy`): per metaphase in its row's ``statuses``, pooled in
    ``status_accuracy`` (objects, right, accuracy, estimated vs held chromosomes, the rule). ``crossings``: how a
    crossing of two is parted (:data:`medseg.inference.instances.CROSSINGS`; ``auto``: the pair model when one is
    given, else the directions of its arms)."""
    import shutil

    from medseg.data.mfish import licence_notice
    from medseg.inference.instance_figure import instance_figure
    from medseg.progress import Progress

    started = time.perf_counter()
    data, out_dir = Path(data), Path(out_dir)
    predictor, pair = _load_predictors(model, pair_model, data, baseline=baseline, device=device, trust_code=trust_code)
    chosen, metaphases = _chosen_metaphases(data, slides, limit)
    rows, counts, removed, worst, dapis = [], {}, {}, None, []
    for m in Progress(metaphases, desc="metaphases", unit="image", disable=not progress):
        row, (image, result, karyo, statuses, true) = _score_one_metaphase(m, predictor, pair, debris, crossings)
        dapis.append(np.round(image * 255).astype(np.uint8))
        for rule, got in _removed_true(result, karyo, true).items():
            total = removed.setdefault(rule, {"removed": 0, "true_chromosomes": 0})
            total["removed"] += got["removed"]
            total["true_chromosomes"] += got["true_chromosomes"]
        for k, v in result.counts.items():
            counts[k] = counts.get(k, 0) + v
        rows.append(row)
        if worst is None or row["f1"] < worst[0]:
            worst = (row["f1"], m, image, result, karyo, statuses)
    pooled = pool(rows)
    notice, notice_text = licence_notice(data)
    metrics = _metrics(
        rows,
        pooled,
        data=data,
        chosen=chosen,
        slides=slides,
        model=model,
        pair_model=pair_model,
        baseline=baseline,
        debris=debris,
        removed=removed,
        counts=counts,
        started=started,
        notice_text=notice_text,
    )
    metrics["crossings"] = ("pair_model" if pair is not None else "geometry") if crossings == "auto" else crossings
    metrics.update(_each_metaphase_once(rows, dapis))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(_clean(metrics), indent=1) + "\n")
    per_metaphase_figure(rows, out_dir / "per_metaphase.png")
    _, wm, wimage, wresult, wkaryo, wstatuses = worst
    instance_figure(
        wimage,
        wresult,
        out_dir / "instances_lowest_f1.png",
        truth=true_instances(wkaryo),
        title=f"{wm.name}: lowest F1 of the set ({worst[0]:.2f})",
        statuses=wstatuses,
    )
    if notice is not None:
        shutil.copyfile(notice, out_dir / "README.TXT")
    (out_dir / "report.md").write_text(report_markdown(metrics))
    return metrics


def _each_metaphase_once(rows: list[dict], dapis: list[np.ndarray]) -> dict:
    """The metaphases published twice among those scored (:func:`medseg.data.mfish.near_duplicates`) and, when
    there are any, the pooled figures with each counted once (the second of a pair left out)."""
    from medseg.data.mfish import near_duplicates

    twice = near_duplicates([r["metaphase"] for r in rows], dapis)
    seconds = {d["second"] for d in twice}
    once = pool([r for r in rows if r["metaphase"] not in seconds]) if twice else None
    return {"near_duplicates": twice, "pooled_each_metaphase_once": once}
