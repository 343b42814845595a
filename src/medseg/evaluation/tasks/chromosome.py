"""The overlapping-chromosome task (``task.class_names`` = :data:`~medseg.config_schema.CHROMOSOME_CLASSES`,
multi-class): reported as the overlapping-chromosome papers report it — overlap IoU and α/β IoU in each
paper's definition beside the published rows (:mod:`medseg.evaluation.report_chromosome`), the α/β scores
with each image's better naming of the two chromosomes, overlays at small/medium/large overlap, and the
papers' figure numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.config_schema import CHROMOSOME_CLASSES
from medseg.evaluation import figures
from medseg.evaluation.paper_numbers import PAPERS
from medseg.evaluation.report_chromosome import chromosome_class_table
from medseg.evaluation.report_result import EvaluationResult, fold_of
from medseg.evaluation.tasks.base import Task
from medseg.metrics import SegmentationMetrics
from medseg.metrics.pairs import best_assignment

#: the overlapping-chromosome papers (their rows and definitions belong to the chromosome task only)
CHROMOSOME_PAPERS = frozenset(p for p in PAPERS if p != "ctv_thesis")


def is_chromosome_task(class_names: Sequence[str], mode: str = "multiclass") -> bool:
    """True for the overlapping-chromosome task: multi-class with exactly the four classes of
    :data:`~medseg.config_schema.CHROMOSOME_CLASSES` (background, chromosome_alpha, chromosome_beta, overlap).
    Only this task's reports speak of α/β/overlap and set the chromosome papers beside ours."""
    return mode == "multiclass" and [str(c) for c in class_names] == list(CHROMOSOME_CLASSES)


def order_free_scores(cfg: Mapping, class_names: list[str], pred_labels: np.ndarray, labels: np.ndarray) -> dict:
    """The α/β scores with each image's best naming of the two chromosomes
    (:func:`medseg.metrics.pairs.best_assignment`): per class IoU/Dice (α, β, overlap and the complete
    chromosomes), the derived accuracy, and how many images were swapped."""
    swapped, swap = best_assignment(pred_labels, labels, alpha=1, beta=2, overlap=3)  # CHROMOSOME_CLASSES order
    m = SegmentationMetrics.from_task({**cfg["task"], "class_names": class_names}, hausdorff=False)
    m.update(swapped, labels)
    agg = m.aggregate()
    return {
        "per_class": {name: {k: v[k] for k in ("iou", "dice", "iou_pooled")} for name, v in agg["per_class"].items()},
        "derived_accuracy": agg.get("derived_accuracy"),
        "n_swapped": int(swap.sum()),
        "swapped_fraction": float(swap.mean()) if len(swap) else 0.0,
    }


class Chromosome(Task):
    """The chromosome papers' language and their order-free α/β scores."""

    name = "chromosome"
    papers = CHROMOSOME_PAPERS
    own_language = True
    headline = True
    ranks_cases = False
    fold_metric = "overlap IoU"
    case_unit = "images"
    figure_sources = {"confusion_matrix.png": "AMFL Fig. 5", "folds.png": "as ARMS Fig. 6"}
    primary_curve = False

    def claims(self, cfg: Mapping, data_set_task: str | None) -> bool:
        return self.speaks(cfg["task"])

    def speaks(self, task_cfg: Mapping) -> bool:
        return is_chromosome_task(task_cfg["class_names"], task_cfg.get("mode", "multiclass"))

    def speaks_result(self, result: EvaluationResult) -> bool:
        # result.chromosome: a report that says which language it speaks, whatever its classes
        return super().speaks_result(result) if result.chromosome is None else bool(result.chromosome)

    def fold_scores(self, cfg, data, idx, proba, pred, labels) -> dict:
        return {"order_free": order_free_scores(cfg, list(cfg["task"]["class_names"]), pred, labels)}

    def ensemble_scores(self, cfg, pred, labels) -> dict:
        return {"order_free": order_free_scores(cfg, list(cfg["task"]["class_names"]), pred, labels)}

    def synthesized_note(self, cfg, data) -> str:
        return (
            "Synthesized Pommier-procedure data (medseg data synth), not the real Pommier set: "
            "compare the shape of the results with the papers, not the digits."
        )

    def classes_text(self, result: EvaluationResult) -> str:
        return "classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(result.class_names))

    def class_sections(self, result: EvaluationResult, hd_unit: str, hd_words: str) -> list[str]:
        return chromosome_class_table(result, hd_unit, hd_words)

    def overlays(self, fig: Any, result: EvaluationResult) -> bool:
        """Test images at small, medium and large true overlap (2D label maps only)."""
        if result.mode == "multilabel" or np.ndim(result.images) != 3:
            return False
        fig.attempt(
            "overlays.png",
            "Examples: image | ground truth | prediction | errors",
            lambda p: figures.overlay_examples(result.images, result.labels, result.preds, result.class_names, p),
            lambda idx: (
                ("Validation images " if result.cross_validation else "Test images ")
                + ", ".join(f"#{i}{fold_of(result, i)}" for i in idx)
                + " (small, medium and large true overlap: 10th/50th/90th percentile of overlap area). "
                "Colours: background black, α red, β green, overlap blue; errors yellow."
            ),
        )
        return True
