"""train.ema_decay: the weights' moving average is what is validated, selected, saved and resumed."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from medseg.config import validate
from medseg.errors import ConfigError
from medseg.training.trainer import Trainer
from medseg.training.weight_average import WeightAverage

TRAIN, VAL = list(range(8)), list(range(32, 44))


def _cfg(tiny_cfg, **train):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"].update(train)
    return validate(cfg)


def test_the_average_follows_the_exponential_rule_and_is_applied_only_inside_the_block():
    net = nn.Linear(2, 1, bias=False)
    average = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(4.0)
        average.update(net)  # the first update copies
        net.weight.fill_(0.0)
        average.update(net)  # 0.5 * 4 + 0.5 * 0
        net.weight.fill_(1.0)
        average.update(net)  # 0.5 * 2 + 0.5 * 1
    assert torch.allclose(average.averaged.module.weight, torch.full((1, 2), 1.5))
    with average.applied(net):
        assert torch.allclose(net.weight, torch.full((1, 2), 1.5))
    assert torch.allclose(net.weight, torch.ones(1, 2))
    with pytest.raises(RuntimeError), average.applied(net):
        raise RuntimeError("validation failed")
    assert torch.allclose(net.weight, torch.ones(1, 2))  # restored on the way out of a failure too


def test_batchnorm_statistics_are_averaged_too():
    net = nn.BatchNorm1d(3)
    average = WeightAverage(net, decay=0.9)
    average.update(net)
    net.train()
    net(torch.randn(16, 3) + 10.0)
    average.update(net)
    mean = average.averaged.module.running_mean
    assert torch.allclose(mean, 0.9 * 0.0 + 0.1 * net.running_mean, atol=1e-6)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(tiny_cfg, decay):
    with pytest.raises(ConfigError, match="ema_decay"):
        _cfg(tiny_cfg, ema_decay=decay)


def test_the_saved_model_is_the_average_not_the_last_weights(tiny_cfg, toy_data, tmp_path):
    cfg = _cfg(tiny_cfg, epochs=2, batch_size=4, steps_per_epoch=3, ema_decay=0.9, early_stopping={"patience": 99})
    trainer = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    trainer.fit()
    saved = load_file(str(tmp_path / "f" / "model.safetensors"))
    averaged = trainer.weight_average.averaged.module.state_dict()
    raw = trainer.model.state_dict()
    name = next(k for k, v in raw.items() if v.is_floating_point() and k in saved and v.numel() > 1)
    if trainer.summary(write=False)["best_epoch"] == 2:  # the last epoch selected: its average was saved
        assert torch.allclose(saved[name], averaged[name])
    assert not torch.allclose(saved[name], raw[name])  # never the raw weights
    assert int(trainer.weight_average.averaged.n_averaged) == 6


def test_a_resumed_run_keeps_its_average(tiny_cfg, toy_data, tmp_path):
    cfg = _cfg(tiny_cfg, epochs=1, batch_size=4, steps_per_epoch=3, ema_decay=0.9)
    first = Trainer(cfg, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    first.fit()
    before = {k: v.clone() for k, v in first.weight_average.averaged.module.state_dict().items()}
    longer = _cfg(tiny_cfg, epochs=2, batch_size=4, steps_per_epoch=3, ema_decay=0.9)
    second = Trainer(longer, tmp_path / "f", toy_data, TRAIN, VAL, progress=False)
    assert second.resume()
    restored = second.weight_average.averaged.module.state_dict()
    assert all(torch.equal(before[k], restored[k]) for k in before)
    assert int(second.weight_average.averaged.n_averaged) == 3
