"""Run folders and the split a run uses: where a config's folds, split file and data record live.

A run folder is ``<output.root>/<name>/`` with ``fold_<k>/`` per trained fold; the split every model trained
on the same data shares is saved once as JSON under ``<output.root>/splits/``, keyed by the data's content
hash, so training, evaluation and a later ``medseg cv`` all see the same cases.
"""

from __future__ import annotations

from pathlib import Path

from medseg.data.datasets import SegmentationData
from medseg.data.splits import expand_patient_splits, load_or_create_splits


def run_dir_for(cfg: dict) -> Path:
    return Path(cfg["output"]["root"]) / cfg["name"]


def splits_for(cfg: dict, data: SegmentationData) -> tuple[dict, Path]:
    """The split every model trained on this data shares, saved as JSON (keyed by the data's content hash)."""
    sp = cfg["splits"]
    if sp.get("file"):
        path = Path(sp["file"])
    else:
        unit = "p" if data.groups is not None else "n"
        tag = f"{data.fingerprint}_{unit}{len(set(data.groups)) if data.groups is not None else len(data)}_{sp['protocol']}_t{sp['test_fraction']}_k{sp['n_folds']}_s{sp['seed']}"
        path = Path(cfg["output"]["root"]) / "splits" / f"{tag}.json"
    # Volumes are split by patient: the split file holds indices of the sorted unique patients, expanded to
    # their cases here, so no patient's series lands on both sides.
    patients = sorted(set(data.groups)) if data.groups is not None else None
    n_units = len(patients) if patients is not None else len(data)
    splits = load_or_create_splits(path, n_units, test_fraction=float(sp["test_fraction"]), n_folds=int(sp["n_folds"]),
                                   seed=int(sp["seed"]), protocol=sp["protocol"])
    if patients is not None:
        splits = expand_patient_splits(splits, patients, data.groups)
    return splits, path


__all__ = ["run_dir_for", "splits_for"]
