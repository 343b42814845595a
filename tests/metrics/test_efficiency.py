"""Tests of medseg.metrics.efficiency."""

from __future__ import annotations

import torch
from torch import nn

from medseg.metrics import count_parameters, time_inference


def _tiny() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 1*4*3*3 weights + 4 biases = 40
        nn.BatchNorm2d(4),  # weight 4 + bias 4 = 8 (running stats are buffers, not parameters)
        nn.ReLU(),
        nn.Conv2d(4, 2, 1),  # 4*2*1*1 + 2 = 10
    )


def test_count_parameters_by_hand():
    model = _tiny()
    assert count_parameters(model) == 40 + 8 + 10
    for p in model[1].parameters():
        p.requires_grad_(False)
    assert count_parameters(model) == 40 + 10  # frozen batch norm not counted


def test_shared_parameters_counted_once():
    lin = nn.Linear(3, 3)  # 9 + 3 = 12
    assert count_parameters(nn.Sequential(lin, nn.ReLU(), lin)) == 12


def test_time_inference_returns_positive_numbers_and_restores_mode():
    model = _tiny().train()
    out = time_inference(model, (1, 32, 32), warmup=1, runs=3, batch_size=2)
    assert out["ms_per_image_median"] > 0 and out["ms_per_image_mean"] > 0 and out["images_per_s"] > 0
    assert out["batch_size"] == 2 and out["runs"] == 3 and out["device"] == "cpu"
    assert model.training  # put back in train mode
    assert next(model.parameters()).device == torch.device("cpu")
