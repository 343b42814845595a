"""What a report is made of (:class:`EvaluationResult`) and what follows from it alone: the task's terms
(chromosome task or not, background, scored classes), the headline roles, the per-fold summary and the
worst and best cases."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medseg.config_schema import CHROMOSOME_CLASSES
from medseg.evaluation import figures
from medseg.evaluation.paper_numbers import PAPERS
from medseg.evaluation.report_format import num


HEADLINE_ROLES = ("overlap", "alpha", "beta", "alpha_whole", "beta_whole")
#: the overlapping-chromosome papers (their rows and definitions belong to the chromosome task only)
CHROMOSOME_PAPERS = frozenset(p for p in PAPERS if p != "ctv_thesis")
N_CASES_SHOWN = 3  # worst and best cases each


def is_chromosome_task(class_names: Sequence[str], mode: str = "multiclass") -> bool:
    """True for the overlapping-chromosome task: multi-class with exactly the four classes of
    :data:`~medseg.config_schema.CHROMOSOME_CLASSES` (background, chromosome_alpha, chromosome_beta, overlap).
    Only this task's reports speak of α/β/overlap and set the chromosome papers beside ours."""
    return mode == "multiclass" and [str(c) for c in class_names] == list(CHROMOSOME_CLASSES)


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
    # what fold_values hold; None: "overlap IoU" for the chromosome task, "<primary> IoU" (or "IoU") otherwise
    fold_metric: str | None = None
    # True: no held-out test set; each fold's model was scored on its own validation fold (cross-validation)
    # and per_image / images / labels / preds / confusion cover the validation cases of every fold.
    cross_validation: bool = False
    # the chromosome task (papers' terms and rows)? None: detected from class_names (is_chromosome_task)
    chromosome: bool | None = None
    primary: str | None = None  # task.primary_metric: its Dice is the neutral report's training-curve metric

    @property
    def mode(self) -> str:
        """"multiclass" or "multilabel": the metrics' mode, else read from the arrays' shapes."""
        mode = self.metrics.get("mode") if isinstance(self.metrics, Mapping) else None
        if mode in ("multiclass", "multilabel"):
            return str(mode)
        if self.images is not None and self.labels is not None and np.ndim(self.labels) == np.ndim(self.images) + 1:
            return "multilabel"
        return "multiclass"

    @property
    def is_chromosome(self) -> bool:
        """Whether this report speaks the chromosome papers' language (see :func:`is_chromosome_task`)."""
        return is_chromosome_task(self.class_names, self.mode) if self.chromosome is None else bool(self.chromosome)

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
        raise ValueError(f"metrics name {name!r} as the background class, which is not one of the classes "
                         f"{list(self.class_names)}")

    @property
    def fold_label(self) -> str:
        """What the per-fold values are, in words."""
        if self.fold_metric:
            return self.fold_metric
        if self.is_chromosome:
            return "overlap IoU"
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


def resolve_headline(result: EvaluationResult, headline: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Which ``per_class`` entries play the headline roles.

    Roles: ``overlap``, ``alpha``, ``beta`` (non-overlap classes) and ``alpha_whole``, ``beta_whole``
    (complete chromosomes, i.e. derived structures). ``headline`` maps roles to names explicitly; missing
    roles are guessed from the names (``"overlap"``, ``"alpha"``/``"beta"`` among the classes, and among the
    derived structures for the ``_whole`` roles).
    """
    per_class = result.metrics.get("per_class", {})
    classes = [n for n in result.class_names if n in per_class]
    derived = [n for n in per_class if n not in result.class_names]
    roles: dict[str, str | None] = {r: None for r in HEADLINE_ROLES}
    given = dict(headline or {})
    unknown = set(given) - set(HEADLINE_ROLES)
    if unknown:
        raise ValueError(f"unknown headline roles {sorted(unknown)}; use {', '.join(HEADLINE_ROLES)}")
    for role, name in given.items():
        if name not in per_class:
            raise ValueError(f"headline role {role!r} names {name!r}, which is not in the metrics' per_class")
        roles[role] = name

    def guess(pool: list[str], word: str) -> str | None:
        return next((n for n in pool if word in n.lower()), None)

    roles["overlap"] = roles["overlap"] or guess(classes, "overlap")
    roles["alpha"] = roles["alpha"] or guess(classes, "alpha")
    roles["beta"] = roles["beta"] or guess(classes, "beta")
    roles["alpha_whole"] = roles["alpha_whole"] or guess(derived, "alpha")
    roles["beta_whole"] = roles["beta_whole"] or guess(derived, "beta")
    return roles


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


def task_references(result: EvaluationResult) -> list[dict]:
    """The published rows this report may show: all of them for the chromosome task; for any other task only
    rows that are not the chromosome papers' (e.g. the CTV thesis' Dice for its model)."""
    if result.is_chromosome:
        return list(result.references)
    return [r for r in result.references if r.get("paper") not in CHROMOSOME_PAPERS]


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
        e: dict[str, Any] = {"index": i, "case": case_name(result, i), "mean_dice": scores[i],
                             "dice": {c: num(row.get(f"dice/{c}")) for c in scored}}
        if row.get("fold") is not None:
            e["fold"] = row["fold"]
        return e

    return {"score": "mean Dice over " + ", ".join(scored), "worst": [entry(i) for i in worst],
            "best": [entry(i) for i in best]}
