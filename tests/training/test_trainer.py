import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medseg.training.trainer import Trainer

TRAIN, VAL = list(range(0, 32)), list(range(32, 40))


def _trainer(cfg, toy_data, tmp_path, name="fold_0", **overrides):
    cfg = copy.deepcopy(cfg)
    for section, values in overrides.items():
        cfg[section].update(values)
    return Trainer(cfg, tmp_path / name, toy_data, TRAIN, VAL, progress=False)


def test_loss_falls_and_files_written(tiny_cfg, toy_data, tmp_path):
    summary = _trainer(tiny_cfg, toy_data, tmp_path, train={"epochs": 8}).fit()
    history = json.loads((tmp_path / "fold_0" / "history.json").read_text())
    assert len(history) == summary["epochs_run"] == 8
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    # The crossing bars are easy: after 8 epochs the network must find most of the α bar.
    assert max(r["val_iou/chromosome_alpha"] for r in history) > 0.3
    csv_lines = (tmp_path / "fold_0" / "history.csv").read_text().splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("epoch,lr,train_loss,val_loss")
    meta = json.loads((tmp_path / "fold_0" / "model.json").read_text())
    assert meta["best_epoch"] == summary["best_epoch"]
    assert meta["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in history))


def test_resume_after_kill_matches_uninterrupted_run(tiny_cfg, toy_data, tmp_path, monkeypatch):
    straight = _trainer(tiny_cfg, toy_data, tmp_path, "straight", train={"epochs": 4})
    straight.fit()

    killed = _trainer(tiny_cfg, toy_data, tmp_path, "killed", train={"epochs": 4})
    real_step = Trainer.train_step
    calls = {"n": 0}
    batches_per_epoch = 4  # 32 training images / batch 8

    def dying_step(self, batch):
        calls["n"] += 1
        if calls["n"] > 2 * batches_per_epoch + 1:  # killed in the middle of epoch 3
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    state = json.loads((tmp_path / "killed" / "last_state.json").read_text())
    assert state["epoch"] == 1  # epochs 1 and 2 (0-based 0, 1) completed before the kill

    resumed = _trainer(tiny_cfg, toy_data, tmp_path, "killed", train={"epochs": 4})
    resumed.fit()
    a = json.loads((tmp_path / "straight" / "history.json").read_text())
    b = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["train_loss"] for r in a], [r["train_loss"] for r in b], rtol=1e-5)
    wa = load_file(str(tmp_path / "straight" / "last.safetensors"))
    wb = load_file(str(tmp_path / "killed" / "last.safetensors"))
    for key in wa:
        if key.startswith("model/"):
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_finished_run_is_not_retrained_but_can_be_extended(tiny_cfg, toy_data, tmp_path):
    _trainer(tiny_cfg, toy_data, tmp_path, train={"epochs": 2}).fit()
    again = _trainer(tiny_cfg, toy_data, tmp_path, train={"epochs": 2})
    assert again.fit()["epochs_run"] == 2
    longer = _trainer(tiny_cfg, toy_data, tmp_path, train={"epochs": 3})
    assert longer.fit()["epochs_run"] == 3


def test_early_stopping_and_plateau_schedule(tiny_cfg, toy_data, tmp_path):
    # A learning rate too small to change much (and no batch norm, whose running statistics would move
    # the validation loss): ReduceLROnPlateau (relative threshold 1e-4) sees no improvement after epoch 1
    # and halves the rate at once (patience 0); early stopping with min_delta 10 counts only epoch 1 as
    # an improvement and stops after 2 bad epochs.
    t = _trainer(
        tiny_cfg,
        toy_data,
        tmp_path,
        model={"norm": "none"},
        train={
            "epochs": 20,
            "lr": 1e-6,
            "early_stopping": {"patience": 2, "min_delta": 10.0},
            "scheduler": {"factor": 0.5, "patience": 0, "min_lr": 0.0},
        },
    )
    summary = t.fit()
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    lrs = [r["lr"] for r in t.history]
    assert lrs[1] == pytest.approx(lrs[0]) and lrs[2] < lrs[1]


def test_sigmoid_multilabel_task_uses_same_loop(tiny_cfg, toy_data, tmp_path):
    # Multi-label: two overlapping structures as separate channels (α whole, β whole).
    cfg = copy.deepcopy(tiny_cfg)
    cfg["task"].update(
        {"mode": "multilabel", "class_names": ["alpha", "beta"], "derived": {}, "primary_metric": "alpha"}
    )
    cfg["loss"] = [{"name": "bce"}, {"name": "dice", "weight": 0.5}]
    data = copy.deepcopy(toy_data)
    lab = data.labels
    data.labels = np.stack([np.isin(lab, [1, 3]), np.isin(lab, [2, 3])], axis=1).astype(np.uint8)
    t = Trainer(cfg, tmp_path / "ml", data, TRAIN, VAL, progress=False)
    t.fit()
    assert "val_iou/beta" in t.history[-1]
    assert t.history[-1]["train_loss"] < t.history[0]["train_loss"]
