"""`medseg reproduce configs/tables/<paper>_<table>.yaml`: one command per published table.

A table spec lists rows, each an experiment config (plus overrides) and the published row it is compared
with. ``kind: train`` rows are trained (cross-validation folds) and evaluated on the held-out test set;
``kind: efficiency`` rows are only built and timed (AMFL Table IV). The result is ``report.md`` with our
numbers beside the paper's (in the paper's own metric definitions), ``table.json`` (an ``overlap_iou``
field per model, the device, date and command) and a figure.

``--quick`` runs a reduced mode (a small synthesized set, few epochs, narrow networks, fold 0 only) so the
whole chain runs on a CPU in minutes and CI can exercise it; its numbers say only that the chain works.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from medseg.artifact import dump_json, model_kwargs
from medseg.config import load_config, set_dotted, validate
from medseg.errors import ConfigError
from medseg.evaluation.paper_numbers import PAPERS, rows_from
from medseg.metrics.efficiency import count_parameters, time_inference
from medseg.progress import Progress

# Which of our aggregate numbers each paper's columns mean (see paper_numbers for the definitions).
PAPER_COLUMNS = {
    "rse_unet": ["overlap_iou", "alpha_iou", "beta_iou", "accuracy", "time_ms"],
    "arms_net": ["overlap_iou", "alpha_iou", "beta_iou", "accuracy", "time_ms"],
    "amfl": ["accuracy", "dice", "mean_iou", "recall", "precision", "fnr", "fpr", "hausdorff"],
    "ctv_thesis": ["dice"],  # the Dice ratio (mean over the structures), the thesis' only column
    # validation curves (best over training, value at the best epoch), and the competition score the paper
    # describes but does not report
    "gi_tract": ["dice", "mean_iou", "dice_at_best", "iou_at_best", "best_epoch", "epochs_run", "uw_score"],
}
COLUMN_TITLES = {
    "overlap_iou": "overlap IoU",
    "alpha_iou": "α IoU",
    "beta_iou": "β IoU",
    "accuracy": "Acc",
    "time_ms": "ms/img",
    "mean_iou": "IoU",
    "dice": "Dice",
    "recall": "Recall",
    "precision": "Precision",
    "fnr": "FNR",
    "fpr": "FPR",
    "hausdorff": "Hausdorff",
    "params": "params (M)",
    "time_ms_cpu": "CPU ms/img",
    "gpu_ms": "GPU ms/img",
    "dice_at_best": "Dice at best epoch",
    "iou_at_best": "IoU at best epoch",
    "best_epoch": "best epoch",
    "epochs_run": "epochs run",
    "uw_score": "UW score (0-1)",
    "alpha_iou_order_free": "α IoU order-free",
    "beta_iou_order_free": "β IoU order-free",
    "swapped": "swapped (% images)",
}


def gi_curve_terms(histories: list[list[dict]], class_names: list[str]) -> dict:
    """The GI paper's curve numbers from our folds' ``history.json`` (mean over the folds): ``dice`` and
    ``mean_iou``, the best validation Dice / IoU reached in any epoch (pooled over the validation slices,
    mean over the organs: the paper's Keras metrics are batch-pooled), ``best_epoch`` (lowest validation
    loss) and ``epochs_run``. Percent, epochs as counts; None without validated epochs."""

    def organ_mean(row: dict, key: str) -> float | None:
        vals = [float(row[f"{key}/{c}"]) for c in class_names if row.get(f"{key}/{c}") is not None]
        return float(np.mean(vals)) if vals else None

    best_dice, best_iou, best_epoch, runs = [], [], [], []
    for history in histories:
        rows = [r for r in history if r.get("val_loss") is not None]
        if not rows:
            continue
        dice = [v for v in (organ_mean(r, "val_dice_pooled") for r in rows) if v is not None]
        iou = [v for v in (organ_mean(r, "val_iou_pooled") for r in rows) if v is not None]
        if dice:
            best_dice.append(100.0 * max(dice))
        if iou:
            best_iou.append(100.0 * max(iou))
        best_epoch.append(int(min(rows, key=lambda r: r["val_loss"])["epoch"]))
        runs.append(len(history))
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    return {
        "dice": mean(best_dice),
        "mean_iou": mean(best_iou),
        "best_epoch": mean(best_epoch),
        "epochs_run": mean(runs),
    }


def ours_in_paper_terms(
    metrics: dict,
    efficiency: dict,
    paper: str,
    histories: list[list[dict]] | None = None,
    class_names: list[str] | None = None,
) -> dict:
    """Our aggregate metrics (fractions) → the paper's columns (percent), by the paper's definitions."""
    pc = metrics["per_class"]
    pct = lambda v: None if v is None else 100.0 * float(v)  # noqa: E731
    if paper == "gi_tract":
        mean = metrics.get("mean", {})
        competition = metrics.get("competition") or {}
        out = {
            "dice_at_best": pct(mean.get("dice_pooled")),
            "iou_at_best": pct(mean.get("iou_pooled")),
            "uw_score": competition.get("uw_score"),
            "hausdorff_score": competition.get("hausdorff_score"),
            "uw_dice": competition.get("dice"),
            "params": efficiency.get("params"),
            "time_ms": efficiency.get("gpu_ms_per_image"),
            "time_ms_cpu": efficiency.get("cpu_ms_per_image"),
            "overlap_iou": None,
        }
        out.update(gi_curve_terms(histories or [], list(class_names or pc)))
        return out
    out = {
        "overlap_iou": pct(pc.get("overlap", {}).get("iou")),
        "params": efficiency.get("params"),
        "time_ms": efficiency.get("gpu_ms_per_image"),
        "time_ms_cpu": efficiency.get("cpu_ms_per_image"),
    }
    order_free = metrics.get("order_free")  # chromosome pairs: α/β under each image's better naming
    whole = "_whole" if paper == "arms_net" else ""  # ARMS Net scores complete chromosomes, the others α/β only
    if order_free:
        ofc = order_free["per_class"]
        out.update(
            alpha_iou_order_free=pct(ofc.get(f"chromosome_alpha{whole}", {}).get("iou")),
            beta_iou_order_free=pct(ofc.get(f"chromosome_beta{whole}", {}).get("iou")),
            swapped=pct(order_free.get("swapped_fraction")),
        )
    if paper == "arms_net":
        out.update(
            alpha_iou=pct(pc.get("chromosome_alpha_whole", {}).get("iou")),
            beta_iou=pct(pc.get("chromosome_beta_whole", {}).get("iou")),
            accuracy=pct(metrics.get("derived_accuracy")),
        )
    else:
        out.update(
            alpha_iou=pct(pc.get("chromosome_alpha", {}).get("iou")),
            beta_iou=pct(pc.get("chromosome_beta", {}).get("iou")),
            accuracy=pct(metrics.get("foreground_accuracy" if paper == "rse_unet" else "pixel_accuracy")),
        )
    if paper == "ctv_thesis":
        out.update(
            dice=pct(metrics.get("mean", {}).get("dice")),
            hausdorff=metrics.get("mean", {}).get("hausdorff"),
            # the thesis prints each structure's Dice beside the mean (Table 3.1): ours per class
            per_structure={name: pct(v.get("dice")) for name, v in pc.items() if "members" not in v},
        )
    if paper == "amfl":
        mean = metrics.get("mean", {})
        out.update(
            mean_iou=pct(mean.get("iou")),
            dice=pct(mean.get("dice")),
            recall=pct(mean.get("recall")),
            precision=pct(mean.get("precision")),
            fnr=pct(mean.get("fnr")),
            fpr=pct(mean.get("fpr")),
            hausdorff=mean.get("hausdorff"),
        )
    return out


def load_spec(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: table spec not found")
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("title", "paper", "table", "rows"):
        if key not in spec:
            raise ConfigError(f"{path}: table spec needs '{key}'")
    if spec["paper"] is None:
        # An experiment no paper ran (the M-FISH transfer table): no published rows; the columns are named, and
        # `definitions` says whose α/β and accuracy definitions they follow.
        if not spec.get("columns") or spec.get("definitions") not in PAPERS:
            raise ConfigError(
                f"{path}: a table without a paper (paper: null) needs 'columns' and 'definitions' "
                f"(the paper whose metric definitions it uses; known: {', '.join(PAPERS)})"
            )
        unknown = [c for c in spec["columns"] if c not in COLUMN_TITLES]
        if unknown:
            raise ConfigError(f"{path}: unknown columns {unknown}; known: {', '.join(COLUMN_TITLES)}")
        if any(row.get("reference") for row in spec["rows"]):
            raise ConfigError(f"{path}: rows of a table without a paper cannot name a published 'reference'")
    elif spec["paper"] not in PAPERS:
        raise ConfigError(f"{path}: unknown paper {spec['paper']!r}; known: {', '.join(PAPERS)}")
    _check_rows(path, spec["rows"])
    spec.setdefault("kind", "train")
    spec["_dir"] = path.parent
    spec["_path"] = path
    return spec


ROW_KEYS = {
    "label",
    "config",
    "reference",
    "reference_table",
    "reference_paper",
    "reference_variant",
    "no_reference",
    "set",
    "quick_set",
    "group",
    "series",
    "tta",
    "test_data",
}


def _check_rows(path: Path, rows) -> None:
    """Every row a mapping with a text ``label``, a ``config`` and known keys only. In YAML's flow style
    (``{label: UNet (upconv, as the public code), ...}``) an unquoted comma ends the value, cutting the label and
    adding its rest as a key without a value: named here, with the fix, instead of a silently renamed row."""
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: 'rows' must be a non-empty list of rows")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: row {i} is not a mapping of label, config, ...")
        unknown = [k for k in row if k not in ROW_KEYS]
        if unknown:
            cut = [k for k in unknown if row[k] is None]
            hint = (
                f" — a comma in an unquoted value ends it (label {row.get('label')!r}, then {cut[0]!r}): put "
                "the value in quotes"
                if cut
                else f"; known: {', '.join(sorted(ROW_KEYS))}"
            )
            raise ConfigError(f"{path}: row {i} has unknown key(s) {unknown}{hint}")
        for key in ("label", "config"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ConfigError(f"{path}: row {i} needs '{key}' as text, got {row.get(key)!r}")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _set_key(item: str) -> str:
    return item.split("=", 1)[0].strip()


def check_unset(spec: dict, unset: list[str] | None) -> None:
    """Every ``--unset`` key must be one the spec or one of its rows sets: a typo would otherwise leave the
    setting in force without a word."""
    keys = {_set_key(s) for s in list(spec.get("set", [])) + list(spec.get("quick", {}).get("set", []))}
    for row in spec["rows"]:
        keys |= {_set_key(s) for s in list(row.get("set", [])) + list(row.get("quick_set", []))}
    unknown = [k for k in unset or [] if k.strip() not in keys]
    if unknown:
        raise ConfigError(
            f"{spec['_path']}: --unset {', '.join(unknown)}: the spec sets no such key "
            f"(it sets {', '.join(sorted(keys)) or 'none'})"
        )


def row_config(
    spec: dict,
    row: dict,
    *,
    quick: bool,
    data: str | None,
    output_root: Path,
    overrides: list[str] | None = None,
    unset: list[str] | None = None,
) -> dict:
    cfg = load_config(spec["_dir"] / row["config"])
    sets = list(spec.get("set", [])) + list(row.get("set", []))
    if quick:
        sets += list(spec.get("quick", {}).get("set", [])) + list(row.get("quick_set", []))
    # --unset: the spec's own value of a key dropped, so each row keeps its config's (e.g. every network at its
    # paper's width instead of a CPU-scale table's common one)
    dropped = {k.strip() for k in unset or []}
    sets = [s for s in sets if _set_key(s) not in dropped]
    sets += list(overrides or [])  # the command line's --set, over every row
    for item in sets:
        key, value = item.split("=", 1)
        set_dotted(cfg, key.strip(), value)
    if data:
        cfg["data"]["path"] = data
    cfg["name"] = slug(row["label"])
    cfg["output"]["root"] = str(output_root)
    return validate(cfg)


def published_row(spec: dict, row: dict) -> dict | None:
    name = row.get("reference")
    if not name:
        return None
    table = str(row.get("reference_table", spec["table"]))
    paper = row.get("reference_paper", spec["paper"])  # e.g. a cross-paper comparison by overlap IoU
    for r in rows_from(paper, table):
        if r["method"] == name and (row.get("reference_variant") is None or r["variant"] == row["reference_variant"]):
            return r
    raise ConfigError(f"{spec['_path']}: no published row {name!r} in {paper} Table {table}")


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Rank agreement of our ordering with the paper's: Kendall's τ-b (``scipy.stats.kendalltau``), which
    accounts for ties (1 = same order, -1 = reversed); None with fewer than two comparable rows or when one
    side is all ties."""
    from scipy.stats import kendalltau

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if len(pairs) < 2:
        return None
    tau = kendalltau([x for x, _ in pairs], [y for _, y in pairs], variant="b").statistic
    return None if tau is None or not np.isfinite(tau) else float(tau)


def reproduce_table(
    spec_path: str | Path,
    *,
    quick: bool = False,
    data: str | None = None,
    folds: list[int] | None = None,
    device: str | None = None,
    output_root: str | Path = "runs/tables",
    restart: bool = False,
    progress: bool = True,
    overrides: list[str] | None = None,
    unset: list[str] | None = None,
) -> Path:
    from medseg.evaluation.evaluate import evaluate_run
    from medseg.models import build_model
    from medseg.training.run import cross_validate

    spec = load_spec(spec_path)
    check_unset(spec, unset)
    paper = spec["paper"] or spec["definitions"]  # whose metric definitions our numbers follow
    # One folder per spec file: two specs of one published table (e.g. 2D and 3D) never share runs.
    table_dir = Path(output_root) / f"{Path(spec['_path']).stem}{'_quick' if quick else ''}"
    table_dir.mkdir(parents=True, exist_ok=True)
    if folds is None and quick:
        folds = [0]
    results = []
    for row in Progress(spec["rows"], desc=spec["title"], disable=not progress):
        cfg = row_config(spec, row, quick=quick, data=data, output_root=table_dir, overrides=overrides, unset=unset)
        if device:
            cfg["train"]["device"] = device
        ref = published_row(spec, row)
        entry = {
            "label": row["label"],
            "model": cfg["model"],
            "config": str(row["config"]),
            "published": ref,
            **{k: str(row[k]) for k in ("group", "series") if row.get(k)},
        }
        if row.get("no_reference"):
            entry["no_reference"] = str(row["no_reference"])
        if spec["kind"] == "efficiency":
            model = build_model(cfg["model"]["name"], trust_code=True, **model_kwargs(cfg))  # the user's own spec
            size = tuple(cfg["data"]["size"])
            eff = {
                "params": count_parameters(model),
                "cpu_ms_per_image": time_inference(model, (1, *size), device="cpu", warmup=2, runs=3 if quick else 20)[
                    "ms_per_image_median"
                ],
            }
            if torch.cuda.is_available():
                eff["gpu_ms_per_image"] = time_inference(model, (1, *size), device="cuda", warmup=10, runs=100)[
                    "ms_per_image_median"
                ]
            entry["ours"] = {
                "params": eff["params"],
                "time_ms": eff.get("gpu_ms_per_image"),
                "time_ms_cpu": eff["cpu_ms_per_image"],
            }
        else:
            cross_validate(cfg, folds=folds, restart=restart, progress=progress)
            # test_data: score on other data than trained on (its own split's test set), e.g. the real pairs
            # of held-out slides after training on synthesized ones
            test_data = row.get("test_data", spec.get("test_data"))
            if test_data:
                entry["test_data"] = str(test_data)
            report = evaluate_run(
                table_dir / cfg["name"],
                data=test_data,
                tta=bool(row.get("tta", False)),
                folds=folds,
                device=cfg["train"]["device"],
                progress=progress,
                trust_code=True,
            )  # just trained from the user's own spec
            payload = json.loads((report.parent / "metrics.json").read_text())
            histories = [
                json.loads(p.read_text()) for p in sorted((table_dir / cfg["name"]).glob("fold_*/history.json"))
            ]
            entry["ours"] = ours_in_paper_terms(
                payload["metrics"],
                payload.get("efficiency", {}),
                paper,
                histories=histories,
                class_names=list(cfg["task"]["class_names"]),
            )
            entry["overlap_iou"] = entry["ours"]["overlap_iou"]
            entry["report"] = str(report)
            entry["data_note"] = payload.get("data_note", "")
        results.append(entry)
    return write_table_report(table_dir, spec, results, quick=quick)


def _fmt(v, key: str) -> str:
    if v is None:
        return "—"
    if key == "params":
        return f"{v / 1e6:.2f}"
    if key in ("best_epoch", "epochs_run"):
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    if key in ("uw_score", "hausdorff_score"):
        return f"{v:.4f}"
    if key in ("hausdorff", "time_ms", "time_ms_cpu"):
        return f"{v:.2f}"
    return f"{v:.2f}"


def write_table_report(table_dir: Path, spec: dict, results: list[dict], *, quick: bool) -> Path:
    paper = spec["paper"] or spec["definitions"]
    cols = (
        ["params", "time_ms", "time_ms_cpu"]
        if spec["kind"] == "efficiency"
        else list(spec.get("columns") or PAPER_COLUMNS[paper])
    )
    published = spec["paper"] is not None
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    lines = [f"# {spec['title']}", ""]
    if quick:
        lines += [
            "**Quick mode: a small synthesized set, few epochs, narrow networks, one fold. These numbers only show "
            "that the chain runs; the full run (without --quick, on a GPU) is the reproduction.**",
            "",
        ]
    notes = {r.get("data_note") for r in results if r.get("data_note")}
    lines += [f"**{n}**" for n in notes] + ([""] if notes else [])
    if published:
        lines += [
            f"Paper: {PAPERS[paper]['title']} ({PAPERS[paper]['short']}), Table {spec['table']}. "
            f"Device: {device}. Values in % unless stated; ours in the paper's own definitions.",
            "",
        ]
    else:
        lines += [
            f"No paper ran this experiment: no published numbers. Metric definitions of "
            f"{PAPERS[paper]['short']}. Device: {device}. Values in %.",
            "",
        ]
    if spec.get("description"):
        lines += [str(spec["description"]).strip(), ""]
    lines += _table_lines(results, cols, published)
    lines.append("")
    lines += [f"No published numbers for {r['label']}: {r['no_reference']}." for r in results if r.get("no_reference")]
    lines += [""] if any(r.get("no_reference") for r in results) else []
    key = (
        "params"
        if spec["kind"] == "efficiency"
        else cols[0]
        if paper in ("amfl", "ctv_thesis", "gi_tract")
        else "overlap_iou"
    )
    tau = kendall_tau([r["ours"].get(key) for r in results], [(r["published"] or {}).get(key) for r in results])
    if tau is not None:
        lines += [
            f"Ordering of the rows by {COLUMN_TITLES.get(key, key)}: Kendall τ-b = {tau:.2f} between ours and "
            "the paper (1 = same order).",
            "",
        ]
    fig = _draw(table_dir, results, key)
    if fig:
        lines += [f"![{key}]({fig.name})", ""]
    lines += (
        [
            "Per-row reports: "
            + ", ".join(
                f"[{r['label']}]({Path(r['report']).relative_to(table_dir)})" for r in results if r.get("report")
            ),
            "",
        ]
        if any(r.get("report") for r in results)
        else []
    )
    command = (
        "medseg reproduce " + " ".join(sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "reproduce"
        else "medseg reproduce " + str(spec["_path"])
    )
    payload = {
        "table": f"{PAPERS[paper]['short']} Table {spec['table']}" if published else str(spec["table"]),
        "title": spec["title"],
        "quick": quick,
        "device": device,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "kendall_tau": tau,
        "results": results,
    }
    dump_json(payload, table_dir / "table.json")
    report = table_dir / "report.md"
    tmp = table_dir / ".report.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(report)
    return report


def _table_lines(results: list[dict], cols: list[str], published: bool) -> list[str]:
    """The report's Markdown table: one row per result, our values of ``cols`` (then the paper's, when
    ``published``; then per structure, when a row has several)."""
    structures = any(r["ours"].get("per_structure") and len(r["ours"]["per_structure"]) > 1 for r in results)
    head = ["row"] + [f"{COLUMN_TITLES.get(c, c)} ours" for c in cols]
    head += [f"{COLUMN_TITLES.get(c, c)} paper" for c in cols] if published else []
    head += ["per structure, ours", "paper's note"] if structures else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ours = [_fmt(r["ours"].get(c), c) for c in cols]
        pub = [_fmt((r["published"] or {}).get(c), c) for c in cols] if published else []
        extra = []
        if structures:
            extra = [
                ", ".join(f"{k} {_fmt(v, 'dice')}" for k, v in (r["ours"].get("per_structure") or {}).items()),
                str((r["published"] or {}).get("note") or "—"),
            ]
        lines.append("| " + " | ".join([r["label"], *ours, *pub, *extra]) + " |")
    return lines


def _draw(table_dir: Path, results: list[dict], key: str) -> Path | None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ours = [r["ours"].get(key) for r in results]
    pub = [(r["published"] or {}).get(key) for r in results]
    if all(v is None for v in ours):
        return None
    fig = Figure(figsize=(max(6, 1.1 * len(results)), 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    if all(r.get("group") and r.get("series") for r in results):
        # rows that vary two things (the transfer table: model × training data): one group of bars per model
        groups = list(dict.fromkeys(r["group"] for r in results))
        series = list(dict.fromkeys(r["series"] for r in results))
        width = 0.8 / len(series)
        for k, name in enumerate(series):
            values = {r["group"]: r["ours"].get(key) for r in results if r["series"] == name}
            ax.bar(
                np.arange(len(groups)) + (k - (len(series) - 1) / 2) * width,
                [values.get(g) or 0 for g in groups],
                width,
                label=name,
            )
        ax.set_xticks(np.arange(len(groups)), groups)
        ax.legend()
    else:
        x = np.arange(len(results))
        ax.bar(x - 0.2, [v if v is not None else 0 for v in ours], 0.4, label="ours")
        if any(v is not None for v in pub):
            ax.bar(x + 0.2, [v if v is not None else 0 for v in pub], 0.4, label="paper")
        ax.set_xticks(x, [r["label"] for r in results], rotation=30, ha="right")
        ax.legend()
    ax.set_ylabel(COLUMN_TITLES.get(key, key))
    fig.tight_layout()
    path = table_dir / f"{key}.png"
    fig.savefig(path)
    return path
