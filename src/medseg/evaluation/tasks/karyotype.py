"""The karyotype task (background, 1–22, X, Y: :func:`medseg.data.mfish_karyotype.is_karyotype_task`): one class
per chromosome, counted per class (:mod:`medseg.evaluation.karyotype`, which scores it); its report section,
the chromosomes' confusion matrix and the karyograms of a held-out cell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medseg.data.mfish_karyotype import is_karyotype_task
from medseg.evaluation.karyotype import karyotype_confusion_figure, karyotype_section
from medseg.evaluation.report_result import EvaluationResult
from medseg.evaluation.tasks.base import Task


class Karyotype(Task):
    """Its section and figures, where the result holds its per-chromosome scores."""

    name = "karyotype"

    def claims(self, cfg: Mapping, data_set_task: str | None) -> bool:
        task = cfg["task"]
        return task.get("mode", "multiclass") == "multiclass" and is_karyotype_task(task["class_names"])

    def sections(self, result: EvaluationResult) -> list[str]:
        m = result.metrics
        if not isinstance(m.get("karyotype"), Mapping):
            return []
        return karyotype_section(
            m["karyotype"], cross_validation=result.cross_validation, n_folds=int(m.get("n_folds") or 1)
        )

    def figures(self, fig: Any, result: EvaluationResult, have_arrays: bool) -> bool:
        """The chromosomes' confusion matrix, which stands in for the 25 x 25 pixel one (kept in metrics.json),
        and the karyograms of the largest held-out cell (:mod:`medseg.evaluation.karyotype_cells`) where one
        was chosen."""
        if not isinstance(result.metrics.get("karyotype"), Mapping):
            return False
        fig.attempt(
            "karyotype_confusion.png",
            "Chromosome classes: confusion matrix",
            lambda p: karyotype_confusion_figure(result.metrics["karyotype"], p),
            lambda _: (
                "One vote per chromosome. Rows = true class (its number of chromosomes in brackets), "
                "columns = predicted class; colour = share of the row, numbers = chromosomes."
            ),
        )
        shown = result.metrics["karyotype"].get("karyogram")
        if not (shown and have_arrays):
            return True
        from medseg.inference.karyogram import cutout_karyogram

        at = np.asarray(shown["positions"])
        for name, key, confidence, what in (
            (
                "karyogram_predicted.png",
                "predicted",
                shown["confidence"],
                "classes decided per cell, confidence below each",
            ),
            ("karyogram_truth.png", "truth", [1.0] * len(at), "true classes"),
        ):
            fig.attempt(
                name,
                f"Karyogram of held-out cell {shown['cell']}: {what}",
                lambda p, key=key, confidence=confidence: cutout_karyogram(
                    result.images[at], result.labels[at] > 0, shown[key], confidence, p, title=f"{shown['cell']}: {key}"
                ),
                lambda _: (
                    "Its isolated chromosomes, upright, by class (1-22 in rows, then X, Y); red frame "
                    "and ?: confidence under 50 %."
                ),
            )
        return True
