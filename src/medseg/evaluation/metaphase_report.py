"""The report of ``medseg evaluate-metaphases`` (:func:`medseg.evaluation.instances.evaluate_metaphases`):
``report.md`` from its metrics and the per-metaphase bar figure. Formatting only; every number comes from the
metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medseg.data.mfish import near_duplicates_text

__all__ = ["per_metaphase_figure", "report_markdown"]


def per_metaphase_figure(rows: list[dict], path: Path) -> None:
    """``per_metaphase.png``: each metaphase's instance precision, recall and overlap IoU as bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.35 * len(rows) + 2), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    for k, (key, label) in enumerate(
        (("precision", "precision"), ("recall", "recall"), ("overlap_iou", "overlap IoU"))
    ):
        ax.bar(x + (k - 1) * 0.27, [r[key] if r[key] == r[key] else 0 for r in rows], 0.27, label=label)
    ax.set_xticks(x, [r["metaphase"].split("__")[-1] for r in rows], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("instance precision / recall (IoU ≥ 0.5), overlap IoU")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.1f}"


def _twice_lines(metrics: dict) -> list[str]:
    """The report's paragraph on metaphases published twice (none: no line)."""
    once = metrics.get("pooled_each_metaphase_once")
    if not once:
        return []
    return [
        f"Published twice (one metaphase, two images: {near_duplicates_text(metrics['near_duplicates'])}); "
        f"with each counted once: {once['n_true']} true, "
        f"precision {_pct(once['precision'])} %, recall {_pct(once['recall'])} %, F1 {_pct(once['f1'])} %, "
        f"{once['split']} splits, {once['merge']} merges.",
        "",
    ]


def report_markdown(metrics: dict) -> str:
    """``report.md`` of a ``metrics.json``: pooled, statuses, per slide and system, per metaphase, the figures."""
    p = metrics["pooled"]
    lines = [
        f"# Chromosome instances on whole metaphases — {metrics['data']}",
        "",
        (
            f"Baseline `{metrics['baseline']}` (no model)"
            if metrics["baseline"]
            else f"Semantic model `{metrics['model']}`"
        )
        + f", pair model `{metrics['pair_model']}`; {metrics['n_metaphases']} "
        f"metaphases of slides {', '.join(metrics['slides'])} ({metrics['slides_rule']}). Instances match at "
        f"IoU ≥ {metrics['iou_threshold']} ({metrics['matching']}). Split: {metrics['definitions']['split']}; "
        f"merge: {metrics['definitions']['merge']}. True instances: {metrics['definitions']['true_instances']}.",
        "",
        "## Pooled",
        "",
        "| true | predicted | TP | FP | FN | precision % | recall % | F1 % | splits | merges | overlap IoU % | "
        "chromosome IoU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {p['n_true']} | {p['n_pred']} | {p['tp']} | {p['fp']} | {p['fn']} | {_pct(p['precision'])} | "
        f"{_pct(p['recall'])} | {_pct(p['f1'])} | {p['split']} | {p['merge']} | {_pct(p['overlap_iou'])} | "
        f"{_pct(p['chromosome_iou'])} |",
        "",
        f"Mean F1 per metaphase {_pct(p['mean_f1_per_metaphase'])} %. Separation: "
        + ", ".join(f"{k} {v}" for k, v in metrics["separation"].items())
        + ".",
        "",
        *_twice_lines(metrics),
        "Objects left out as no chromosome (rule: left out / of them true chromosomes): "
        + (
            ", ".join(f"{k} {v['removed']} / {v['true_chromosomes']}" for k, v in metrics["debris_removed"].items())
            or "none"
        )
        + f". Seconds a metaphase: {metrics['seconds_per_metaphase']}.",
        "",
        "## Statuses against the label maps",
        "",
        "How often each object's status (the page's and predict's: single, crossing, clump, doubtful) is right; "
        "estimated: the chromosomes the headline counts for these objects, held: those they hold (>= 50 % of "
        "each).",
        "",
        "| status | objects | right | right % | estimated | held | right when |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {a['n']} | {a['right']} | {_pct(a['accuracy'])} | {a['estimated']} | {a['held']} | "
            f"{a['rule']} |"
            for name, a in metrics["status_accuracy"].items()
        ],
        "",
        "## Per slide and per imaging system",
        "",
        "| slide / system | metaphases | true | TP | P % | R % | F1 % | lowest F1 % | splits | merges |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {g['n_metaphases']} | {g['n_true']} | {g['tp']} | {_pct(g['precision'])} | "
            f"{_pct(g['recall'])} | {_pct(g['f1'])} | {_pct(g['lowest_f1'])} | {g['split']} | {g['merge']} |"
            for name, g in [*metrics["per_slide"].items(), *metrics["per_system"].items()]
        ],
        "",
        "## Per metaphase",
        "",
        "| metaphase | true | pred | TP | FP | FN | P % | R % | F1 % | splits | merges | overlap IoU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in metrics["per_metaphase"]:
        lines.append(
            f"| {r['metaphase']} | {r['n_true']} | {r['n_pred']} | {r['tp']} | {r['fp']} | {r['fn']} | "
            f"{_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} | {r['split']} | {r['merge']} | "
            f"{_pct(r['overlap_iou'])} |"
        )
    lines += [
        "",
        "![per metaphase](per_metaphase.png)",
        "",
        "![lowest F1](instances_lowest_f1.png)",
        "",
        "Derived from the M-FISH Image Set #1; its licence notice is in README.TXT beside this report.",
        "",
    ]
    return "\n".join(lines)
