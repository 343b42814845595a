"""Evaluation reports: published reference numbers, figures and the Markdown/JSON report writer.

The published numbers are data (``configs/tables/published/*.yaml``, read by
:mod:`medseg.evaluation.paper_numbers` on first use), so importing this package reads no file.
"""

from medseg.evaluation.figures import (
    confusion_matrix_figure,
    fold_boxplot,
    overlay_examples,
    select_by_overlap,
    training_curves,
)
from medseg.evaluation.paper_numbers import PAPERS, families, reference_rows, rows_from
from medseg.evaluation.report import EvaluationResult, fold_summary, write_report

__all__ = [
    "PAPERS",
    "EvaluationResult",
    "confusion_matrix_figure",
    "families",
    "fold_boxplot",
    "fold_summary",
    "overlay_examples",
    "reference_rows",
    "rows_from",
    "select_by_overlap",
    "training_curves",
    "write_report",
]
