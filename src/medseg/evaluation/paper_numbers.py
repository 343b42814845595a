"""Published overlapping-chromosome results (Pommier data set), as data, each row with its source.

The numbers live in ``configs/tables/published/<paper>.yaml`` (one file per key of ``PAPERS``), copied
exactly as printed in the papers' text (``shared/papers/*.txt``), each row with the line of the text that
prints it. This module holds the definitions, reads the files (``yaml.safe_load``, once per folder),
checks every row and builds ``PAPER_ROWS`` and ``THESIS_TABLE_3_1`` from them. The folder is found relative
to the repository checkout; ``$MEDSEG_PUBLISHED_DIR`` names another one. A missing folder or a bad file
raises :class:`medseg.errors.ConfigError` naming the file and the row.

Units: IoU, Dice, precision, recall, FNR, FPR and accuracies in **percent**; ``hausdorff`` in pixels;
``time_ms`` in ms per image; ``params`` as a count. A metric the paper does not give is ``None``.

One key set for all papers, with the definitions spelled out because the papers differ:

* ``overlap_iou`` -- IoU of the overlap class (RSE "IoU", ARMS "IoU", AMFL Table III "Class 3").
* ``alpha_iou`` / ``beta_iou`` with ``alpha_beta_definition``:
  ``"non_overlap_region"`` (RSE IoU1/IoU2, AMFL Table III classes 1/2: classes 1 and 2 of the label map) or
  ``"complete_chromosome"`` (ARMS "Chrom α/β IoU": α = classes {1, 3}, β = {2, 3}).
* ``accuracy`` with ``accuracy_definition``, named after the key of ``SegmentationMetrics.aggregate()``
  that computes the same thing: ``"foreground_accuracy"`` (RSE Eq. 10: chromosome vs background,
  (TP+TN)/ALL), ``"derived_accuracy"`` (ARMS Table 3 note d: average of the binary accuracies of the two
  complete chromosomes, each by Eq. 4), ``"pixel_accuracy"`` (AMFL Eq. 8: multi-class pixel accuracy).
* ``mean_iou``, ``dice``, ``precision``, ``recall``, ``fnr``, ``fpr``, ``hausdorff`` -- AMFL's "average
  scores" (Table II); AMFL does not say over which classes it averages.
* ``time_ms`` (GPU unless ``time_device`` says otherwise), ``time_ms_cpu`` (AMFL Table IV), ``params``.
* The GI-tract paper (``gi_tract``) reports validation curves: ``dice``, ``mean_iou`` and ``accuracy`` are the
  best values reached during training (its Keras metrics over the three organ channels), ``*_at_best`` the
  values at ``best_epoch``, the epoch of the lowest validation loss; ``epochs_run`` the epochs trained before
  early stopping. It prints them as fractions; stored here in percent like every other paper's.

The rows of other groups that a paper quotes (Hu et al., Saleh et al., Sun et al.) are kept as that paper
prints them, with the definition that paper states; the same Hu et al. numbers (88.20 / 94.40) appear as
non-overlap IoU in RSE and AMFL and as complete-chromosome IoU in ARMS Table 6.

The CTV thesis prints Dice ratios as fractions: its rows in ``PAPER_ROWS`` give them in percent like every
other row (Table 2.1 as stored; Table 3.1's rows are built from ``THESIS_TABLE_3_1``, whose values stay
fractions as printed).

``PAPER_ROWS`` (tuple of row dicts) and ``THESIS_TABLE_3_1`` (dict) are read on first use.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import ConfigError

__all__ = [
    "ACCURACY_DEFINITIONS",
    "ALPHA_BETA_DEFINITIONS",
    "COMPLETE",
    "CTV_THESIS_FILE",
    "METRIC_KEYS",
    "NON_OVERLAP",
    "PAPERS",
    "PAPER_ROWS",
    "PUBLISHED_DIR_ENV",
    "Published",
    "THESIS_TABLE_3_1",
    "families",
    "load_published",
    "published_dir",
    "published_rows",
    "reference_rows",
    "rows_from",
]

NON_OVERLAP = "non_overlap_region"
COMPLETE = "complete_chromosome"

ALPHA_BETA_DEFINITIONS = {
    NON_OVERLAP: "IoU of the non-overlap region of each chromosome (label classes 1 and 2)",
    COMPLETE: "IoU of each complete chromosome (α = classes {1, 3}, β = classes {2, 3})",
}
ACCURACY_DEFINITIONS = {
    "foreground_accuracy": "chromosome vs background, (TP+TN)/ALL (RSE Eq. 10)",
    "derived_accuracy": "mean binary accuracy of the two complete chromosomes (ARMS Table 3 note d, Eq. 4)",
    "pixel_accuracy": "multi-class pixel accuracy Σ P_ii / Σ P_ij (AMFL Eq. 8)",
    "keras_accuracy": "Keras' accuracy metric on the three sigmoid organ channels (GI-tract paper; not defined there)",
}

METRIC_KEYS = (
    "overlap_iou",
    "alpha_iou",
    "beta_iou",
    "accuracy",
    "mean_iou",
    "dice",
    "precision",
    "recall",
    "fnr",
    "fpr",
    "hausdorff",
    "time_ms",
    "time_ms_cpu",
    "params",
    "best_epoch",
    "epochs_run",
    "dice_at_best",
    "iou_at_best",
    "accuracy_at_best",
)

PAPERS: dict[str, dict[str, Any]] = {
    "rse_unet": {
        "short": "RSE-UNet",
        "title": "Overlapping Chromosome Segmentation Model Based on Multi-Scale Residual Attention Network",
        "authors": "Junran Wang, Jiamei Ma, Xuedian Zhang",
        "year": 2023,
        "venue": "Hans Publishers (in Chinese)",
        "file": "shared/papers/rse-unet-overlapping-chromosomes.txt",
        "protocol": "5-fold CV on 80 %, 20 % held-out test set (2686 images), 128 x 128 padded, RTX 2080Ti",
    },
    "arms_net": {
        "short": "ARMS Net",
        "title": "ARMS Net: Overlapping chromosome segmentation based on Adaptive Receptive field Multi-Scale network",
        "authors": "Guangjie Wang, Hui Liu, Xianpeng Yi, Jinjun Zhou, Lin Zhang",
        "year": 2021,
        "venue": "Biomedical Signal Processing and Control, doi:10.1016/j.bspc.2021.102811",
        "file": "shared/papers/arms-net-overlapping-chromosomes.txt",
        "protocol": "5-fold CV on 80 %, 20 % held-out test set, 128 x 128 padded, Keras, RTX 2080Ti",
    },
    "amfl": {
        "short": "AMFL",
        "title": "Adversarial Multiscale Feature Learning for Overlapping Chromosome Segmentation",
        "authors": "Liye Mei, Yalan Yu, Yueyun Weng, Xiaopeng Guo, Yan Liu, Du Wang, Sheng Liu, Fuling Zhou, Cheng Lei",
        "year": None,
        "venue": "IEEE (preprint text)",
        "file": "shared/papers/amfl-adversarial-overlapping-chromosomes.txt",
        "protocol": "80/20 split, test set restricted to the 2432 images with overlap, 128 x 128 padded, Tesla P40",
    },
    "ctv_thesis": {
        "short": "CTV thesis",
        "title": "Design and implementation of an automatic CTV delineation system (master's thesis, in Chinese)",
        "authors": None,
        "year": None,
        "venue": "thesis",
        "file": "shared/papers/ctv-delineation-system-thesis.txt",
        "protocol": "Table 2.1: 340 cervical-cancer CT series, 3-fold CV by patient, mean Dice ratio of the folds; "
        "Table 3.1: JSRT chest radiographs, 165 train / 82 test",
    },
}

PAPERS["gi_tract"] = {
    "short": "GI-tract U-Net",
    "title": "U-Net based gastrointestinal tract image segmentation (UW-Madison GI Tract; course report, in Chinese)",
    "authors": "Xu Li",
    "year": 2022,
    "venue": "machine-learning course report",
    "file": "shared/papers/unet-gi-tract-mri.txt",
    "protocol": "UW-Madison GI Tract (38,496 slices, 85 cases), 5-fold StratifiedGroupKFold by case, 128 x 128, "
    "validation curves of one fold (which is not said), RTX 3080",
}

CTV_THESIS_FILE = "shared/papers/ctv-delineation-system-thesis.txt"
THESIS = CTV_THESIS_FILE

# --------------------------------------------------------------------------------------------------------
# Reading configs/tables/published/<paper>.yaml
# --------------------------------------------------------------------------------------------------------
PUBLISHED_DIR_ENV = "MEDSEG_PUBLISHED_DIR"
_DEFAULT_DIR = Path(__file__).resolve().parents[3] / "configs" / "tables" / "published"

# A row's optional fields: the types they take (besides null) and the allowed values where there is a set.
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "variant": (str,),
    "input_size": (int,),
    "alpha_beta_definition": (str,),
    "accuracy_definition": (str,),
    "time_device": (str,),
    "note": (str,),
}
_CHOICES: dict[str, dict[str, str]] = {
    "alpha_beta_definition": ALPHA_BETA_DEFINITIONS,
    "accuracy_definition": ACCURACY_DEFINITIONS,
}
_ROW_KEYS = {"line", "method", "model_family", "values", *_OPTIONAL}
_TABLE_KEYS = {"table", "source", "defaults", "rows"}
_T31_KEYS = ("source", "lines", "caption", "dataset", "columns", "metric", "rows", "notes", "study_columns")
_T31_ROW_KEYS = ("line", "fraction", "n_range", "method", "values", "config")


@dataclass(frozen=True)
class Published:
    """What one folder of published numbers holds (see :func:`load_published`)."""

    directory: Path
    rows: tuple[dict[str, Any], ...]  # PAPER_ROWS
    lines: tuple[int | tuple[int, int], ...]  # the cited line of each row ((first, last) for a transposed table)
    thesis_table_3_1: dict[str, Any]  # THESIS_TABLE_3_1


def published_dir() -> Path:
    """The folder of ``<paper>.yaml`` files: ``$MEDSEG_PUBLISHED_DIR`` or the checkout's
    ``configs/tables/published``."""
    env = os.environ.get(PUBLISHED_DIR_ENV)
    return Path(env).expanduser() if env else _DEFAULT_DIR


def load_published(directory: str | Path | None = None) -> Published:
    """Read and check the published numbers of every paper in ``PAPERS`` (cached per folder).

    Raises :class:`ConfigError` naming the folder when it is missing, or the file and the row when a file is bad.
    """
    return _load(str(Path(directory if directory is not None else published_dir()).expanduser().absolute()))


def published_rows() -> list[dict[str, Any]]:
    """Copies of ``PAPER_ROWS``, each with its ``line`` in the paper's text (int, or (first, last))."""
    p = load_published()
    return [{**copy.deepcopy(r), "line": line} for r, line in zip(p.rows, p.lines, strict=True)]


# Declared without a value (so `__all__`, linters and type checkers know them) and served by the module
# ``__getattr__`` below: a module attribute that is not bound is looked up there.
PAPER_ROWS: tuple[dict[str, Any], ...]
THESIS_TABLE_3_1: dict[str, Any]


def __getattr__(name: str) -> Any:
    # PAPER_ROWS and THESIS_TABLE_3_1 are read from the YAML files on first use, not when this module is
    # imported (medseg.evaluation's __init__ imports PAPER_ROWS, so importing that package reads them).
    if name == "PAPER_ROWS":
        return load_published().rows
    if name == "THESIS_TABLE_3_1":
        return load_published().thesis_table_3_1
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "PAPER_ROWS", "THESIS_TABLE_3_1"})


class _File:
    """Checks on one YAML file; every failure is a ConfigError that starts with the file's path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {problem}" if where else f"{self.path}: {problem}")

    def mapping(self, value: Any, where: str, required: tuple[str, ...] | set[str], allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(map(str, set(value) - allowed))
        if unknown:
            raise self.fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(where, f"missing field(s) {', '.join(missing)}")
        return value

    def text(self, value: Any, where: str, *, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return value

    def number(self, value: Any, where: str, *, integer: bool = False, nullable: bool = True) -> float | int | None:
        if value is None and nullable:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < 0:
            kind = "a non-negative integer" if integer else "a non-negative number"
            raise self.fail(where, f"expected {kind}{' or null' if nullable else ''}, got {value!r}")
        return value

    def line(self, value: Any, where: str) -> int | tuple[int, int]:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and 1 <= value[0] <= value[1]
        ):
            return (value[0], value[1])
        raise self.fail(where, f"line: expected a line number or [first, last], got {value!r}")


def _empty_row(paper: str, source: str, table: str) -> dict[str, Any]:
    row: dict[str, Any] = {"paper": paper, "source": source, "table": table, "method": None, "model_family": None}
    row.update({k: None for k in _OPTIONAL})
    row.update({k: None for k in METRIC_KEYS})
    return row


def _check_optional(f: _File, fields: dict, where: str) -> dict[str, Any]:
    out = {}
    for key in _OPTIONAL.keys() & fields.keys():
        value = fields[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, _OPTIONAL[key])):
            raise f.fail(where, f"{key}: expected {_OPTIONAL[key][0].__name__} or null, got {value!r}")
        if value is not None and key in _CHOICES and value not in _CHOICES[key]:
            raise f.fail(where, f"{key}: unknown {value!r}; known: {', '.join(_CHOICES[key])}")
        out[key] = value
    return out


def _read_table(f: _File, paper: str, index: int, spec: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    spec = f.mapping(spec, f"tables[{index}]", ("table", "source", "rows"), _TABLE_KEYS)
    table = spec["table"]
    if not isinstance(table, str):
        raise f.fail(f"tables[{index}]", f'table: expected a string such as "3" or "II", got {table!r}')
    where = f"table {table!r}"
    source = f.text(spec["source"], f"{where}: source")
    defaults = _check_optional(
        f, f.mapping(spec.get("defaults") or {}, f"{where}: defaults", (), set(_OPTIONAL)), f"{where}: defaults"
    )
    if not isinstance(spec["rows"], list) or not spec["rows"]:
        raise f.fail(where, "rows: expected a non-empty list")
    rows, lines = [], []
    for i, item in enumerate(spec["rows"], start=1):
        at = f"{where}, row {i}"
        if isinstance(item, dict) and isinstance(item.get("method"), str):
            at += f" ({item['method']!r})"
        item = f.mapping(item, at, ("line", "method", "model_family", "values"), _ROW_KEYS)
        row = _empty_row(paper, source, table)
        row["method"] = f.text(item["method"], f"{at}: method")
        family = f.text(item["model_family"], f"{at}: model_family")
        if not re.fullmatch(r"[a-z0-9_]+", family):
            raise f.fail(at, f"model_family: expected lower-case letters, digits and _, got {family!r}")
        row["model_family"] = family
        row.update(defaults)
        row.update(_check_optional(f, item, at))
        values = item["values"]
        if not isinstance(values, dict) or not values:
            raise f.fail(at, f"values: expected a mapping of metrics to numbers, got {values!r}")
        unknown = sorted(map(str, set(values) - set(METRIC_KEYS)))
        if unknown:
            raise f.fail(at, f"values: unknown metric key(s) {', '.join(unknown)}; known: {', '.join(METRIC_KEYS)}")
        for key, value in values.items():
            row[key] = f.number(value, f"{at}: values.{key}", integer=key == "params")
        if all(row[k] is None for k in METRIC_KEYS):
            raise f.fail(at, "values: no number given")
        rows.append(row)
        lines.append(f.line(item["line"], at))
    return rows, lines


def _read_table_3_1(f: _File, spec: Any) -> dict[str, Any]:
    where = "thesis_table_3_1"
    spec = f.mapping(spec, where, _T31_KEYS, set(_T31_KEYS))
    lines = f.line(spec["lines"], where)
    if not isinstance(lines, tuple):
        raise f.fail(where, f"lines: expected [first, last], got {spec['lines']!r}")
    columns = spec["columns"]
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise f.fail(where, f"columns: expected a list of names, got {columns!r}")
    study = spec["study_columns"]
    if not isinstance(study, list) or len(study) != len(columns) or not all(isinstance(c, str) for c in study):
        raise f.fail(where, f"study_columns: expected {len(columns)} names, got {study!r}")
    notes = spec["notes"]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise f.fail(where, f"notes: expected a list of strings, got {notes!r}")
    if not isinstance(spec["rows"], list) or not spec["rows"]:
        raise f.fail(where, "rows: expected a non-empty list")
    rows = []
    for i, item in enumerate(spec["rows"], start=1):
        at = f"{where}, row {i}"
        item = f.mapping(item, at, _T31_ROW_KEYS, set(_T31_ROW_KEYS))
        at = f"{where}, row {i} (line {item['line']!r})"
        line = f.line(item["line"], at)
        if not isinstance(line, int):
            raise f.fail(at, f"line: expected one line number, got {item['line']!r}")
        fraction = f.number(item["fraction"], f"{at}: fraction", nullable=False)
        if not fraction < 1:
            raise f.fail(at, f"fraction: expected a noise fraction in [0, 1), got {fraction!r}")
        n_range = item["n_range"]
        if n_range is not None:
            if not (
                isinstance(n_range, list)
                and len(n_range) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) for n in n_range)
                and n_range[0] <= n_range[1]
            ):
                raise f.fail(at, f"n_range: expected [low, high] pixels or null, got {n_range!r}")
            n_range = (n_range[0], n_range[1])
        if fraction and n_range is None:
            raise f.fail(at, "n_range: a noisy row (fraction > 0) needs its noise range")
        values = item["values"]
        if not isinstance(values, dict) or list(values) != columns:
            raise f.fail(at, f"values: expected the columns {', '.join(columns)} in that order, got {values!r}")
        for key, value in values.items():
            f.number(value, f"{at}: values.{key}", nullable=False)
        rows.append(
            {
                "line": line,
                "fraction": fraction,
                "n_range": n_range,
                "method": f.text(item["method"], f"{at}: method"),
                "values": dict(values),
                "config": f.text(item["config"], f"{at}: config", nullable=True),
            }
        )
    return {
        "source": f.text(spec["source"], f"{where}: source"),
        "lines": lines,
        "caption": f.text(spec["caption"], f"{where}: caption"),
        "dataset": f.text(spec["dataset"], f"{where}: dataset"),
        "columns": tuple(columns),
        "metric": f.text(spec["metric"], f"{where}: metric"),
        "rows": rows,
        "notes": list(notes),
        "study_columns": tuple(study),
    }


def _table_3_1_rows(t31: dict[str, Any]) -> list[dict[str, Any]]:
    """One PAPER_ROWS row per line of Table 3.1: the mean Dice in percent, the three structures in the note."""
    rows = []
    for r in t31["rows"]:
        noise = (
            "clean labels"
            if not r["fraction"]
            else f"{int(100 * r['fraction'])} %, {r['n_range'][0]}-{r['n_range'][1]} px"
        )
        row = _empty_row("ctv_thesis", f"{PAPERS['ctv_thesis']['short']}, Table 3.1", "3.1")
        row.update(
            method=f"{r['method']} ({noise})",
            model_family="unet_noisy_labels",
            note="Dice of lung, heart, clavicle on JSRT: "
            + ", ".join(f"{k} {v}" for k, v in r["values"].items() if k != "mean"),
            dice=round(100.0 * r["values"]["mean"], 4),
        )
        rows.append(row)
    return rows


@functools.cache
def _load(directory: str) -> Published:
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(
            f"published numbers folder not found: {folder} (the repository checkout's configs/tables/published; "
            f"set {PUBLISHED_DIR_ENV} to a folder holding {', '.join(f'{p}.yaml' for p in PAPERS)})"
        )
    rows: list[dict[str, Any]] = []
    lines: list[Any] = []
    t31: dict[str, Any] | None = None
    for paper in PAPERS:
        path = folder / f"{paper}.yaml"
        f = _File(path)
        if not path.is_file():
            raise f.fail("", f"missing: the published numbers of {PAPERS[paper]['short']} ({paper!r})")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise f.fail("", f"cannot read: {exc}") from exc
        allowed = {"paper", "tables"} | ({"thesis_table_3_1"} if paper == "ctv_thesis" else set())
        data = f.mapping(data, "", tuple(sorted(allowed)), allowed)
        if data["paper"] != paper:
            raise f.fail("", f"paper: expected {paper!r} (the file name), got {data['paper']!r}")
        if not isinstance(data["tables"], list) or not data["tables"]:
            raise f.fail("", "tables: expected a non-empty list")
        for i, spec in enumerate(data["tables"]):
            got, cited = _read_table(f, paper, i, spec)
            rows += got
            lines += cited
        if paper == "ctv_thesis":
            t31 = _read_table_3_1(f, data["thesis_table_3_1"])
            derived = _table_3_1_rows(t31)
            rows += derived
            lines += [r["line"] for r in t31["rows"]]
    assert t31 is not None
    return Published(directory=folder, rows=tuple(rows), lines=tuple(lines), thesis_table_3_1=t31)


_ALIASES = {
    "unetplusplus": "nested_unet",
    "unetpp": "nested_unet",
    "attentionunet": "attunet",
    "attunet": "attunet",
    "r2attentionunet": "r2attunet",
    "afml": "amfl",
    "hu": "sim_unet",
    "huetal": "sim_unet",
    "simunet": "sim_unet",
    "saleh": "saleh_unet",
    "saleh_unet_tta": "saleh_unet",
    "deeplabv3": "deeplabv3plus",
    "deeplab": "deeplabv3plus",
    "ce_net": "cenet",
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "plusplus").replace("+", "plus"))


def families() -> list[str]:
    """The model families that have reference rows."""
    return sorted({r["model_family"] for r in load_published().rows})


def reference_rows(model_family: str, *, include_variants: bool = False) -> list[dict[str, Any]]:
    """Copies of the published rows for ``model_family`` (e.g. ``"unet"``, ``"nested_unet"``, ``"arms_net"``).

    Names are matched loosely (``"UNet++"``, ``"NestedUNet"`` and ``"nested_unet"`` are the same family).
    Rows describing a variant of a model (pooling depth, input size, TTA) are left out unless
    ``include_variants``.
    """
    known = {_norm(f): f for f in families()}
    known.update({_norm(a): f for a, f in _ALIASES.items()})
    key = _norm(model_family)
    if key not in known:
        raise ValueError(f"no reference rows for model family {model_family!r}; known: {', '.join(families())}")
    fam = known[key]
    return [
        copy.deepcopy(r)
        for r in load_published().rows
        if r["model_family"] == fam and (include_variants or r["variant"] is None)
    ]


def rows_from(paper: str, table: str | None = None) -> list[dict[str, Any]]:
    """Copies of the rows of one paper (``"rse_unet"``, ``"arms_net"``, ``"amfl"``), optionally one table."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; known: {', '.join(PAPERS)}")
    return [
        copy.deepcopy(r)
        for r in load_published().rows
        if r["paper"] == paper and (table is None or r["table"] == table)
    ]
