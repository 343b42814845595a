"""Every CPU minute trains: epochs of a fixed number of steps, validation on a fixed subset each epoch (the
whole set at the end), schedules that follow the budget — time-limited runs anneal by their limit — and a
time limit that ends a run cleanly wherever it falls."""

from __future__ import annotations

import copy
import json

import pytest

import medseg.training.trainer as trainer_mod
from medseg.config import DEFAULTS, validate
from medseg.training.trainer import Trainer

TRAIN, VAL = list(range(8)), list(range(32, 44))


def _cfg(tiny_cfg, **train):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"].update(train)
    return validate(cfg)


def _history(path):
    return json.loads((path / "history.json").read_text())


def test_an_epoch_is_steps_per_epoch_batches_drawn_with_replacement(tiny_cfg, toy_data, tmp_path, monkeypatch):
    seen = []
    real = Trainer.train_step

    def recording(self, batch):
        seen.append(len(batch["image"]))
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", recording)
    # 8 training images, batch 4: one pass would be 2 steps; an epoch is 5 steps of full batches
    cfg = _cfg(tiny_cfg, epochs=2, batch_size=4, steps_per_epoch=5)
    trainer = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    assert trainer.steps_per_epoch == 5
    trainer.fit()
    assert seen == [4] * 10
    assert [r["steps"] for r in _history(tmp_path / "f")] == [5, 10]


def test_iterations_over_epochs_of_steps(tiny_cfg, toy_data, tmp_path):
    cfg = _cfg(tiny_cfg, iterations=7, batch_size=4, steps_per_epoch=3)
    trainer = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    assert trainer.epochs == 3
    assert trainer.fit()["steps"] == 7


def test_each_epoch_validates_a_fixed_subset_and_the_end_all(tiny_cfg, toy_data, tmp_path, monkeypatch):
    sizes = []
    real = Trainer.validate

    def counting(self, full=False):
        sizes.append((full, len(self.val_subset) if self.val_subset and not full else len(self.val_set)))
        return real(self, full)

    monkeypatch.setattr(Trainer, "validate", counting)
    cfg = _cfg(tiny_cfg, epochs=4, validation={"images": 3, "full_every": 2})
    trainer = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    chosen = list(trainer.val_subset)
    summary = trainer.fit()
    # every epoch the same 3 images; epochs 2 and 4 all 12 too; at the end the selected model on all 12
    assert sizes == [(False, 3), (False, 3), (True, 12), (False, 3), (False, 3), (True, 12), (True, 12)]
    assert Trainer(cfg, tmp_path / "g", toy_data, TRAIN, VAL, progress=False).val_subset == chosen  # seeded
    history = _history(tmp_path / "f")
    assert "full_val_loss" in history[1] and "full_val_loss" not in history[0]
    final = summary["final_validation"]
    assert final["images"] == 12 and final["epoch"] == summary["best_epoch"] and "val_loss" in final
    assert 0 < summary["validation_share"] < 1 and summary["validation_s"] > 0
    assert all(r["validation_time_s"] > 0 and r["training_time_s"] > 0 for r in history)


def test_without_a_subset_there_is_no_second_validation(tiny_cfg, toy_data, tmp_path):
    summary = Trainer(_cfg(tiny_cfg, epochs=2), tmp_path / "f", toy_data, TRAIN, VAL, progress=False).fit()
    assert "final_validation" not in summary and "validation_share" in summary


class _Clock:
    """perf_counter that advances ``tick`` seconds a call."""

    def __init__(self, tick):
        self.t, self.tick = 0.0, tick

    def __call__(self):
        self.t += self.tick
        return self.t


@pytest.mark.parametrize("name", ["poly", "cosine"])
def test_a_time_limited_schedule_reaches_its_end_at_the_limit(tiny_cfg, toy_data, tmp_path, monkeypatch, name):
    monkeypatch.setattr(trainer_mod.time, "perf_counter", _Clock(1.0))
    sch = {**DEFAULTS["train"]["scheduler"], "name": name, "min_lr": 0.0}
    # 1 minute of fake time, far fewer steps than the 10,000 iterations: the clock sets the pace
    cfg = _cfg(tiny_cfg, iterations=10_000, batch_size=4, steps_per_epoch=4, time_limit_minutes=1.0, scheduler=sch)
    trainer = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    summary = trainer.fit()
    assert summary["stopped_by_time_limit"] and summary["steps"] < 100
    history = _history(tmp_path / "f")
    assert history[-1]["progress"] >= 0.95  # elapsed / limit, not steps / 10,000
    assert history[-1]["lr_end"] < 0.1 * history[0]["lr"]  # annealed by the limit
    assert [r["progress"] for r in history] == sorted(r["progress"] for r in history)


def test_a_limit_falling_between_epochs_ends_the_run_cleanly(tiny_cfg, toy_data, tmp_path, monkeypatch):
    """The limit passed during validation or saving: the next epoch trains no step and is not recorded (it
    once crashed with KeyError 'train_loss'); a second call finds the run finished."""
    cfg = _cfg(tiny_cfg, epochs=50, time_limit_minutes=1.0)
    trainer = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    real = Trainer.validate
    clock = {"t": 0.0}
    monkeypatch.setattr(trainer_mod.time, "perf_counter", lambda: clock["t"])

    real_save = Trainer.save_state

    def slow_validation(self, full=False):
        clock["t"] += 28.0  # each validation takes 28 s of the 60 s limit, the steps none
        return real(self, full)

    def slow_saving(self, epoch, finished=False):
        clock["t"] += 5.0  # epoch 2 is saved at 56-61 s: past the limit only after its row said "in time"
        return real_save(self, epoch, finished)

    monkeypatch.setattr(Trainer, "validate", slow_validation)
    monkeypatch.setattr(Trainer, "save_state", slow_saving)
    summary = trainer.fit()
    history = _history(tmp_path / "f")
    assert summary["stopped_by_time_limit"] and len(history) == 2 and all("train_loss" in r for r in history)
    again = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False).fit()
    assert again["epochs_run"] == 2 and again["stopped_by_time_limit"]
