"""The karyotype section of ``medseg evaluate`` (issue 14, part 6): one class per chromosome, counted per class.

A run whose task has the karyotype's classes (background, 1–22, X, Y: :func:`medseg.data.mfish_karyotype.is_karyotype_task`,
e.g. ``configs/mfish/karyotype_unet.yaml`` on ``mfish:karyotype``) is a per-pixel classifier of chromosome cut-outs.
Beside the pixel metrics every report has, :func:`medseg.evaluation.evaluate.evaluate_run` gives it one
:class:`~medseg.metrics.karyotype.ChromosomeClassAccuracy` per fold and one for the fold ensemble (the mean
probability over folds; with cross-validation, every fold's validation chromosomes pooled), voted by
``evaluate.karyotype_vote`` (``--karyotype-vote``). The report (:mod:`medseg.evaluation.report`) then carries
:func:`karyotype_section` and the 24 × 24 chromosome confusion matrix :func:`karyotype_confusion_figure`.
The task decides, never the model type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medseg.data.mfish_karyotype import is_karyotype_task
from medseg.metrics.karyotype import ChromosomeClassAccuracy

__all__ = ["karyotype_confusion_figure", "karyotype_metric", "karyotype_section", "update_in_chunks"]

_CHUNK = 64  # chromosomes per slice of a (N, 25, 128, 128) probability array


def karyotype_metric(cfg: dict, class_names, vote: str | None = None) -> ChromosomeClassAccuracy | None:
    """A fresh per-chromosome counter for a karyotype task (``vote``: else ``evaluate.karyotype_vote``, else
    soft); None for any other task."""
    task = cfg["task"]
    if task.get("mode", "multiclass") != "multiclass" or not is_karyotype_task(class_names):
        return None
    vote = vote or (cfg.get("evaluate") or {}).get("karyotype_vote") or "soft"
    return ChromosomeClassAccuracy(class_names, background=int(task.get("background") or 0), vote=vote)


def update_in_chunks(metric: ChromosomeClassAccuracy, proba_sum: np.ndarray, labels: np.ndarray,
                     divisor: float = 1.0) -> None:
    """``metric.update(proba_sum / divisor, labels)`` a slice at a time (no second full-size array)."""
    for start in range(0, len(labels), _CHUNK):
        metric.update(proba_sum[start:start + _CHUNK] / divisor, labels[start:start + _CHUNK])


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}"


def karyotype_section(k: Mapping[str, Any], *, cross_validation: bool = False, n_folds: int = 1) -> list[str]:
    """Markdown lines for the karyotype result ``k`` (:meth:`ChromosomeClassAccuracy.aggregate`)."""
    rule = ("the mean softmax probability over its mask pixels, argmax over 1–22, X, Y (soft vote)"
            if k.get("vote") == "soft" else "the most frequent pixel class over its mask (majority vote)")
    where = ("the validation chromosomes of every fold (cross-validation: each by its own fold's model)"
             if cross_validation else "the held-out test chromosomes"
             + (f" (fold ensemble of {n_folds} models: mean probability)" if n_folds > 1 else ""))
    per = k.get("per_class") or {}
    counts = ", ".join(f"{name}: {v['n']}" for name, v in per.items())
    absent = [name for name, v in per.items() if not v["n"]]
    L = ["## Karyotype: the class of each chromosome", "",
         f"Each of {where} gets one class: {rule}. **{k.get('correct')} of {k.get('n')} chromosomes "
         f"classified right: accuracy {_pct(k.get('accuracy'))} %, balanced accuracy (mean over the "
         f"{k.get('n_classes_present')} classes present) {_pct(k.get('balanced_accuracy'))} %.** Chance is "
         f"about {100 / max(1, len(per)):.1f} %.", "",
         f"Chromosomes per class (autosomes 1–22, sex chromosomes X, Y): {counts}. A normal cell holds two of each "
         "autosome; a female cell two X, a male cell one X and one Y — **Y appears only in male cells**, so it is "
         "the rarest class and its accuracy rests on few chromosomes"
         + (f" (here {per['Y']['n']})" if "Y" in per else "") + "."
         + (f" No chromosome of class {', '.join(absent)} here: no accuracy for it." if absent else ""), ""]
    rows = []
    for name, v in per.items():
        confused = (f"{v['most_confused_with']} ({v['n_most_confused']})" if v.get("most_confused_with") else "–")
        rows.append(f"| {name} | {v['n']} | {v['correct']} | {_pct(v['accuracy'])} | {v['n_predicted']} | "
                    f"{_pct(v['precision'])} | {confused} |")
    L += ["| class | chromosomes | right | accuracy % | predicted as it | precision % | most often taken for |",
          "| --- | --- | --- | --- | --- | --- | --- |", *rows, ""]
    if k.get("mean_confidence_correct") is not None or k.get("mean_confidence_wrong") is not None:
        L += [f"Mean confidence (the vote's score): {_pct(k.get('mean_confidence_correct'))} % when right, "
              f"{_pct(k.get('mean_confidence_wrong'))} % when wrong.", ""]
    return L


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
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=6.5,
                        color="white" if share[i, j] > 60 else "black")
    ax.set_xticks(range(len(names)), labels=names, fontsize=8)
    ax.set_yticks(range(len(names)), labels=[f"{n} ({int(r)})" for n, r in zip(names, rows[:, 0])], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (chromosomes)")
    ax.set_title(f"chromosome classes: {k.get('correct')} of {k.get('n')} right "
                 f"({_pct(k.get('accuracy'))} %, balanced {_pct(k.get('balanced_accuracy'))} %; {k.get('vote')} vote)",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
