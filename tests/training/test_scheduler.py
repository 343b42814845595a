"""The learning-rate schedules of ``train.scheduler``."""

import math

import pytest
import torch

from medseg.errors import ConfigError
from medseg.training.trainer import build_scheduler


def _lrs(sch: dict, epochs: int, val_losses=None) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    scheduler = build_scheduler(opt, sch, epochs)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()  # an epoch of training comes before the scheduler's step
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_losses[epoch])
        else:
            scheduler.step()
    return out


def test_cosine_warms_up_then_decays_to_min_lr():
    lrs = _lrs({"name": "cosine", "min_lr": 1e-4, "warmup_epochs": 2, "factor": 0.5, "patience": 3}, 12)
    assert lrs[0] == pytest.approx(1e-2 / 3) and lrs[1] == pytest.approx(2e-2 / 3)  # linear warm-up
    assert lrs[2] == pytest.approx(1e-2)  # the full rate after warm-up
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))  # then only down
    assert lrs[-1] == pytest.approx(1e-4)  # min_lr at the last epoch
    mid = 2 + (12 - 2 - 1) / 2  # half-way through the decay: halfway between lr and min_lr
    assert _lrs({"name": "cosine", "min_lr": 1e-4, "warmup_epochs": 2}, 12)[math.floor(mid)] > 1e-4 + (1e-2 - 1e-4) / 2


def test_plateau_is_the_default_and_halves():
    lrs = _lrs({"factor": 0.5, "patience": 1, "min_lr": 1e-7}, 5, val_losses=[1.0, 1.0, 1.0, 1.0, 1.0])
    assert lrs[0] == 1e-2 and lrs[-1] < 1e-2


def test_unknown_schedule_is_refused():
    with pytest.raises(ConfigError, match="plateau, cosine, poly or constant"):
        _lrs({"name": "step", "min_lr": 0.0}, 3)


def test_poly_decays_as_nnunet():
    # lr·(1 − epoch/epochs)^0.9: the full rate first, then down every epoch, never below 0 within the budget
    lrs = _lrs({"name": "poly", "min_lr": 0.0}, 10)
    assert lrs[0] == pytest.approx(1e-2)
    for epoch, lr in enumerate(lrs):
        assert lr == pytest.approx(1e-2 * (1 - epoch / 10) ** 0.9)
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:]))


def test_constant_schedule_keeps_the_learning_rate():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = build_scheduler(opt, {"name": "constant", "factor": 0.5, "patience": 3, "min_lr": 1e-7}, epochs=5)
    lrs = []
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1e-3] * 5
