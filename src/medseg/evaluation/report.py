"""Evaluation report: ``metrics.json``, figures and a Markdown ``report.md`` comparing a run with the papers.

``write_report`` builds everything in a temporary folder inside ``out_dir`` and then moves the files into
place, figures first and ``report.md`` last, so a crash while drawing or writing leaves either the previous
report or the new one, never a half-written ``report.md`` or one that links to missing figures. A figure
that cannot be drawn is reported in the Markdown (and as a warning) instead of aborting the report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation import figures
from medseg.evaluation.paper_numbers import ACCURACY_DEFINITIONS, ALPHA_BETA_DEFINITIONS, COMPLETE, NON_OVERLAP

__all__ = ["EvaluationResult", "fold_summary", "resolve_headline", "write_report"]

DASH = "—"
HEADLINE_ROLES = ("overlap", "alpha", "beta", "alpha_whole", "beta_whole")


@dataclass
class EvaluationResult:
    """Everything a report shows about one run. Metric values are fractions in [0, 1] (reports show %)."""

    run_name: str
    class_names: list[str]
    metrics: dict  # SegmentationMetrics.aggregate() of the held-out test set (or the mean over folds)
    per_image: list[dict]
    images: np.ndarray | None = None  # (N, H, W) test images for the overlays
    labels: np.ndarray | None = None  # (N, H, W) true label maps
    preds: np.ndarray | None = None  # (N, H, W) predicted label maps
    confusion: np.ndarray | None = None  # (C, C) summed confusion matrix, rows = truth
    fold_values: dict[str, list[float]] = field(default_factory=dict)  # fold -> per-image values (fractions)
    histories: dict[str, list[dict]] = field(default_factory=dict)  # fold -> epoch rows (epoch, train_loss, ...)
    references: list[dict] = field(default_factory=list)  # rows from medseg.evaluation.paper_numbers
    efficiency: dict = field(default_factory=dict)  # {"params", "cpu_ms", "gpu_ms"} (or *_ms_per_image) + extras
    data_note: str = ""  # e.g. "synthesized Pommier-procedure data, not the real set"
    extra: dict = field(default_factory=dict)
    fold_metric: str = "overlap IoU"  # what fold_values hold
    # True: no held-out test set; each fold's model was scored on its own validation fold (cross-validation)
    # and per_image / images / labels / preds / confusion cover the validation cases of every fold.
    cross_validation: bool = False


# ------------------------------------------------------------------------------------------ helpers
def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _pct(x: Any, nd: int = 2) -> str:
    v = _num(x)
    return DASH if v is None else f"{100 * v:.{nd}f}"


def _plain(x: Any, nd: int = 2) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.{nd}f}"


def _published(x: Any, min_decimals: int = 2) -> str:
    """A published number unrounded, padded to ``min_decimals`` (98.1 -> "98.10", 99.9955 stays)."""
    v = _num(x)
    if v is None:
        return DASH
    text = repr(v)
    if "e" in text:
        return f"{v:g}"
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text else 0
    return f"{v:.{max(decimals, min_decimals)}f}"


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, non-finite floats to None, Paths to str."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def fold_summary(fold_values: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float | int | None]]:
    """Per fold: n, mean, sample sd, median, min, max; plus ``"across folds"``: mean and sd of the fold means."""
    out: dict[str, dict[str, float | int | None]] = {}
    means = []
    for fold, values in fold_values.items():
        v = [float(x) for x in values if _num(x) is not None]
        if not v:
            out[fold] = {"n": 0, "mean": None, "sd": None, "median": None, "min": None, "max": None}
            continue
        mean = statistics.fmean(v)
        means.append(mean)
        out[fold] = {
            "n": len(v),
            "mean": mean,
            "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
            "median": statistics.median(v),
            "min": min(v),
            "max": max(v),
        }
    if len(means) > 1:
        out["across folds"] = {
            "n": len(means),
            "mean": statistics.fmean(means),
            "sd": statistics.stdev(means),
            "median": statistics.median(means),
            "min": min(means),
            "max": max(means),
        }
    return out


def resolve_headline(result: EvaluationResult, headline: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Which ``per_class`` entries play the headline roles.

    Roles: ``overlap``, ``alpha``, ``beta`` (non-overlap classes) and ``alpha_whole``, ``beta_whole``
    (complete chromosomes, i.e. derived structures). ``headline`` maps roles to names explicitly; missing
    roles are guessed from the names (``"overlap"``, ``"alpha"``/``"beta"`` among the classes, and among the
    derived structures for the ``_whole`` roles).
    """
    per_class = result.metrics.get("per_class", {})
    classes = [n for n in result.class_names if n in per_class]
    derived = [n for n in per_class if n not in result.class_names]
    roles: dict[str, str | None] = {r: None for r in HEADLINE_ROLES}
    given = dict(headline or {})
    unknown = set(given) - set(HEADLINE_ROLES)
    if unknown:
        raise ValueError(f"unknown headline roles {sorted(unknown)}; use {', '.join(HEADLINE_ROLES)}")
    for role, name in given.items():
        if name not in per_class:
            raise ValueError(f"headline role {role!r} names {name!r}, which is not in the metrics' per_class")
        roles[role] = name

    def guess(pool: list[str], word: str) -> str | None:
        return next((n for n in pool if word in n.lower()), None)

    roles["overlap"] = roles["overlap"] or guess(classes, "overlap")
    roles["alpha"] = roles["alpha"] or guess(classes, "alpha")
    roles["beta"] = roles["beta"] or guess(classes, "beta")
    roles["alpha_whole"] = roles["alpha_whole"] or guess(derived, "alpha")
    roles["beta_whole"] = roles["beta_whole"] or guess(derived, "beta")
    return roles


def _metric(result: EvaluationResult, name: str | None, key: str) -> float | None:
    if name is None:
        return None
    return _num(result.metrics.get("per_class", {}).get(name, {}).get(key))


def _ours_rows(result: EvaluationResult, roles: Mapping[str, str | None]) -> list[dict[str, Any]]:
    m = result.metrics
    mean_iou = _num(m.get("mean", {}).get("iou"))
    overlap = _metric(result, roles["overlap"], "iou")
    non = {"alpha": _metric(result, roles["alpha"], "iou"), "beta": _metric(result, roles["beta"], "iou")}
    whole = {"alpha": _metric(result, roles["alpha_whole"], "iou"), "beta": _metric(result, roles["beta_whole"], "iou")}
    return [
        {
            "label": "**ours** (as RSE-UNet)",
            "overlap_iou": overlap, "alpha_iou": non["alpha"], "beta_iou": non["beta"],
            "accuracy": _num(m.get("foreground_accuracy")), "mean_iou": mean_iou,
            "alpha_beta_definition": NON_OVERLAP, "accuracy_definition": "foreground_accuracy",
        },
        {
            "label": "**ours** (as ARMS Net)",
            "overlap_iou": overlap, "alpha_iou": whole["alpha"], "beta_iou": whole["beta"],
            "accuracy": _num(m.get("derived_accuracy")), "mean_iou": mean_iou,
            "alpha_beta_definition": COMPLETE, "accuracy_definition": "derived_accuracy",
        },
        {
            "label": "**ours** (as AMFL)",
            "overlap_iou": overlap, "alpha_iou": non["alpha"], "beta_iou": non["beta"],
            "accuracy": _num(m.get("pixel_accuracy")), "mean_iou": mean_iou,
            "alpha_beta_definition": NON_OVERLAP, "accuracy_definition": "pixel_accuracy",
        },
    ]


_CPU_KEYS = ("cpu_ms", "cpu_ms_per_image")
_GPU_KEYS = ("gpu_ms", "gpu_ms_per_image")
_AB_SHORT = {NON_OVERLAP: "non-overlap region", COMPLETE: "complete chromosome", None: DASH}
_ACC_SHORT = {
    "foreground_accuracy": "chromosome vs background (RSE Eq. 10)",
    "derived_accuracy": "mean of the 2 complete chromosomes (ARMS)",
    "pixel_accuracy": "4-class pixel accuracy (AMFL Eq. 8)",
    None: DASH,
}


def _scored_on(result: EvaluationResult) -> str:
    """What the numbers were measured on, for titles: "test set" or "validation folds"."""
    return "validation folds" if result.cross_validation else "test set"


def _hd_unit(result: EvaluationResult) -> str:
    """The unit of the Hausdorff distances: "mm" when the metrics had a spacing, else "px" (pixels/voxels)."""
    unit = result.metrics.get("hausdorff_unit")
    if unit is None:
        unit = "px" if result.metrics.get("spacing") is None else "spacing units"
    return str(unit)


def _fold_of(result: EvaluationResult, i: int, sep: str | None = None) -> str:
    """' (fold_k)' (or sep + 'fold_k') for overlay image ``i`` when the per-image rows name folds, else ""."""
    row = result.per_image[i] if 0 <= i < len(result.per_image) else {}
    fold = row.get("fold") if isinstance(row, Mapping) else None
    if fold is None:
        return ""
    return f" ({fold})" if sep is None else f"{sep}{fold}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


# ------------------------------------------------------------------------------------------ figures
def _draw_figures(result: EvaluationResult, fig_dir: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Draw the figures whose inputs are present. Returns ([(file, title, caption)], [problems])."""
    drawn: list[tuple[str, str, str]] = []
    problems: list[str] = []

    def attempt(name: str, title: str, fn, caption_fn) -> None:
        try:
            out = fn(fig_dir / name)
            drawn.append((name, title, caption_fn(out)))
        except Exception as exc:  # a broken figure must not cost the whole report
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            warnings.warn(f"figure {name} not drawn: {exc}", RuntimeWarning, stacklevel=3)

    multilabel = result.labels is not None and result.preds is not None and result.labels.ndim == result.images.ndim + 1 \
        if result.images is not None else False
    if result.images is not None and (multilabel or result.images.ndim == 4) and result.preds is not None:
        # Volumes / multilabel masks: the axial slice with the most target of a few cases.
        imgs, labs, preds, names, where = figures.as_label_slices(result.images, result.labels, result.preds,
                                                                   result.class_names, multilabel)
        pick = list(range(min(3, len(imgs))))
        attempt(
            "overlays.png",
            "Examples: image | ground truth | prediction | errors",
            lambda p: figures.overlay_examples(imgs, labs, preds, names, p, indices=pick),
            lambda idx: ("Validation cases " if result.cross_validation else "Cases ")
            + ", ".join(f"#{i} ({where[i]}{_fold_of(result, i, ', ')})" for i in idx) + " — each at its slice with the most "
            "true foreground. Errors yellow.",
        )
    elif result.images is not None and result.labels is not None and result.preds is not None:
        attempt(
            "overlays.png",
            "Examples: image | ground truth | prediction | errors",
            lambda p: figures.overlay_examples(result.images, result.labels, result.preds, result.class_names, p),
            lambda idx: ("Validation images " if result.cross_validation else "Test images ")
            + ", ".join(f"#{i}{_fold_of(result, i)}" for i in idx)
            + " (small, medium and large true overlap: 10th/50th/90th percentile of overlap area). "
            "Colours: background black, α red, β green, overlap blue; errors yellow.",
        )
    cm = result.confusion
    if cm is None and result.metrics.get("confusion_matrix") is not None:
        cm = np.asarray(result.metrics["confusion_matrix"])
    if cm is not None:
        attempt(
            "confusion_matrix.png",
            f"Confusion matrix ({_scored_on(result)})",
            lambda p: figures.confusion_matrix_figure(cm, result.class_names, p, normalize=True),
            lambda _: "Rows = true class, columns = predicted class, each row as % of its true pixels (AMFL Fig. 5)."
            + (" Summed over the validation cases of every fold." if result.cross_validation else ""),
        )
    if result.fold_values:
        attempt(
            "folds.png",
            f"Per-fold {result.fold_metric}",
            lambda p: figures.fold_boxplot(
                {k: [100 * float(x) for x in v] for k, v in result.fold_values.items()},
                p,
                ylabel=f"{result.fold_metric} (%)",
            ),
            lambda _: f"Per-image {result.fold_metric} of each fold's model on "
            + ("its own validation cases (cross-validation, no held-out test set)." if result.cross_validation
               else "the held-out test images (as ARMS Fig. 6)."),
        )
    if result.histories:
        attempt(
            "training_curves.png",
            "Training curves",
            lambda p: figures.training_curves(result.histories, p),
            lambda _: "Loss (train solid, validation dashed), validation metric and learning rate per epoch.",
        )
    return drawn, problems


# ------------------------------------------------------------------------------------------ markdown
def _markdown(
    result: EvaluationResult,
    roles: Mapping[str, str | None],
    drawn: Sequence[tuple[str, str, str]],
    problems: Sequence[str],
    folds: Mapping[str, Mapping[str, Any]],
) -> str:
    m = result.metrics
    per_class = m.get("per_class", {})
    L: list[str] = [f"# Evaluation report: {result.run_name}", ""]
    if result.data_note:
        L += [f"**{result.data_note}**", ""]
    n = m.get("n_images")
    hd_unit = _hd_unit(result)
    hd_words = {"mm": "in mm", "px": "in pixels, no spacing known"}.get(hd_unit, f"in {hd_unit}")
    if result.cross_validation:
        n_cases = m.get("n_cases", len(result.per_image) or None)
        L += [
            f"**Cross-validation on the validation folds** (no held-out test set): each fold's model is scored on "
            f"its own validation cases, {n_cases if n_cases is not None else DASH} cases over "
            f"{m.get('n_folds', len(result.fold_values)) or DASH} folds. Metric tables show the mean over the folds; "
            "per-image rows, overlays and the confusion matrix cover every fold's validation cases.",
            "",
        ]
    L += [
        f"{result.extra.get('evaluated_on', 'held-out test set').capitalize()}: "
        f"{n if n is not None else DASH} images{' per fold (mean)' if result.cross_validation else ''}; classes: "
        + ", ".join(f"{i} {c}" for i, c in enumerate(result.class_names))
        + f". Values in % (two decimals) except Hausdorff distances ({hd_words}).",
        "",
    ]

    # ---- headline (the chromosome papers' definitions: only for a task with an overlap class)
    if roles.get("overlap") is not None:
        L += ["## Ours vs the papers", ""]
        header = ["row", "overlap IoU", "α IoU", "β IoU", "accuracy", "mean IoU", "α/β IoU is", "accuracy is", "source"]
        rows = []
        for r in _ours_rows(result, roles):
            rows.append(
                [r["label"], _pct(r["overlap_iou"]), _pct(r["alpha_iou"]), _pct(r["beta_iou"]), _pct(r["accuracy"]),
                 _pct(r["mean_iou"]), _AB_SHORT[r["alpha_beta_definition"]], _ACC_SHORT[r["accuracy_definition"]],
                 "this run"]
            )
        headline_refs = [
            ref
            for ref in result.references
            if any(_num(ref.get(k)) is not None for k in ("overlap_iou", "alpha_iou", "beta_iou", "accuracy", "mean_iou"))
        ]
        for ref in headline_refs:
            rows.append(
                [str(ref.get("method", DASH)), _published(ref.get("overlap_iou")), _published(ref.get("alpha_iou")),
                 _published(ref.get("beta_iou")), _published(ref.get("accuracy")), _published(ref.get("mean_iou")),
                 _AB_SHORT.get(ref.get("alpha_beta_definition"), str(ref.get("alpha_beta_definition"))),
                 _ACC_SHORT.get(ref.get("accuracy_definition"), str(ref.get("accuracy_definition"))),
                 str(ref.get("source", DASH))]
            )
        L += _table(header, rows)
        L += [
            "",
            "Our three rows are the same predictions scored with each paper's definitions: α/β IoU of the "
            f"non-overlap regions ({ALPHA_BETA_DEFINITIONS[NON_OVERLAP]}) or of the complete chromosomes "
            f"({ALPHA_BETA_DEFINITIONS[COMPLETE]}); accuracy as {ACCURACY_DEFINITIONS['foreground_accuracy']}, "
            f"{ACCURACY_DEFINITIONS['derived_accuracy']}, or {ACCURACY_DEFINITIONS['pixel_accuracy']}. "
            "Ours are means over "
            + ("each fold's validation images, then over the folds" if result.cross_validation else "test images")
            + "; mean IoU is over the non-background classes (AMFL does not say which "
            "classes its average covers). Published numbers are shown unrounded, as the papers print them.",
        ]
        if not headline_refs:
            L += ["", "_No reference rows were given for this run._"]
        notes = [f"{ref.get('source')}, {ref.get('method')}: {ref['note']}" for ref in headline_refs if ref.get("note")]
        if notes:
            L += ["", "Notes on the published rows:", ""] + [f"- {t}" for t in notes]
        missing = [r for r, v in roles.items() if v is None]
        if missing:
            L += ["", f"_Not available in these metrics: {', '.join(missing)} (shown as {DASH})._"]
        L.append("")

    # ---- per-class table
    L += [f"## Per-class metrics ({_scored_on(result)})", ""]
    has_hd = any("hausdorff" in v for v in per_class.values())
    header = ["structure", "IoU", "Dice", "precision", "recall", "FNR", "FPR", f"Hausdorff ({hd_unit})", "pooled IoU",
              "pooled Dice", "images with it"]
    rows = []
    for name, v in per_class.items():
        label = name if "members" not in v else f"{name} (= {' + '.join(v['members'])})"
        rows.append(
            [label, _pct(v.get("iou")), _pct(v.get("dice")), _pct(v.get("precision")), _pct(v.get("recall")),
             _pct(v.get("fnr")), _pct(v.get("fpr"), 4), _plain(v.get("hausdorff"), 3) if has_hd else DASH,
             _pct(v.get("iou_pooled")), _pct(v.get("dice_pooled")), str(v.get("n_images_present", DASH))]
        )
    mean = m.get("mean", {})
    if mean:
        rows.append(
            ["**mean** (" + ", ".join(m.get("mean_over", [])) + ")", _pct(mean.get("iou")), _pct(mean.get("dice")),
             _pct(mean.get("precision")), _pct(mean.get("recall")), _pct(mean.get("fnr")), _pct(mean.get("fpr"), 4),
             _plain(mean.get("hausdorff"), 3) if has_hd else DASH, _pct(mean.get("iou_pooled")),
             _pct(mean.get("dice_pooled")), DASH]
        )
    L += _table(header, rows)
    hd_kind = m.get("hausdorff_points", "all")
    L += [
        "",
        ("Means over each fold's validation images, then over the folds; pooled = from the confusion counts summed "
         "over a fold's images (then averaged over the folds). " if result.cross_validation else
         "Means over images; pooled = from the confusion counts summed over all images. ")
        + "FPR with four decimals. "
        f"Hausdorff over {'all points of the sets (AMFL Eq. 15)' if hd_kind == 'all' else 'surface points'}"
        + (f", {m['hausdorff_percentile']}th percentile" if m.get("hausdorff_percentile") is not None else "")
        + f", in {'mm on the scored grid' if hd_unit == 'mm' else hd_words.removeprefix('in ')}"
        + ". An empty truth or prediction scores 1 (Hausdorff 0) when both are empty and the worst value "
        "(0, or the image diagonal) when only one is, so misses count in every mean.",
        "",
        "Accuracies: "
        + "; ".join(
            f"{label} {_pct(m.get(key))}"
            for key, label in (
                ("pixel_accuracy", "pixel accuracy (AMFL Eq. 8)"),
                ("foreground_accuracy", "chromosome vs background (RSE Eq. 10)"),
                ("derived_accuracy", "mean over derived structures (ARMS)"),
            )
            if key in m
        )
        + ".",
        "",
    ]

    # ---- efficiency
    eff_keys = ("params", "time_ms", "time_ms_cpu")
    eff_refs = [r for r in result.references if any(_num(r.get(k)) is not None for k in eff_keys)]
    if result.efficiency or eff_refs:
        L += ["## Efficiency", ""]
        e = result.efficiency
        cpu_key = next((k for k in _CPU_KEYS if k in e), None)
        gpu_key = next((k for k in _GPU_KEYS if k in e), None)
        rows = []
        if e:
            params = _num(e.get("params"))
            rows.append(
                ["**ours**", DASH if params is None else f"{params / 1e6:.2f}M", _plain(e.get(cpu_key)),
                 _plain(e.get(gpu_key)), "this run"]
            )
        for r in eff_refs:
            params = _num(r.get("params"))
            rows.append(
                [str(r.get("method")), DASH if params is None else f"{params / 1e6:.2f}M",
                 _published(r.get("time_ms_cpu"), 0), _published(r.get("time_ms"), 0),
                 f"{r.get('source')}; {r.get('time_device') or 'device not stated'}"]
            )
        L += _table(["model", "params", "CPU ms / image", "GPU ms / image", "source"], rows)
        others = {k: v for k, v in e.items() if k not in ("params", cpu_key, gpu_key)}
        if others:
            L += [""] + [f"- {k}: {v}" for k, v in others.items()]
        L.append("")

    # ---- folds
    if folds:
        L += [f"## Per-fold summary ({result.fold_metric}, %)", ""]
        rows = []
        for fold, s in folds.items():
            mean_sd = DASH if s["mean"] is None else f"{_pct(s['mean'])} ± {_pct(s['sd'])}"
            rows.append([fold, str(s["n"]), mean_sd, _pct(s["median"]), _pct(s["min"]), _pct(s["max"])])
        L += _table(["fold", "n", "mean ± sd", "median", "min", "max"], rows)
        L += ["", "sd is the sample standard deviation; 'across folds' summarises the fold means.", ""]

    # ---- figures
    if drawn or problems:
        L += ["## Figures", ""]
        for file, title, caption in drawn:
            L += [f"### {title}", "", f"![{title}](figures/{file})", "", caption, ""]
        for p in problems:
            L += [f"- figure not drawn: {p}"]
        if problems:
            L.append("")

    if result.extra:
        L += ["## Run details", ""] + [f"- {k}: {json.dumps(_jsonable(v))}" for k, v in result.extra.items()] + [""]
    return "\n".join(L).rstrip() + "\n"


# ------------------------------------------------------------------------------------------ entry point
def write_report(out_dir: Path, result: EvaluationResult, *, headline: dict[str, str] | None = None) -> Path:
    """Write ``metrics.json``, ``figures/*.png`` and ``report.md`` into ``out_dir``; returns the report path.

    ``headline`` maps the roles ``overlap``, ``alpha``, ``beta``, ``alpha_whole``, ``beta_whole`` to names in
    ``result.metrics["per_class"]`` (guessed from the names when not given).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    roles = resolve_headline(result, headline)
    folds = fold_summary(result.fold_values) if result.fold_values else {}
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=out_dir))
    try:
        fig_tmp = tmp / "figures"
        fig_tmp.mkdir()
        drawn, problems = _draw_figures(result, fig_tmp)
        payload = _jsonable(
            {
                "run_name": result.run_name,
                "class_names": list(result.class_names),
                "data_note": result.data_note,
                "headline_roles": roles,
                "metrics": result.metrics,
                "per_image": result.per_image,
                "efficiency": result.efficiency,
                "fold_metric": result.fold_metric,
                "fold_summary": folds,
                "references": result.references,
                "figures": [f"figures/{name}" for name, _, _ in drawn],
                "extra": result.extra,
            }
        )
        (tmp / "metrics.json").write_text(json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        (tmp / "report.md").write_text(_markdown(result, roles, drawn, problems, folds), encoding="utf-8")
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
