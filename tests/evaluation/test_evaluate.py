"""`medseg evaluate` end to end on tiny runs: cross-validation without a held-out test set scores every fold's
validation cases (not just the last fold's), and volumes' Hausdorff distances are in mm on the scored grid."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.config import load_config
from medseg.data.datasets import SegmentationData
from medseg.data.phantom import make_phantom
from medseg.data.runs import run_dir_for, splits_for
from medseg.data.splits import fold_indices
from medseg.data.volume_folders import load_volume_data
from medseg.errors import DataValidationError
from medseg.evaluation import evaluate as evaluate_module
from medseg.evaluation.evaluate import evaluate_run, evaluated_spacings
from medseg.formats.volume_files import write_hdf5_volume
from medseg.metrics import image_diagonal
from medseg.training.run import train_fold

QUICK = {"epochs": 1, "max_batches_per_epoch": 1, "val_max_batches": 1, "device": "cpu"}


def _train_folds(cfg: dict, data: SegmentationData, monkeypatch) -> Path:
    for k in range(int(cfg["splits"]["n_folds"])):
        train_fold(cfg, k, data=data, progress=False)
    # evaluate reads the data again: hand it the same in-memory set
    monkeypatch.setattr(evaluate_module, "load_any_data", lambda c, progress=True: data)
    return run_dir_for(cfg)


# ------------------------------------------------------------------ no held-out test set: every fold
def test_cross_validation_without_test_set_scores_every_fold(tiny_cfg, toy_data, monkeypatch):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["name"] = "tiny_cv"
    cfg["splits"].update({"test_fraction": 0.0, "n_folds": 3})
    cfg["train"].update(QUICK)
    data = SegmentationData(toy_data.images[:18], toy_data.labels[:18], toy_data.names[:18], "toy", synthesized=True)
    run_dir = _train_folds(cfg, data, monkeypatch)

    report = evaluate_run(run_dir, device="cpu", progress=False)
    metrics = json.loads((report.parent / "metrics.json").read_text())
    splits, _ = splits_for(cfg, data)
    val = {f"fold_{k}": sorted(fold_indices(splits, k)[1]) for k in range(3)}
    assert sum(len(v) for v in val.values()) == len(data)  # the folds' validation sets cover the data

    rows = metrics["per_image"]
    assert {r["fold"] for r in rows} == {"fold_0", "fold_1", "fold_2"}  # rows from every fold, not the last
    for fold, cases in val.items():
        assert sorted(r["case_index"] for r in rows if r["fold"] == fold) == cases
    assert [r["index"] for r in rows] == list(range(len(data)))
    assert metrics["extra"]["n_test"] == len(data) == metrics["metrics"]["n_cases"]
    assert "validation" in metrics["extra"]["evaluated_on"]
    # the confusion matrix is summed over the folds: every pixel of every case once
    cm = np.asarray(metrics["metrics"]["confusion_matrix"])
    assert cm.sum() == data.labels.size
    assert cm.tolist() == np.sum([f["confusion_matrix"] for f in metrics["metrics"]["per_fold"]], axis=0).tolist()
    # the table still shows the mean over the folds
    per_fold_iou = [f["mean"]["iou"] for f in metrics["metrics"]["per_fold"]]
    assert metrics["metrics"]["mean"]["iou"] == pytest.approx(np.mean(per_fold_iou))
    text = report.read_text()
    assert "Cross-validation on the validation folds" in text and "no held-out test set" in text
    assert "## Per-class metrics (validation folds)" in text and "Hausdorff (px)" in text
    assert (report.parent / "figures" / "overlays.png").is_file()
    assert (report.parent / "figures" / "confusion_matrix.png").is_file()


# ------------------------------------------------------------------ volumes: Hausdorff in mm
def _volume_cfg(tmp_path: Path, folder: Path) -> dict:
    return load_config(
        overrides={
            "name": "tiny3d",
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "spatial_dims": 3,
                "derived": {},
                "primary_metric": "ctv",
            },
            "data": {"path": str(folder), "size": None},
            "preprocess": {"depth": 8, "size_xy": [32, 32]},
            "augment": {"volume": {"enabled": False}},
            "splits": {"test_fraction": 0.0, "n_folds": 2, "seed": 0},
            "model": {"name": "ctv_unet3d", "depth": 2, "channels": [2, 2]},
            "loss": [{"name": "bce"}],
            "train": {**QUICK, "batch_size": 1},
            "evaluate": {"batch_size": 1},
            "output": {"root": str(tmp_path / "runs")},
        }
    )


def test_volume_hausdorff_is_in_mm_on_the_preprocessed_grid(tmp_path, monkeypatch):
    folder = tmp_path / "vols"
    folder.mkdir()
    spacings = [(3.0, 1.0, 1.0), (2.5, 0.7, 0.9), (4.0, 1.2, 0.8), (3.0, 0.5, 0.5)]
    for i, sp in enumerate(spacings):
        image, label = make_phantom((6, 24, 20), sp, seed=i)
        write_hdf5_volume(image, folder / f"case{i}.h5", label=label)
    cfg = _volume_cfg(tmp_path, folder)
    data = load_volume_data(cfg, progress=False)

    # the scored grid (8, 32, 32) keeps each case's extent: spacing = old spacing * old size / new size
    expected = [(sp[0] * 6 / 8, sp[1] * 24 / 32, sp[2] * 20 / 32) for sp in spacings]
    assert np.allclose(evaluated_spacings(cfg, data), expected)

    run_dir = _train_folds(cfg, data, monkeypatch)
    # no target predicted anywhere: each case's Hausdorff is then its grid diagonal, in mm when spacing is used
    monkeypatch.setattr(evaluate_module.Predictor, "labels_from_proba", lambda self, p: np.zeros(p.shape, bool))
    report = evaluate_run(run_dir, device="cpu", progress=False)
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert metrics["metrics"]["hausdorff_unit"] == "mm" and metrics["metrics"]["spacing"] == "per image"
    rows = sorted(metrics["per_image"], key=lambda r: r["case_index"])
    assert [r["case_index"] for r in rows] == [0, 1, 2, 3]
    for r, sp in zip(rows, expected, strict=True):
        assert r["hausdorff_unit"] == "mm" and r["spacing"] == pytest.approx(sp)
        mm = image_diagonal((8, 32, 32), sp)
        assert r["hausdorff/ctv"] == pytest.approx(mm)
        assert abs(mm - image_diagonal((8, 32, 32))) > 1  # differs from the value in voxels
    assert "Hausdorff (mm)" in report.read_text()


def test_evaluate_refuses_data_that_changed_since_training(tiny_cfg, toy_data, monkeypatch):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["name"] = "tiny_changed"
    cfg["splits"].update({"n_folds": 2})
    cfg["train"].update(QUICK)
    run_dir = _train_folds(cfg, toy_data, monkeypatch)
    changed = copy.deepcopy(toy_data)
    changed.labels[0, :4, :4] = 1 - changed.labels[0, :4, :4].clip(0, 1)  # one mask edited since training
    monkeypatch.setattr(evaluate_module, "load_any_data", lambda c, progress=True: changed)
    with pytest.raises(DataValidationError, match="not the data the run"):
        evaluate_run(run_dir, device="cpu", progress=False)
