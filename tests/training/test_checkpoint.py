"""Tests of model and training-state checkpoints (medseg.training.checkpoint): safetensors + JSON only."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

import medseg
from medseg.errors import DataValidationError
from medseg.models import UNet
from medseg.training.checkpoint import (
    MODEL_META,
    MODEL_WEIGHTS,
    load_model,
    load_training_state,
    read_model_meta,
    save_model,
    save_training_state,
)

KWARGS = {"in_channels": 1, "out_channels": 4, "depth": 2, "base_channels": 4, "norm": "batch"}


def _meta(**kwargs) -> dict:
    return {"model": {"name": "unet", "kwargs": {**KWARGS, **kwargs}}, "task": {"mode": "multiclass", "class_names": ["bg", "a", "b", "ab"]},
            "preprocessing": {"size": [32, 32]}}


def _trained_model(seed: int = 0, **kwargs) -> UNet:
    torch.manual_seed(seed)
    model = UNet(**{**KWARGS, **kwargs})
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 24, 24))  # non-default BN running statistics
    return model.eval()




@pytest.fixture
def no_pickle(monkeypatch):
    """Make every pickle / torch.save / torch.load entry point fail loudly."""

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle-based serialisation used")

    for mod, name in [(pickle, "dump"), (pickle, "dumps"), (pickle, "load"), (pickle, "loads"),
                      (torch, "save"), (torch, "load")]:
        monkeypatch.setattr(mod, name, forbidden)


def _only_safetensors_and_json(directory) -> list[str]:
    names = sorted(p.name for p in directory.iterdir())
    assert names, "nothing written"
    assert all(n.endswith((".safetensors", ".json")) for n in names), names
    assert not any(n.startswith(".") for n in names), names  # no temporary files left behind
    return names


# ------------------------------------------------------------------------------------------- model files


def test_save_load_model_round_trip_gives_identical_outputs(tmp_path, no_pickle):
    model = _trained_model()
    x = torch.randn(2, 1, 30, 26)
    with torch.no_grad():
        expected = model(x)
    save_model(tmp_path / "fold0", model, _meta())
    loaded, meta = load_model(tmp_path / "fold0")
    assert isinstance(loaded, UNet)
    assert not loaded.training  # returned in eval mode
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k  # buffers too (running stats, num_batches_tracked)
    assert meta["model"] == {"name": "unet", "kwargs": KWARGS}
    assert _only_safetensors_and_json(tmp_path / "fold0") == [MODEL_META, MODEL_WEIGHTS]


def test_model_json_has_the_architecture(tmp_path):
    save_model(tmp_path, _trained_model(), _meta())
    meta = json.loads((tmp_path / MODEL_META).read_text())
    assert meta["model"]["name"] == "unet"
    assert meta["model"]["kwargs"] == KWARGS
    assert meta["medseg_version"] == medseg.__version__
    assert meta["weights"] == MODEL_WEIGHTS
    assert meta["task"] == _meta()["task"]
    assert read_model_meta(tmp_path) == meta
    # The weights file is plain safetensors holding the full state dict.
    tensors = load_file(str(tmp_path / MODEL_WEIGHTS))
    assert set(tensors) == set(_trained_model().state_dict())


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    save_model(tmp_path, _trained_model(), _meta())
    meta = json.loads((tmp_path / MODEL_META).read_text())
    meta["model"]["kwargs"]["norm"] = "none"  # same conv shapes; BN keys unexpected, conv biases missing
    (tmp_path / MODEL_META).write_text(json.dumps(meta))
    with pytest.raises(DataValidationError) as info:
        load_model(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / MODEL_WEIGHTS) in msg
    assert "missing" in msg and "unexpected" in msg


@pytest.mark.parametrize("change", [{"base_channels": 8}, {"depth": 3}, {"out_channels": 2}])
def test_weights_with_wrong_shapes_are_data_validation_error(tmp_path, change):
    save_model(tmp_path, _trained_model(), _meta())
    meta = json.loads((tmp_path / MODEL_META).read_text())
    meta["model"]["kwargs"].update(change)
    (tmp_path / MODEL_META).write_text(json.dumps(meta))
    with pytest.raises(DataValidationError) as info:
        load_model(tmp_path)
    assert str(tmp_path / MODEL_WEIGHTS) in str(info.value)


def test_corrupt_weights_and_missing_meta(tmp_path):
    save_model(tmp_path, _trained_model(), _meta())
    (tmp_path / MODEL_WEIGHTS).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataValidationError) as info:
        load_model(tmp_path)
    assert str(tmp_path / MODEL_WEIGHTS) in str(info.value)
    with pytest.raises(DataValidationError) as info:
        load_model(tmp_path / "elsewhere")
    assert str(tmp_path / "elsewhere" / MODEL_META) in str(info.value)
    (tmp_path / MODEL_META).write_text("{not json")
    with pytest.raises(DataValidationError, match="JSON"):
        read_model_meta(tmp_path)


# -------------------------------------------------------------------------------------- training state


def _step(model, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, 16, 16, generator=g)
    y = torch.randint(0, 4, (2, 16, 16), generator=g)
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_training_state_restores_adam_exactly(tmp_path, no_pickle):
    torch.manual_seed(0)
    model_a = UNet(**KWARGS).train()
    opt_a = torch.optim.Adam(model_a.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=1e-4)
    _step(model_a, opt_a, 1)
    _step(model_a, opt_a, 2)
    save_training_state(tmp_path, model_a, {"model": opt_a}, {"epoch": 2, "best": 0.5, "history": [1.0, 0.5]})
    assert _only_safetensors_and_json(tmp_path) == ["last.safetensors", "last_state.json"]

    torch.manual_seed(123)  # a different initialisation, and a different optimizer configuration
    model_b = UNet(**KWARGS).train()
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    state = load_training_state(tmp_path, model_b, {"model": opt_b})
    assert state["epoch"] == 2 and state["best"] == 0.5 and state["history"] == [1.0, 0.5]
    assert opt_b.param_groups[0]["lr"] == 1e-2
    assert tuple(opt_b.param_groups[0]["betas"]) == (0.8, 0.95)
    assert opt_b.param_groups[0]["weight_decay"] == 1e-4
    for p_a, p_b in zip(model_a.parameters(), model_b.parameters()):
        sa, sb = opt_a.state[p_a], opt_b.state[p_b]
        assert float(sb["step"]) == 2.0
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[key], sb[key]), key

    loss_a = _step(model_a, opt_a, 3)
    loss_b = _step(model_b, opt_b, 3)
    assert loss_a == loss_b
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(a, b), name  # bit-for-bit, buffers included


def test_training_state_with_extra_models_and_two_optimizers(tmp_path):
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
    _only_safetensors_and_json(tmp_path)


def test_nothing_to_resume_gives_none(tmp_path):
    model = UNet(**KWARGS)
    assert load_training_state(tmp_path, model, {"model": torch.optim.Adam(model.parameters())}) is None
