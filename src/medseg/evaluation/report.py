"""Evaluation report: ``metrics.json``, figures and a Markdown ``report.md`` in the task's own terms.

The report holds no task of its own: the task plug-ins (:mod:`medseg.evaluation.tasks`) give it its language
and add their sections and figures. The chromosome task (:mod:`medseg.evaluation.tasks.chromosome`) is
reported as the overlapping-chromosome papers report it: overlap IoU and α/β IoU in each paper's definition beside the
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
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from medseg.evaluation.report_chromosome import resolve_headline
from medseg.evaluation.report_figures import draw_figures
from medseg.evaluation.report_format import jsonable
from medseg.evaluation.report_markdown import markdown
from medseg.evaluation.report_result import EvaluationResult, case_scores, fold_summary, scored_classes, worst_best
from medseg.evaluation.tasks import language_flags, language_of, shown_references, task_references
from medseg.evaluation.tasks.chromosome import CHROMOSOME_PAPERS, is_chromosome_task  # where callers import them

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


def write_report(out_dir: Path, result: EvaluationResult, *, headline: dict[str, str] | None = None) -> Path:
    """Write ``metrics.json``, ``figures/*.png`` and ``report.md`` into ``out_dir``; returns the report path.

    The report speaks the language of its task (:func:`~medseg.evaluation.tasks.language_of`). The chromosome
    task (:mod:`medseg.evaluation.tasks.chromosome`, or ``result.chromosome``) gets the papers' comparison:
    ``headline`` maps the roles ``overlap``, ``alpha``, ``beta``, ``alpha_whole``, ``beta_whole`` to names in
    ``result.metrics["per_class"]`` (guessed from the names when not given). Any other task gets the neutral
    report (per-class table, worst and best cases); a ``headline`` given for it adds the papers' comparison
    all the same.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    language = language_of(result)
    if result.fold_metric is None and language.fold_metric:
        result = replace(result, fold_metric=language.fold_metric)
    roles = resolve_headline(result, headline) if language.headline or headline is not None else None
    folds = fold_summary(result.fold_values) if result.fold_values else {}
    cases = worst_best(result) if language.ranks_cases else None
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=out_dir))
    try:
        fig_tmp = tmp / "figures"
        fig_tmp.mkdir()
        drawn, problems = draw_figures(result, language, fig_tmp, cases)
        payload = jsonable(
            {
                "run_name": result.run_name,
                "class_names": list(result.class_names),
                "task": {
                    **language_flags(language),
                    "mode": result.mode,
                    "background": None if result.background is None else result.class_names[result.background],
                    "scored_classes": scored_classes(result),
                },
                "data_note": result.data_note,
                "headline_roles": roles,
                "metrics": result.metrics,
                "per_image": result.per_image,
                "cases": cases,
                "efficiency": result.efficiency,
                "fold_metric": result.fold_label,
                "fold_summary": folds,
                "references": shown_references(language, list(result.references)),
                "figures": [f"figures/{name}" for name, _, _ in drawn],
                "extra": result.extra,
            }
        )
        (tmp / "metrics.json").write_text(json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        (tmp / "report.md").write_text(
            markdown(result, language, roles, drawn, problems, folds, cases), encoding="utf-8"
        )
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
