"""Making a split: the ``random`` and ``ordered`` protocols, and the checks every split passes.

Two protocols:

``"random"`` (RSE-UNet, ARMS Net, ...): a fixed, seeded, random held-out test set of ``test_fraction``
of the images, and ``n_folds``-fold cross-validation on the rest.

``"ordered"`` (Hu et al.): the test set is the *last* ``test_fraction`` of the images in their stored
order (no shuffle); the folds over the first part are still random and seeded. Image folders, volume cases
and patients are stored in natural name order (:func:`natural_key`: ``2`` before ``10``), so "last" means what
a person counting the files means.

Validation sets. By default (``val_fraction=None``) the non-test images are cut into ``n_folds`` folds whose
validation sets partition them (k-fold). With ``val_fraction=v`` in (0, 1) every fold instead draws its own
random validation set of ``floor(v * rest)`` images (repeated hold-out); with ``v = 0`` there is no
validation set: every fold trains on all non-test images and has an empty ``val`` list.

A split the user writes. ``splits.file`` may name a YAML or JSON file of plain case names (see
:func:`medseg.data.split_names.splits_from_names`): ``{test: [name, ...], folds: [{val: [...], train: [...]},
...]}``, ``folds`` and ``train`` optional; without ``folds`` they are drawn from the non-test cases as above.

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

:func:`validate_split` is what any split, drawn here or read from a file, must satisfy. The stratified group
k-fold protocol is in :mod:`medseg.data.stratified_splits`, a split written as case names in
:mod:`medseg.data.split_names`, saving and reusing splits in :mod:`medseg.data.splits`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, DataValidationError

__all__ = [
    "FILE_PROTOCOL",
    "PROTOCOLS",
    "SINGLE_SPLIT_VAL_FRACTION",
    "STRATIFIED_PROTOCOL",
    "check_val_fraction",
    "draw_folds",
    "is_int",
    "make_splits",
    "natural_key",
    "validate_split",
]

PROTOCOLS = ("random", "ordered")
#: the protocol a split read from a user's file of names records (see medseg.data.split_names.splits_from_names)
FILE_PROTOCOL = "file"
#: the protocol of a stratified group k-fold split (medseg.data.stratified_splits)
STRATIFIED_PROTOCOL = "stratified_group"
SINGLE_SPLIT_VAL_FRACTION = 0.2
_KEYS = ("n", "seed", "protocol", "test_fraction", "n_folds", "test", "folds")


def natural_key(name: str) -> tuple:
    """Sort key that orders names as people count: ``img2`` before ``img10``, ``case_9`` before ``case_10``.

    Runs of digits compare as numbers, the text between them as text (case-sensitive, as plain ``sorted``);
    ``sorted(names, key=natural_key)`` is the order of image folders, volume cases and patients, which the
    ``ordered`` protocol's "last part is the test set" refers to. Ties (``01`` vs ``1``) fall back to the
    plain string.
    """
    parts = re.split(r"(\d+)", str(name))
    # split() alternates text, digits, text, ...: even positions are text, odd ones digit runs
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)) + (str(name),)


def _floor_fraction(n: int, fraction: float) -> int:
    # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    return int(math.floor(n * fraction + 1e-9))


def is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def make_splits(
    n: int,
    *,
    test_fraction: float = 0.2,
    n_folds: int = 5,
    seed: int = 0,
    protocol: str = "random",
    val_fraction: float | None = None,
) -> dict:
    """Make a seeded test set and cross-validation folds for ``n`` images (see the module docstring).

    Returns ``{"n", "seed", "protocol", "test_fraction", "n_folds", "test": [...], "folds":
    [{"train": [...], "val": [...]}, ...]}`` (plus ``"val_fraction"`` when given) with every index list
    sorted. Each fold's train and val together are exactly the non-test images; without ``val_fraction``
    the val sets of the folds partition them, with it each fold's val set is its own random draw of that
    share (none at all for 0).
    """
    if not is_int(n) or n < 1:
        raise ConfigError(f"n must be a positive number of images, got {n!r}")
    if not isinstance(test_fraction, (int, float)) or isinstance(test_fraction, bool) or not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if not is_int(n_folds) or n_folds < 1:
        raise ConfigError(f"n_folds must be an integer >= 1, got {n_folds!r}")
    if not is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown split protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    check_val_fraction(val_fraction)
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

    folds = draw_folds(rest, n_folds, val_fraction, rng, f"{n} images leave {n_rest}")
    out = {
        "n": n,
        "seed": seed,
        "protocol": protocol,
        "test_fraction": float(test_fraction),
        "n_folds": n_folds,
        "test": sorted(int(i) for i in test),
        "folds": folds,
    }
    if val_fraction is not None:
        out["val_fraction"] = float(val_fraction)
    return out


def check_val_fraction(val_fraction: Any) -> None:
    if val_fraction is None:
        return
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1) or None (k-fold), got {val_fraction!r}")


def draw_folds(
    rest: np.ndarray, n_folds: int, val_fraction: float | None, rng: np.random.Generator, what: str
) -> list[dict]:
    """The folds over the non-test images ``rest`` (already in random order): k-fold (``val_fraction``
    None; one fold = a single 80/20 split), or each fold its own random ``val_fraction`` of them (0: none).
    ``what`` begins the error for too few images ("60 images leave 48")."""
    n_rest = len(rest)
    if val_fraction is not None:
        n_val = _floor_fraction(n_rest, float(val_fraction))
        if n_rest - n_val < 1 or (val_fraction > 0 and n_val < 1):
            raise ConfigError(
                f"{what} for training and validation: too few for a validation set of "
                f"{float(val_fraction):.0%}" + (" (none left to train on)" if n_val else "")
            )
        vals = [rng.permutation(rest)[:n_val] if n_val else rest[:0] for _ in range(n_folds)]
    elif n_folds == 1:
        n_val = _floor_fraction(n_rest, SINGLE_SPLIT_VAL_FRACTION)
        if n_val < 1 or n_rest - n_val < 1:
            raise ConfigError(
                f"{what} for training and validation: too few for a train/val split "
                f"with {SINGLE_SPLIT_VAL_FRACTION:.0%} validation"
            )
        vals = [rest[:n_val]]
    else:
        if n_rest < n_folds:
            raise ConfigError(f"{what} for training and validation: too few for {n_folds} folds")
        vals = np.array_split(rest, n_folds)
    rest_set = {int(i) for i in rest}
    folds = []
    for val in vals:
        val_list = sorted(int(i) for i in val)
        folds.append({"train": sorted(rest_set.difference(val_list)), "val": val_list})
    return folds


def validate_split(splits: Any, path: Path | None, n: int | None = None) -> dict:
    """Check a split's structure and invariants; return it with plain-int index lists."""
    if not isinstance(splits, dict):
        raise DataValidationError(path, f"a split must be a JSON object, got {type(splits).__name__}")
    missing = [k for k in _KEYS if k not in splits]
    if missing:
        raise DataValidationError(path, f"split is missing key(s): {', '.join(missing)} (expected: {', '.join(_KEYS)})")
    total = splits["n"]
    if not is_int(total) or total < 1:
        raise DataValidationError(path, f"split 'n' must be a positive integer, got {total!r}")
    total = int(total)
    if n is not None and total != n:
        raise DataValidationError(
            path,
            f"split was made for {total} images, the data has {n}. Use the split file made for this "
            "data, or delete it to make a new one (runs on the old split are then not comparable).",
        )
    if splits["protocol"] not in (*PROTOCOLS, FILE_PROTOCOL, STRATIFIED_PROTOCOL):
        raise DataValidationError(
            path,
            f"unknown split protocol {splits['protocol']!r}; expected "
            f"{', '.join((*PROTOCOLS, FILE_PROTOCOL, STRATIFIED_PROTOCOL))}",
        )
    n_folds = splits["n_folds"]
    folds = splits["folds"]
    val_fraction = splits.get("val_fraction")
    if val_fraction is not None and (
        not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1
    ):
        raise DataValidationError(path, f"split 'val_fraction' must be in [0, 1) or null, got {val_fraction!r}")
    no_val = val_fraction is not None and val_fraction == 0  # a split without validation sets
    if not isinstance(folds, list) or not folds:
        raise DataValidationError(path, "split 'folds' must be a non-empty list")
    if not is_int(n_folds) or n_folds != len(folds):
        raise DataValidationError(path, f"split 'n_folds' is {n_folds!r} but 'folds' holds {len(folds)} folds")

    def indices(value: Any, where: str) -> list[int]:
        if not isinstance(value, list) or not all(is_int(i) for i in value):
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
        if not train:
            raise DataValidationError(path, f"split fold {k} has an empty train set")
        if not val and not no_val:
            raise DataValidationError(
                path, f'split fold {k} has an empty val set (a split without validation sets says "val_fraction": 0)'
            )
        if val and no_val:
            raise DataValidationError(path, f'split fold {k} has a val set but the split says "val_fraction": 0')
        leak = set(test).intersection(train + val)
        if leak:
            raise DataValidationError(
                path, f"split fold {k} uses {len(leak)} test image(s) for training/validation, e.g. {sorted(leak)[:10]}"
            )
        both = set(train).intersection(val)
        if both:
            raise DataValidationError(
                path, f"split fold {k}: {len(both)} index(es) in both train and val, e.g. {sorted(both)[:10]}"
            )
        if set(train).union(val) != non_test:
            left = sorted(non_test.difference(train).difference(val))
            raise DataValidationError(
                path, f"split fold {k}: train and val do not cover the non-test images; missing e.g. {left[:10]}"
            )
        clean_folds.append({"train": train, "val": val})
    out = dict(splits)
    out.update(n=total, n_folds=int(n_folds), test=test, folds=clean_folds)
    return out
