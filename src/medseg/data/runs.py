"""Run folders and the split a run uses: where a config's folds, split file and data record live.

A run folder is ``<output.root>/<name>/`` with ``fold_<k>/`` per trained fold; the split every model trained
on the same data shares is saved once as JSON under ``<output.root>/splits/``, keyed by the data's content
hash, so training, evaluation and a later ``medseg cv`` all see the same cases.

``splits.file`` names a split instead: a split JSON medseg wrote (used as it is, whatever ``splits.*`` say),
a user's YAML/JSON of case names (:func:`medseg.data.splits.splits_from_names`; the indices it resolves to are
saved under ``<output.root>/splits/`` too, keyed by the data and the file's content), or a path that does not
exist yet, where a split drawn by ``splits.*`` is saved.

Order. Cases and patients are split in natural name order (``img2`` before ``img10``). A split saved by
earlier medseg versions, in plain string order, is carried over to the new order case by case (the same cases
stay in the test set, so resumed and re-evaluated runs keep their test set) when it was drawn at random; an
``ordered`` split, whose test set *was* the wrong "last" cases, is drawn again with a warning.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from medseg.data.datasets import SegmentationData
from medseg.data.splits import (
    STRATIFIED_PROTOCOL,
    check_names,
    expand_patient_splits,
    file_digest,
    is_index_split,
    load_or_create_splits,
    load_splits,
    make_stratified_group_splits,
    natural_key,
    read_split_file,
    save_splits,
    splits_from_names,
)
from medseg.errors import ConfigError, DataValidationError, MedsegError


def run_dir_for(cfg: dict) -> Path:
    return Path(cfg["output"]["root"]) / cfg["name"]


# Settings a run may change between its trainings, so not compared with its record: how long it trains (a longer
# train.epochs / iterations / time limit continues a finished run; the per-epoch batch caps), where and how fast
# (device, workers, AMP, channels-last, compilation, DDP), its name and place, how it is evaluated, and where the
# data lie (the data themselves are compared by content hash). Everything else — the data, task, model, loss,
# optimizer and schedule, augmentation, splits — makes another training, which a run folder never mixes with its own.
RESUMABLE_SETTINGS = (
    "name",
    "output",
    "evaluate",
    "data.path",
    "data.mfish_source",
    "train.epochs",
    "train.iterations",
    "train.time_limit_minutes",
    "train.max_batches_per_epoch",
    "train.val_max_batches",
    "train.validation",
    "train.device",
    "train.num_workers",
    "train.amp",
    "train.channels_last",
    "train.compile",
    "train.compile_backend",
    "train.distributed",
    "train.deterministic",
)


class RunMismatch(MedsegError):
    """A training into a run folder that holds another training (other data, config or split)."""


def run_differences(run_dir: Path, cfg: dict, data: SegmentationData, split_path: Path) -> list[str]:
    """How this training differs from the one recorded in ``run_dir`` (``data.json``, ``fold_*/config.yaml``):
    the data's content hash, the split file and the config outside :data:`RESUMABLE_SETTINGS`; [] when it is
    the same training or the folder holds none. A setting a record lacks (written by an older medseg) counts
    as its default."""
    import json

    import yaml

    from medseg.config import load_config

    found = []
    try:
        record = json.loads((run_dir / "data.json").read_text())
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    if record.get("fingerprint") and record["fingerprint"] != data.fingerprint:
        found.append(
            f"data: trained on {record.get('data')} (content hash {record['fingerprint']}), this command "
            f"gives {data.source} ({data.fingerprint})"
        )
    elif record.get("splits_file") and Path(record["splits_file"]) != split_path.resolve():
        found.append(f"split: trained on {record['splits_file']}, this command gives {split_path.resolve()}")
    saved = sorted(run_dir.glob("fold_*/config.yaml"))
    if saved:
        try:
            old = yaml.safe_load(saved[0].read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DataValidationError(
                saved[0], f"unreadable run config ({exc}); replace the run with --restart or train under a new --name"
            ) from None
        new = yaml.safe_load(yaml.safe_dump(cfg))  # as config.yaml holds it (lists, plain types)
        default = _flat(load_config())
        old, new = _flat(old if isinstance(old, dict) else {}), _flat(new)
        changed = [
            k
            for k in sorted(old.keys() | new.keys())
            if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_SETTINGS)
            and old.get(k, default.get(k)) != new.get(k, default.get(k))
        ]
        if changed:
            shown = ", ".join(
                f"{k} {old.get(k, default.get(k))!r} → {new.get(k, default.get(k))!r}" for k in changed[:4]
            )
            found.append(
                f"config ({saved[0]}): {shown}" + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
            )
    return found


def _flat(tree: dict, prefix: str = "") -> dict:
    """A nested config as {"section.key": value}; lists stay whole values."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_same_training(
    run_dir: Path, cfg: dict, data: SegmentationData, split_path: Path, *, restart: bool
) -> list[Path]:
    """Refuse (:class:`RunMismatch`) to train into a run folder holding another training — before anything in it
    is written — naming what differs and the two ways out. With ``restart`` the other training is replaced:
    its folds, evaluation and data record are removed, and returned, so no fold of the old one stays beside
    the new one."""
    import shutil

    found = run_differences(run_dir, cfg, data, split_path)
    if not found:
        return []
    if not restart:
        raise RunMismatch(
            f"{run_dir} holds another training — {'; '.join(found)}: train a new run with --name NEW "
            "(reproduce: --out DIR), or replace this one with --restart"
        )
    stale = [*sorted(run_dir.glob("fold_*")), run_dir / "evaluation", run_dir / "data.json"]
    removed = [p for p in stale if p.exists()]
    for p in removed:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return removed


def _params(sp: dict) -> dict:
    """The drawing parameters of the ``splits`` section, as :func:`load_or_create_splits` takes them."""
    out = {
        "test_fraction": float(sp["test_fraction"]),
        "n_folds": int(sp["n_folds"]),
        "seed": int(sp["seed"]),
        "protocol": sp["protocol"],
    }
    if sp.get("val_fraction") is not None:
        out["val_fraction"] = float(sp["val_fraction"])
    return out


def _tag(sp: dict, fingerprint: str, unit: str, n_units: int) -> str:
    vf = sp.get("val_fraction")
    return (
        f"{fingerprint}_{unit}{n_units}_{sp['protocol']}_t{sp['test_fraction']}_k{sp['n_folds']}"
        + (f"_v{vf}" if vf is not None else "")
        + f"_s{sp['seed']}"
    )


def splits_for(cfg: dict, data: SegmentationData) -> tuple[dict, Path]:
    """The split of this config and data and the file it is saved in (see the module docstring).

    Volumes are split by patient: the split holds indices of the patients in natural order, expanded here to
    their cases, so no patient's series lands on both sides.
    """
    sp = cfg["splits"]
    if not sp.get("file") and getattr(data, "split_file", None):
        sp = {**sp, "file": data.split_file}  # the data's own split (mfish-pairs: held-out slides)
        cfg = {**cfg, "splits": sp}
    if sp.get("stratify"):
        return _stratified(cfg, data)
    patients = sorted(set(data.groups), key=natural_key) if data.groups is not None else None
    n_units = len(patients) if patients is not None else len(data)
    root = Path(cfg["output"]["root"]) / "splits"
    # natural order: "p" where it is also their plain string order (what earlier versions used), else "pn"
    unit = "n" if patients is None else "p" if patients == sorted(patients) else "pn"
    if sp.get("file") and Path(sp["file"]).exists():
        path = Path(sp["file"])
        content = read_split_file(path)
        if is_index_split(content):
            splits = load_splits(path, n=n_units)  # the file decides, whatever splits.* say
            check_names(splits, patients if patients is not None else data.names, path)
        else:
            splits, path = _from_names(
                cfg,
                data,
                content,
                path,
                root
                / (
                    f"{data.fingerprint}_{unit}{n_units}_file-{file_digest(path)}_k{sp['n_folds']}"
                    + (f"_v{sp['val_fraction']}" if sp.get("val_fraction") is not None else "")
                    + f"_s{sp['seed']}.json"
                ),
            )
    else:
        path = Path(sp["file"]) if sp.get("file") else root / f"{_tag(sp, data.fingerprint, unit, n_units)}.json"
        if not path.exists() and not sp.get("file"):
            _carry_over_legacy(cfg, data, path, n_units)
        # patient splits record the patients' names (few), so a split is never applied to patients in another order
        splits = load_or_create_splits(path, n_units, names=patients, **_params(sp))
    if patients is not None:
        splits = expand_patient_splits(splits, patients, data.groups)
    return splits, path


def _stratified(cfg: dict, data: SegmentationData) -> tuple[dict, Path]:
    """``splits.stratify``: k folds grouped by patient/case, stratified by :attr:`SegmentationData.strata`
    (the GI paper's StratifiedGroupKFold), made once and saved like every split."""
    sp = cfg["splits"]
    if data.strata is None:
        raise ConfigError(
            f"splits.stratify needs data that give each image a stratum (the UW-Madison GI folder: "
            f"organs per image); {data.source} gives none: set splits.stratify: false"
        )
    groups = data.groups if data.groups is not None else list(data.names)
    path = (
        Path(sp["file"])
        if sp.get("file")
        else Path(cfg["output"]["root"])
        / "splits"
        / f"{data.fingerprint}_n{len(data)}_{STRATIFIED_PROTOCOL}_k{sp['n_folds']}_s{sp['seed']}.json"
    )
    if path.exists():
        return load_splits(path, n=len(data)), path
    splits = make_stratified_group_splits(data.strata, groups, n_folds=int(sp["n_folds"]), seed=int(sp["seed"]))
    save_splits(splits, path)
    return splits, path


def _from_names(cfg: dict, data: SegmentationData, content, source: Path, saved: Path) -> tuple[dict, Path]:
    """A user's split of names → indices, saved at ``saved`` the first time and reused after (the folds a file
    leaves out are drawn once; the saved file keeps them whatever a later NumPy draws)."""
    sp = cfg["splits"]
    limit = cfg["data"].get("limit")
    hint = f" (data.limit is {limit}: only the first {limit} cases are loaded)" if limit else ""
    splits = splits_from_names(
        content,
        source,
        data.names,
        groups=data.groups,
        n_folds=int(sp["n_folds"]),
        seed=int(sp["seed"]),
        val_fraction=sp.get("val_fraction"),
        hint=hint,
    )
    if saved.exists():
        stored = load_splits(saved, n=splits["n"])
        given_folds = isinstance(content, dict) and content.get("folds") is not None
        if stored["test"] != splits["test"] or (given_folds and stored["folds"] != splits["folds"]):
            raise DataValidationError(
                saved,
                f"this split, saved from {source}, no longer matches that file; delete it to derive the split again",
            )
        return stored, saved
    save_splits(splits, saved)
    return splits, saved


def _labels_fingerprint(labels: np.ndarray) -> str:
    """:attr:`SegmentationData.fingerprint` of labels in another order."""
    h = hashlib.sha1()
    h.update(str(labels.shape).encode())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()[:12]


def _carry_over_legacy(cfg: dict, data: SegmentationData, path: Path, n_units: int) -> None:
    """Earlier medseg versions split cases and patients in plain string order (``img10`` before ``img2``). If a
    split of this data was saved in that order and none in the natural order yet, write it at ``path`` in the
    natural order, with the same cases on each side; an ``ordered`` split is not carried over (its test set
    was the wrong "last" cases) and a warning says that runs on it must be trained again."""
    sp = cfg["splits"]
    if data.groups is not None:
        legacy_units = sorted(set(data.groups))
        new_units = sorted(set(data.groups), key=natural_key)
        fingerprint, unit = data.fingerprint, "p"  # only the patients' order changed, not the cases'
        if legacy_units == new_units:
            return  # the same order: the same file
    else:
        if not Path(data.source).is_dir():
            return  # an HDF5 set was and is in its stored order; only image folders were sorted by name
        names = [str(n) for n in data.names]
        legacy_units = sorted(names)
        new_units = names
        if legacy_units == new_units:
            return  # the same order: the same fingerprint, the same file
        case_order = sorted(range(len(data)), key=lambda i: names[i])
        fingerprint, unit = _labels_fingerprint(data.labels[case_order]), "n"
    if len(set(legacy_units)) != len(legacy_units):
        return
    legacy = path.parent / f"{_tag(sp, fingerprint, unit, n_units)}.json"
    if not legacy.exists():
        return
    if sp["protocol"] == "ordered":
        warnings.warn(
            f"{legacy} was drawn with the cases in plain string order ('10' before '2'), so its "
            f"'ordered' test set was not the last cases; a new split in natural order is saved at {path}. "
            "Runs trained on the old split must be trained again (their test cases differ).",
            stacklevel=3,
        )
        return
    old = load_splits(legacy, n=n_units)
    where = {u: k for k, u in enumerate(new_units)}
    move = [where[u] for u in legacy_units]  # legacy unit index -> natural-order index

    def moved(idx: list[int]) -> list[int]:
        return sorted(move[i] for i in idx)

    carried = dict(
        old,
        test=moved(old["test"]),
        folds=[{"train": moved(f["train"]), "val": moved(f["val"])} for f in old["folds"]],
        carried_over_from=str(legacy),
    )
    if data.groups is not None:
        carried["names"] = list(new_units)
    save_splits(carried, path)


__all__ = ["RESUMABLE_SETTINGS", "RunMismatch", "check_same_training", "run_differences", "run_dir_for", "splits_for"]
