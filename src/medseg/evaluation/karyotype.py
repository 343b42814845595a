"""The karyotype section of ``medseg evaluate``: one class per chromosome, counted per class.

A run whose task has the karyotype's classes (background, 1–22, X, Y:
:func:`medseg.data.mfish_karyotype.is_karyotype_task`, e.g. ``configs/mfish/karyotype_unet.yaml`` on
``mfish:karyotype``) is a per-pixel classifier of chromosome cut-outs.
Beside the pixel metrics every report has, :func:`medseg.evaluation.evaluate.evaluate_run` gives it one
:class:`~medseg.metrics.karyotype.ChromosomeClassAccuracy` per fold and one for the fold ensemble (the mean
probability over folds; with cross-validation, every fold's validation chromosomes pooled), voted by
``evaluate.karyotype_vote`` (``--karyotype-vote``). The report (:mod:`medseg.evaluation.report`) then carries
:func:`karyotype_section` and the 24 × 24 chromosome confusion matrix :func:`karyotype_confusion_figure`.
The task decides, never the model type.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.mfish_karyotype import is_karyotype_task
from medseg.metrics.karyotype import ChromosomeClassAccuracy, class_probabilities

__all__ = [
    "karyotype_class_probabilities",
    "karyotype_confusion_figure",
    "karyotype_metric",
    "karyotype_section",
    "update_in_chunks",
]

_CHUNK = 64  # chromosomes per slice of a (N, 25, 128, 128) probability array


def karyotype_metric(cfg: dict, class_names, vote: str | None = None) -> ChromosomeClassAccuracy | None:
    """A fresh per-chromosome counter for a karyotype task (``vote``: else ``evaluate.karyotype_vote``, else
    soft); None for any other task."""
    task = cfg["task"]
    if task.get("mode", "multiclass") != "multiclass" or not is_karyotype_task(class_names):
        return None
    vote = vote or (cfg.get("evaluate") or {}).get("karyotype_vote") or "soft"
    return ChromosomeClassAccuracy(class_names, background=int(task.get("background") or 0), vote=vote)


def update_in_chunks(
    metric: ChromosomeClassAccuracy, proba_sum: np.ndarray, labels: np.ndarray, divisor: float = 1.0
) -> None:
    """``metric.update(proba_sum / divisor, labels)`` a slice at a time (no second full-size array)."""
    for start in range(0, len(labels), _CHUNK):
        metric.update(proba_sum[start : start + _CHUNK] / divisor, labels[start : start + _CHUNK])


def karyotype_class_probabilities(
    metric: ChromosomeClassAccuracy, proba_sum: np.ndarray, labels: np.ndarray, divisor: float = 1.0
) -> np.ndarray:
    """(N, 24): each chromosome's class probabilities by ``metric``'s vote, a slice at a time."""
    parts = [
        class_probabilities(
            proba_sum[s : s + _CHUNK] / divisor, labels[s : s + _CHUNK], metric.vote, background=metric.background
        )[1]
        for s in range(0, len(labels), _CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, len(metric.classes)))


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}"


def karyotype_section(k: Mapping[str, Any], *, cross_validation: bool = False, n_folds: int = 1) -> list[str]:
    """Markdown lines for the karyotype result ``k`` (:meth:`ChromosomeClassAccuracy.aggregate`)."""
    rule = (
        "the mean softmax probability over its mask pixels, argmax over 1–22, X, Y (soft vote)"
        if k.get("vote") == "soft"
        else "the most frequent pixel class over its mask (majority vote)"
    )
    where = (
        "the validation chromosomes of every fold (cross-validation: each by its own fold's model)"
        if cross_validation
        else "the held-out test chromosomes"
        + (f" (fold ensemble of {n_folds} models: mean probability)" if n_folds > 1 else "")
    )
    per = k.get("per_class") or {}
    counts = ", ".join(f"{name}: {v['n']}" for name, v in per.items())
    absent = [name for name, v in per.items() if not v["n"]]
    L = [
        "## Karyotype: the class of each chromosome",
        "",
        f"Each of {where} gets one class: {rule}. **{k.get('correct')} of {k.get('n')} chromosomes "
        f"classified right: accuracy {_pct(k.get('accuracy'))} %, balanced accuracy (mean over the "
        f"{k.get('n_classes_present')} classes present) {_pct(k.get('balanced_accuracy'))} %.** Chance is "
        f"about {100 / max(1, len(per)):.1f} %.",
        "",
        f"Chromosomes per class (autosomes 1–22, sex chromosomes X, Y): {counts}. A normal cell holds two of each "
        "autosome; a female cell two X, a male cell one X and one Y — **Y appears only in male cells**, so it is "
        "the rarest class and its accuracy rests on few chromosomes"
        + (f" (here {per['Y']['n']})" if "Y" in per else "")
        + "."
        + (f" No chromosome of class {', '.join(absent)} here: no accuracy for it." if absent else ""),
        "",
    ]
    rows = []
    for name, v in per.items():
        confused = f"{v['most_confused_with']} ({v['n_most_confused']})" if v.get("most_confused_with") else "–"
        rows.append(
            f"| {name} | {v['n']} | {v['correct']} | {_pct(v['accuracy'])} | {v['n_predicted']} | "
            f"{_pct(v['precision'])} | {confused} |"
        )
    L += [
        "| class | chromosomes | right | accuracy % | predicted as it | precision % | most often taken for |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    if k.get("mean_confidence_correct") is not None or k.get("mean_confidence_wrong") is not None:
        L += [
            f"Mean confidence (the vote's score): {_pct(k.get('mean_confidence_correct'))} % when right, "
            f"{_pct(k.get('mean_confidence_wrong'))} % when wrong.",
            "",
        ]
    if k.get("confusion_matrix"):
        from medseg.evaluation.karyotype_cells import confused_pairs

        pairs = confused_pairs(k["confusion_matrix"], k["class_names"])
        if pairs:
            L += [
                "Most confused pairs (both directions): "
                + ", ".join(f"{a}↔{b} {p['n']}" for p in pairs for a, b in [p["pair"]])
                + ".",
                "",
            ]
    if k.get("baseline") and k.get("learned"):
        L += _comparison_lines(k["learned"], k["baseline"], k.get("combined"))
    return L


def _quartiles(q) -> str:
    return " / ".join(_pct(v) for v in q) if q else "–"


def _comparison_lines(
    learned: Mapping[str, Any], baseline: Mapping[str, Any], combined: Mapping[str, Any] | None = None
) -> list[str]:
    """The learned model beside the classical baseline (and the two combined), chromosome by chromosome and
    decided per cell."""
    rows = [("learned model (this run)", learned), ("baseline: " + baseline["what"], baseline)]
    if combined:
        rows.append(
            (
                f"learned × baseline: geometric mean, the baseline's weight {combined['weight']:g} chosen on "
                f"{combined['n_validation']} validation chromosomes",
                combined,
            )
        )
    L = [
        "### Beside the classical floor, and decided per cell",
        "",
        f"The baseline is fitted on the {baseline['n_train']} chromosomes the model trained on and scored on the "
        "same held-out chromosomes (its training features are kept in "
        f"`{baseline['file']}`: refitted at load, never pickled). **Per cell**: a cell's chromosomes are assigned "
        "together to the slots of a normal cell (two of each autosome, then XX or XY, whichever fits better; "
        "scipy's linear_sum_assignment over −log p). A chromosome whose slot is more than "
        f"{baseline['ratio']:g}× less likely than its own most probable class keeps its own class and flags its "
        "cell (a trisomy or a lost chromosome is not forced normal); more than 46 chromosomes flags it too. The "
        "set holds the isolated chromosomes only, so a cell here is partial: the slots are upper bounds.",
        "",
        "| classifier | accuracy, one by one % | accuracy, per cell % | cells flagged | cell accuracy min / "
        "Q1 / median / Q3 / max %, one by one | the same, per cell |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows:
        L.append(
            f"| {name} | {_pct(r['accuracy_without'])} | {_pct(r['accuracy_with'])} | {r['n_flagged']} of "
            f"{r['n_cells']} | {_quartiles(r['cell_accuracy_quartiles_without'])} | "
            f"{_quartiles(r['cell_accuracy_quartiles_with'])} |"
        )
    if learned.get("apart") and baseline.get("apart"):
        inside, rest = learned["apart"]["in_rearrangement"], learned["apart"]["rest"]
        b_inside, b_rest = baseline["apart"]["in_rearrangement"], baseline["apart"]["rest"]
        L += [
            "",
            f"**Tumour cells' rearranged chromosomes apart.** {inside['n']} of the {learned['n']} chromosomes belong "
            "to a class that a structural rearrangement of their cell's karyotype names (a translocation, an "
            "insertion, a ring: the folder's `Case Info`, medseg.data.iscn). The label map paints every pixel by the "
            "chromosome its DNA comes from, so such a chromosome may be a piece of one class on another's body, "
            "which no DAPI classifier can name as the label map does. On them the learned model gets "
            f"{_pct(inside['accuracy_without'])} % one by one ({_pct(inside['accuracy_with'])} % per cell), the "
            f"baseline {_pct(b_inside['accuracy_without'])} %; on the other {rest['n']}: "
            f"**{_pct(rest['accuracy_without'])} % one by one, {_pct(rest['accuracy_with'])} % per cell** (baseline "
            f"{_pct(b_rest['accuracy_without'])} / {_pct(b_rest['accuracy_with'])} %).",
        ]
    flagged = [c for c in learned["cells"] if c["flagged"]]
    if flagged:
        L += [
            "",
            "Cells the learned model's assignment flagged: "
            + "; ".join(f"{c['cell']} ({' '.join(c['reasons'])})" for c in flagged[:8])
            + (f"; and {len(flagged) - 8} more" if len(flagged) > 8 else "")
            + ".",
        ]
    return L + [""]


def karyotype_confusion_figure(k: Mapping[str, Any], path: str | Path) -> Path:
    """The chromosome confusion matrix (rows true class, columns predicted; 1–22, X, Y): colour = share of the
    row (%), text = number of chromosomes (blank for 0)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(k["confusion_matrix"], dtype=np.float64)
    names = list(k["class_names"])
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0) * 100
    fig = Figure(figsize=(10.5, 9.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true class's chromosomes")
    for i in range(len(names)):
        for j in range(len(names)):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(m[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if share[i, j] > 60 else "black",
                )
    ax.set_xticks(range(len(names)), labels=names, fontsize=8)
    ax.set_yticks(
        range(len(names)), labels=[f"{n} ({int(r)})" for n, r in zip(names, rows[:, 0], strict=True)], fontsize=8
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (chromosomes)")
    ax.set_title(
        f"chromosome classes: {k.get('correct')} of {k.get('n')} right "
        f"({_pct(k.get('accuracy'))} %, balanced {_pct(k.get('balanced_accuracy'))} %; {k.get('vote')} vote)",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
