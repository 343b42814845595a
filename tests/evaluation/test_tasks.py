"""The task plug-ins: which tasks a run is (by its classes, or named by its data set), which language a report
speaks, and which published rows each language may show."""

from __future__ import annotations

from medseg.config import load_config
from medseg.data.mfish_karyotype import KARYOTYPE_CLASSES
from medseg.evaluation.paper_numbers import reference_rows, rows_from
from medseg.evaluation.report_result import EvaluationResult
from medseg.evaluation.tasks import NEUTRAL, language_flags, language_for, language_of, shown_references, tasks_for


def _names(cfg) -> list[str]:
    return [t.name for t in tasks_for(cfg)]


def test_a_run_is_the_tasks_its_classes_and_its_data_set_name():
    assert _names(load_config(overrides={})) == ["chromosome"]  # synth:demo with the papers' four classes
    membrane = load_config(
        overrides={"task": {"class_names": ["background", "membrane"], "derived": {}, "primary_metric": "membrane"}}
    )
    assert _names(membrane) == []
    karyotype = load_config(
        overrides={"task": {"class_names": list(KARYOTYPE_CLASSES), "derived": {}, "primary_metric": "1"}}
    )
    assert _names(karyotype) == ["karyotype"]
    gi = load_config(
        overrides={
            "task": {
                "mode": "multilabel",
                "class_names": ["large_bowel", "stomach"],
                "derived": {},
                "primary_metric": "stomach",
            },
            "data": {"path": "synth:gi"},
        }
    )
    assert _names(gi) == ["gi"]
    ctv = load_config(
        overrides={
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "spatial_dims": 3,
                "derived": {},
                "primary_metric": "ctv",
            },
            "data": {"path": "synth:phantom", "size": None},
        }
    )
    assert _names(ctv) == ["ctv"]


def test_the_report_speaks_the_chromosome_language_only_for_its_task():
    chromosome = ["background", "chromosome_alpha", "chromosome_beta", "overlap"]
    assert language_of(EvaluationResult("r", chromosome, {}, [])).name == "chromosome"
    assert language_of(EvaluationResult("r", chromosome, {}, [], chromosome=False)) is NEUTRAL
    assert language_of(EvaluationResult("r", ["background", "cell"], {}, [], chromosome=True)).name == "chromosome"
    assert language_of(EvaluationResult("r", ["background", "cell"], {}, [])) is NEUTRAL
    assert language_flags(NEUTRAL) == {"chromosome": False}
    assert language_for({"class_names": chromosome, "mode": "multilabel"}) is NEUTRAL


def test_each_language_shows_no_other_tasks_papers():
    chromosome = language_for({"class_names": ["background", "chromosome_alpha", "chromosome_beta", "overlap"]})
    rows = reference_rows("unet") + rows_from("ctv_thesis", "2.1")
    assert shown_references(chromosome, rows) == rows
    assert shown_references(NEUTRAL, rows) == rows_from("ctv_thesis", "2.1")
