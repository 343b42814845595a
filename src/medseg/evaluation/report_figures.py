"""The report's figures: each drawn where its inputs are present; one that fails is named in the report (and
warned about) instead of costing the whole report. A task plug-in (:mod:`medseg.evaluation.tasks`) draws its
own overlays (its language's) and the figures of its own scores."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation import figures
from medseg.evaluation.report_format import num, pct
from medseg.evaluation.report_result import EvaluationResult, fold_of, scored_on
from medseg.evaluation.tasks import TASKS, Task


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


def _case_overlays(fig: _Drawing, result: EvaluationResult, cases: Mapping[str, Any]) -> None:
    """Any other task: the worst and best cases, coloured per class (or per channel) with a legend."""
    multilabel = result.mode == "multilabel"
    shown = [("worst", k + 1, e) for k, e in enumerate(cases["worst"])] + [
        ("best", k + 1, e) for k, e in enumerate(cases["best"])
    ]
    background = result.background

    def draw(path: Path) -> list[int]:
        idx = [e["index"] for _, _, e in shown]
        imgs, labs, preds, where = figures.pick_slices(
            np.asarray(result.images)[idx],
            np.asarray(result.labels)[idx],
            np.asarray(result.preds)[idx],
            multilabel=multilabel,
            background=background,
        )
        titles = [
            f"{kind} {k}: {e['case']}{fold_of(result, e['index'])}{', ' + w if w else ''}\n"
            f"mean Dice {pct(e['mean_dice'], 1)} %"
            for (kind, k, e), w in zip(shown, where, strict=True)
        ]
        figures.case_overlays(
            imgs,
            labs,
            preds,
            result.class_names,
            path,
            range(len(idx)),
            titles,
            multilabel=multilabel,
            background=background,
        )
        return idx

    colours = (
        "each channel filled and outlined in its colour (channels may share pixels)"
        if multilabel
        else "classes in the legend's colours"
        + (f", {result.class_names[background]} black" if background is not None else "")
    )
    fig.attempt(
        "overlays.png",
        "Worst and best cases: image | ground truth | prediction | errors",
        draw,
        lambda idx: (
            f"The {len(cases['worst'])} worst and {len(cases['best'])} best "
            + ("validation cases" if result.cross_validation else "test cases")
            + f" by {cases['score']}"
            + ("; volumes at their slice with the most true foreground" if np.ndim(result.images) == 4 else "")
            + f". Colours: {colours}; errors yellow."
        ),
    )


def _source(language: Task, name: str) -> str:
    """A caption's last words: the published figure that figure ``name`` redraws in ``language``, if any."""
    source = language.figure_sources.get(name)
    return f" ({source})." if source else "."


def _confusion_matrix(fig: _Drawing, result: EvaluationResult, language: Task, cm: np.ndarray) -> None:
    fig.attempt(
        "confusion_matrix.png",
        f"Confusion matrix ({scored_on(result)})",
        lambda p: figures.confusion_matrix_figure(cm, result.class_names, p, normalize=True),
        lambda _: (
            "Rows = true class, columns = predicted class, each row as % of its true pixels"
            + _source(language, "confusion_matrix.png")
            + (" Summed over the validation cases of every fold." if result.cross_validation else "")
        ),
    )


def _fold_boxplot(fig: _Drawing, result: EvaluationResult, language: Task) -> None:
    label = result.fold_label
    fig.attempt(
        "folds.png",
        f"Per-fold {label}",
        lambda p: figures.fold_boxplot(
            {k: [100 * float(x) for x in v if num(x) is not None] for k, v in result.fold_values.items()},
            p,
            ylabel=f"{label} (%)",
        ),
        lambda _: (
            f"Per-image {label} of each fold's model on "
            + (
                "its own validation cases (cross-validation, no held-out test set)."
                if result.cross_validation
                else "the held-out test images" + _source(language, "folds.png")
            )
        ),
    )


def _training_curves(fig: _Drawing, result: EvaluationResult, language: Task) -> None:
    metric = None
    if language.primary_curve and result.primary:
        recorded = {k for rows in result.histories.values() for r in rows for k in r}
        metric = next((k for k in (f"val_dice/{result.primary}", f"val_iou/{result.primary}") if k in recorded), None)
    fig.attempt(
        "training_curves.png",
        "Training curves",
        lambda p: figures.training_curves(result.histories, p, metric=metric),
        lambda _: "Loss (train solid, validation dashed), validation metric and learning rate per epoch.",
    )


def draw_figures(
    result: EvaluationResult, language: Task, fig_dir: Path, cases: Mapping[str, Any] | None
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Draw the figures whose inputs are present, in ``language`` (the task whose language the report speaks).
    Returns ([(file, title, caption)], [problems])."""
    fig = _Drawing(fig_dir)
    have_arrays = result.images is not None and result.labels is not None and result.preds is not None
    if have_arrays and not language.overlays(fig, result) and cases is not None:
        _case_overlays(fig, result, cases)
    cm = result.confusion
    if cm is None and result.metrics.get("confusion_matrix") is not None:
        cm = np.asarray(result.metrics["confusion_matrix"])
    for task in TASKS:  # each task's own scores (the karyotype's chromosome matrix replaces the pixel one)
        if task.figures(fig, result, have_arrays):
            cm = None
    if cm is not None:
        _confusion_matrix(fig, result, language, cm)
    if result.fold_values:
        _fold_boxplot(fig, result, language)
    if result.histories:
        _training_curves(fig, result, language)
    return fig.drawn, fig.problems
