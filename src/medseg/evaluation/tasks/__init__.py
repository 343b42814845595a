"""Tasks as plug-ins: what each task adds to ``medseg evaluate``'s generic evaluation and report.

The evaluator (:mod:`medseg.evaluation.evaluate`) and the report (:mod:`medseg.evaluation.report`) hold no task
of their own: they ask the tasks here, in this order, which add their scores, sections and figures, and one of
which may give the report its language (:class:`~medseg.evaluation.tasks.base.Task`). A task is recognised by
its classes (the chromosome and karyotype tasks) or named by the data set a run reads
(:attr:`medseg.data.registry.DataSet.task`: the UW-Madison slices, the CT volumes). Adding a task is one module
and one entry in :data:`TASKS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from medseg.data.registry import data_set_for
from medseg.evaluation.report_result import EvaluationResult
from medseg.evaluation.tasks.base import Task
from medseg.evaluation.tasks.chromosome import Chromosome
from medseg.evaluation.tasks.ctv import CTV
from medseg.evaluation.tasks.gi import GI
from medseg.evaluation.tasks.karyotype import Karyotype

#: every task, in the order they are asked: the first synthesized-data note wins, scores and sections follow it
TASKS: tuple[Task, ...] = (CTV(), Chromosome(), GI(), Karyotype())
NEUTRAL = Task()


def tasks_for(cfg: Mapping) -> list[Task]:
    """The tasks a run of ``cfg`` is: those recognising its classes, and the one its data set names."""
    data_set_task = data_set_for(cfg).task
    return [t for t in TASKS if t.claims(cfg, data_set_task)]


def language_for(task_cfg: Mapping) -> Task:
    """The task whose language reports of a config's ``task`` section speak (the neutral one by default)."""
    return next((t for t in TASKS if t.speaks(task_cfg)), NEUTRAL)


def language_of(result: EvaluationResult) -> Task:
    """The task whose language ``result``'s report speaks (the neutral one by default)."""
    return next((t for t in TASKS if t.speaks_result(result)), NEUTRAL)


def language_flags(language: Task) -> dict[str, bool]:
    """metrics.json's record of the language spoken: ``{task name: spoken?}`` for every task that has one."""
    return {t.name: t is language for t in TASKS if t.own_language}


def shown_references(language: Task, rows: list[dict]) -> list[dict]:
    """The published rows a report in ``language`` may show: none of another task's papers (the chromosome
    papers' rows only in the chromosome task's report; e.g. the CTV thesis' Dice in any other)."""
    foreign = {p for t in TASKS if t is not language for p in t.papers}
    return [r for r in rows if r.get("paper") not in foreign]


def task_references(result: EvaluationResult) -> list[dict]:
    """The published rows ``result``'s report may show (:func:`shown_references` in its language)."""
    return shown_references(language_of(result), list(result.references))


__all__ = [
    "NEUTRAL",
    "TASKS",
    "Task",
    "language_flags",
    "language_for",
    "language_of",
    "shown_references",
    "task_references",
    "tasks_for",
]
