"""``report.md``: the report's Markdown, section by section, in the task's own terms: its language's (a task
plug-in of :mod:`medseg.evaluation.tasks`, e.g. the chromosome papers' sections) or the neutral per-class
report, with every task's sections on its own scores."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from medseg.evaluation.report_chromosome import headline_section
from medseg.evaluation.report_format import DASH, jsonable, num, pct, plain, published, table
from medseg.evaluation.report_result import EvaluationResult, hd_unit_of, scored_classes, scored_on
from medseg.evaluation.tasks import TASKS, Task, shown_references

_MAX_CLASS_COLUMNS = 8  # the cases table names each class's Dice up to this many scored classes
_CPU_KEYS = ("cpu_ms", "cpu_ms_per_image")
_GPU_KEYS = ("gpu_ms", "gpu_ms_per_image")


def _classes_line(result: EvaluationResult, language: Task, hd_words: str) -> str:
    m = result.metrics
    n = m.get("n_images")
    head = (
        f"{result.extra.get('evaluated_on', 'held-out test set').capitalize()}: "
        f"{n if n is not None else DASH} {language.case_unit}"
        f"{' per fold (mean)' if result.cross_validation else ''}; "
    )
    tail = f". Values in % (two decimals) except Hausdorff distances ({hd_words})."
    own = language.classes_text(result)
    if own is not None:
        return head + own + tail
    if result.mode == "multilabel":
        return (
            head
            + "structures (multi-label channels, each scored on its own): "
            + ", ".join(f"{i} {c}" for i, c in enumerate(result.class_names))
            + tail
        )
    bg = result.background
    scored = set(scored_classes(result))
    names = [
        f"{i} {c}" + (" (background, not scored)" if i == bg and c not in scored else "")
        for i, c in enumerate(result.class_names)
    ]
    scope = "every class scored (no background class)" if bg is None else "scored: " + ", ".join(scored_classes(result))
    return head + "classes: " + ", ".join(names) + f"; {scope}" + tail


def _class_table(result: EvaluationResult, hd_unit: str, hd_words: str) -> list[str]:
    """Any other task: Dice, IoU, precision, recall and Hausdorff of every scored class (then the derived
    structures and the mean over the scored classes)."""
    m = result.metrics
    per_class = m.get("per_class", {})
    scored = scored_classes(result)
    derived = [n for n, v in per_class.items() if isinstance(v, Mapping) and "members" in v]
    has_hd = any("hausdorff" in v for v in per_class.values())
    L = [f"## Per-class metrics ({scored_on(result)})", ""]
    header = [
        "class",
        "Dice",
        "IoU",
        "precision",
        "recall",
        f"Hausdorff ({hd_unit})",
        "pooled Dice",
        "pooled IoU",
        "cases with it",
    ]

    def cells(label: str, v: Mapping[str, Any], present: str) -> list[str]:
        return [
            label,
            pct(v.get("dice")),
            pct(v.get("iou")),
            pct(v.get("precision")),
            pct(v.get("recall")),
            plain(v.get("hausdorff"), 3) if has_hd else DASH,
            pct(v.get("dice_pooled")),
            pct(v.get("iou_pooled")),
            present,
        ]

    rows = [
        cells(name, per_class.get(name, {}), str(per_class.get(name, {}).get("n_images_present", DASH)))
        for name in scored
    ]
    rows += [
        cells(
            f"{name} (= {' + '.join(per_class[name]['members'])})",
            per_class[name],
            str(per_class[name].get("n_images_present", DASH)),
        )
        for name in derived
    ]
    mean = m.get("mean", {})
    if mean:
        rows.append(cells(f"**mean** ({', '.join(m.get('mean_over', scored))})", mean, DASH))
    L += table(header, rows)
    hd_kind = m.get("hausdorff_points", "all")
    bg = result.background
    L += [
        "",
        (
            "Means over each fold's validation cases, then over the folds; pooled = from the confusion counts summed "
            "over a fold's cases (then averaged over the folds). "
            if result.cross_validation
            else "Means over cases; pooled = from the confusion counts summed over all cases. "
        )
        + (
            "Every class is scored (no background class). "
            if bg is None and result.mode == "multiclass"
            else ""
            if bg is None
            else f"Class {bg} ({result.class_names[bg]}) is the background and is not scored. "
        )
        + f"Hausdorff distance over {'all points of the two sets' if hd_kind == 'all' else 'the boundary points'}"
        + (f", {m['hausdorff_percentile']}th percentile" if m.get("hausdorff_percentile") is not None else "")
        + f", in {'mm on the scored grid' if hd_unit == 'mm' else hd_words.removeprefix('in ')}"
        + ". An empty truth or prediction scores 1 (Hausdorff 0) when both are empty and the worst value "
        "(0, or the image diagonal) when only one is, so misses count in every mean.",
        "",
    ]
    accuracies = [
        (key, label)
        for key, label in (
            ("pixel_accuracy", "pixel accuracy" + (" (every channel right)" if result.mode == "multilabel" else "")),
            ("foreground_accuracy", "foreground vs background"),
            ("derived_accuracy", "mean over the derived structures"),
        )
        if key in m
    ]
    if accuracies:
        L += ["Accuracies: " + "; ".join(f"{label} {pct(m.get(key))}" for key, label in accuracies) + ".", ""]
    return L


def _cases_section(result: EvaluationResult, cases: Mapping[str, Any]) -> list[str]:
    scored = scored_classes(result)
    per_class = len(scored) <= _MAX_CLASS_COLUMNS
    folds = any("fold" in e for e in [*cases["worst"], *cases["best"]])
    header = [
        "",
        "case",
        *(["fold"] if folds else []),
        "mean Dice",
        *([f"{c} Dice" for c in scored] if per_class else ["lowest class Dice"]),
    ]
    rows = []
    for kind in ("worst", "best"):
        for k, e in enumerate(cases[kind], start=1):
            if per_class:
                detail = [pct(e["dice"].get(c)) for c in scored]
            else:
                known = {c: v for c, v in e["dice"].items() if v is not None}
                low = min(known, key=known.get) if known else None
                detail = [DASH if low is None else f"{low} {pct(known[low])}"]
            rows.append(
                [f"{kind} {k}", e["case"], *([str(e.get("fold", DASH))] if folds else []), pct(e["mean_dice"]), *detail]
            )
    L = [f"## Worst and best cases ({scored_on(result)})", ""]
    L += table(header, rows)
    drawn = result.images is not None and result.labels is not None and result.preds is not None
    L += [
        "",
        f"Ranked by {cases['score']} (each case's own mean)." + (" Their overlays are under Figures." if drawn else ""),
        "",
    ]
    return L


def _references_section(result: EvaluationResult, refs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Published Dice of the task's own paper (e.g. the CTV thesis), beside our mean Dice."""
    with_dice = [r for r in refs if num(r.get("dice")) is not None]
    if not with_dice:
        return []
    mean_dice = num(result.metrics.get("mean", {}).get("dice"))
    rows = [["**ours**", pct(mean_dice), "this run", DASH]]
    rows += [
        [str(r.get("method", DASH)), published(r.get("dice")), str(r.get("source", DASH)), str(r.get("note") or DASH)]
        for r in with_dice
    ]
    L = ["## Published numbers", ""]
    L += table(["row", "Dice", "source", "note"], rows)
    L += [
        "",
        "Ours: mean Dice over " + ", ".join(scored_classes(result)) + ". Published numbers are the paper's, "
        "on its own data, shown unrounded: a scale for ours, not a like-for-like comparison.",
        "",
    ]
    return L


def _intro(result: EvaluationResult, language: Task, hd_words: str) -> list[str]:
    """The title, the data note, what was scored (cross-validation or a test set) and the classes."""
    m = result.metrics
    L: list[str] = [f"# Evaluation report: {result.run_name}", ""]
    if result.data_note:
        L += [f"**{result.data_note}**", ""]
    if result.cross_validation:
        n_cases = m.get("n_cases", len(result.per_image) or None)
        L += [
            f"**Cross-validation on the validation folds** (no held-out test set): each fold's model is scored on "
            f"its own validation cases, {n_cases if n_cases is not None else DASH} cases over "
            f"{m.get('n_folds', len(result.fold_values)) or DASH} folds. Metric tables show the mean over the folds; "
            "per-image rows, overlays and the confusion matrix cover every fold's validation cases.",
            "",
        ]
    return L + [_classes_line(result, language, hd_words), ""]


def _efficiency_section(result: EvaluationResult, refs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Our parameters and inference times beside the published ones (where a paper gives them)."""
    eff_keys = ("params", "time_ms", "time_ms_cpu")
    eff_refs = [r for r in refs if any(num(r.get(k)) is not None for k in eff_keys)]
    if not (result.efficiency or eff_refs):
        return []
    L = ["## Efficiency", ""]
    e = result.efficiency
    cpu_key = next((k for k in _CPU_KEYS if k in e), None)
    gpu_key = next((k for k in _GPU_KEYS if k in e), None)
    rows = []
    if e:
        params = num(e.get("params"))
        rows.append(
            [
                "**ours**",
                DASH if params is None else f"{params / 1e6:.2f}M",
                plain(e.get(cpu_key)),
                plain(e.get(gpu_key)),
                "this run",
            ]
        )
    for r in eff_refs:
        params = num(r.get("params"))
        rows.append(
            [
                str(r.get("method")),
                DASH if params is None else f"{params / 1e6:.2f}M",
                published(r.get("time_ms_cpu"), 0),
                published(r.get("time_ms"), 0),
                f"{r.get('source')}; {r.get('time_device') or 'device not stated'}",
            ]
        )
    L += table(["model", "params", "CPU ms / image", "GPU ms / image", "source"], rows)
    others = {k: v for k, v in e.items() if k not in ("params", cpu_key, gpu_key)}
    if others:
        L += [""] + [f"- {k}: {v}" for k, v in others.items()]
    L.append("")
    return L


def _folds_section(result: EvaluationResult, folds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not folds:
        return []
    L = [f"## Per-fold summary ({result.fold_label}, %)", ""]
    rows = []
    for fold, s in folds.items():
        mean_sd = DASH if s["mean"] is None else f"{pct(s['mean'])} ± {pct(s['sd'])}"
        rows.append([fold, str(s["n"]), mean_sd, pct(s["median"]), pct(s["min"]), pct(s["max"])])
    L += table(["fold", "n", "mean ± sd", "median", "min", "max"], rows)
    L += ["", "sd is the sample standard deviation; 'across folds' summarises the fold means.", ""]
    return L


def _figures_section(drawn: Sequence[tuple[str, str, str]], problems: Sequence[str]) -> list[str]:
    """Each figure drawn with its caption; each one that could not be drawn named with the reason."""
    if not (drawn or problems):
        return []
    L = ["## Figures", ""]
    for file, title, caption in drawn:
        L += [f"### {title}", "", f"![{title}](figures/{file})", "", caption, ""]
    for p in problems:
        L += [f"- figure not drawn: {p}"]
    if problems:
        L.append("")
    return L


def markdown(
    result: EvaluationResult,
    language: Task,
    roles: Mapping[str, str | None] | None,
    drawn: Sequence[tuple[str, str, str]],
    problems: Sequence[str],
    folds: Mapping[str, Mapping[str, Any]],
    cases: Mapping[str, Any] | None = None,
) -> str:
    """The whole ``report.md``, in ``language`` (the task whose language it speaks)."""
    refs = shown_references(language, list(result.references))
    hd_unit = hd_unit_of(result)
    hd_words = {"mm": "in mm", "px": "in pixels, no spacing known"}.get(hd_unit, f"in {hd_unit}")
    L = _intro(result, language, hd_words)

    # ---- headline (the chromosome papers' definitions: in their task's language, or when asked for)
    if roles is not None and roles.get("overlap") is not None:
        L += headline_section(result, roles)
    for task in TASKS:  # each task's own scores (the competition score, the karyotype)
        L += task.sections(result)

    # ---- per-class table, cases, published numbers: the language's own, else the neutral ones
    own = language.class_sections(result, hd_unit, hd_words)
    if own is not None:
        L += own
    else:
        L += _class_table(result, hd_unit, hd_words)
        if cases is not None:
            L += _cases_section(result, cases)
        L += _references_section(result, refs)

    L += _efficiency_section(result, refs)
    L += _folds_section(result, folds)
    L += _figures_section(drawn, problems)
    if result.extra:
        L += ["## Run details", ""] + [f"- {k}: {json.dumps(jsonable(v))}" for k, v in result.extra.items()] + [""]
    return "\n".join(L).rstrip() + "\n"
