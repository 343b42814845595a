"""Train/validation/test splits, made once, saved as JSON and reused by every run and every model.

A split is drawn once (:func:`make_splits`: the ``random`` and ``ordered`` protocols, fold sizes and the
validation sets, in :mod:`medseg.data.split_making`; :func:`make_stratified_group_splits` in
:mod:`medseg.data.stratified_splits`) or read from a user's file of case names (:func:`splits_from_names`,
:mod:`medseg.data.split_names`), saved (:func:`save_splits`) and reused: :func:`load_or_create_splits` refuses
to replace a saved split made with other parameters, because replacing it silently would let earlier models'
test images into a new model's training set. Those modules' names are re-exported here.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from medseg.data.split_making import (  # noqa: F401  (re-exported)
    FILE_PROTOCOL,
    PROTOCOLS,
    SINGLE_SPLIT_VAL_FRACTION,
    STRATIFIED_PROTOCOL,
    is_int,
    make_splits,
    natural_key,
    validate_split,
)
from medseg.data.split_names import (  # noqa: F401  (re-exported)
    check_names,
    file_digest,
    is_index_split,
    read_split_file,
    splits_from_names,
)
from medseg.data.stratified_splits import make_stratified_group_splits, stratified_group_assignment  # noqa: F401
from medseg.errors import ConfigError, DataValidationError

_PARAMS = ("test_fraction", "n_folds", "seed", "protocol", "val_fraction")


def save_splits(splits: dict, path: str | Path) -> None:
    """Validate ``splits`` and write it as JSON at ``path``, atomically (temporary file + rename)."""
    path = Path(path)
    splits = validate_split(splits, path)
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in splits.items() if k != "folds"]
    fold_lines = ",\n".join(f"    {json.dumps(f)}" for f in splits["folds"])
    lines.append(f'  "folds": [\n{fold_lines}\n  ]')
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_splits(path: str | Path, *, n: int | None = None) -> dict:
    """Read and validate a split file; with ``n``, also check it was made for ``n`` images.

    Raises :class:`DataValidationError` naming the file for a missing or malformed file, missing keys,
    indices out of range or repeated, a test image inside a fold, a fold whose train and val do not
    make up exactly the non-test images, or a different ``n``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(path, "split file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(path, f"split file is not valid JSON ({exc})") from exc
    return validate_split(data, path, n)


def load_or_create_splits(path: str | Path, n: int, *, names: list[str] | None = None, **kwargs: Any) -> dict:
    """Reuse the split at ``path`` if it exists, else make one with :func:`make_splits` and save it.

    ``names`` (optional): the names of the ``n`` units in index order (e.g. the patients), saved with a new
    split and checked against an existing one that holds them (see :func:`check_names`).

    ``kwargs`` are :func:`make_splits`'s (``test_fraction``, ``n_folds``, ``seed``, ``protocol``,
    ``val_fraction``; a file without ``val_fraction`` was made with None, k-fold). An
    existing file must have been made for ``n`` images and with every parameter given here; otherwise a
    :class:`DataValidationError` is raised instead of replacing it, because replacing a split silently
    would let earlier models' test images into a new model's training set. Parameters not given are
    taken from the file.
    """
    unknown = sorted(set(kwargs) - set(_PARAMS))
    if unknown:
        raise TypeError(f"unknown split parameter(s) {', '.join(unknown)}; expected {', '.join(_PARAMS)}")
    path = Path(path)
    if not path.exists():
        splits = make_splits(n, **kwargs)
        if names is not None:
            splits["names"] = [str(u) for u in names]
        save_splits(splits, path)
        return splits
    splits = load_splits(path, n=n)
    if names is not None:
        check_names(splits, names, path)
    differ = []
    for key, wanted in kwargs.items():
        stored = splits.get(key)
        if key in ("test_fraction", "val_fraction") and stored is not None and wanted is not None:
            same = isinstance(stored, (int, float)) and math.isclose(float(stored), float(wanted), abs_tol=1e-12)
        else:
            same = stored == wanted
        if not same:
            differ.append(f"{key}={stored!r} in the file, {wanted!r} asked for")
    if differ:
        raise DataValidationError(
            path,
            "existing split was made with other parameters: "
            + "; ".join(differ)
            + ". Use the file's parameters, another split path, or delete the file to make a new split.",
        )
    return splits


def expand_patient_splits(splits: dict, patients: list[str], groups: list[str]) -> dict:
    """A split made over ``patients`` (indices into that list) → the same split over the cases, where case
    ``i`` belongs to patient ``groups[i]``: every case goes where its patient went."""
    cases_of: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        cases_of.setdefault(g, []).append(i)

    def expand(idx):
        return sorted(i for p in idx for i in cases_of[patients[int(p)]])

    out = dict(
        splits,
        n=len(groups),
        test=expand(splits["test"]),
        folds=[{"train": expand(f["train"]), "val": expand(f["val"])} for f in splits["folds"]],
    )
    out.pop("names", None)  # the patients' names: now under "patients", the indices being the cases'
    out["patients"] = list(patients)
    return out


def fold_indices(splits: dict, fold: int) -> tuple[list[int], list[int], list[int]]:
    """Return ``(train, val, test)`` index lists of fold ``fold`` (0-based)."""
    folds = splits["folds"]
    if not is_int(fold) or not 0 <= fold < len(folds):
        raise ConfigError(
            f"fold {fold!r} does not exist: this split has {len(folds)} fold(s), numbered 0..{len(folds) - 1}"
        )
    f = folds[int(fold)]
    return list(f["train"]), list(f["val"]), list(splits["test"])
