"""`medseg evaluate RUN`: every fold's best model on the held-out test set → report.md, metrics.json, figures.

The papers report 5-fold cross-validation scored on one held-out test set (RSE-UNet §3.2, ARMS Net §4.1):
each fold's model predicts the test set; the headline is the mean over folds (± sd), and the box plot shows
each fold's per-image IoU of ``task.primary_metric`` (the overlap IoU on the chromosome task). Overlays and the
confusion matrix use the fold ensemble. The evaluator holds no task of its own: the task plug-ins
(:mod:`medseg.evaluation.tasks`) add their scores (the chromosome task's order-free α/β, the UW-Madison
competition score) and give the report (:mod:`medseg.evaluation.report`) its language — the chromosome papers'
terms and rows for the chromosome task only, a neutral per-class report with the worst and best cases for any
other; :func:`references_for` picks the published rows (``evaluate.references``).

Without a held-out test set (``splits.test_fraction: 0``, the CTV thesis' 3-fold cross-validation) every
fold's model is scored on its own validation cases instead: the headline is still the mean over folds, and
the per-image rows (each with its fold), the overlays, the confusion matrix (summed over folds) and
``n_test`` cover the validation cases of every fold evaluated, not just the last one.

Hausdorff distances of volumes are in mm on the grid that was scored: the preprocessed grid, whose voxel
size follows from each case's original shape and spacing (:func:`evaluated_spacings`). 2D images carry no
spacing, so their distances are in pixels; ``metrics["hausdorff_unit"]`` says which.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medseg.artifact.meta import tta_setting
from medseg.config import load_config
from medseg.data.datasets import SegmentationData, update_metrics
from medseg.data.registry import load_any_data
from medseg.data.runs import splits_for
from medseg.data.splits import fold_indices
from medseg.errors import DataValidationError
from medseg.evaluation.karyotype import karyotype_class_probabilities, karyotype_metric, update_in_chunks
from medseg.evaluation.karyotype_cells import has_chromosome_records, karyotype_comparison
from medseg.evaluation.paper_numbers import reference_rows
from medseg.evaluation.report import EvaluationResult, write_report
from medseg.evaluation.tasks import Task, language_for, shown_references, tasks_for
from medseg.inference.predictor import Predictor, model_dirs
from medseg.metrics import SegmentationMetrics
from medseg.metrics.efficiency import count_parameters, time_inference
from medseg.progress import Progress


def model_family(model_cfg: dict) -> str:
    """Which published rows to set beside ours."""
    name = model_cfg["name"]
    if name == "unet":
        return {2: "sim_unet", 3: "saleh_unet"}.get(int(model_cfg.get("depth", 4)), "unet")
    return name


def _mean_tree(trees: list):
    """Element-wise mean of nested dicts of numbers (folds → one summary); sd alongside under '<key>_sd'."""
    first = trees[0]
    if all(t == first for t in trees):
        return copy.deepcopy(first)  # values shared by every fold stay as they are (ints stay ints)
    if isinstance(first, dict):
        out = {}
        for k in first:
            vals = [t[k] for t in trees if isinstance(t, dict) and k in t]
            out[k] = _mean_tree(vals)
            if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) and len(vals) > 1:
                out[f"{k}_sd"] = float(np.std(vals, ddof=1))
        return out
    if all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in trees):
        return float(np.mean(trees))
    return first


def references_for(cfg: dict) -> list[dict]:
    """The published rows a run's report sets beside ours (``evaluate.references``).

    ``auto``: the rows of its model family that the task's language may show
    (:func:`~medseg.evaluation.tasks.shown_references`): the chromosome task gets the chromosome papers' rows
    (what every run got before reports spoke the task's own terms); any other task only rows of a paper about
    that task, i.e. the CTV thesis' rows for its model (``ctv_unet3d``) — a U-Net trained on membranes is not
    compared with the chromosome papers' U-Net. ``none``: no rows. An architecture no paper reports: none.
    """
    if cfg.get("evaluate", {}).get("references", "auto") == "none":
        return []
    try:
        rows = reference_rows(model_family(cfg["model"]))
    except ValueError:
        return []
    return shown_references(language_for(cfg["task"]), rows)


def read_run_config(run_dir: Path) -> dict:
    for cand in [run_dir / "config.yaml", *sorted(run_dir.glob("fold_*/config.yaml"))]:
        if cand.is_file():
            return load_config(cand)
    raise DataValidationError(run_dir, "no config.yaml found; is this a medseg run directory?")


def evaluated_spacings(cfg: dict, data: SegmentationData) -> list[tuple[float, ...]] | None:
    """Voxel size (z, y, x, mm) of every case on the grid the metrics see, or None when unknown (2D images).

    Volumes are resampled to one grid by :func:`~medseg.data.transforms3d.preprocess_volume`, which keeps each
    case's extent: the new spacing is the one :func:`~medseg.data.transforms3d.resampled_geometry` gives for
    the case's original shape and spacing (``data.volume_info``) and the preprocessed shape.
    """
    info = data.volume_info or {}
    shapes, spacings = info.get("original_shapes"), info.get("spacings")
    if int(cfg["task"].get("spatial_dims", 2)) != 3 or not shapes or not spacings or len(spacings) != len(data):
        return None
    from medseg.data.transforms3d import preprocess_settings, resampled_geometry
    from medseg.formats.volume import Volume

    align = bool(preprocess_settings(cfg)["align_corners"])
    grid = tuple(int(v) for v in data.images.shape[1:])
    out = []
    for shape, spacing in zip(shapes, spacings, strict=True):
        # only the shape and spacing matter: a read-only zero-stride array stands in for the voxels
        stand_in = Volume(np.broadcast_to(np.uint8(0), tuple(int(v) for v in shape)), tuple(spacing))
        out.append(tuple(float(v) for v in resampled_geometry(stand_in, grid, align)["spacing"]))
    return out


def _fold_number(pred: Predictor, d: Path) -> int:
    fold = pred.meta.get("fold")
    if isinstance(fold, int) and not isinstance(fold, bool):
        return fold
    return int(d.name.split("_")[1]) if d.name.startswith("fold_") else 0


def check_same_data(run_dir: Path, data_obj) -> None:
    """The data read now must be the data the run was trained on (``data.json``'s content hash): otherwise the
    split found for it would not be the run's, and "test" cases could be training cases. ``--data`` evaluates
    on other data deliberately (its own split)."""
    record = run_dir / "data.json"
    try:
        trained_on = json.loads(record.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return  # runs from before data.json recorded it
    if trained_on and trained_on != data_obj.fingerprint:
        raise DataValidationError(
            data_obj.source,
            f"these are not the data the run {run_dir} was trained on "
            f"(content hash {data_obj.fingerprint}, trained on {trained_on}, {record.name}): "
            "its split would not be the run's; restore the data, or pass --data to evaluate "
            "on other data deliberately",
        )


def _new_metrics(cfg: dict, class_names: list[str]) -> SegmentationMetrics:
    # every class but task.background is scored (SegmentationMetrics.from_task)
    return SegmentationMetrics.from_task(
        {**cfg["task"], "class_names": class_names}, hausdorff=bool(cfg["evaluate"]["hausdorff"])
    )


@dataclass
class _Evaluation:
    """One run's evaluation as it goes: what is scored (fixed at the start) and what the folds gave so far."""

    cfg: dict
    data_obj: SegmentationData
    splits: dict
    test_idx: np.ndarray
    spacings: list[tuple[float, ...]] | None
    limit_test: int | None
    karyotype_vote: str | None
    tasks: list[Task]  # the task plug-ins of this run: each adds its own scores
    # what the folds gave
    fold_aggs: list[dict] = field(default_factory=list)
    fold_values: dict[str, list] = field(default_factory=dict)
    histories: dict[str, list] = field(default_factory=dict)
    predictors: list[Predictor] = field(default_factory=list)
    probs_sum: np.ndarray | None = None
    # cross-validation: each fold's validation cases, in fold order
    cv_rows: list[dict] = field(default_factory=list)
    cv_idx: list[np.ndarray] = field(default_factory=list)
    cv_preds: list[np.ndarray] = field(default_factory=list)
    confusion: np.ndarray | None = None
    pooled_karyotype: object = None  # karyotype task: one class per chromosome, over every fold

    @property
    def class_names(self) -> list[str]:
        return list(self.cfg["task"]["class_names"])

    @property
    def cv_validation(self) -> bool:
        """No held-out test set (splits.test_fraction 0: the CTV thesis reports the mean over its 3 folds'
        validation sets): each fold is scored on its own validation cases and no ensemble is formed."""
        return len(self.test_idx) == 0

    def spacing_of(self, idx: np.ndarray):
        return None if self.spacings is None else [self.spacings[int(i)] for i in idx]


def _score_fold(ev: _Evaluation, pred: Predictor, d: Path) -> None:
    """Fold ``d``'s model on the test set (or, in cross-validation, on its own validation cases): its scores
    into ``ev.fold_aggs`` (metrics.json's per_fold: evaluating never rewrites a trained fold) and its
    probabilities or predictions kept for the ensemble or the pooled validation cases."""
    cfg, data_obj, class_names = ev.cfg, ev.data_obj, ev.class_names
    idx = ev.test_idx
    if ev.cv_validation:
        _, val_idx, _ = fold_indices(ev.splits, _fold_number(pred, d))
        idx = np.asarray(val_idx[: ev.limit_test] if ev.limit_test else val_idx, dtype=np.int64)
    labels = data_obj.labels[idx]
    proba = pred.predict_proba(data_obj.inputs(idx), boxes=data_obj.boxes_of(idx))  # boxes: sizes differ
    m = _new_metrics(cfg, class_names)
    fold_pred = pred.labels_from_proba(proba)
    own_scores: dict = {}
    for task in ev.tasks:  # the tasks' own scores: the order-free α/β, the competition score per scan
        own_scores.update(task.fold_scores(cfg, data_obj, idx, proba, fold_pred, labels))
    karyotype = karyotype_metric(cfg, class_names, ev.karyotype_vote)  # medseg.evaluation.karyotype
    if karyotype is not None:
        update_in_chunks(karyotype, proba, labels)
        if ev.cv_validation:
            ev.pooled_karyotype.merge(karyotype)
    if ev.cv_validation:
        del proba
        update_metrics(m, fold_pred, labels, boxes=data_obj.boxes_of(idx), spacing=ev.spacing_of(idx))
        if ev.confusion is not None:
            ev.confusion += m.confusion()
        for row, i in zip(m.per_image(), idx.tolist(), strict=True):
            row.update({"fold": d.name, "case_index": int(i), "case": data_obj.names[int(i)]})
            ev.cv_rows.append(row)
        ev.cv_idx.append(idx)
        ev.cv_preds.append(fold_pred)
    else:
        ev.probs_sum = proba if ev.probs_sum is None else ev.probs_sum + proba
        update_metrics(m, fold_pred, labels, boxes=data_obj.boxes_of(idx), spacing=ev.spacing_of(idx))
    del fold_pred
    agg = m.aggregate()
    agg.update(own_scores)
    if karyotype is not None:
        agg["karyotype"] = karyotype.aggregate()
    agg["fold"] = d.name
    agg["n_cases"] = int(len(idx))
    ev.fold_aggs.append(agg)
    ev.fold_values[d.name] = [row.get(f"iou/{cfg['task']['primary_metric']}") for row in m.per_image()]
    hist = d / "history.json"
    if hist.is_file():
        ev.histories[d.name] = json.loads(hist.read_text())


def _pool_validation_folds(ev: _Evaluation, summary: dict):
    """Cross-validation: every fold's validation cases together, in case order — rows (with their fold),
    overlays, confusion matrix (summed over folds) and n. When the folds cover the whole set (the usual case)
    the images and labels are the data's own arrays, not a second copy of every volume.
    Returns (case indices, per-image rows, images, labels, predictions)."""
    data_obj = ev.data_obj
    order = np.argsort(np.concatenate(ev.cv_idx), kind="stable")
    eval_idx = np.concatenate(ev.cv_idx)[order]
    per_image = [{**ev.cv_rows[k], "index": pos} for pos, k in enumerate(order.tolist())]  # index: overlay position
    if np.array_equal(eval_idx, np.arange(len(data_obj))):
        images, labels = data_obj.images, data_obj.labels
    else:
        images, labels = data_obj.images[eval_idx], data_obj.labels[eval_idx]
    preds = np.concatenate(ev.cv_preds)[order]
    ev.cv_preds.clear()
    summary["n_cases"] = int(len(eval_idx))
    summary.pop("n_cases_sd", None)
    if ev.pooled_karyotype is not None:  # every fold's validation chromosomes together
        summary["karyotype"] = ev.pooled_karyotype.aggregate()
    return eval_idx, per_image, images, labels, preds


def _validation_classes(ev: _Evaluation, val_idx: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(len(val_idx), 24): fold 0's model's class probabilities of its own validation chromosomes, by the
    run's vote (what the learned × baseline weight is chosen on; fold 0 alone, since the other folds trained
    on them)."""
    predictor, metric = ev.predictors[0], ev.pooled_karyotype
    parts = []
    for s in range(0, len(val_idx), chunk):
        idx = val_idx[s : s + chunk]
        proba = predictor.predict_proba(ev.data_obj.images[idx])
        parts.append(karyotype_class_probabilities(metric, proba, ev.data_obj.labels[idx]))
    return np.concatenate(parts)


def _score_ensemble(ev: _Evaluation, summary: dict, n_models: int, karyotype_out: Path, own_data: bool):
    """A held-out test set: the fold ensemble (mean probability over the folds) scored as ``ensemble``, and a
    karyotype task's vote with it (the baseline beside it, and per-cell decisions, on the run's own data).
    Returns (case indices, per-image rows, images, labels, predictions)."""
    cfg, data_obj, class_names, test_idx = ev.cfg, ev.data_obj, ev.class_names, ev.test_idx
    images, labels = data_obj.images[test_idx], data_obj.labels[test_idx]
    preds = ev.predictors[0].labels_from_proba(ev.probs_sum / n_models)
    ens_metrics = _new_metrics(cfg, class_names)
    update_metrics(ens_metrics, preds, labels, boxes=data_obj.boxes_of(test_idx), spacing=ev.spacing_of(test_idx))
    summary["ensemble"] = ens_metrics.aggregate()
    for task in ev.tasks:
        summary["ensemble"].update(task.ensemble_scores(cfg, preds, labels))
    if ev.pooled_karyotype is not None:  # the fold ensemble's vote (mean probability over folds)
        update_in_chunks(ev.pooled_karyotype, ev.probs_sum, labels, n_models)
        summary["karyotype"] = summary["ensemble"]["karyotype"] = ev.pooled_karyotype.aggregate()
        if own_data and has_chromosome_records(data_obj.source):  # the baseline beside it; per-cell decisions
            learned = karyotype_class_probabilities(ev.pooled_karyotype, ev.probs_sum, labels, n_models)
            train_idx, val_idx = fold_indices(ev.splits, 0)[:2]
            validation = (val_idx, _validation_classes(ev, val_idx)) if len(val_idx) else None
            summary["karyotype"].update(
                karyotype_comparison(
                    data_obj.source, train_idx, test_idx, learned, karyotype_out, validation=validation
                )
            )
    per_image = ens_metrics.per_image()
    for row, i in zip(per_image, test_idx.tolist(), strict=True):  # name the cases (worst/best in reports)
        row.update({"case_index": int(i), "case": data_obj.names[int(i)]})
    ev.confusion = ens_metrics.confusion() if cfg["task"]["mode"] == "multiclass" else None
    return test_idx, per_image, images, labels, preds


def _efficiency(predictor: Predictor, size: tuple[int, ...]) -> dict:
    """Parameters and median inference time per image of the first fold's model (on the CPU, and the GPU)."""
    model = predictor.models[0]
    dev = predictor.device
    in_channels = int(predictor.meta["model"]["kwargs"].get("in_channels", 1))  # 2.5D: several slices
    efficiency = {"params": count_parameters(model), "input": [in_channels, *size] if in_channels > 1 else list(size)}
    efficiency["cpu_ms_per_image"] = time_inference(model, (in_channels, *size), device="cpu", warmup=2, runs=10)[
        "ms_per_image_median"
    ]
    if dev.type == "cuda":
        efficiency["gpu_ms_per_image"] = time_inference(model, (in_channels, *size), device=dev, warmup=10, runs=100)[
            "ms_per_image_median"
        ]
        efficiency["gpu"] = torch.cuda.get_device_name(dev)
    return efficiency


def _data_note(cfg: dict, data_obj: SegmentationData, tasks: Sequence[Task]) -> str:
    """What the report says about synthesized data (nothing for real data): the first task's own words, else
    the generic ones."""
    if not data_obj.synthesized:
        return ""
    own = next((note for task in tasks if (note := task.synthesized_note(cfg, data_obj))), None)
    return own or (
        f"Synthesized data ({data_obj.source}): these numbers show the pipeline works, not what the "
        "model would reach on real images."
    )


def evaluate_run(
    run_dir: str | Path,
    *,
    data: str | None = None,
    tta: bool | str | None = None,
    folds: Sequence[int] | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    limit_test: int | None = None,
    progress: bool = True,
    trust_code: bool = False,
    karyotype_vote: str | None = None,
) -> Path:
    """``trust_code``: allow a model.json that names code outside medseg (see medseg.models.registry).
    ``karyotype_vote``: soft | majority for a karyotype task (default: the run's evaluate.karyotype_vote)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if data is not None:
        cfg = copy.deepcopy(cfg)
        cfg["data"]["path"] = data
    tta = tta_setting(cfg["evaluate"]["tta"], tta)
    dirs = model_dirs(run_dir, folds)
    data_obj = load_any_data(cfg, progress)
    if data is None:
        check_same_data(run_dir, data_obj)
    splits, split_path = splits_for(cfg, data_obj)
    _, _, test_idx = fold_indices(splits, 0)
    test_idx = np.asarray(test_idx[:limit_test] if limit_test else test_idx, dtype=np.int64)
    ev = _Evaluation(
        cfg, data_obj, splits, test_idx, evaluated_spacings(cfg, data_obj), limit_test, karyotype_vote, tasks_for(cfg)
    )
    class_names, primary = ev.class_names, cfg["task"]["primary_metric"]
    if cfg["task"]["mode"] == "multiclass":
        ev.confusion = np.zeros((len(class_names),) * 2, dtype=np.int64)
    ev.pooled_karyotype = karyotype_metric(cfg, class_names, karyotype_vote)
    for d in Progress(dirs, desc="evaluating folds", disable=not progress):
        pred = Predictor.from_path(
            d, device=device, tta=tta, batch_size=int(cfg["evaluate"]["batch_size"]), trust_code=trust_code
        )
        ev.predictors.append(pred)
        _score_fold(ev, pred, d)

    summary = _mean_tree(ev.fold_aggs)
    for task in ev.tasks:
        task.summarise(summary, ev.fold_aggs)
    summary["n_folds"] = len(dirs)
    summary["per_fold"] = ev.fold_aggs
    out = Path(out_dir) if out_dir else run_dir / "evaluation"
    if ev.cv_validation:
        eval_idx, per_image, images, labels, preds = _pool_validation_folds(ev, summary)
    else:
        eval_idx, per_image, images, labels, preds = _score_ensemble(ev, summary, len(dirs), out, data is None)
    if ev.confusion is not None:  # not a fold's matrix (what the mean over folds would keep): the one drawn
        summary["confusion_matrix"] = ev.confusion.tolist()
    if ev.spacings is not None and summary.get("hausdorff_unit") is not None:
        distinct = {ev.spacings[int(i)] for i in eval_idx}
        summary["spacing"] = list(distinct.pop()) if len(distinct) == 1 else "per image"

    evaluated_on = (
        "cross-validation: each fold's model on its own validation fold (no held-out test set)"
        if ev.cv_validation
        else "held-out test set"
    )
    result = EvaluationResult(
        run_name=cfg["name"],
        class_names=class_names,
        metrics=summary,
        per_image=per_image,
        images=images,
        labels=labels,
        preds=preds,
        confusion=ev.confusion,
        fold_values=ev.fold_values,
        histories=ev.histories,
        references=references_for(cfg),
        efficiency=_efficiency(ev.predictors[0], tuple(images.shape[1:])),
        data_note=_data_note(cfg, data_obj, ev.tasks),
        cross_validation=ev.cv_validation,
        fold_metric=f"{primary} IoU",
        primary=primary,
        extra={
            "data": data_obj.source,
            "split_file": str(split_path),
            "n_test": int(len(eval_idx)),
            "tta": tta,
            "evaluated_on": evaluated_on,
            "folds": [d.name for d in dirs],
            "model": cfg["model"],
            "notes": data_obj.notes,
        },
    )
    return write_report(out, result)
