"""Number and table formatting shared by the report's Markdown and ``metrics.json``: metric fractions as
percentages, published numbers unrounded, a dash for what is missing, plain JSON types."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DASH = "—"


def num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def pct(x: Any, nd: int = 2) -> str:
    v = num(x)
    return DASH if v is None else f"{100 * v:.{nd}f}"


def plain(x: Any, nd: int = 2) -> str:
    v = num(x)
    return DASH if v is None else f"{v:.{nd}f}"


def published(x: Any, min_decimals: int = 2) -> str:
    """A published number unrounded, padded to ``min_decimals`` (98.1 -> "98.10", 99.9955 stays)."""
    v = num(x)
    if v is None:
        return DASH
    text = repr(v)
    if "e" in text:
        return f"{v:g}"
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text else 0
    return f"{v:.{max(decimals, min_decimals)}f}"


def jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, non-finite floats to None, Paths to str."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
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


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines
