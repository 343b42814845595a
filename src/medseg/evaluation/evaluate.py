"""`medseg evaluate RUN`: every fold's best model on the held-out test set → report.md, metrics.json, figures.

The papers report 5-fold cross-validation scored on one held-out test set (RSE-UNet §3.2, ARMS Net §4.1):
each fold's model predicts the test set; the headline is the mean over folds (± sd), and the box plot shows
each fold's per-image overlap IoU. Overlays and the confusion matrix use the fold ensemble.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from medseg.progress import Progress

from medseg.config import load_config
from medseg.data.volumes import load_any_data
from medseg.errors import DataValidationError
from medseg.evaluation.paper_numbers import reference_rows
from medseg.evaluation.report import EvaluationResult, write_report
from medseg.inference.predictor import Predictor, model_dirs
from medseg.metrics import SegmentationMetrics, confusion_matrix
from medseg.metrics.efficiency import count_parameters, time_inference
from medseg.training.checkpoint import dump_json
from medseg.training.run import splits_for
from medseg.data.splits import fold_indices


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


def references_for(model_cfg: dict) -> list[dict]:
    """The papers' rows for this model family; none for an architecture the papers do not report."""
    try:
        return reference_rows(model_family(model_cfg))
    except ValueError:
        return []


def read_run_config(run_dir: Path) -> dict:
    for cand in [run_dir / "config.yaml", *sorted(run_dir.glob("fold_*/config.yaml"))]:
        if cand.is_file():
            return load_config(cand)
    raise DataValidationError(run_dir, "no config.yaml found; is this a medseg run directory?")


def evaluate_run(run_dir: str | Path, *, data: str | None = None, tta: bool | None = None,
                 folds: Sequence[int] | None = None, device: str = "auto", out_dir: str | Path | None = None,
                 limit_test: int | None = None, progress: bool = True, trust_code: bool = False) -> Path:
    """``trust_code``: allow a model.json that names code outside medseg (see medseg.models.registry)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if data is not None:
        cfg = copy.deepcopy(cfg)
        cfg["data"]["path"] = data
    tta = bool(cfg["evaluate"]["tta"]) if tta is None else tta
    dirs = model_dirs(run_dir, folds)
    data_obj = load_any_data(cfg, progress)
    splits, split_path = splits_for(cfg, data_obj)
    _, _, test_idx = fold_indices(splits, 0)
    test_idx = np.asarray(test_idx[:limit_test] if limit_test else test_idx, dtype=np.int64)
    # No held-out test set (splits.test_fraction 0: the CTV thesis reports the mean over its 3 folds'
    # validation sets): each fold is scored on its own validation cases and no ensemble is formed.
    cv_validation = len(test_idx) == 0
    images, labels = data_obj.images[test_idx], data_obj.labels[test_idx]
    class_names = list(cfg["task"]["class_names"])
    primary = cfg["task"]["primary_metric"]
    derived = cfg["task"].get("derived")

    fold_aggs, fold_values, histories, probs_sum = [], {}, {}, None
    predictors = []
    for d in Progress(dirs, desc="evaluating folds", disable=not progress):
        pred = Predictor.from_path(d, device=device, tta=tta, batch_size=int(cfg["evaluate"]["batch_size"]),
                                   trust_code=trust_code)
        predictors.append(pred)
        if cv_validation:
            _, val_idx, _ = fold_indices(splits, int(d.name.split("_")[1]) if d.name.startswith("fold_") else 0)
            test_idx = np.asarray(val_idx[:limit_test] if limit_test else val_idx, dtype=np.int64)
            images, labels = data_obj.images[test_idx], data_obj.labels[test_idx]
        proba = pred.predict_proba(images)
        probs_sum = proba if (probs_sum is None or cv_validation) else probs_sum + proba
        m = SegmentationMetrics(class_names, mode=cfg["task"]["mode"], derived=derived, hausdorff=bool(cfg["evaluate"]["hausdorff"]))
        m.update(pred.labels_from_proba(proba), labels)
        agg = m.aggregate()
        agg["fold"] = d.name
        fold_aggs.append(agg)
        fold_values[d.name] = [row.get(f"iou/{primary}") for row in m.per_image()]
        hist = d / "history.json"
        if hist.is_file():
            import json

            histories[d.name] = json.loads(hist.read_text())
        dump_json(agg, d / "test_metrics.json")

    ensemble = predictors[0].labels_from_proba(probs_sum if cv_validation else probs_sum / len(dirs))
    ens_metrics = SegmentationMetrics(class_names, mode=cfg["task"]["mode"], derived=derived, hausdorff=bool(cfg["evaluate"]["hausdorff"]))
    ens_metrics.update(ensemble, labels)
    summary = _mean_tree(fold_aggs)
    summary["n_folds"] = len(dirs)
    if not cv_validation:
        summary["ensemble"] = ens_metrics.aggregate()
    summary["per_fold"] = fold_aggs

    model = predictors[0].models[0]
    size = tuple(images.shape[1:])
    dev = predictors[0].device
    efficiency = {"params": count_parameters(model), "input": list(size)}
    efficiency["cpu_ms_per_image"] = time_inference(model, (1, *size), device="cpu", warmup=2, runs=10)["ms_per_image_median"]
    if dev.type == "cuda":
        efficiency["gpu_ms_per_image"] = time_inference(model, (1, *size), device=dev, warmup=10, runs=100)["ms_per_image_median"]
        efficiency["gpu"] = torch.cuda.get_device_name(dev)

    if not data_obj.synthesized:
        note = ""
    elif int(cfg["task"].get("spatial_dims", 2)) == 3:
        note = ("Synthetic CT-like phantom (medseg.data.phantom): DEMO DATA, not clinical — these numbers show the "
                "pipeline works, not what the model would reach on patients. Volumes are scored on the preprocessed grid.")
    else:
        note = ("Synthesized Pommier-procedure data (medseg data synth), not the real Pommier set: "
                "compare the shape of the results with the papers, not the digits.")
    result = EvaluationResult(
        run_name=cfg["name"], class_names=class_names, metrics=summary, per_image=ens_metrics.per_image(),
        images=images, labels=labels, preds=ensemble,
        confusion=confusion_matrix(ensemble, labels, len(class_names)) if cfg["task"]["mode"] == "multiclass" else None,
        fold_values=fold_values, histories=histories, references=references_for(cfg["model"]),
        efficiency=efficiency, data_note=note,
        extra={"data": data_obj.source, "split_file": str(split_path), "n_test": int(len(test_idx)), "tta": tta,
               "evaluated_on": "each fold's validation set (no held-out test set)" if cv_validation else "held-out test set",
               "folds": [d.name for d in dirs], "model": cfg["model"], "notes": data_obj.notes},
    )
    out = Path(out_dir) if out_dir else run_dir / "evaluation"
    return write_report(out, result)
