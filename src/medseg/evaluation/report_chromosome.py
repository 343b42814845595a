"""The chromosome task's sections of the report: our rows in each overlapping-chromosome paper's definitions
beside the published rows (in the headline roles, :func:`resolve_headline`), and the per-structure table in
the papers' terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medseg.evaluation.paper_numbers import ACCURACY_DEFINITIONS, ALPHA_BETA_DEFINITIONS, COMPLETE, NON_OVERLAP
from medseg.evaluation.report_format import DASH, num, pct, plain, published, table
from medseg.evaluation.report_result import EvaluationResult, scored_on

HEADLINE_ROLES = ("overlap", "alpha", "beta", "alpha_whole", "beta_whole")
_AB_SHORT = {NON_OVERLAP: "non-overlap region", COMPLETE: "complete chromosome", None: DASH}
_ACC_SHORT = {
    "foreground_accuracy": "chromosome vs background (RSE Eq. 10)",
    "derived_accuracy": "mean of the 2 complete chromosomes (ARMS)",
    "pixel_accuracy": "4-class pixel accuracy (AMFL Eq. 8)",
    None: DASH,
}


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
    return num(result.metrics.get("per_class", {}).get(name, {}).get(key))


def _ours_rows(result: EvaluationResult, roles: Mapping[str, str | None]) -> list[dict[str, Any]]:
    m = result.metrics
    mean_iou = num(m.get("mean", {}).get("iou"))
    overlap = _metric(result, roles["overlap"], "iou")
    non = {"alpha": _metric(result, roles["alpha"], "iou"), "beta": _metric(result, roles["beta"], "iou")}
    whole = {"alpha": _metric(result, roles["alpha_whole"], "iou"), "beta": _metric(result, roles["beta_whole"], "iou")}
    return [
        {
            "label": "**ours** (as RSE-UNet)",
            "overlap_iou": overlap,
            "alpha_iou": non["alpha"],
            "beta_iou": non["beta"],
            "accuracy": num(m.get("foreground_accuracy")),
            "mean_iou": mean_iou,
            "alpha_beta_definition": NON_OVERLAP,
            "accuracy_definition": "foreground_accuracy",
        },
        {
            "label": "**ours** (as ARMS Net)",
            "overlap_iou": overlap,
            "alpha_iou": whole["alpha"],
            "beta_iou": whole["beta"],
            "accuracy": num(m.get("derived_accuracy")),
            "mean_iou": mean_iou,
            "alpha_beta_definition": COMPLETE,
            "accuracy_definition": "derived_accuracy",
        },
        {
            "label": "**ours** (as AMFL)",
            "overlap_iou": overlap,
            "alpha_iou": non["alpha"],
            "beta_iou": non["beta"],
            "accuracy": num(m.get("pixel_accuracy")),
            "mean_iou": mean_iou,
            "alpha_beta_definition": NON_OVERLAP,
            "accuracy_definition": "pixel_accuracy",
        },
    ]


def headline_section(result: EvaluationResult, roles: Mapping[str, str | None]) -> list[str]:
    """The chromosome papers' comparison: our three rows in each paper's definitions and the published rows."""
    L = ["## Ours vs the papers", ""]
    header = ["row", "overlap IoU", "α IoU", "β IoU", "accuracy", "mean IoU", "α/β IoU is", "accuracy is", "source"]
    rows = []
    for r in _ours_rows(result, roles):
        rows.append(
            [
                r["label"],
                pct(r["overlap_iou"]),
                pct(r["alpha_iou"]),
                pct(r["beta_iou"]),
                pct(r["accuracy"]),
                pct(r["mean_iou"]),
                _AB_SHORT[r["alpha_beta_definition"]],
                _ACC_SHORT[r["accuracy_definition"]],
                "this run",
            ]
        )
    headline_refs = [
        ref
        for ref in result.references
        if any(num(ref.get(k)) is not None for k in ("overlap_iou", "alpha_iou", "beta_iou", "accuracy", "mean_iou"))
    ]
    for ref in headline_refs:
        rows.append(
            [
                str(ref.get("method", DASH)),
                published(ref.get("overlap_iou")),
                published(ref.get("alpha_iou")),
                published(ref.get("beta_iou")),
                published(ref.get("accuracy")),
                published(ref.get("mean_iou")),
                _AB_SHORT.get(ref.get("alpha_beta_definition"), str(ref.get("alpha_beta_definition"))),
                _ACC_SHORT.get(ref.get("accuracy_definition"), str(ref.get("accuracy_definition"))),
                str(ref.get("source", DASH)),
            ]
        )
    L += table(header, rows)
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
    order_free = result.metrics.get("order_free")
    if order_free:
        pc = order_free.get("per_class", {})
        iou = lambda name: pct(pc.get(name, {}).get("iou"))  # noqa: E731
        L += [
            "",
            f"Order-free (each image's better naming of the two chromosomes, {pct(order_free.get('swapped_fraction'))} "
            f"of the images swapped): α IoU {iou('chromosome_alpha')}, β IoU {iou('chromosome_beta')} (non-overlap "
            f"regions); {iou('chromosome_alpha_whole')} / {iou('chromosome_beta_whole')} (complete chromosomes). "
            "The rows above score α and β under the data's naming rule; a gap between the two says the network "
            "separates the chromosomes but names them differently (medseg.metrics.pairs).",
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
    return L


def chromosome_class_table(result: EvaluationResult, hd_unit: str, hd_words: str) -> list[str]:
    m = result.metrics
    per_class = m.get("per_class", {})
    L = [f"## Per-class metrics ({scored_on(result)})", ""]
    has_hd = any("hausdorff" in v for v in per_class.values())
    header = [
        "structure",
        "IoU",
        "Dice",
        "precision",
        "recall",
        "FNR",
        "FPR",
        f"Hausdorff ({hd_unit})",
        "pooled IoU",
        "pooled Dice",
        "images with it",
    ]
    rows = []
    for name, v in per_class.items():
        label = name if "members" not in v else f"{name} (= {' + '.join(v['members'])})"
        rows.append(
            [
                label,
                pct(v.get("iou")),
                pct(v.get("dice")),
                pct(v.get("precision")),
                pct(v.get("recall")),
                pct(v.get("fnr")),
                pct(v.get("fpr"), 4),
                plain(v.get("hausdorff"), 3) if has_hd else DASH,
                pct(v.get("iou_pooled")),
                pct(v.get("dice_pooled")),
                str(v.get("n_images_present", DASH)),
            ]
        )
    mean = m.get("mean", {})
    if mean:
        rows.append(
            [
                "**mean** (" + ", ".join(m.get("mean_over", [])) + ")",
                pct(mean.get("iou")),
                pct(mean.get("dice")),
                pct(mean.get("precision")),
                pct(mean.get("recall")),
                pct(mean.get("fnr")),
                pct(mean.get("fpr"), 4),
                plain(mean.get("hausdorff"), 3) if has_hd else DASH,
                pct(mean.get("iou_pooled")),
                pct(mean.get("dice_pooled")),
                DASH,
            ]
        )
    L += table(header, rows)
    hd_kind = m.get("hausdorff_points", "all")
    L += [
        "",
        (
            "Means over each fold's validation images, then over the folds; pooled = from the confusion counts summed "
            "over a fold's images (then averaged over the folds). "
            if result.cross_validation
            else "Means over images; pooled = from the confusion counts summed over all images. "
        )
        + "FPR with four decimals. "
        f"Hausdorff over {'all points of the sets (AMFL Eq. 15)' if hd_kind == 'all' else 'surface points'}"
        + (f", {m['hausdorff_percentile']}th percentile" if m.get("hausdorff_percentile") is not None else "")
        + f", in {'mm on the scored grid' if hd_unit == 'mm' else hd_words.removeprefix('in ')}"
        + ". An empty truth or prediction scores 1 (Hausdorff 0) when both are empty and the worst value "
        "(0, or the image diagonal) when only one is, so misses count in every mean.",
        "",
        "Accuracies: "
        + "; ".join(
            f"{label} {pct(m.get(key))}"
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
    return L
