"""The UW-Madison GI-tract task: the data sets of the competition's folders name it
(:attr:`medseg.data.registry.DataSet.task`), and it adds the competition score, scan by scan at the slices'
own size (:mod:`medseg.evaluation.competition`), to the metrics and to the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medseg.evaluation.competition import competition_score
from medseg.evaluation.report_format import plain, table
from medseg.evaluation.report_result import EvaluationResult
from medseg.evaluation.tasks.base import Task


def competition_section(m: Mapping[str, Any]) -> list[str]:
    """The UW-Madison GI-tract competition score (medseg.evaluation.competition): per scan at the slices' own
    size, under the competition's and the paper's rule for two empty masks; per fold and the fold mean."""
    c = m["competition"]
    other = c.get("other_convention") or {}
    L = [
        "## UW-Madison competition score (per scan, at the original slice size)",
        "",
        "0.4 × Dice (mean over every slice × organ image) + 0.6 × (1 − 3D Hausdorff / volume diagonal), each "
        "slice one unit deep, averaged over scans"
        + (f" ({c.get('n_scans')} scans" if c.get("n_scans") else "")
        + (", mean over folds)." if m.get("n_folds", 1) > 1 else ")."),
        "",
    ]
    rows = [
        [
            "**all organs**",
            plain(c.get("uw_score"), 4),
            plain(c.get("dice"), 4),
            plain(c.get("hausdorff_score"), 4),
            plain(other.get("uw_score"), 4),
            plain(other.get("dice"), 4),
        ]
    ]
    for organ, v in (c.get("per_organ") or {}).items():
        o = (other.get("per_organ") or {}).get(organ, {})
        rows.append(
            [
                organ,
                plain(v.get("uw_score"), 4),
                plain(v.get("dice"), 4),
                plain(v.get("hausdorff_score"), 4),
                plain(o.get("uw_score"), 4),
                plain(o.get("dice"), 4),
            ]
        )
    L += table(["", "uw_score", "dice", "hausdorff_score", "uw_score (empty Dice 0)", "dice (empty Dice 0)"], rows)
    L += [
        "",
        "Both masks empty: Dice 1 under the competition's rule (first columns), 0 under the paper's written "
        "definition (last columns); the Hausdorff score is 1 either way.",
        "",
    ]
    per_fold = [f for f in m.get("per_fold") or [] if isinstance(f.get("competition"), Mapping)]
    if len(per_fold) > 1:
        L += table(
            ["fold", "scans", "uw_score", "dice", "hausdorff_score", "uw_score (empty Dice 0)"],
            [
                [
                    str(f.get("fold")),
                    str(f["competition"].get("n_scans")),
                    plain(f["competition"].get("uw_score"), 4),
                    plain(f["competition"].get("dice"), 4),
                    plain(f["competition"].get("hausdorff_score"), 4),
                    plain((f["competition"].get("other_convention") or {}).get("uw_score"), 4),
                ]
                for f in per_fold
            ],
        )
        L += [""]
    return L


class GI(Task):
    """The competition score per fold, every fold's scans kept, and its section."""

    name = "gi"

    def fold_scores(self, cfg, data, idx, proba, pred, labels) -> dict:
        return {"competition": competition_score(data, idx, proba, list(cfg["task"]["class_names"]))}

    def summarise(self, summary: dict, fold_aggs: list[dict]) -> None:
        if "competition" in summary:  # each fold scores its own scans: keep them all, not a mean over names
            summary["competition"]["per_scan"] = {
                scan: v for agg in fold_aggs for scan, v in agg["competition"]["per_scan"].items()
            }

    def sections(self, result: EvaluationResult) -> list[str]:
        return competition_section(result.metrics) if isinstance(result.metrics.get("competition"), Mapping) else []
