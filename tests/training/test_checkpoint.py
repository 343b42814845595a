"""Tests of the resumable training state (medseg.training.checkpoint): safetensors + JSON only."""

from __future__ import annotations

import torch

from medseg.models import UNet
from medseg.training.checkpoint import load_training_state, save_training_state

KWARGS = {"in_channels": 1, "out_channels": 4, "depth": 2, "base_channels": 4, "norm": "batch"}


# ------------------------------------------------------------------------------------ training state


def _step(model, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, 16, 16, generator=g)
    y = torch.randint(0, 4, (2, 16, 16), generator=g)
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_training_state_restores_adam_exactly(tmp_path, no_pickle, only_safetensors_and_json):
    torch.manual_seed(0)
    model_a = UNet(**KWARGS).train()
    opt_a = torch.optim.Adam(model_a.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=1e-4)
    _step(model_a, opt_a, 1)
    _step(model_a, opt_a, 2)
    save_training_state(tmp_path, model_a, {"model": opt_a}, {"epoch": 2, "best": 0.5, "history": [1.0, 0.5]})
    assert only_safetensors_and_json(tmp_path) == ["last.safetensors", "last_state.json"]

    torch.manual_seed(123)  # a different initialisation, and a different optimizer configuration
    model_b = UNet(**KWARGS).train()
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    state = load_training_state(tmp_path, model_b, {"model": opt_b})
    assert state["epoch"] == 2 and state["best"] == 0.5 and state["history"] == [1.0, 0.5]
    assert opt_b.param_groups[0]["lr"] == 1e-2
    assert tuple(opt_b.param_groups[0]["betas"]) == (0.8, 0.95)
    assert opt_b.param_groups[0]["weight_decay"] == 1e-4
    for p_a, p_b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        sa, sb = opt_a.state[p_a], opt_b.state[p_b]
        assert float(sb["step"]) == 2.0
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[key], sb[key]), key

    loss_a = _step(model_a, opt_a, 3)
    loss_b = _step(model_b, opt_b, 3)
    assert loss_a == loss_b
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # bit-for-bit, buffers included


def test_training_state_with_extra_models_and_two_optimizers(tmp_path, only_safetensors_and_json):
    torch.manual_seed(0)
    gen, disc = UNet(**KWARGS), torch.nn.Linear(3, 2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.1, momentum=0.9)
    _step(gen, opt_g, 1)
    disc(torch.randn(5, 3)).square().mean().backward()
    opt_d.step()
    save_training_state(tmp_path, gen, {"model": opt_g, "disc": opt_d}, {"epoch": 1}, extra_models={"disc": disc})

    torch.manual_seed(9)
    gen2, disc2 = UNet(**KWARGS), torch.nn.Linear(3, 2)
    opt_g2 = torch.optim.Adam(gen2.parameters(), lr=1e-3)
    opt_d2 = torch.optim.SGD(disc2.parameters(), lr=0.5, momentum=0.9)
    load_training_state(tmp_path, gen2, {"model": opt_g2, "disc": opt_d2}, extra_models={"disc": disc2})
    assert torch.equal(disc.weight, disc2.weight) and torch.equal(disc.bias, disc2.bias)
    assert opt_d2.param_groups[0]["lr"] == 0.1
    assert torch.equal(opt_d.state[disc.weight]["momentum_buffer"], opt_d2.state[disc2.weight]["momentum_buffer"])
    only_safetensors_and_json(tmp_path)


def test_nothing_to_resume_gives_none(tmp_path):
    model = UNet(**KWARGS)
    assert load_training_state(tmp_path, model, {"model": torch.optim.Adam(model.parameters())}) is None
