"""Train/validation/test splits, made once, saved as JSON and reused by every run and every model.

Two protocols:

``"random"`` (RSE-UNet, ARMS Net, ...): a fixed, seeded, random held-out test set of ``test_fraction``
of the images, and ``n_folds``-fold cross-validation on the rest.

``"ordered"`` (Hu et al.): the test set is the *last* ``test_fraction`` of the images in their stored
order (no shuffle); the folds over the first part are still random and seeded.

Sizes. The test set holds ``floor(test_fraction * n)`` images; the rest is cut into ``n_folds`` folds of
sizes differing by at most one (``numpy.array_split``: the first ``rest % n_folds`` folds are one larger).
With ``n_folds == 1`` there is a single train/val split with ``floor(0.2 * rest)`` validation images.

RSE-UNet's Table 2 (13,434 images -> train 8,598 / val 2,149 / test 2,686) sums to 13,433: it is what
flooring each part on its own gives (floor(0.2 * 13434) = 2686, floor(0.8 * 10748) = 8598,
floor(0.2 * 10748) = 2149), which leaves one image in no set. No split that uses every image reproduces
all three numbers. Here the test set is exactly 2,686 and the 10,748 others form five folds of
2150/2150/2150/2149/2149 validation images, i.e. train/val = 8598/2150 (folds 0-2) and 8599/2149
(folds 3-4): each fold matches two of the table's three numbers and is one image off in the third.

The random streams of ``numpy.random.default_rng`` are not promised to stay the same across NumPy
versions; the saved JSON file, not the seed, is what makes a split reproducible.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, DataValidationError

PROTOCOLS = ("random", "ordered")
SINGLE_SPLIT_VAL_FRACTION = 0.2
_KEYS = ("n", "seed", "protocol", "test_fraction", "n_folds", "test", "folds")
_PARAMS = ("test_fraction", "n_folds", "seed", "protocol")


def _floor_fraction(n: int, fraction: float) -> int:
    # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    return int(math.floor(n * fraction + 1e-9))


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def make_splits(
    n: int, *, test_fraction: float = 0.2, n_folds: int = 5, seed: int = 0, protocol: str = "random"
) -> dict:
    """Make a seeded test set and cross-validation folds for ``n`` images (see the module docstring).

    Returns ``{"n", "seed", "protocol", "test_fraction", "n_folds", "test": [...], "folds":
    [{"train": [...], "val": [...]}, ...]}`` with every index list sorted. Each fold's train and val
    together are exactly the non-test images; the val sets of the folds partition them.
    """
    if not _is_int(n) or n < 1:
        raise ConfigError(f"n must be a positive number of images, got {n!r}")
    if not isinstance(test_fraction, (int, float)) or isinstance(test_fraction, bool) or not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if not _is_int(n_folds) or n_folds < 1:
        raise ConfigError(f"n_folds must be an integer >= 1, got {n_folds!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown split protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    n, n_folds, seed = int(n), int(n_folds), int(seed)

    n_test = _floor_fraction(n, test_fraction)
    n_rest = n - n_test
    rng = np.random.default_rng(seed)
    if protocol == "random":
        perm = rng.permutation(n)
        test, rest = perm[:n_test], perm[n_test:]
    else:  # ordered: Hu et al., last part is the test set
        test = np.arange(n_rest, n)
        rest = rng.permutation(n_rest)

    if n_folds == 1:
        n_val = _floor_fraction(n_rest, SINGLE_SPLIT_VAL_FRACTION)
        if n_val < 1 or n_rest - n_val < 1:
            raise ConfigError(
                f"{n} images leave {n_rest} for training and validation: too few for a train/val split "
                f"with {SINGLE_SPLIT_VAL_FRACTION:.0%} validation"
            )
        vals = [rest[:n_val]]
    else:
        if n_rest < n_folds:
            raise ConfigError(
                f"{n} images leave {n_rest} for training and validation: too few for {n_folds} folds"
            )
        vals = np.array_split(rest, n_folds)

    rest_set = set(rest.tolist())
    folds = []
    for val in vals:
        val_list = sorted(int(i) for i in val)
        folds.append({"train": sorted(rest_set.difference(val_list)), "val": val_list})
    return {
        "n": n,
        "seed": seed,
        "protocol": protocol,
        "test_fraction": float(test_fraction),
        "n_folds": n_folds,
        "test": sorted(int(i) for i in test),
        "folds": folds,
    }


def _validate(splits: Any, path: Path | None, n: int | None = None) -> dict:
    """Check a split's structure and invariants; return it with plain-int index lists."""
    if not isinstance(splits, dict):
        raise DataValidationError(path, f"a split must be a JSON object, got {type(splits).__name__}")
    missing = [k for k in _KEYS if k not in splits]
    if missing:
        raise DataValidationError(path, f"split is missing key(s): {', '.join(missing)} (expected: {', '.join(_KEYS)})")
    total = splits["n"]
    if not _is_int(total) or total < 1:
        raise DataValidationError(path, f"split 'n' must be a positive integer, got {total!r}")
    total = int(total)
    if n is not None and total != n:
        raise DataValidationError(
            path,
            f"split was made for {total} images, the data has {n}. Use the split file made for this "
            "data, or delete it to make a new one (runs on the old split are then not comparable).",
        )
    if splits["protocol"] not in PROTOCOLS:
        raise DataValidationError(path, f"unknown split protocol {splits['protocol']!r}; expected {', '.join(PROTOCOLS)}")
    n_folds = splits["n_folds"]
    folds = splits["folds"]
    if not isinstance(folds, list) or not folds:
        raise DataValidationError(path, "split 'folds' must be a non-empty list")
    if not _is_int(n_folds) or n_folds != len(folds):
        raise DataValidationError(path, f"split 'n_folds' is {n_folds!r} but 'folds' holds {len(folds)} folds")

    def indices(value: Any, where: str) -> list[int]:
        if not isinstance(value, list) or not all(_is_int(i) for i in value):
            raise DataValidationError(path, f"split {where} must be a list of integer indices")
        out = [int(i) for i in value]
        bad = [i for i in out if not 0 <= i < total]
        if bad:
            raise DataValidationError(
                path, f"split {where} holds indices outside 0..{total - 1}: {bad[:10]}{' ...' if len(bad) > 10 else ''}"
            )
        if len(set(out)) != len(out):
            raise DataValidationError(path, f"split {where} lists an index more than once")
        return out

    test = indices(splits["test"], "'test'")
    non_test = set(range(total)).difference(test)
    clean_folds = []
    for k, fold in enumerate(folds):
        if not isinstance(fold, dict) or "train" not in fold or "val" not in fold:
            raise DataValidationError(path, f"split fold {k} must be an object with 'train' and 'val' lists")
        train = indices(fold["train"], f"fold {k} 'train'")
        val = indices(fold["val"], f"fold {k} 'val'")
        if not train or not val:
            raise DataValidationError(path, f"split fold {k} has an empty {'train' if not train else 'val'} set")
        leak = set(test).intersection(train + val)
        if leak:
            raise DataValidationError(
                path, f"split fold {k} uses {len(leak)} test image(s) for training/validation, e.g. {sorted(leak)[:10]}"
            )
        both = set(train).intersection(val)
        if both:
            raise DataValidationError(path, f"split fold {k}: {len(both)} index(es) in both train and val, e.g. {sorted(both)[:10]}")
        if set(train).union(val) != non_test:
            left = sorted(non_test.difference(train).difference(val))
            raise DataValidationError(
                path, f"split fold {k}: train and val do not cover the non-test images; missing e.g. {left[:10]}"
            )
        clean_folds.append({"train": train, "val": val})
    out = dict(splits)
    out.update(n=total, n_folds=int(n_folds), test=test, folds=clean_folds)
    return out


def save_splits(splits: dict, path: str | Path) -> None:
    """Validate ``splits`` and write it as JSON at ``path``, atomically (temporary file + rename)."""
    path = Path(path)
    splits = _validate(splits, path)
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
    return _validate(data, path, n)


def load_or_create_splits(path: str | Path, n: int, **kwargs: Any) -> dict:
    """Reuse the split at ``path`` if it exists, else make one with :func:`make_splits` and save it.

    ``kwargs`` are :func:`make_splits`'s (``test_fraction``, ``n_folds``, ``seed``, ``protocol``). An
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
        save_splits(splits, path)
        return splits
    splits = load_splits(path, n=n)
    differ = []
    for key, wanted in kwargs.items():
        stored = splits.get(key)
        same = (
            isinstance(stored, (int, float)) and math.isclose(float(stored), float(wanted), abs_tol=1e-12)
            if key == "test_fraction"
            else stored == wanted
        )
        if not same:
            differ.append(f"{key}={stored!r} in the file, {wanted!r} asked for")
    if differ:
        raise DataValidationError(
            path,
            "existing split was made with other parameters: " + "; ".join(differ)
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

    out = dict(splits, n=len(groups), test=expand(splits["test"]),
               folds=[{"train": expand(f["train"]), "val": expand(f["val"])} for f in splits["folds"]])
    out["patients"] = list(patients)
    return out


def fold_indices(splits: dict, fold: int) -> tuple[list[int], list[int], list[int]]:
    """Return ``(train, val, test)`` index lists of fold ``fold`` (0-based)."""
    folds = splits["folds"]
    if not _is_int(fold) or not 0 <= fold < len(folds):
        raise ConfigError(
            f"fold {fold!r} does not exist: this split has {len(folds)} fold(s), numbered 0..{len(folds) - 1}"
        )
    f = folds[int(fold)]
    return list(f["train"]), list(f["val"]), list(splits["test"])
