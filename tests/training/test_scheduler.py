"""The learning-rate schedules of ``train.scheduler``: plateau by epoch, poly / cosine / constant by progress
through the budget (:mod:`medseg.training.schedules`)."""

import pytest
import torch

from medseg.errors import ConfigError
from medseg.training.schedules import BudgetSchedule, build_scheduler, progress


def _opt(lr=1e-2):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(sch: dict, points, epochs: int = 10) -> list[float]:
    opt = _opt()
    scheduler = build_scheduler(opt, sch, epochs)
    out = []
    for t in points:
        scheduler.set_progress(t)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_cosine_warms_up_then_decays_to_min_lr_at_the_end_of_the_budget():
    sch = {"name": "cosine", "min_lr": 1e-4, "warmup_epochs": 2, "factor": 0.5, "patience": 3}
    lrs = _lrs(sch, [0.05, 0.1, 0.2, 0.6, 1.0], epochs=10)  # warm-up: the first 2 of 10 epochs = 20 %
    assert lrs[0] == pytest.approx(1e-2 / 4) and lrs[1] == pytest.approx(1e-2 / 2)  # linear warm-up
    assert lrs[2] == pytest.approx(1e-2)  # the full rate after warm-up
    assert lrs[3] == pytest.approx(1e-4 + (1e-2 - 1e-4) / 2)  # half-way through the decay
    assert lrs[4] == pytest.approx(1e-4)  # min_lr when the budget is spent


def test_plateau_is_the_default_and_halves():
    opt = _opt()
    scheduler = build_scheduler(opt, {"factor": 0.5, "patience": 1, "min_lr": 1e-7}, 5)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for _ in range(4):
        opt.step()
        scheduler.step(1.0)
    assert opt.param_groups[0]["lr"] < 1e-2


def test_unknown_schedule_is_refused():
    with pytest.raises(ConfigError, match="plateau, cosine, poly or constant"):
        build_scheduler(_opt(), {"name": "step", "min_lr": 0.0}, 3)


def test_poly_decays_as_nnunet_over_the_progress():
    points = [i / 10 for i in range(11)]
    lrs = _lrs({"name": "poly", "min_lr": 0.0}, points)
    assert lrs == pytest.approx([1e-2 * (1 - t) ** 0.9 for t in points])
    assert lrs[-1] == 0.0 and all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_constant_schedule_keeps_the_learning_rate():
    assert _lrs({"name": "constant", "factor": 0.5, "patience": 3, "min_lr": 1e-7}, [0.0, 0.5, 1.0]) == [1e-2] * 3


def test_progress_is_the_further_of_steps_and_time():
    assert progress(50, 200) == 0.25
    assert progress(50, 200, elapsed_s=90, limit_s=120) == 0.75  # the clock is further along
    assert progress(150, 200, elapsed_s=30, limit_s=120) == 0.75  # the steps are
    assert progress(10, None, elapsed_s=300, limit_s=120) == 1.0  # never past the end
    assert progress(10, None) == 0.0


def test_a_resumed_schedule_goes_on_where_it_stopped():
    opt = _opt()
    first = BudgetSchedule(opt, {"name": "poly"}, 10)
    first.set_progress(0.5)
    state = first.state_dict()
    again = BudgetSchedule(_opt(), {"name": "poly"}, 10)
    again.load_state_dict(state)
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**0.9)
    again.load_state_dict({"base_lrs": [1e-2], "last_epoch": 3})  # a per-epoch LambdaLR's state (older runs)
    assert again.progress == 0.5
