"""Data analysis and cross-validation splits of the UW-Madison GI Tract set.

Follows section III of the paper in ``shared/papers/unet-gi-tract-mri.txt``: Tables 1–4 (images / cases /
images with and without masks; scans per case; organ co-occurrence; image sizes), Fig. 3 (masks per image),
Fig. 6 (annotations by slice position), Fig. 12 (overlap areas), and its split: 5-fold StratifiedGroupKFold,
grouped by case, stratified by the number of organs in the image (0–3).

The split is implemented here (scikit-learn is not a dependency of medseg); :func:`uwgi_splits` follows
scikit-learn's ``StratifiedGroupKFold(shuffle=True)`` algorithm: groups in a seeded random order, then
sorted by the spread of their class counts (largest first), each put into the fold that keeps the per-class
proportions across folds most even (ties: the smallest fold).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from medseg.data.splits import stratified_group_assignment
from medseg.data.uwgi import (
    CLASSES,
    check_consistency,
    masks_for,
    parse_id,
    read_train_csv,
    scan_index,
)
from medseg.formats.atomic import atomic_file

PROTOCOL = "StratifiedGroupKFold by case, stratified by organ count"

#: The paper's numbers on the full published training folder (section III; classes in :data:`CLASSES`
#: order: large_bowel, small_bowel, stomach). Image sizes are W×H (the paper writes (H, W): (310,360)).
PAPER_TABLES: dict = {
    "table1": {"images": 38496, "cases": 85, "images_without_masks": 21906, "images_with_masks": 16590},
    "table2_scans_per_case": {1: 9, 2: 8, 3: 45, 4: 2, 5: 20, 6: 1},
    "table3_cooccurrence": [[14085, 10982, 6181], [10982, 11201, 3361], [6181, 3361, 8627]],
    "table4_image_sizes": {"266×266": 25920, "360×310": 11232, "276×276": 1200, "234×234": 144},
    "fig3_masks_per_image": {0: 21906, 1: 2468, 2: 10921, 3: 3201},
    "fig3_combinations": {
        "large_bowel": 123,
        "small_bowel": 59,
        "stomach": 2286,
        "large_bowel+small_bowel": 7781,
        "large_bowel+stomach": 2980,
        "small_bowel+stomach": 160,
    },
    "annotations": 33913,
    "slices_per_scan": {144: 259, 80: 15},
    "fig6_peaks": {
        "large_bowel": {"slice": 100, "count": 240},
        "small_bowel": {"slice": 102, "count": 235},
        "stomach": {"slice": 67, "count": 196},
    },
}


# ------------------------------------------------------------------------------------------------- splits


def uwgi_splits(
    ids: Sequence[str], organ_counts: Sequence[int], cases: Sequence[int], *, n_folds: int = 5, seed: int = 0
) -> dict:
    """Cross-validation folds of ``ids`` as in the paper: every case in one fold only, the number of organs
    per image (0–3, ``organ_counts``) in about equal proportions in every fold.

    Returns ``{"folds": [{"val": [ids]}, ...], "protocol": ..., "seed": seed, "n_folds": n_folds,
    "organ_counts": [[images with 0..3 organs] per fold]}``; fold k's training set is every other id.
    """
    ids, y, groups = list(ids), np.asarray(organ_counts, dtype=int), list(cases)
    if not (len(ids) == len(y) == len(groups)):
        raise ValueError(f"ids, organ_counts and cases differ in length ({len(ids)}, {len(y)}, {len(groups)})")
    if len(set(ids)) != len(ids):
        raise ValueError("ids are not unique")
    if y.size and (y.min() < 0 or y.max() > len(CLASSES)):
        raise ValueError(f"organ counts must be 0..{len(CLASSES)}, got {y.min()}..{y.max()}")
    group_names = sorted(set(groups))
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer ≥ 2, got {n_folds!r}")
    if n_folds > len(group_names):
        raise ValueError(f"n_folds={n_folds} is more than the number of cases ({len(group_names)})")
    fold_of_group, y_counts_per_fold = stratified_group_assignment(
        y, groups, n_folds, seed=seed, n_strata=len(CLASSES) + 1
    )
    g_index = {name: i for i, name in enumerate(group_names)}
    g = np.array([g_index[c] for c in groups], dtype=int)
    folds = [{"val": []} for _ in range(n_folds)]
    for id_, gi in zip(ids, g, strict=True):
        folds[fold_of_group[gi]]["val"].append(id_)
    for f in folds:
        f["val"].sort()
    return {
        "folds": folds,
        "protocol": PROTOCOL,
        "seed": seed,
        "n_folds": n_folds,
        "organ_counts": y_counts_per_fold.astype(int).tolist(),
    }


def save_splits(splits: Mapping, path: str | Path) -> Path:
    """Write ``splits`` (from :func:`uwgi_splits`) as JSON, atomically."""
    path = Path(path)
    with atomic_file(path, ".json") as tmp:
        tmp.write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    return path


def splits_for_root(root: str | Path, *, n_folds: int = 5, seed: int = 0) -> dict:
    """:func:`uwgi_splits` of every image of the folder ``root`` (train.csv + train/)."""
    rles = read_train_csv(Path(root) / "train.csv")
    ids = sorted(rles)
    counts = [sum(bool(rles[i][c]) for c in CLASSES) for i in ids]
    return uwgi_splits(ids, counts, [parse_id(i)[0] for i in ids], n_folds=n_folds, seed=seed)


# ------------------------------------------------------------------------------------------------ analysis


def _combo(present: Sequence[str]) -> str:
    return "+".join(present) if present else "none"


def analyze(root: str | Path) -> dict:
    """Measured counts of the paper's Tables 1–4 and Figs. 3, 6, 12 for the folder ``root``.

    Classes are in :data:`CLASSES` order. Image sizes are keyed ``"W×H"``. Overlap areas count, per image
    with at least two organs, the pixels where ≥ 2 organs are present (``"any"``) and, per combination of
    organs, the pixels where exactly those organs overlap (nonzero areas only).
    """
    root = Path(root)
    rles = read_train_csv(root / "train.csv")
    index = scan_index(root)
    check_consistency(index, rles)
    k = len(CLASSES)
    cooc = np.zeros((k, k), dtype=int)
    per_image: Counter = Counter()
    combos: Counter = Counter()
    sizes: Counter = Counter()
    by_slice: dict[str, Counter] = {c: Counter() for c in CLASSES}
    days: dict[int, set] = {}
    slices_per_scan: Counter = Counter()
    overlap: dict[str, list[int]] = {"any": []}
    for a, b in combinations(CLASSES, 2):
        overlap[f"{a}+{b}"] = []
    overlap["+".join(CLASSES)] = []
    for r in index:
        days.setdefault(r.case, set()).add(r.day)
        slices_per_scan[(r.case, r.day)] += 1
        sizes[f"{r.width}×{r.height}"] += 1
        present = [c for c in CLASSES if rles[r.id][c]]
        v = np.array([c in present for c in CLASSES], dtype=int)
        cooc += np.outer(v, v)
        per_image[len(present)] += 1
        if present:
            combos[_combo(present)] += 1
        for c in present:
            by_slice[c][r.slice] += 1
        if len(present) >= 2:
            m = masks_for(r, rles).astype(bool)
            n = m.sum(axis=2)
            overlap["any"].append(int((n >= 2).sum()))
            for combo_len in range(2, k + 1):
                for idx in combinations(range(k), combo_len):
                    want = np.zeros(k, dtype=bool)
                    want[list(idx)] = True
                    area = int(np.all(m == want, axis=2).sum())
                    if area:
                        overlap["+".join(CLASSES[i] for i in idx)].append(area)
    n_with = len(index) - per_image[0]
    peaks = {}
    for c in CLASSES:
        if by_slice[c]:
            s, cnt = max(by_slice[c].items(), key=lambda kv: (kv[1], -kv[0]))
            peaks[c] = {"slice": s, "count": cnt}
    return {
        "table1": {
            "images": len(index),
            "cases": len(days),
            "images_without_masks": per_image[0],
            "images_with_masks": n_with,
        },
        "table2_scans_per_case": dict(sorted(Counter(len(d) for d in days.values()).items())),
        "table3_cooccurrence": cooc.tolist(),
        "table4_image_sizes": dict(sizes.most_common()),
        "fig3_masks_per_image": {i: per_image[i] for i in range(k + 1)},
        "fig3_combinations": dict(sorted(combos.items())),
        "annotations": int(np.trace(cooc)),
        "slices_per_scan": dict(sorted(Counter(slices_per_scan.values()).items(), reverse=True)),
        "fig6_slice_counts": {c: dict(sorted(by_slice[c].items())) for c in CLASSES},
        "fig6_peaks": peaks,
        "fig12_overlap_areas": {key: sorted(v) for key, v in overlap.items()},
        "classes": list(CLASSES),
    }


def _norm(value):
    """JSON round trip: int keys become str, so measured and paper values compare alike."""
    return json.loads(json.dumps(value))


def compare_with_paper(measured: Mapping) -> list[dict]:
    """One row per quantity of :data:`PAPER_TABLES`: {"quantity", "paper", "measured", "match"}."""
    rows = []

    def add(name, paper, got):
        rows.append({"quantity": name, "paper": paper, "measured": got, "match": _norm(paper) == _norm(got)})

    for key, val in PAPER_TABLES["table1"].items():
        add(f"Table 1: {key.replace('_', ' ')}", val, measured["table1"].get(key))
    for days, n in PAPER_TABLES["table2_scans_per_case"].items():
        add(f"Table 2: cases scanned on {days} day(s)", n, _norm(measured["table2_scans_per_case"]).get(str(days), 0))
    for i, a in enumerate(CLASSES):
        for j in range(i, len(CLASSES)):
            b = CLASSES[j]
            name = f"Table 3: images with {a}" if i == j else f"Table 3: images with {a} and {b}"
            add(name, PAPER_TABLES["table3_cooccurrence"][i][j], measured["table3_cooccurrence"][i][j])
    for size, n in PAPER_TABLES["table4_image_sizes"].items():
        add(f"Table 4: images of {size}", n, measured["table4_image_sizes"].get(size, 0))
    for m, n in PAPER_TABLES["fig3_masks_per_image"].items():
        add(f"Fig. 3: images with {m} mask(s)", n, _norm(measured["fig3_masks_per_image"]).get(str(m), 0))
    for combo, n in PAPER_TABLES["fig3_combinations"].items():
        add(f"Fig. 3: images with only {combo}", n, measured["fig3_combinations"].get(combo, 0))
    add("annotations (organ masks)", PAPER_TABLES["annotations"], measured["annotations"])
    for length, n in PAPER_TABLES["slices_per_scan"].items():
        add(f"scans of {length} slices", n, _norm(measured["slices_per_scan"]).get(str(length), 0))
    for c, peak in PAPER_TABLES["fig6_peaks"].items():
        add(
            f"Fig. 6: peak slice (count) of {c}",
            [peak["slice"], peak["count"]],
            [measured["fig6_peaks"][c]["slice"], measured["fig6_peaks"][c]["count"]]
            if c in measured["fig6_peaks"]
            else None,
        )
    return rows


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, list):
        return f"{v[0]} ({v[1]})" if len(v) == 2 else str(v)
    return f"{v:,}" if isinstance(v, int) else str(v)


def report_markdown(measured: Mapping, comparison: Sequence[Mapping], figures: Mapping[str, str]) -> str:
    t1 = measured["table1"]
    lines = [
        "# UW-Madison GI Tract: data analysis",
        "",
        (
            "Measured on this folder beside the paper's values (section III of *unet-gi-tract-mri*, on the "
            "full published training set: 38,496 images, 85 cases). A mismatch is expected on any other "
            "folder (a subset, a stand-in)."
        ),
        "",
        f"{sum(r['match'] for r in comparison)} of {len(comparison)} quantities match the paper.",
        "",
        "## Comparison with the paper",
        "",
        "| quantity | paper | measured | match |",
        "|---|---:|---:|:---:|",
    ]
    lines += [
        f"| {r['quantity']} | {_fmt(r['paper'])} | {_fmt(r['measured'])} | {'yes' if r['match'] else 'no'} |"
        for r in comparison
    ]
    n = max(t1["images"], 1)
    lines += [
        "",
        "## Table 1: images",
        "",
        "| images | cases | without masks | with masks |",
        "|---:|---:|---:|---:|",
        (
            f"| {t1['images']:,} | {t1['cases']:,} | {t1['images_without_masks']:,} "
            f"({100 * t1['images_without_masks'] / n:.2f} %) | {t1['images_with_masks']:,} "
            f"({100 * t1['images_with_masks'] / n:.2f} %) |"
        ),
        "",
        "## Table 2: scans (days) per case",
        "",
        "| scans | cases |",
        "|---:|---:|",
    ]
    lines += [f"| {d} | {c} |" for d, c in measured["table2_scans_per_case"].items()]
    lines += [
        "",
        "## Table 3: organ co-occurrence (images; diagonal: images with the organ)",
        "",
        "| | " + " | ".join(CLASSES) + " |",
        "|---|" + "---:|" * len(CLASSES),
    ]
    lines += [
        f"| {a} | " + " | ".join(f"{v:,}" for v in row) + " |"
        for a, row in zip(CLASSES, measured["table3_cooccurrence"], strict=True)
    ]
    lines += ["", "## Table 4: image sizes (W×H)", "", "| size | images |", "|---|---:|"]
    lines += [f"| {s} | {c:,} |" for s, c in measured["table4_image_sizes"].items()]
    lines += ["", "## Fig. 3: masks per image", "", "| masks | images |", "|---:|---:|"]
    lines += [f"| {m} | {c:,} |" for m, c in measured["fig3_masks_per_image"].items()]
    lines += ["", "| organs present | images |", "|---|---:|"]
    lines += [f"| {k} | {c:,} |" for k, c in measured["fig3_combinations"].items()]
    lines += [
        "",
        "## Fig. 6: annotations by slice position",
        "",
        "| organ | peak slice | annotations there |",
        "|---|---:|---:|",
    ]
    lines += [f"| {c} | {p['slice']} | {p['count']} |" for c, p in measured["fig6_peaks"].items()]
    lines += [
        "",
        "## Fig. 12: overlap areas (pixels per image)",
        "",
        "| organs | images | max | median |",
        "|---|---:|---:|---:|",
    ]
    for key, areas in measured["fig12_overlap_areas"].items():
        label = "≥ 2 organs" if key == "any" else f"exactly {key}"
        lines.append(
            f"| {label} | {len(areas):,} | {max(areas) if areas else 0} | {float(np.median(areas)) if areas else 0:g} |"
        )
    lines += ["", "## Figures", ""] + [f"- {k}: ![{k}]({v})" for k, v in figures.items()] + [""]
    return "\n".join(lines)


def _figures(measured: Mapping, out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}

    def save(fig, name):
        with atomic_file(out_dir / name, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written[name.split("_")[0]] = name

    fig, ax = plt.subplots(figsize=(5, 3.5))
    per = measured["fig3_masks_per_image"]
    ax.bar([str(k) for k in per], list(per.values()), color="tab:blue")
    ax.set_xlabel("masks (organs) in the image")
    ax.set_ylabel("images")
    ax.set_title("Fig. 3: masks per image")
    fig.tight_layout()
    save(fig, "fig3_masks_per_image.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for c, counts in measured["fig6_slice_counts"].items():
        if counts:
            xs = sorted(counts)
            ax.plot(xs, [counts[x] for x in xs], label=c)
    ax.set_xlabel("slice index")
    ax.set_ylabel("annotations")
    ax.set_title("Fig. 6: annotations by slice position")
    ax.legend()
    fig.tight_layout()
    save(fig, "fig6_slice_position.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, areas in measured["fig12_overlap_areas"].items():
        if areas and key != "any":
            ax.hist(areas, bins=30, histtype="step", label=key)
    ax.set_xlabel("overlap area (pixels)")
    ax.set_ylabel("images")
    ax.set_title("Fig. 12: overlap areas")
    if any(v for k, v in measured["fig12_overlap_areas"].items() if k != "any"):
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, "fig12_overlap_areas.png")
    return written


def write_analysis(root: str | Path, out_dir: str | Path) -> dict:
    """Analyse ``root`` and write ``out_dir``/report.md, analysis.json, splits.json (5 folds, seed 0, when
    there are at least 5 cases) and the PNG figures of Figs. 3, 6, 12. Returns {name: path} of what it wrote."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    measured = analyze(root)
    comparison = compare_with_paper(measured)
    figures = _figures(measured, out_dir)
    written = {k: out_dir / v for k, v in figures.items()}
    doc = {"root": str(root), "measured": measured, "paper": PAPER_TABLES, "comparison": comparison}
    with atomic_file(out_dir / "analysis.json", ".json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    written["analysis"] = out_dir / "analysis.json"
    if measured["table1"]["cases"] >= 5:
        written["splits"] = save_splits(splits_for_root(root), out_dir / "splits.json")
    with atomic_file(out_dir / "report.md", ".md") as tmp:
        tmp.write_text(report_markdown(measured, comparison, figures), encoding="utf-8")
    written["report"] = out_dir / "report.md"
    return written
