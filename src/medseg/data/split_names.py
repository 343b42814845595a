"""A split the user writes as case names (``splits.file``), and the check that a saved split fits the data's names.

``splits.file`` may name a YAML or JSON file of plain case names: ``{test: [name, ...], folds: [{val: [...],
train: [...]}, ...]}``, ``folds`` and ``train`` optional; without ``folds`` they are drawn from the non-test
cases as :func:`medseg.data.split_making.make_splits` draws them (:func:`splits_from_names`). A split JSON
that medseg wrote (indices) may be named there too (:func:`is_index_split` tells them apart).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.split_making import FILE_PROTOCOL, check_val_fraction, draw_folds, natural_key, validate_split
from medseg.errors import DataValidationError

__all__ = ["check_names", "file_digest", "is_index_split", "read_split_file", "splits_from_names"]

_MAX_LISTED = 10


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
        problem = (
            "was made for other cases"
            + (f"; not in the data: {_listing(gone)}" if gone else "")
            + (f"; not in the split: {_listing(new)}" if new else "")
        )
    raise DataValidationError(
        path,
        f"this split {problem} than the data ({len(names)} cases or patients); its "
        "indices would pick the wrong cases. Use the split made for this data, or "
        "delete it to make a new one",
    )


def file_digest(path: str | Path) -> str:
    """A short content hash of a file: names the split medseg derives from a user's split file."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]


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
        self.given, self.grouped = names, groups is not None
        #: the units a split is made over: the cases, or with ``groups`` the patients in natural order
        self.units = sorted(set(map(str, groups)), key=natural_key) if groups is not None else list(self.names)
        unit_index = {u: k for k, u in enumerate(self.units)}
        self.unit_of = [unit_index[str(g)] for g in groups] if groups is not None else list(range(len(names)))

    def side(self, cases: list[int], where: str, taken: dict[int, str]) -> set[int]:
        """The units of ``cases``; an error if one of them is already on another side (``taken``)."""
        out = set()
        for c in cases:
            u = self.unit_of[c]
            if u in taken and taken[u] != where:
                what = (
                    f"case {self.given[c]!r}"
                    if not self.grouped
                    else f"patient {self.units[u]!r} (case {self.given[c]!r}; data.patient_pattern keeps a patient's "
                    "cases together)"
                )
                raise DataValidationError(self.path, f"{what} is in both '{taken[u]}' and '{where}'")
            out.add(u)
        return out

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
            got = (
                type(value).__name__
                if not isinstance(value, list)
                else ", ".join(sorted({type(v).__name__ for v in value if not isinstance(v, str)}))
            )
            raise DataValidationError(
                self.path,
                f"'{where}' must be a list of case names (strings), got {got}; write "
                "the names of the files (e.g. img_01.png or img_01), not indices",
            )
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
                self.path,
                f"{len(unknown)} name(s) in '{where}' are not in the data: {_listing(unknown)}; the data's "
                f"{len(self.names)} cases are named like {examples}{self.hint}",
            )
        if repeated:
            raise DataValidationError(
                self.path, f"'{where}' names a case more than once: " + ", ".join(dict.fromkeys(repeated))
            )
        return sorted(named_by)


def splits_from_names(
    content: Any,
    path: str | Path,
    names: list[str],
    *,
    groups: list[str] | None = None,
    n_folds: int = 5,
    seed: int = 0,
    val_fraction: float | None = None,
    hint: str = "",
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
    the folds are drawn from the non-test cases as :func:`~medseg.data.split_making.make_splits` would
    (``n_folds``, ``val_fraction``, ``seed``). ``val: []`` in every fold means no validation set.

    The split is over the *units* (cases, or with ``groups`` the patients in natural order) like every split
    here, with ``"protocol": "file"``, ``"source"`` (the file) and ``"names"`` (the units' names). Raises
    :class:`DataValidationError` naming the file for unknown keys or names, a case named twice or on two
    sides, a train list that leaves cases out, or too few cases to draw the folds; ``hint`` is appended to
    the unknown-name error (e.g. that ``data.limit`` is set).
    """
    path = Path(path)
    _check_file_keys(content, path)
    finder = _CaseNames(names, groups, path, hint)
    test_taken: dict[int, str] = {}
    test = finder.side(finder.cases(content["test"], "test"), "test", test_taken)
    test_taken.update({u: "test" for u in test})
    units = finder.units
    rest = [u for u in range(len(units)) if u not in test]
    out: dict[str, Any] = {
        "n": len(units),
        "seed": int(seed),
        "protocol": FILE_PROTOCOL,
        "test_fraction": round(len(test) / len(units), 6) if units else 0.0,
    }
    folds_in = content.get("folds")
    if folds_in is None:
        check_val_fraction(val_fraction)
        rng = np.random.default_rng(int(seed))
        folds = draw_folds(
            rng.permutation(np.asarray(rest, dtype=np.int64)),
            int(n_folds),
            val_fraction,
            rng,
            f"{path}: the cases not in 'test' leave {len(rest)}",
        )
        if val_fraction is not None:
            out["val_fraction"] = float(val_fraction)
    else:
        folds = _folds_as_listed(folds_in, finder, test_taken, rest)
        if not folds[0]["val"]:  # every fold or none has a validation list (checked there)
            out["val_fraction"] = 0.0
    out.update(n_folds=len(folds), test=sorted(test), folds=folds, source=str(path.resolve()), names=units)
    return validate_split(out, path)


def _check_file_keys(content: Any, path: Path) -> None:
    """A split file is a mapping with a ``test`` list and maybe ``folds``; an error naming the file if not."""
    if not isinstance(content, dict):
        raise DataValidationError(
            path,
            "a split file must be a mapping {test: [names], folds: [{val: [names]}, ...]}, "
            f"got {type(content).__name__}",
        )
    unknown = [k for k in content if k not in ("test", "folds")]
    if unknown:
        raise DataValidationError(
            path,
            f"unknown key(s) {_listing([str(k) for k in unknown])} in the split file; "
            "expected test (a list of names) and optionally folds ([{val: [...], train: "
            "[...]}, ...])",
        )
    if "test" not in content:
        raise DataValidationError(path, "the split file has no 'test' list (write test: [] for no held-out test set)")


def _folds_as_listed(folds_in: Any, finder: _CaseNames, test_taken: dict[int, str], rest: list[int]) -> list[dict]:
    """The folds a split file lists (``folds``): each fold's val (and train, else every other non-test unit)."""
    path, units = finder.path, finder.units
    if not isinstance(folds_in, list) or not folds_in:
        raise DataValidationError(
            path,
            "'folds' must be a non-empty list of {val: [names], train: [names]} (or leave it out to draw the folds)",
        )
    folds = []
    for k, fold in enumerate(folds_in):
        where = f"folds[{k}]"
        if not isinstance(fold, dict) or "val" not in fold or set(fold) - {"val", "train"}:
            raise DataValidationError(
                path,
                f"'{where}' must be a mapping with a 'val' list of names and "
                f"optionally a 'train' list, got {fold!r:.80}",
            )
        taken = dict(test_taken)
        val = finder.side(finder.cases(fold["val"], f"{where}.val"), f"{where}.val", taken)
        taken.update({u: f"{where}.val" for u in val})
        if "train" in fold:
            train = finder.side(finder.cases(fold["train"], f"{where}.train"), f"{where}.train", taken)
            left = [units[u] for u in rest if u not in train and u not in val]
            if left:
                raise DataValidationError(
                    path,
                    f"'{where}': {len(left)} case(s) are in neither 'test' nor this "
                    f"fold's train or val: {_listing(left)}; train and val of a fold "
                    "must be every case not in test (or leave train out)",
                )
        else:
            train = set(rest) - val
        if not train:
            raise DataValidationError(path, f"'{where}' leaves no case to train on")
        folds.append({"train": sorted(train), "val": sorted(val)})
    empty = [k for k, f in enumerate(folds) if not f["val"]]
    if empty and len(empty) != len(folds):
        raise DataValidationError(
            path,
            f"folds {empty} have an empty 'val' list and the others not; give every "
            "fold a validation list, or none (val: [] in every fold: no validation)",
        )
    return folds
