"""Evaluation report: ``metrics.json``, figures and a Markdown ``report.md`` in the task's own terms.

The chromosome task (``task.class_names`` = :data:`~medseg.config_schema.CHROMOSOME_CLASSES`) is reported as
the overlapping-chromosome papers report it: overlap IoU and α/β IoU in each paper's definition beside the
published rows, overlays at small/medium/large overlap, the papers' figure and equation numbers. Every other
task (a membrane, an organ, a CT target, multi-label or not) gets a neutral report: a per-class table of Dice,
IoU, precision, recall and Hausdorff distance (in mm where the spacing is known) for every scored class (the
metrics' ``mean_over``: every class but ``task.background``), its worst and best cases by mean Dice over the
scored classes (names, numbers, overlays coloured per class with a legend; multi-label channels each filled
and outlined in its own colour), and published numbers only where they belong to the task (the CTV thesis'
Dice for its model), never the chromosome papers' rows or words.

``write_report`` builds everything in a temporary folder inside ``out_dir`` and then moves the files into
place, figures first and ``report.md`` last, so a crash while drawing or writing leaves either the previous
report or the new one, never a half-written ``report.md`` or one that links to missing figures. A figure
that cannot be drawn is reported in the Markdown (and as a warning) instead of aborting the report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config_schema import CHROMOSOME_CLASSES
from medseg.evaluation import figures
from medseg.evaluation.paper_numbers import (
    ACCURACY_DEFINITIONS,
    ALPHA_BETA_DEFINITIONS,
    COMPLETE,
    NON_OVERLAP,
    PAPERS,
)

__all__ = [
    "CHROMOSOME_PAPERS",
    "EvaluationResult",
    "case_scores",
    "fold_summary",
    "is_chromosome_task",
    "resolve_headline",
    "scored_classes",
    "task_references",
    "write_report",
]

DASH = "—"
HEADLINE_ROLES = ("overlap", "alpha", "beta", "alpha_whole", "beta_whole")
#: the overlapping-chromosome papers (their rows and definitions belong to the chromosome task only)
CHROMOSOME_PAPERS = frozenset(p for p in PAPERS if p != "ctv_thesis")
N_CASES_SHOWN = 3  # worst and best cases each
_MAX_CLASS_COLUMNS = 8  # the cases table names each class's Dice up to this many scored classes


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


# ------------------------------------------------------------------------------------------ helpers
def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _pct(x: Any, nd: int = 2) -> str:
    v = _num(x)
    return DASH if v is None else f"{100 * v:.{nd}f}"


def _plain(x: Any, nd: int = 2) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.{nd}f}"


def _published(x: Any, min_decimals: int = 2) -> str:
    """A published number unrounded, padded to ``min_decimals`` (98.1 -> "98.10", 99.9955 stays)."""
    v = _num(x)
    if v is None:
        return DASH
    text = repr(v)
    if "e" in text:
        return f"{v:g}"
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text else 0
    return f"{v:.{max(decimals, min_decimals)}f}"


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, non-finite floats to None, Paths to str."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def fold_summary(fold_values: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float | int | None]]:
    """Per fold: n, mean, sample sd, median, min, max; plus ``"across folds"``: mean and sd of the fold means."""
    out: dict[str, dict[str, float | int | None]] = {}
    means = []
    for fold, values in fold_values.items():
        v = [float(x) for x in values if _num(x) is not None]
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


def _metric(result: EvaluationResult, name: str | None, key: str) -> float | None:
    if name is None:
        return None
    return _num(result.metrics.get("per_class", {}).get(name, {}).get(key))


def _ours_rows(result: EvaluationResult, roles: Mapping[str, str | None]) -> list[dict[str, Any]]:
    m = result.metrics
    mean_iou = _num(m.get("mean", {}).get("iou"))
    overlap = _metric(result, roles["overlap"], "iou")
    non = {"alpha": _metric(result, roles["alpha"], "iou"), "beta": _metric(result, roles["beta"], "iou")}
    whole = {"alpha": _metric(result, roles["alpha_whole"], "iou"), "beta": _metric(result, roles["beta_whole"], "iou")}
    return [
        {
            "label": "**ours** (as RSE-UNet)",
            "overlap_iou": overlap, "alpha_iou": non["alpha"], "beta_iou": non["beta"],
            "accuracy": _num(m.get("foreground_accuracy")), "mean_iou": mean_iou,
            "alpha_beta_definition": NON_OVERLAP, "accuracy_definition": "foreground_accuracy",
        },
        {
            "label": "**ours** (as ARMS Net)",
            "overlap_iou": overlap, "alpha_iou": whole["alpha"], "beta_iou": whole["beta"],
            "accuracy": _num(m.get("derived_accuracy")), "mean_iou": mean_iou,
            "alpha_beta_definition": COMPLETE, "accuracy_definition": "derived_accuracy",
        },
        {
            "label": "**ours** (as AMFL)",
            "overlap_iou": overlap, "alpha_iou": non["alpha"], "beta_iou": non["beta"],
            "accuracy": _num(m.get("pixel_accuracy")), "mean_iou": mean_iou,
            "alpha_beta_definition": NON_OVERLAP, "accuracy_definition": "pixel_accuracy",
        },
    ]


_CPU_KEYS = ("cpu_ms", "cpu_ms_per_image")
_GPU_KEYS = ("gpu_ms", "gpu_ms_per_image")
_AB_SHORT = {NON_OVERLAP: "non-overlap region", COMPLETE: "complete chromosome", None: DASH}
_ACC_SHORT = {
    "foreground_accuracy": "chromosome vs background (RSE Eq. 10)",
    "derived_accuracy": "mean of the 2 complete chromosomes (ARMS)",
    "pixel_accuracy": "4-class pixel accuracy (AMFL Eq. 8)",
    None: DASH,
}


def _scored_on(result: EvaluationResult) -> str:
    """What the numbers were measured on, for titles: "test set" or "validation folds"."""
    return "validation folds" if result.cross_validation else "test set"


def _hd_unit(result: EvaluationResult) -> str:
    """The unit of the Hausdorff distances: "mm" when the metrics had a spacing, else "px" (pixels/voxels)."""
    unit = result.metrics.get("hausdorff_unit")
    if unit is None:
        unit = "px" if result.metrics.get("spacing") is None else "spacing units"
    return str(unit)


def _fold_of(result: EvaluationResult, i: int, sep: str | None = None) -> str:
    """' (fold_k)' (or sep + 'fold_k') for overlay image ``i`` when the per-image rows name folds, else ""."""
    row = result.per_image[i] if 0 <= i < len(result.per_image) else {}
    fold = row.get("fold") if isinstance(row, Mapping) else None
    if fold is None:
        return ""
    return f" ({fold})" if sep is None else f"{sep}{fold}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


# ------------------------------------------------------------------------------------------ task terms
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
        vals = [_num(row.get(f"dice/{c}")) for c in scored] if isinstance(row, Mapping) else []
        vals = [v for v in vals if v is not None]
        out.append(statistics.fmean(vals) if vals else None)
    return out


def task_references(result: EvaluationResult) -> list[dict]:
    """The published rows this report may show: all of them for the chromosome task; for any other task only
    rows that are not the chromosome papers' (e.g. the CTV thesis' Dice for its model)."""
    if result.is_chromosome:
        return list(result.references)
    return [r for r in result.references if r.get("paper") not in CHROMOSOME_PAPERS]


def _case_name(result: EvaluationResult, i: int) -> str:
    row = result.per_image[i] if 0 <= i < len(result.per_image) else {}
    name = row.get("case") if isinstance(row, Mapping) else None
    return str(name) if name is not None else f"#{i}"


def _worst_best(result: EvaluationResult) -> dict[str, Any] | None:
    """The worst and best cases by mean Dice over the scored classes: {"worst": [...], "best": [...]}, each
    entry with the case's position, name, fold (cross-validation), mean Dice and every scored class's Dice."""
    scores = case_scores(result)
    if not scores or all(v is None for v in scores):
        return None
    worst, best = figures.select_worst_best([math.nan if v is None else v for v in scores], N_CASES_SHOWN)
    scored = scored_classes(result)

    def entry(i: int) -> dict[str, Any]:
        row = result.per_image[i]
        e: dict[str, Any] = {"index": i, "case": _case_name(result, i), "mean_dice": scores[i],
                             "dice": {c: _num(row.get(f"dice/{c}")) for c in scored}}
        if row.get("fold") is not None:
            e["fold"] = row["fold"]
        return e

    return {"score": "mean Dice over " + ", ".join(scored), "worst": [entry(i) for i in worst],
            "best": [entry(i) for i in best]}


# ------------------------------------------------------------------------------------------ figures
def _draw_figures(result: EvaluationResult, fig_dir: Path,
                  cases: Mapping[str, Any] | None) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Draw the figures whose inputs are present. Returns ([(file, title, caption)], [problems])."""
    drawn: list[tuple[str, str, str]] = []
    problems: list[str] = []
    chromosome = result.is_chromosome

    def attempt(name: str, title: str, fn, caption_fn) -> None:
        try:
            out = fn(fig_dir / name)
            drawn.append((name, title, caption_fn(out)))
        except Exception as exc:  # a broken figure must not cost the whole report
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            warnings.warn(f"figure {name} not drawn: {exc}", RuntimeWarning, stacklevel=3)

    have_arrays = result.images is not None and result.labels is not None and result.preds is not None
    multilabel = result.mode == "multilabel"
    if have_arrays and chromosome and not multilabel and np.ndim(result.images) == 3:
        attempt(
            "overlays.png",
            "Examples: image | ground truth | prediction | errors",
            lambda p: figures.overlay_examples(result.images, result.labels, result.preds, result.class_names, p),
            lambda idx: ("Validation images " if result.cross_validation else "Test images ")
            + ", ".join(f"#{i}{_fold_of(result, i)}" for i in idx)
            + " (small, medium and large true overlap: 10th/50th/90th percentile of overlap area). "
            "Colours: background black, α red, β green, overlap blue; errors yellow.",
        )
    elif have_arrays and cases is not None:
        shown = [("worst", k + 1, e) for k, e in enumerate(cases["worst"])] + \
                [("best", k + 1, e) for k, e in enumerate(cases["best"])]
        background = result.background

        def draw(path: Path) -> list[int]:
            idx = [e["index"] for _, _, e in shown]
            imgs, labs, preds, where = figures.pick_slices(
                np.asarray(result.images)[idx], np.asarray(result.labels)[idx], np.asarray(result.preds)[idx],
                multilabel=multilabel, background=background)
            titles = [f"{kind} {k}: {e['case']}{_fold_of(result, e['index'])}{', ' + w if w else ''}\n"
                      f"mean Dice {_pct(e['mean_dice'], 1)} %" for (kind, k, e), w in zip(shown, where, strict=True)]
            figures.case_overlays(imgs, labs, preds, result.class_names, path, range(len(idx)), titles,
                                  multilabel=multilabel, background=background)
            return idx

        colours = ("each channel filled and outlined in its colour (channels may share pixels)" if multilabel
                   else "classes in the legend's colours" + (f", {result.class_names[background]} black"
                                                            if background is not None else ""))
        attempt(
            "overlays.png",
            "Worst and best cases: image | ground truth | prediction | errors",
            draw,
            lambda idx: f"The {len(cases['worst'])} worst and {len(cases['best'])} best "
            + ("validation cases" if result.cross_validation else "test cases")
            + f" by {cases['score']}"
            + ("; volumes at their slice with the most true foreground" if np.ndim(result.images) == 4 else "")
            + f". Colours: {colours}; errors yellow.",
        )
    cm = result.confusion
    if cm is None and result.metrics.get("confusion_matrix") is not None:
        cm = np.asarray(result.metrics["confusion_matrix"])
    if isinstance(result.metrics.get("karyotype"), Mapping):  # medseg.evaluation.karyotype
        from medseg.evaluation.karyotype import karyotype_confusion_figure

        cm = None  # not the 25 x 25 pixel matrix (kept in metrics.json): the chromosomes' matrix instead
        attempt("karyotype_confusion.png", "Chromosome classes: confusion matrix",
                lambda p: karyotype_confusion_figure(result.metrics["karyotype"], p),
                lambda _: "One vote per chromosome. Rows = true class (its number of chromosomes in brackets), "
                          "columns = predicted class; colour = share of the row, numbers = chromosomes.")
        shown = result.metrics["karyotype"].get("karyogram")
        if shown and have_arrays:  # medseg.evaluation.karyotype_cells: the largest held-out cell
            from medseg.inference.karyogram import cutout_karyogram

            at = np.asarray(shown["positions"])
            for name, key, confidence, what in (("karyogram_predicted.png", "predicted", shown["confidence"],
                                                 "classes decided per cell, confidence below each"),
                                                ("karyogram_truth.png", "truth", [1.0] * len(at), "true classes")):
                attempt(name, f"Karyogram of held-out cell {shown['cell']}: {what}",
                        lambda p, key=key, confidence=confidence: cutout_karyogram(
                            result.images[at], result.labels[at] > 0, shown[key], confidence, p,
                            title=f"{shown['cell']}: {key}"),
                        lambda _: "Its isolated chromosomes, upright, by class (1-22 in rows, then X, Y); red frame "
                                  "and ?: confidence under 50 %.")
    if cm is not None:
        attempt(
            "confusion_matrix.png",
            f"Confusion matrix ({_scored_on(result)})",
            lambda p: figures.confusion_matrix_figure(cm, result.class_names, p, normalize=True),
            lambda _: "Rows = true class, columns = predicted class, each row as % of its true pixels"
            + (" (AMFL Fig. 5)." if chromosome else ".")
            + (" Summed over the validation cases of every fold." if result.cross_validation else ""),
        )
    if result.fold_values:
        label = result.fold_label
        attempt(
            "folds.png",
            f"Per-fold {label}",
            lambda p: figures.fold_boxplot(
                {k: [100 * float(x) for x in v if _num(x) is not None] for k, v in result.fold_values.items()},
                p,
                ylabel=f"{label} (%)",
            ),
            lambda _: f"Per-image {label} of each fold's model on "
            + ("its own validation cases (cross-validation, no held-out test set)." if result.cross_validation
               else "the held-out test images" + (" (as ARMS Fig. 6)." if chromosome else ".")),
        )
    if result.histories:
        metric = None
        if not chromosome and result.primary:
            recorded = {k for rows in result.histories.values() for r in rows for k in r}
            metric = next((k for k in (f"val_dice/{result.primary}", f"val_iou/{result.primary}") if k in recorded),
                          None)
        attempt(
            "training_curves.png",
            "Training curves",
            lambda p: figures.training_curves(result.histories, p, metric=metric),
            lambda _: "Loss (train solid, validation dashed), validation metric and learning rate per epoch.",
        )
    return drawn, problems


# ------------------------------------------------------------------------------------------ markdown
def _classes_line(result: EvaluationResult, hd_words: str) -> str:
    m = result.metrics
    n = m.get("n_images")
    unit = "images" if result.is_chromosome else "cases"
    head = (f"{result.extra.get('evaluated_on', 'held-out test set').capitalize()}: "
            f"{n if n is not None else DASH} {unit}{' per fold (mean)' if result.cross_validation else ''}; ")
    tail = f". Values in % (two decimals) except Hausdorff distances ({hd_words})."
    if result.is_chromosome:
        return head + "classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(result.class_names)) + tail
    if result.mode == "multilabel":
        return (head + "structures (multi-label channels, each scored on its own): "
                + ", ".join(f"{i} {c}" for i, c in enumerate(result.class_names)) + tail)
    bg = result.background
    scored = set(scored_classes(result))
    names = [f"{i} {c}" + (" (background, not scored)" if i == bg and c not in scored else "")
             for i, c in enumerate(result.class_names)]
    scope = "every class scored (no background class)" if bg is None else "scored: " + ", ".join(scored_classes(result))
    return head + "classes: " + ", ".join(names) + f"; {scope}" + tail


def _headline_section(result: EvaluationResult, roles: Mapping[str, str | None]) -> list[str]:
    """The chromosome papers' comparison: our three rows in each paper's definitions and the published rows."""
    L = ["## Ours vs the papers", ""]
    header = ["row", "overlap IoU", "α IoU", "β IoU", "accuracy", "mean IoU", "α/β IoU is", "accuracy is", "source"]
    rows = []
    for r in _ours_rows(result, roles):
        rows.append(
            [r["label"], _pct(r["overlap_iou"]), _pct(r["alpha_iou"]), _pct(r["beta_iou"]), _pct(r["accuracy"]),
             _pct(r["mean_iou"]), _AB_SHORT[r["alpha_beta_definition"]], _ACC_SHORT[r["accuracy_definition"]],
             "this run"]
        )
    headline_refs = [
        ref
        for ref in result.references
        if any(_num(ref.get(k)) is not None for k in ("overlap_iou", "alpha_iou", "beta_iou", "accuracy", "mean_iou"))
    ]
    for ref in headline_refs:
        rows.append(
            [str(ref.get("method", DASH)), _published(ref.get("overlap_iou")), _published(ref.get("alpha_iou")),
             _published(ref.get("beta_iou")), _published(ref.get("accuracy")), _published(ref.get("mean_iou")),
             _AB_SHORT.get(ref.get("alpha_beta_definition"), str(ref.get("alpha_beta_definition"))),
             _ACC_SHORT.get(ref.get("accuracy_definition"), str(ref.get("accuracy_definition"))),
             str(ref.get("source", DASH))]
        )
    L += _table(header, rows)
    L += [
        "",
        "Our three rows are the same predictions scored with each paper's definitions: α/β IoU of the "
        f"non-overlap regions ({ALPHA_BETA_DEFINITIONS[NON_OVERLAP]}) or of the complete chromosomes "
        f"({ALPHA_BETA_DEFINITIONS[COMPLETE]}); accuracy as {ACCURACY_DEFINITIONS['foreground_accuracy']}, "
        f"{ACCURACY_DEFINITIONS['derived_accuracy']}, or {ACCURACY_DEFINITIONS['pixel_accuracy']}. "
        "Ours are means over "
        + ("each fold's validation images, then over the folds" if result.cross_validation else "test images")
        + "; mean IoU is over the non-background classes (AMFL does not say which "
        "classes its average covers). Published numbers are shown unrounded, as the papers print them.",
    ]
    order_free = result.metrics.get("order_free")
    if order_free:
        pc = order_free.get("per_class", {})
        iou = lambda name: _pct(pc.get(name, {}).get("iou"))  # noqa: E731
        L += ["", f"Order-free (each image's better naming of the two chromosomes, {_pct(order_free.get('swapped_fraction'))} "
              f"of the images swapped): α IoU {iou('chromosome_alpha')}, β IoU {iou('chromosome_beta')} (non-overlap "
              f"regions); {iou('chromosome_alpha_whole')} / {iou('chromosome_beta_whole')} (complete chromosomes). "
              "The rows above score α and β under the data's naming rule; a gap between the two says the network "
              "separates the chromosomes but names them differently (medseg.metrics.pairs)."]
    if not headline_refs:
        L += ["", "_No reference rows were given for this run._"]
    notes = [f"{ref.get('source')}, {ref.get('method')}: {ref['note']}" for ref in headline_refs if ref.get("note")]
    if notes:
        L += ["", "Notes on the published rows:", ""] + [f"- {t}" for t in notes]
    missing = [r for r, v in roles.items() if v is None]
    if missing:
        L += ["", f"_Not available in these metrics: {', '.join(missing)} (shown as {DASH})._"]
    L.append("")
    return L


def _chromosome_class_table(result: EvaluationResult, hd_unit: str, hd_words: str) -> list[str]:
    m = result.metrics
    per_class = m.get("per_class", {})
    L = [f"## Per-class metrics ({_scored_on(result)})", ""]
    has_hd = any("hausdorff" in v for v in per_class.values())
    header = ["structure", "IoU", "Dice", "precision", "recall", "FNR", "FPR", f"Hausdorff ({hd_unit})", "pooled IoU",
              "pooled Dice", "images with it"]
    rows = []
    for name, v in per_class.items():
        label = name if "members" not in v else f"{name} (= {' + '.join(v['members'])})"
        rows.append(
            [label, _pct(v.get("iou")), _pct(v.get("dice")), _pct(v.get("precision")), _pct(v.get("recall")),
             _pct(v.get("fnr")), _pct(v.get("fpr"), 4), _plain(v.get("hausdorff"), 3) if has_hd else DASH,
             _pct(v.get("iou_pooled")), _pct(v.get("dice_pooled")), str(v.get("n_images_present", DASH))]
        )
    mean = m.get("mean", {})
    if mean:
        rows.append(
            ["**mean** (" + ", ".join(m.get("mean_over", [])) + ")", _pct(mean.get("iou")), _pct(mean.get("dice")),
             _pct(mean.get("precision")), _pct(mean.get("recall")), _pct(mean.get("fnr")), _pct(mean.get("fpr"), 4),
             _plain(mean.get("hausdorff"), 3) if has_hd else DASH, _pct(mean.get("iou_pooled")),
             _pct(mean.get("dice_pooled")), DASH]
        )
    L += _table(header, rows)
    hd_kind = m.get("hausdorff_points", "all")
    L += [
        "",
        ("Means over each fold's validation images, then over the folds; pooled = from the confusion counts summed "
         "over a fold's images (then averaged over the folds). " if result.cross_validation else
         "Means over images; pooled = from the confusion counts summed over all images. ")
        + "FPR with four decimals. "
        f"Hausdorff over {'all points of the sets (AMFL Eq. 15)' if hd_kind == 'all' else 'surface points'}"
        + (f", {m['hausdorff_percentile']}th percentile" if m.get("hausdorff_percentile") is not None else "")
        + f", in {'mm on the scored grid' if hd_unit == 'mm' else hd_words.removeprefix('in ')}"
        + ". An empty truth or prediction scores 1 (Hausdorff 0) when both are empty and the worst value "
        "(0, or the image diagonal) when only one is, so misses count in every mean.",
        "",
        "Accuracies: "
        + "; ".join(
            f"{label} {_pct(m.get(key))}"
            for key, label in (
                ("pixel_accuracy", "pixel accuracy (AMFL Eq. 8)"),
                ("foreground_accuracy", "chromosome vs background (RSE Eq. 10)"),
                ("derived_accuracy", "mean over derived structures (ARMS)"),
            )
            if key in m
        )
        + ".",
        "",
    ]
    return L


def _class_table(result: EvaluationResult, hd_unit: str, hd_words: str) -> list[str]:
    """Any other task: Dice, IoU, precision, recall and Hausdorff of every scored class (then the derived
    structures and the mean over the scored classes)."""
    m = result.metrics
    per_class = m.get("per_class", {})
    scored = scored_classes(result)
    derived = [n for n, v in per_class.items() if isinstance(v, Mapping) and "members" in v]
    has_hd = any("hausdorff" in v for v in per_class.values())
    L = [f"## Per-class metrics ({_scored_on(result)})", ""]
    header = ["class", "Dice", "IoU", "precision", "recall", f"Hausdorff ({hd_unit})", "pooled Dice", "pooled IoU",
              "cases with it"]

    def cells(label: str, v: Mapping[str, Any], present: str) -> list[str]:
        return [label, _pct(v.get("dice")), _pct(v.get("iou")), _pct(v.get("precision")), _pct(v.get("recall")),
                _plain(v.get("hausdorff"), 3) if has_hd else DASH, _pct(v.get("dice_pooled")),
                _pct(v.get("iou_pooled")), present]

    rows = [cells(name, per_class.get(name, {}), str(per_class.get(name, {}).get("n_images_present", DASH)))
            for name in scored]
    rows += [cells(f"{name} (= {' + '.join(per_class[name]['members'])})", per_class[name],
                   str(per_class[name].get("n_images_present", DASH))) for name in derived]
    mean = m.get("mean", {})
    if mean:
        rows.append(cells(f"**mean** ({', '.join(m.get('mean_over', scored))})", mean, DASH))
    L += _table(header, rows)
    hd_kind = m.get("hausdorff_points", "all")
    bg = result.background
    L += [
        "",
        ("Means over each fold's validation cases, then over the folds; pooled = from the confusion counts summed "
         "over a fold's cases (then averaged over the folds). " if result.cross_validation else
         "Means over cases; pooled = from the confusion counts summed over all cases. ")
        + ("Every class is scored (no background class). " if bg is None and result.mode == "multiclass" else
           "" if bg is None else f"Class {bg} ({result.class_names[bg]}) is the background and is not scored. ")
        + f"Hausdorff distance over {'all points of the two sets' if hd_kind == 'all' else 'the boundary points'}"
        + (f", {m['hausdorff_percentile']}th percentile" if m.get("hausdorff_percentile") is not None else "")
        + f", in {'mm on the scored grid' if hd_unit == 'mm' else hd_words.removeprefix('in ')}"
        + ". An empty truth or prediction scores 1 (Hausdorff 0) when both are empty and the worst value "
        "(0, or the image diagonal) when only one is, so misses count in every mean.",
        "",
    ]
    accuracies = [(key, label) for key, label in (
        ("pixel_accuracy", "pixel accuracy" + (" (every channel right)" if result.mode == "multilabel" else "")),
        ("foreground_accuracy", "foreground vs background"),
        ("derived_accuracy", "mean over the derived structures"),
    ) if key in m]
    if accuracies:
        L += ["Accuracies: " + "; ".join(f"{label} {_pct(m.get(key))}" for key, label in accuracies) + ".", ""]
    return L


def _cases_section(result: EvaluationResult, cases: Mapping[str, Any]) -> list[str]:
    scored = scored_classes(result)
    per_class = len(scored) <= _MAX_CLASS_COLUMNS
    folds = any("fold" in e for e in [*cases["worst"], *cases["best"]])
    header = ["", "case", *(["fold"] if folds else []), "mean Dice",
              *([f"{c} Dice" for c in scored] if per_class else ["lowest class Dice"])]
    rows = []
    for kind in ("worst", "best"):
        for k, e in enumerate(cases[kind], start=1):
            if per_class:
                detail = [_pct(e["dice"].get(c)) for c in scored]
            else:
                known = {c: v for c, v in e["dice"].items() if v is not None}
                low = min(known, key=known.get) if known else None
                detail = [DASH if low is None else f"{low} {_pct(known[low])}"]
            rows.append([f"{kind} {k}", e["case"], *([str(e.get("fold", DASH))] if folds else []),
                         _pct(e["mean_dice"]), *detail])
    L = [f"## Worst and best cases ({_scored_on(result)})", ""]
    L += _table(header, rows)
    drawn = result.images is not None and result.labels is not None and result.preds is not None
    L += ["", f"Ranked by {cases['score']} (each case's own mean)."
          + (" Their overlays are under Figures." if drawn else ""), ""]
    return L


def _references_section(result: EvaluationResult, refs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Published Dice of the task's own paper (e.g. the CTV thesis), beside our mean Dice."""
    with_dice = [r for r in refs if _num(r.get("dice")) is not None]
    if not with_dice:
        return []
    mean_dice = _num(result.metrics.get("mean", {}).get("dice"))
    rows = [["**ours**", _pct(mean_dice), "this run", DASH]]
    rows += [[str(r.get("method", DASH)), _published(r.get("dice")), str(r.get("source", DASH)),
              str(r.get("note") or DASH)] for r in with_dice]
    L = ["## Published numbers", ""]
    L += _table(["row", "Dice", "source", "note"], rows)
    L += ["", "Ours: mean Dice over " + ", ".join(scored_classes(result)) + ". Published numbers are the paper's, "
          "on its own data, shown unrounded: a scale for ours, not a like-for-like comparison.", ""]
    return L


def _competition_section(m: Mapping[str, Any]) -> list[str]:
    """The UW-Madison GI-tract competition score (medseg.evaluation.competition): per scan at the slices' own
    size, under the competition's and the paper's rule for two empty masks; per fold and the fold mean."""
    c = m["competition"]
    other = c.get("other_convention") or {}
    L = ["## UW-Madison competition score (per scan, at the original slice size)", "",
         "0.4 × Dice (mean over every slice × organ image) + 0.6 × (1 − 3D Hausdorff / volume diagonal), each "
         "slice one unit deep, averaged over scans" + (f" ({c.get('n_scans')} scans" if c.get("n_scans") else "")
         + (", mean over folds)." if m.get("n_folds", 1) > 1 else ")."), ""]
    rows = [["**all organs**", _plain(c.get("uw_score"), 4), _plain(c.get("dice"), 4), _plain(c.get("hausdorff_score"), 4),
             _plain(other.get("uw_score"), 4), _plain(other.get("dice"), 4)]]
    for organ, v in (c.get("per_organ") or {}).items():
        o = (other.get("per_organ") or {}).get(organ, {})
        rows.append([organ, _plain(v.get("uw_score"), 4), _plain(v.get("dice"), 4), _plain(v.get("hausdorff_score"), 4),
                     _plain(o.get("uw_score"), 4), _plain(o.get("dice"), 4)])
    L += _table(["", "uw_score", "dice", "hausdorff_score", "uw_score (empty Dice 0)", "dice (empty Dice 0)"], rows)
    L += ["", "Both masks empty: Dice 1 under the competition's rule (first columns), 0 under the paper's written "
              "definition (last columns); the Hausdorff score is 1 either way.", ""]
    per_fold = [f for f in m.get("per_fold") or [] if isinstance(f.get("competition"), Mapping)]
    if len(per_fold) > 1:
        L += _table(["fold", "scans", "uw_score", "dice", "hausdorff_score", "uw_score (empty Dice 0)"],
                    [[str(f.get("fold")), str(f["competition"].get("n_scans")), _plain(f["competition"].get("uw_score"), 4),
                      _plain(f["competition"].get("dice"), 4), _plain(f["competition"].get("hausdorff_score"), 4),
                      _plain((f["competition"].get("other_convention") or {}).get("uw_score"), 4)] for f in per_fold])
        L += [""]
    return L


def _markdown(
    result: EvaluationResult,
    roles: Mapping[str, str | None] | None,
    drawn: Sequence[tuple[str, str, str]],
    problems: Sequence[str],
    folds: Mapping[str, Mapping[str, Any]],
    cases: Mapping[str, Any] | None = None,
) -> str:
    m = result.metrics
    chromosome = result.is_chromosome
    refs = task_references(result)
    L: list[str] = [f"# Evaluation report: {result.run_name}", ""]
    if result.data_note:
        L += [f"**{result.data_note}**", ""]
    hd_unit = _hd_unit(result)
    hd_words = {"mm": "in mm", "px": "in pixels, no spacing known"}.get(hd_unit, f"in {hd_unit}")
    if result.cross_validation:
        n_cases = m.get("n_cases", len(result.per_image) or None)
        L += [
            f"**Cross-validation on the validation folds** (no held-out test set): each fold's model is scored on "
            f"its own validation cases, {n_cases if n_cases is not None else DASH} cases over "
            f"{m.get('n_folds', len(result.fold_values)) or DASH} folds. Metric tables show the mean over the folds; "
            "per-image rows, overlays and the confusion matrix cover every fold's validation cases.",
            "",
        ]
    L += [_classes_line(result, hd_words), ""]

    # ---- headline (the chromosome papers' definitions: only for the chromosome task, or when asked for)
    if roles is not None and roles.get("overlap") is not None:
        L += _headline_section(result, roles)

    if isinstance(m.get("competition"), Mapping):
        L += _competition_section(m)
    if isinstance(m.get("karyotype"), Mapping):  # the karyotype task: a class per chromosome
        from medseg.evaluation.karyotype import karyotype_section

        L += karyotype_section(m["karyotype"], cross_validation=result.cross_validation,
                               n_folds=int(m.get("n_folds") or 1))

    # ---- per-class table, cases, published numbers
    if chromosome:
        L += _chromosome_class_table(result, hd_unit, hd_words)
    else:
        L += _class_table(result, hd_unit, hd_words)
        if cases is not None:
            L += _cases_section(result, cases)
        L += _references_section(result, refs)

    # ---- efficiency
    eff_keys = ("params", "time_ms", "time_ms_cpu")
    eff_refs = [r for r in refs if any(_num(r.get(k)) is not None for k in eff_keys)]
    if result.efficiency or eff_refs:
        L += ["## Efficiency", ""]
        e = result.efficiency
        cpu_key = next((k for k in _CPU_KEYS if k in e), None)
        gpu_key = next((k for k in _GPU_KEYS if k in e), None)
        rows = []
        if e:
            params = _num(e.get("params"))
            rows.append(
                ["**ours**", DASH if params is None else f"{params / 1e6:.2f}M", _plain(e.get(cpu_key)),
                 _plain(e.get(gpu_key)), "this run"]
            )
        for r in eff_refs:
            params = _num(r.get("params"))
            rows.append(
                [str(r.get("method")), DASH if params is None else f"{params / 1e6:.2f}M",
                 _published(r.get("time_ms_cpu"), 0), _published(r.get("time_ms"), 0),
                 f"{r.get('source')}; {r.get('time_device') or 'device not stated'}"]
            )
        L += _table(["model", "params", "CPU ms / image", "GPU ms / image", "source"], rows)
        others = {k: v for k, v in e.items() if k not in ("params", cpu_key, gpu_key)}
        if others:
            L += [""] + [f"- {k}: {v}" for k, v in others.items()]
        L.append("")

    # ---- folds
    if folds:
        L += [f"## Per-fold summary ({result.fold_label}, %)", ""]
        rows = []
        for fold, s in folds.items():
            mean_sd = DASH if s["mean"] is None else f"{_pct(s['mean'])} ± {_pct(s['sd'])}"
            rows.append([fold, str(s["n"]), mean_sd, _pct(s["median"]), _pct(s["min"]), _pct(s["max"])])
        L += _table(["fold", "n", "mean ± sd", "median", "min", "max"], rows)
        L += ["", "sd is the sample standard deviation; 'across folds' summarises the fold means.", ""]

    # ---- figures
    if drawn or problems:
        L += ["## Figures", ""]
        for file, title, caption in drawn:
            L += [f"### {title}", "", f"![{title}](figures/{file})", "", caption, ""]
        for p in problems:
            L += [f"- figure not drawn: {p}"]
        if problems:
            L.append("")

    if result.extra:
        L += ["## Run details", ""] + [f"- {k}: {json.dumps(_jsonable(v))}" for k, v in result.extra.items()] + [""]
    return "\n".join(L).rstrip() + "\n"


# ------------------------------------------------------------------------------------------ entry point
def write_report(out_dir: Path, result: EvaluationResult, *, headline: dict[str, str] | None = None) -> Path:
    """Write ``metrics.json``, ``figures/*.png`` and ``report.md`` into ``out_dir``; returns the report path.

    The chromosome task (:func:`is_chromosome_task`, or ``result.chromosome``) gets the papers' comparison:
    ``headline`` maps the roles ``overlap``, ``alpha``, ``beta``, ``alpha_whole``, ``beta_whole`` to names in
    ``result.metrics["per_class"]`` (guessed from the names when not given). Any other task gets the neutral
    report (per-class table, worst and best cases); a ``headline`` given for it adds the papers' comparison
    all the same.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    roles = resolve_headline(result, headline) if result.is_chromosome or headline is not None else None
    folds = fold_summary(result.fold_values) if result.fold_values else {}
    cases = None if result.is_chromosome else _worst_best(result)
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=out_dir))
    try:
        fig_tmp = tmp / "figures"
        fig_tmp.mkdir()
        drawn, problems = _draw_figures(result, fig_tmp, cases)
        payload = _jsonable(
            {
                "run_name": result.run_name,
                "class_names": list(result.class_names),
                "task": {"chromosome": result.is_chromosome, "mode": result.mode,
                         "background": None if result.background is None else result.class_names[result.background],
                         "scored_classes": scored_classes(result)},
                "data_note": result.data_note,
                "headline_roles": roles,
                "metrics": result.metrics,
                "per_image": result.per_image,
                "cases": cases,
                "efficiency": result.efficiency,
                "fold_metric": result.fold_label,
                "fold_summary": folds,
                "references": task_references(result),
                "figures": [f"figures/{name}" for name, _, _ in drawn],
                "extra": result.extra,
            }
        )
        (tmp / "metrics.json").write_text(json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        (tmp / "report.md").write_text(_markdown(result, roles, drawn, problems, folds, cases), encoding="utf-8")
        # move into place: figures, then metrics.json, then report.md (each os.replace is atomic)
        if drawn:
            (out_dir / "figures").mkdir(exist_ok=True)
        for name, _, _ in drawn:
            os.replace(fig_tmp / name, out_dir / "figures" / name)
        os.replace(tmp / "metrics.json", out_dir / "metrics.json")
        os.replace(tmp / "report.md", out_dir / "report.md")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "report.md"
