"""What a report is made of (:class:`EvaluationResult`) and what follows from it alone, whatever the task:
background, scored classes, the per-fold summary and the worst and best cases. A task's own terms come from
its plug-in (:mod:`medseg.evaluation.tasks`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medseg.evaluation import figures
from medseg.evaluation.report_format import num

N_CASES_SHOWN = 3  # worst and best cases each


@dataclass
class EvaluationResult:
    """Everything a report shows about one run. Metric values are fractions in [0, 1] (reports show %)."""

    run_name: str
    class_names: list[str]
    metrics: dict  # SegmentationMetrics.aggregate() of the held-out test set (or the mean over folds)
    per_image: list[dict]
    images: np.ndarray | None = None  # (N, H, W) test images for the overlays
    labels: np.ndarray | None = None  # (N, H, W) true label maps
    preds: np.ndarray | None = None  # (N, H, W) predicted label maps
    confusion: np.ndarray | None = None  # (C, C) summed confusion matrix, rows = truth
    fold_values: dict[str, list[float]] = field(default_factory=dict)  # fold -> per-image values (fractions)
    histories: dict[str, list[dict]] = field(default_factory=dict)  # fold -> epoch rows (epoch, train_loss, ...)
    references: list[dict] = field(default_factory=list)  # rows from medseg.evaluation.paper_numbers
    efficiency: dict = field(default_factory=dict)  # {"params", "cpu_ms", "gpu_ms"} (or *_ms_per_image) + extras
    data_note: str = ""  # e.g. "synthesized Pommier-procedure data, not the real set"
    extra: dict = field(default_factory=dict)
    # what fold_values hold; None: the report's task says (its fold_metric), else "<primary> IoU" (or "IoU")
    fold_metric: str | None = None
    # True: no held-out test set; each fold's model was scored on its own validation fold (cross-validation)
    # and per_image / images / labels / preds / confusion cover the validation cases of every fold.
    cross_validation: bool = False
    # the chromosome task (papers' terms and rows)? None: its task plug-in recognises it from class_names
    chromosome: bool | None = None
    primary: str | None = None  # task.primary_metric: its Dice is the neutral report's training-curve metric

    @property
    def mode(self) -> str:
        """ "multiclass" or "multilabel": the metrics' mode, else read from the arrays' shapes."""
        mode = self.metrics.get("mode") if isinstance(self.metrics, Mapping) else None
        if mode in ("multiclass", "multilabel"):
            return str(mode)
        if self.images is not None and self.labels is not None and np.ndim(self.labels) == np.ndim(self.images) + 1:
            return "multilabel"
        return "multiclass"

    @property
    def background(self) -> int | None:
        """Index of the background class as the metrics scored it (their ``background``: a class name or
        None), class 0 for metrics that do not say (multi-class), None for a multi-label task."""
        if self.mode == "multilabel":
            return None
        if not isinstance(self.metrics, Mapping) or "background" not in self.metrics:
            return 0
        name = self.metrics["background"]
        if name is None:
            return None
        if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < len(self.class_names):
            return name
        if str(name) in self.class_names:
            return list(self.class_names).index(str(name))
        raise ValueError(
            f"metrics name {name!r} as the background class, which is not one of the classes {list(self.class_names)}"
        )

    @property
    def fold_label(self) -> str:
        """What the per-fold values are, in words."""
        if self.fold_metric:
            return self.fold_metric
        return f"{self.primary} IoU" if self.primary else "IoU"


def fold_summary(fold_values: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float | int | None]]:
    """Per fold: n, mean, sample sd, median, min, max; plus ``"across folds"``: mean and sd of the fold means."""
    out: dict[str, dict[str, float | int | None]] = {}
    means = []
    for fold, values in fold_values.items():
        v = [float(x) for x in values if num(x) is not None]
        if not v:
            out[fold] = {"n": 0, "mean": None, "sd": None, "median": None, "min": None, "max": None}
            continue
        mean = statistics.fmean(v)
        means.append(mean)
        out[fold] = {
            "n": len(v),
            "mean": mean,
            "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
            "median": statistics.median(v),
            "min": min(v),
            "max": max(v),
        }
    if len(means) > 1:
        out["across folds"] = {
            "n": len(means),
            "mean": statistics.fmean(means),
            "sd": statistics.stdev(means),
            "median": statistics.median(means),
            "min": min(means),
            "max": max(means),
        }
    return out


def scored_classes(result: EvaluationResult) -> list[str]:
    """The classes the metrics scored one by one and averaged (their ``mean_over``: every class but the
    background one), else every ``per_class`` entry that is not a derived structure."""
    m = result.metrics
    if isinstance(m.get("mean_over"), list) and m["mean_over"]:
        return [str(n) for n in m["mean_over"]]
    per_class = m.get("per_class", {})
    return [n for n, v in per_class.items() if not (isinstance(v, Mapping) and "members" in v)]


def case_scores(result: EvaluationResult) -> list[float | None]:
    """Each per-image row's mean Dice over the scored classes (None where the row holds none of them)."""
    scored = scored_classes(result)
    out: list[float | None] = []
    for row in result.per_image:
        vals = [num(row.get(f"dice/{c}")) for c in scored] if isinstance(row, Mapping) else []
        vals = [v for v in vals if v is not None]
        out.append(statistics.fmean(vals) if vals else None)
    return out


def scored_on(result: EvaluationResult) -> str:
    """What the numbers were measured on, for titles: "test set" or "validation folds"."""
    return "validation folds" if result.cross_validation else "test set"


def hd_unit_of(result: EvaluationResult) -> str:
    """The unit of the Hausdorff distances: "mm" when the metrics had a spacing, else "px" (pixels/voxels)."""
    unit = result.metrics.get("hausdorff_unit")
    if unit is None:
        unit = "px" if result.metrics.get("spacing") is None else "spacing units"
    return str(unit)


def fold_of(result: EvaluationResult, i: int, sep: str | None = None) -> str:
    """' (fold_k)' (or sep + 'fold_k') for overlay image ``i`` when the per-image rows name folds, else ""."""
    row = result.per_image[i] if 0 <= i < len(result.per_image) else {}
    fold = row.get("fold") if isinstance(row, Mapping) else None
    if fold is None:
        return ""
    return f" ({fold})" if sep is None else f"{sep}{fold}"


def case_name(result: EvaluationResult, i: int) -> str:
    row = result.per_image[i] if 0 <= i < len(result.per_image) else {}
    name = row.get("case") if isinstance(row, Mapping) else None
    return str(name) if name is not None else f"#{i}"


def worst_best(result: EvaluationResult) -> dict[str, Any] | None:
    """The worst and best cases by mean Dice over the scored classes: {"worst": [...], "best": [...]}, each
    entry with the case's position, name, fold (cross-validation), mean Dice and every scored class's Dice."""
    scores = case_scores(result)
    if not scores or all(v is None for v in scores):
        return None
    worst, best = figures.select_worst_best([math.nan if v is None else v for v in scores], N_CASES_SHOWN)
    scored = scored_classes(result)

    def entry(i: int) -> dict[str, Any]:
        row = result.per_image[i]
        e: dict[str, Any] = {
            "index": i,
            "case": case_name(result, i),
            "mean_dice": scores[i],
            "dice": {c: num(row.get(f"dice/{c}")) for c in scored},
        }
        if row.get("fold") is not None:
            e["fold"] = row["fold"]
        return e

    return {
        "score": "mean Dice over " + ", ".join(scored),
        "worst": [entry(i) for i in worst],
        "best": [entry(i) for i in best],
    }
