"""The report's figures: each drawn where its inputs are present; one that fails is named in the report (and
warned about) instead of costing the whole report."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation import figures
from medseg.evaluation.report_format import num, pct
from medseg.evaluation.report_result import EvaluationResult, fold_of, scored_on


class _Drawing:
    """The figures drawn into ``fig_dir`` so far, and the problems of those that could not be."""

    def __init__(self, fig_dir: Path):
        self.fig_dir = fig_dir
        self.drawn: list[tuple[str, str, str]] = []
        self.problems: list[str] = []

    def attempt(self, name: str, title: str, fn, caption_fn) -> None:
        try:
            out = fn(self.fig_dir / name)
            self.drawn.append((name, title, caption_fn(out)))
        except Exception as exc:  # a broken figure must not cost the whole report
            self.problems.append(f"{name}: {type(exc).__name__}: {exc}")
            # stacklevel: attempt <- the figure's function <- draw_figures <- its caller (write_report)
            warnings.warn(f"figure {name} not drawn: {exc}", RuntimeWarning, stacklevel=4)


def _chromosome_overlays(fig: _Drawing, result: EvaluationResult) -> None:
    """The chromosome task: test images at small, medium and large true overlap."""
    fig.attempt(
        "overlays.png",
        "Examples: image | ground truth | prediction | errors",
        lambda p: figures.overlay_examples(result.images, result.labels, result.preds, result.class_names, p),
        lambda idx: ("Validation images " if result.cross_validation else "Test images ")
        + ", ".join(f"#{i}{fold_of(result, i)}" for i in idx)
        + " (small, medium and large true overlap: 10th/50th/90th percentile of overlap area). "
        "Colours: background black, α red, β green, overlap blue; errors yellow.",
    )


def _case_overlays(fig: _Drawing, result: EvaluationResult, cases: Mapping[str, Any]) -> None:
    """Any other task: the worst and best cases, coloured per class (or per channel) with a legend."""
    multilabel = result.mode == "multilabel"
    shown = [("worst", k + 1, e) for k, e in enumerate(cases["worst"])] + \
            [("best", k + 1, e) for k, e in enumerate(cases["best"])]
    background = result.background

    def draw(path: Path) -> list[int]:
        idx = [e["index"] for _, _, e in shown]
        imgs, labs, preds, where = figures.pick_slices(
            np.asarray(result.images)[idx], np.asarray(result.labels)[idx], np.asarray(result.preds)[idx],
            multilabel=multilabel, background=background)
        titles = [f"{kind} {k}: {e['case']}{fold_of(result, e['index'])}{', ' + w if w else ''}\n"
                  f"mean Dice {pct(e['mean_dice'], 1)} %" for (kind, k, e), w in zip(shown, where, strict=True)]
        figures.case_overlays(imgs, labs, preds, result.class_names, path, range(len(idx)), titles,
                              multilabel=multilabel, background=background)
        return idx

    colours = ("each channel filled and outlined in its colour (channels may share pixels)" if multilabel
               else "classes in the legend's colours" + (f", {result.class_names[background]} black"
                                                        if background is not None else ""))
    fig.attempt(
        "overlays.png",
        "Worst and best cases: image | ground truth | prediction | errors",
        draw,
        lambda idx: f"The {len(cases['worst'])} worst and {len(cases['best'])} best "
        + ("validation cases" if result.cross_validation else "test cases")
        + f" by {cases['score']}"
        + ("; volumes at their slice with the most true foreground" if np.ndim(result.images) == 4 else "")
        + f". Colours: {colours}; errors yellow.",
    )


def _karyotype_figures(fig: _Drawing, result: EvaluationResult, have_arrays: bool) -> None:
    """The karyotype task (:mod:`medseg.evaluation.karyotype`): the chromosomes' confusion matrix, and the
    karyograms of the largest held-out cell (:mod:`medseg.evaluation.karyotype_cells`) where one was chosen."""
    from medseg.evaluation.karyotype import karyotype_confusion_figure

    fig.attempt("karyotype_confusion.png", "Chromosome classes: confusion matrix",
                lambda p: karyotype_confusion_figure(result.metrics["karyotype"], p),
                lambda _: "One vote per chromosome. Rows = true class (its number of chromosomes in brackets), "
                          "columns = predicted class; colour = share of the row, numbers = chromosomes.")
    shown = result.metrics["karyotype"].get("karyogram")
    if not (shown and have_arrays):
        return
    from medseg.inference.karyogram import cutout_karyogram

    at = np.asarray(shown["positions"])
    for name, key, confidence, what in (("karyogram_predicted.png", "predicted", shown["confidence"],
                                         "classes decided per cell, confidence below each"),
                                        ("karyogram_truth.png", "truth", [1.0] * len(at), "true classes")):
        fig.attempt(name, f"Karyogram of held-out cell {shown['cell']}: {what}",
                    lambda p, key=key, confidence=confidence: cutout_karyogram(
                        result.images[at], result.labels[at] > 0, shown[key], confidence, p,
                        title=f"{shown['cell']}: {key}"),
                    lambda _: "Its isolated chromosomes, upright, by class (1-22 in rows, then X, Y); red frame "
                              "and ?: confidence under 50 %.")


def _confusion_matrix(fig: _Drawing, result: EvaluationResult, cm: np.ndarray) -> None:
    fig.attempt(
        "confusion_matrix.png",
        f"Confusion matrix ({scored_on(result)})",
        lambda p: figures.confusion_matrix_figure(cm, result.class_names, p, normalize=True),
        lambda _: "Rows = true class, columns = predicted class, each row as % of its true pixels"
        + (" (AMFL Fig. 5)." if result.is_chromosome else ".")
        + (" Summed over the validation cases of every fold." if result.cross_validation else ""),
    )


def _fold_boxplot(fig: _Drawing, result: EvaluationResult) -> None:
    label = result.fold_label
    fig.attempt(
        "folds.png",
        f"Per-fold {label}",
        lambda p: figures.fold_boxplot(
            {k: [100 * float(x) for x in v if num(x) is not None] for k, v in result.fold_values.items()},
            p,
            ylabel=f"{label} (%)",
        ),
        lambda _: f"Per-image {label} of each fold's model on "
        + ("its own validation cases (cross-validation, no held-out test set)." if result.cross_validation
           else "the held-out test images" + (" (as ARMS Fig. 6)." if result.is_chromosome else ".")),
    )


def _training_curves(fig: _Drawing, result: EvaluationResult) -> None:
    metric = None
    if not result.is_chromosome and result.primary:
        recorded = {k for rows in result.histories.values() for r in rows for k in r}
        metric = next((k for k in (f"val_dice/{result.primary}", f"val_iou/{result.primary}") if k in recorded),
                      None)
    fig.attempt(
        "training_curves.png",
        "Training curves",
        lambda p: figures.training_curves(result.histories, p, metric=metric),
        lambda _: "Loss (train solid, validation dashed), validation metric and learning rate per epoch.",
    )


def draw_figures(result: EvaluationResult, fig_dir: Path,
                 cases: Mapping[str, Any] | None) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Draw the figures whose inputs are present. Returns ([(file, title, caption)], [problems])."""
    fig = _Drawing(fig_dir)
    have_arrays = result.images is not None and result.labels is not None and result.preds is not None
    if have_arrays and result.is_chromosome and result.mode != "multilabel" and np.ndim(result.images) == 3:
        _chromosome_overlays(fig, result)
    elif have_arrays and cases is not None:
        _case_overlays(fig, result, cases)
    cm = result.confusion
    if cm is None and result.metrics.get("confusion_matrix") is not None:
        cm = np.asarray(result.metrics["confusion_matrix"])
    if isinstance(result.metrics.get("karyotype"), Mapping):  # medseg.evaluation.karyotype
        cm = None  # not the 25 x 25 pixel matrix (kept in metrics.json): the chromosomes' matrix instead
        _karyotype_figures(fig, result, have_arrays)
    if cm is not None:
        _confusion_matrix(fig, result, cm)
    if result.fold_values:
        _fold_boxplot(fig, result)
    if result.histories:
        _training_curves(fig, result)
    return fig.drawn, fig.problems
