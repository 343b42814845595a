"""Train/validation/test splits, made once, saved as JSON and reused by every run and every model.

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
:func:`splits_from_names`): ``{test: [name, ...], folds: [{val: [...], train: [...]}, ...]}``, ``folds``
and ``train`` optional; without ``folds`` they are drawn from the non-test cases as above.

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

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, DataValidationError

PROTOCOLS = ("random", "ordered")
#: the protocol a split read from a user's file of names records (see splits_from_names)
FILE_PROTOCOL = "file"
SINGLE_SPLIT_VAL_FRACTION = 0.2
_KEYS = ("n", "seed", "protocol", "test_fraction", "n_folds", "test", "folds")
_PARAMS = ("test_fraction", "n_folds", "seed", "protocol", "val_fraction")
_MAX_LISTED = 10


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


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def make_splits(
    n: int, *, test_fraction: float = 0.2, n_folds: int = 5, seed: int = 0, protocol: str = "random",
    val_fraction: float | None = None,
) -> dict:
    """Make a seeded test set and cross-validation folds for ``n`` images (see the module docstring).

    Returns ``{"n", "seed", "protocol", "test_fraction", "n_folds", "test": [...], "folds":
    [{"train": [...], "val": [...]}, ...]}`` (plus ``"val_fraction"`` when given) with every index list
    sorted. Each fold's train and val together are exactly the non-test images; without ``val_fraction``
    the val sets of the folds partition them, with it each fold's val set is its own random draw of that
    share (none at all for 0).
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
    _check_val_fraction(val_fraction)
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

    folds = _draw_folds(rest, n_folds, val_fraction, rng, f"{n} images leave {n_rest}")
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


def _check_val_fraction(val_fraction: Any) -> None:
    if val_fraction is None:
        return
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1) or None (k-fold), got {val_fraction!r}")


def _draw_folds(rest: np.ndarray, n_folds: int, val_fraction: float | None, rng: np.random.Generator,
                what: str) -> list[dict]:
    """The folds over the non-test images ``rest`` (already in random order): k-fold (``val_fraction``
    None; one fold = a single 80/20 split), or each fold its own random ``val_fraction`` of them (0: none).
    ``what`` begins the error for too few images ("60 images leave 48")."""
    n_rest = len(rest)
    if val_fraction is not None:
        n_val = _floor_fraction(n_rest, float(val_fraction))
        if n_rest - n_val < 1 or (val_fraction > 0 and n_val < 1):
            raise ConfigError(f"{what} for training and validation: too few for a validation set of "
                              f"{float(val_fraction):.0%}" + (" (none left to train on)" if n_val else ""))
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
    if splits["protocol"] not in (*PROTOCOLS, FILE_PROTOCOL, STRATIFIED_PROTOCOL):
        raise DataValidationError(path, f"unknown split protocol {splits['protocol']!r}; expected "
                                        f"{', '.join((*PROTOCOLS, FILE_PROTOCOL, STRATIFIED_PROTOCOL))}")
    n_folds = splits["n_folds"]
    folds = splits["folds"]
    val_fraction = splits.get("val_fraction")
    if val_fraction is not None and (not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool)
                                     or not 0 <= val_fraction < 1):
        raise DataValidationError(path, f"split 'val_fraction' must be in [0, 1) or null, got {val_fraction!r}")
    no_val = val_fraction is not None and val_fraction == 0  # a split without validation sets
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
        if not train:
            raise DataValidationError(path, f"split fold {k} has an empty train set")
        if not val and not no_val:
            raise DataValidationError(path, f"split fold {k} has an empty val set (a split without validation sets "
                                            "says \"val_fraction\": 0)")
        if val and no_val:
            raise DataValidationError(path, f"split fold {k} has a val set but the split says \"val_fraction\": 0")
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
            "existing split was made with other parameters: " + "; ".join(differ)
            + ". Use the file's parameters, another split path, or delete the file to make a new split.",
        )
    return splits


def check_names(splits: dict, names: list[str], path: str | Path | None) -> None:
    """A split that records its units' ``"names"`` must be applied to units of those names in that order:
    otherwise its indices would pick other cases. Raises :class:`DataValidationError` naming the file."""
    stored = splits.get("names")
    if stored is None or [str(u) for u in stored] == [str(u) for u in names]:
        return
    if sorted(map(str, stored)) == sorted(map(str, names)):
        problem = "names the same cases in another order"
    else:
        gone = sorted(set(map(str, stored)) - set(map(str, names)))
        new = sorted(set(map(str, names)) - set(map(str, stored)))
        problem = "was made for other cases" + (f"; not in the data: {_listing(gone)}" if gone else "") + \
            (f"; not in the split: {_listing(new)}" if new else "")
    raise DataValidationError(path, f"this split {problem} than the data ({len(names)} cases or patients); its "
                                    "indices would pick the wrong cases. Use the split made for this data, or "
                                    "delete it to make a new one")


# ------------------------------------------------------------------------------- a split the user writes


def read_split_file(path: str | Path) -> Any:
    """The content of a split file: JSON when it ends in ``.json``, else YAML (which JSON also is).

    Raises :class:`DataValidationError` naming the file when it is missing or not valid JSON/YAML.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataValidationError(path, "split file not found" if not path.exists() else "split file is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataValidationError(path, f"split file cannot be read as text ({exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataValidationError(path, f"split file is not valid JSON ({exc})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataValidationError(path, f"split file is not valid YAML ({' '.join(str(exc).split())})") from exc


def is_index_split(content: Any) -> bool:
    """Whether a split file's content is a split medseg wrote (indices, with ``n``), not a user's names."""
    return isinstance(content, dict) and "n" in content


def _strip_suffix(name: str) -> str:
    """``img_01.png`` → ``img_01``, ``case_3.nii.gz`` → ``case_3`` (a suffix starts with a letter: ``a.5`` stays)."""
    return re.sub(r"\.(nii\.gz|[A-Za-z][A-Za-z0-9]{0,4})$", "", name)


def _listing(items: list[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:_MAX_LISTED])
    return shown + (f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


class _CaseNames:
    """Finds the data's cases a user's split file names (see :func:`splits_from_names`)."""

    def __init__(self, names: list[str], groups: list[str] | None, path: Path, hint: str):
        self.names, self.path, self.hint = [str(n) for n in names], path, hint
        self.exact = {n: i for i, n in enumerate(self.names)}
        self.bare: dict[str, list[int]] = {}
        for i, n in enumerate(self.names):
            self.bare.setdefault(_strip_suffix(n), []).append(i)
        self.patients: dict[str, list[int]] = {}
        for i, g in enumerate(groups or []):
            self.patients.setdefault(str(g), []).append(i)

    def lookup(self, listed: str) -> list[int] | None:
        """The case indices a listed name stands for: the case of that name (with or without its suffix, or as
        a path), or every case of that patient (volumes grouped by ``data.patient_pattern``); None if unknown."""
        base = listed.replace("\\", "/").rsplit("/", 1)[-1]
        for key in dict.fromkeys((listed, base, _strip_suffix(base))):
            if key in self.exact:
                return [self.exact[key]]
            if len(self.bare.get(key, ())) == 1:
                return list(self.bare[key])
            if key in self.patients:
                return list(self.patients[key])
        return None

    def cases(self, value: Any, where: str) -> list[int]:
        """Case indices of one list of the file (``test``, ``folds[0].val``); an error naming the file for
        anything but a list of known names, each case named once."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            got = type(value).__name__ if not isinstance(value, list) else \
                ", ".join(sorted({type(v).__name__ for v in value if not isinstance(v, str)}))
            raise DataValidationError(self.path, f"'{where}' must be a list of case names (strings), got {got}; write "
                                                 "the names of the files (e.g. img_01.png or img_01), not indices")
        unknown: list[str] = []
        named_by: dict[int, str] = {}
        repeated: list[str] = []
        for listed in value:
            hits = self.lookup(listed)
            if hits is None:
                unknown.append(listed)
                continue
            for i in hits:
                if i in named_by:
                    other = named_by[i]
                    repeated.append(repr(listed) if other == listed else f"{listed!r} and {other!r} (the same case)")
                named_by.setdefault(i, listed)
        if unknown:
            examples = ", ".join(self.names[:3]) + (", ..." if len(self.names) > 3 else "")
            raise DataValidationError(
                self.path, f"{len(unknown)} name(s) in '{where}' are not in the data: {_listing(unknown)}; the data's "
                           f"{len(self.names)} cases are named like {examples}{self.hint}")
        if repeated:
            raise DataValidationError(self.path, f"'{where}' names a case more than once: "
                                                 + ", ".join(dict.fromkeys(repeated)))
        return sorted(named_by)


def splits_from_names(
    content: Any, path: str | Path, names: list[str], *, groups: list[str] | None = None, n_folds: int = 5,
    seed: int = 0, val_fraction: float | None = None, hint: str = "",
) -> dict:
    """A split from a user's file of case names (``splits.file``), over the data's ``names``.

    The file (``content`` as :func:`read_split_file` returns it)::

        test: [img_07.png, img_12, ...]        # the held-out test cases (may be empty)
        folds:                                   # optional
          - {val: [img_01, img_02, ...]}         # one validation list per fold
          - {val: [...], train: [...]}           # train optional; if given, train + val = every non-test case

    Names match the data's names (image file stems, volume case names) with or without their suffix, or as
    paths; with ``groups`` (volumes grouped by patient) a name may also be a patient id, and a case stands for
    its whole patient (a patient is never on two sides). Every list is honoured exactly; without ``folds``
    the folds are drawn from the non-test cases as :func:`make_splits` would (``n_folds``, ``val_fraction``,
    ``seed``). ``val: []`` in every fold means no validation set.

    The split is over the *units* (cases, or with ``groups`` the patients in natural order) like every split
    here, with ``"protocol": "file"``, ``"source"`` (the file) and ``"names"`` (the units' names). Raises
    :class:`DataValidationError` naming the file for unknown keys or names, a case named twice or on two
    sides, a train list that leaves cases out, or too few cases to draw the folds; ``hint`` is appended to
    the unknown-name error (e.g. that ``data.limit`` is set).
    """
    path = Path(path)
    if not isinstance(content, dict):
        raise DataValidationError(path, "a split file must be a mapping {test: [names], folds: [{val: [names]}, ...]}, "
                                        f"got {type(content).__name__}")
    unknown = [k for k in content if k not in ("test", "folds")]
    if unknown:
        raise DataValidationError(path, f"unknown key(s) {_listing([str(k) for k in unknown])} in the split file; "
                                        "expected test (a list of names) and optionally folds ([{val: [...], train: "
                                        "[...]}, ...])")
    if "test" not in content:
        raise DataValidationError(path, "the split file has no 'test' list (write test: [] for no held-out test set)")
    finder = _CaseNames(names, groups, path, hint)
    units = sorted(set(map(str, groups)), key=natural_key) if groups is not None else [str(n) for n in names]
    unit_index = {u: k for k, u in enumerate(units)}
    unit_of = [unit_index[str(g)] for g in groups] if groups is not None else list(range(len(names)))

    def side(cases: list[int], where: str, taken: dict[int, str]) -> set[int]:
        """The units of ``cases``; an error if one of them is already on another side (``taken``)."""
        out = set()
        for c in cases:
            u = unit_of[c]
            if u in taken and taken[u] != where:
                what = f"case {names[c]!r}" if groups is None else \
                    f"patient {units[u]!r} (case {names[c]!r}; data.patient_pattern keeps a patient's cases together)"
                raise DataValidationError(path, f"{what} is in both '{taken[u]}' and '{where}'")
            out.add(u)
        return out

    test_taken: dict[int, str] = {}
    test = side(finder.cases(content["test"], "test"), "test", test_taken)
    test_taken.update({u: "test" for u in test})
    rest = [u for u in range(len(units)) if u not in test]
    out: dict[str, Any] = {"n": len(units), "seed": int(seed), "protocol": FILE_PROTOCOL,
                           "test_fraction": round(len(test) / len(units), 6) if units else 0.0}
    folds_in = content.get("folds")
    if folds_in is None:
        _check_val_fraction(val_fraction)
        rng = np.random.default_rng(int(seed))
        folds = _draw_folds(rng.permutation(np.asarray(rest, dtype=np.int64)), int(n_folds), val_fraction, rng,
                            f"{path}: the cases not in 'test' leave {len(rest)}")
        if val_fraction is not None:
            out["val_fraction"] = float(val_fraction)
    else:
        if not isinstance(folds_in, list) or not folds_in:
            raise DataValidationError(path, "'folds' must be a non-empty list of {val: [names], train: [names]} "
                                            "(or leave it out to draw the folds)")
        folds = []
        for k, fold in enumerate(folds_in):
            where = f"folds[{k}]"
            if not isinstance(fold, dict) or "val" not in fold or set(fold) - {"val", "train"}:
                raise DataValidationError(path, f"'{where}' must be a mapping with a 'val' list of names and "
                                                f"optionally a 'train' list, got {fold!r:.80}")
            taken = dict(test_taken)
            val = side(finder.cases(fold["val"], f"{where}.val"), f"{where}.val", taken)
            taken.update({u: f"{where}.val" for u in val})
            if "train" in fold:
                train = side(finder.cases(fold["train"], f"{where}.train"), f"{where}.train", taken)
                left = [units[u] for u in rest if u not in train and u not in val]
                if left:
                    raise DataValidationError(path, f"'{where}': {len(left)} case(s) are in neither 'test' nor this "
                                                    f"fold's train or val: {_listing(left)}; train and val of a fold "
                                                    "must be every case not in test (or leave train out)")
            else:
                train = set(rest) - val
            if not train:
                raise DataValidationError(path, f"'{where}' leaves no case to train on")
            folds.append({"train": sorted(train), "val": sorted(val)})
        empty = [k for k, f in enumerate(folds) if not f["val"]]
        if empty and len(empty) != len(folds):
            raise DataValidationError(path, f"folds {empty} have an empty 'val' list and the others not; give every "
                                            "fold a validation list, or none (val: [] in every fold: no validation)")
        if empty:
            out["val_fraction"] = 0.0
    out.update(n_folds=len(folds), test=sorted(test), folds=folds, source=str(path.resolve()), names=units)
    return _validate(out, path)


def file_digest(path: str | Path) -> str:
    """A short content hash of a file: names the split medseg derives from a user's split file."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]


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
    out.pop("names", None)  # the patients' names: now under "patients", the indices being the cases'
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


# --- stratified group k-fold (splits.stratify; the GI paper's StratifiedGroupKFold) --------------------------

STRATIFIED_PROTOCOL = "stratified_group"


def _best_fold(y_counts_per_fold: np.ndarray, y_cnt: np.ndarray, group_y_counts: np.ndarray) -> int:
    best_fold, min_eval, min_samples = None, np.inf, None
    for i in range(len(y_counts_per_fold)):
        y_counts_per_fold[i] += group_y_counts
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = y_counts_per_fold / y_cnt.reshape(1, -1)
        dist = np.nan_to_num(dist)
        y_counts_per_fold[i] -= group_y_counts
        fold_eval = np.mean(np.std(dist, axis=0))
        samples = y_counts_per_fold[i].sum()
        is_better = fold_eval < min_eval or (np.isclose(fold_eval, min_eval) and samples < min_samples)
        if is_better:
            min_eval, min_samples, best_fold = fold_eval, samples, i
    return best_fold


def stratified_group_assignment(strata, groups, n_folds: int, *, seed: int = 0,
                                n_strata: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The fold of every group, as scikit-learn's ``StratifiedGroupKFold(shuffle=True)`` assigns them
    (scikit-learn is not a dependency): groups in a seeded random order, then sorted by the spread of their
    stratum counts (largest first), each put into the fold that keeps every stratum's share across folds
    most even (ties: the smallest fold). Returns (fold of each group in ``sorted(set(groups))`` order,
    (n_folds, n_strata) item counts per fold and stratum)."""
    y = np.asarray(strata, dtype=int)
    group_names = sorted(set(groups))
    n_cls = int(n_strata if n_strata is not None else (y.max() + 1 if y.size else 1))
    g_index = {g: i for i, g in enumerate(group_names)}
    g = np.array([g_index[c] for c in groups], dtype=int)
    y_counts_per_group = np.zeros((len(group_names), n_cls))
    np.add.at(y_counts_per_group, (g, y), 1)
    y_cnt = np.bincount(y, minlength=n_cls).astype(float)
    order = np.random.default_rng(seed).permutation(len(group_names))
    spread = np.std(y_counts_per_group[order], axis=1)
    order = order[np.argsort(-spread, kind="mergesort")]
    y_counts_per_fold = np.zeros((n_folds, n_cls))
    fold_of_group = np.empty(len(group_names), dtype=int)
    for gi in order:
        best = _best_fold(y_counts_per_fold, y_cnt, y_counts_per_group[gi])
        y_counts_per_fold[best] += y_counts_per_group[gi]
        fold_of_group[gi] = best
    return fold_of_group, y_counts_per_fold


def make_stratified_group_splits(strata, groups, *, n_folds: int = 5, seed: int = 0) -> dict:
    """A medseg split (no test set; ``n_folds`` folds whose validation sets partition the items) with every
    group (patient, case) inside one fold and the strata in about equal shares per fold."""
    strata, groups = list(strata), list(groups)
    if len(strata) != len(groups) or not strata:
        raise ConfigError(f"stratified splits need one stratum and one group per item, got {len(strata)} and "
                          f"{len(groups)}")
    if not _is_int(n_folds) or n_folds < 2:
        raise ConfigError(f"splits.stratify needs n_folds >= 2, got {n_folds!r}")
    names = sorted(set(groups))
    if n_folds > len(names):
        raise ConfigError(f"splits.n_folds {n_folds} is more than the {len(names)} patients/cases to spread over them")
    fold_of_group, _ = stratified_group_assignment(strata, groups, int(n_folds), seed=int(seed))
    g_index = {g: i for i, g in enumerate(names)}
    fold_of_item = np.array([fold_of_group[g_index[g]] for g in groups])
    everything = np.arange(len(groups))
    folds = [{"train": everything[fold_of_item != k].tolist(), "val": everything[fold_of_item == k].tolist()}
             for k in range(int(n_folds))]
    return {"n": len(groups), "seed": int(seed), "protocol": STRATIFIED_PROTOCOL, "test_fraction": 0.0,
            "n_folds": int(n_folds), "test": [], "folds": folds}
