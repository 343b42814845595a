"""What a task adds to ``medseg evaluate``: the hooks the generic evaluator and report ask, each answered with
"nothing" here, so that this base is the neutral task and a task plug-in overrides only what it adds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medseg.evaluation.report_result import EvaluationResult


class Task:
    """A task's own scores, sections, figures and words. Two kinds of hook:

    - every task that :meth:`claims` a run adds its scores to the metrics (:meth:`fold_scores`,
      :meth:`ensemble_scores`, :meth:`summarise`), and every registered task its report :meth:`sections` and
      :meth:`figures` where its scores are in the result;
    - one task's *language* shapes the report: the first task that :meth:`speaks_result` the result, else this
      neutral one (per-class table of every scored class, worst and best cases, published rows of no other
      task's papers)."""

    name = "neutral"
    #: published papers whose rows and terms belong to this task alone (other tasks' reports never show them)
    papers: frozenset[str] = frozenset()

    # ---- its language, when a report speaks it
    #: whether some report speaks it (:meth:`speaks`); metrics.json records whether each such one was spoken
    own_language = False
    #: lead with the papers' comparison, in the headline roles of
    #: :func:`~medseg.evaluation.report_chromosome.resolve_headline`
    headline = False
    #: rank, list and draw the worst and best cases
    ranks_cases = True
    #: what the per-fold values are when the result does not say (else "<primary> IoU")
    fold_metric: str | None = None
    #: what one item of the evaluated set is called
    case_unit = "cases"
    #: figure file → the published figure it redraws, named in its caption
    figure_sources: Mapping[str, str] = {}
    #: the training curves show task.primary_metric (else the figure's default metric)
    primary_curve = True

    def claims(self, cfg: Mapping, data_set_task: str | None) -> bool:
        """Whether a run of config ``cfg``, on a data set that names ``data_set_task``, is this task."""
        return data_set_task == self.name

    def speaks(self, task_cfg: Mapping) -> bool:
        """Whether reports of a config's ``task`` section speak this task's language."""
        return False

    def speaks_result(self, result: EvaluationResult) -> bool:
        """Whether ``result``'s report speaks this task's language (read from the result alone)."""
        return self.speaks({"class_names": result.class_names, "mode": result.mode})

    # ---- evaluation: scores beside the generic metrics
    def fold_scores(
        self, cfg: Mapping, data: Any, idx: np.ndarray, proba: np.ndarray, pred: np.ndarray, labels: np.ndarray
    ) -> dict:
        """Entries added to one fold's metrics: the items ``idx`` of ``data``, their probabilities, predicted
        and true labels."""
        return {}

    def ensemble_scores(self, cfg: Mapping, pred: np.ndarray, labels: np.ndarray) -> dict:
        """Entries added to the fold ensemble's metrics."""
        return {}

    def summarise(self, summary: dict, fold_aggs: list[dict]) -> None:
        """Mend ``summary`` (the mean over the folds) where a mean does not fit this task's scores."""

    def synthesized_note(self, cfg: Mapping, data: Any) -> str | None:
        """What the report says about synthesized data of this task (None: the generic words)."""
        return None

    # ---- report: its language
    def classes_text(self, result: EvaluationResult) -> str | None:
        """The classes as the report's opening line names them (None: the neutral line)."""
        return None

    def class_sections(self, result: EvaluationResult, hd_unit: str, hd_words: str) -> list[str] | None:
        """The per-class sections in this task's terms (None: the neutral table, cases and published rows)."""
        return None

    def overlays(self, fig: Any, result: EvaluationResult) -> bool:
        """Draw this task's overlays with ``fig.attempt``; False when it has none for this result."""
        return False

    # ---- report: every task, where its scores are in the result
    def sections(self, result: EvaluationResult) -> list[str]:
        """Markdown sections on this task's own scores."""
        return []

    def figures(self, fig: Any, result: EvaluationResult, have_arrays: bool) -> bool:
        """Draw the figures of this task's own scores with ``fig.attempt``; True when they stand in for the
        pixel confusion matrix."""
        return False
