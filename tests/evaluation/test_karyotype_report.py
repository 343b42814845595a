"""`medseg evaluate` on a karyotype run (classes background, 1-22, X, Y): the per-chromosome section, its confusion
figure and the vote option, on a tiny in-memory set of drawn cut-outs (one chromosome per image)."""

from __future__ import annotations

import json

import numpy as np

from medseg.config import load_config
from medseg.data.datasets import SegmentationData
from medseg.data.mfish_karyotype import KARYOTYPE_CLASSES
from medseg.data.runs import run_dir_for
from medseg.evaluation import evaluate as evaluate_module
from medseg.evaluation.evaluate import evaluate_run
from medseg.evaluation.karyotype import karyotype_metric
from medseg.training.run import train_fold


def test_evaluate_reports_chromosome_classes(tmp_path, monkeypatch):
    n, size = 20, 32
    images = np.zeros((n, size, size), np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        cls = 1 + k % 24
        h = 4 + k % 20
        images[k, 2 : 2 + h, 12:18] = 0.3 + 0.02 * k
        labels[k, 2 : 2 + h, 12:18] = cls
    data = SegmentationData(images, labels, [f"c{k}" for k in range(n)], "drawn cut-outs", synthesized=True)
    cfg = load_config(
        "configs/mfish/karyotype_unet.yaml",
        overrides={
            "name": "tiny_karyotype",
            "output": {"root": str(tmp_path / "runs")},
            "data": {"size": [size, size]},
            "model": {"name": "unet", "depth": 2, "base_channels": 4},
            "splits": {"val_fraction": None, "n_folds": 2},
            "train": {
                "iterations": None,
                "epochs": 1,
                "max_batches_per_epoch": 1,
                "val_max_batches": 1,
                "device": "cpu",
                "early_stopping": {"patience": 5},
            },
            "evaluate": {"batch_size": 8},
        },
    )
    train_fold(cfg, 0, data=data, progress=False)
    monkeypatch.setattr(evaluate_module, "load_any_data", lambda c, progress=True: data)
    run_dir = run_dir_for(cfg)

    assert karyotype_metric(cfg, KARYOTYPE_CLASSES).vote == "soft"  # the config's default
    assert karyotype_metric(load_config("configs/chromosomes/unet.yaml"), KARYOTYPE_CLASSES[:4]) is None

    report = evaluate_run(run_dir, device="cpu", progress=False, karyotype_vote="majority")
    saved = json.loads((report.parent / "metrics.json").read_text())
    k, n_test = saved["metrics"]["karyotype"], saved["extra"]["n_test"]
    assert k["vote"] == "majority" and k["n"] == n_test > 0 and k["class_names"] == list(KARYOTYPE_CLASSES[1:])
    assert np.asarray(k["confusion_matrix"]).shape == (24, 24) and np.asarray(k["confusion_matrix"]).sum() == n_test
    assert saved["metrics"]["per_fold"][0]["karyotype"]["n"] == n_test
    text = report.read_text()
    assert "## Karyotype: the class of each chromosome" in text and "Y appears only in male cells" in text
    assert (report.parent / "figures" / "karyotype_confusion.png").is_file()
    assert not (report.parent / "figures" / "confusion_matrix.png").exists()  # no 25 x 25 pixel figure
