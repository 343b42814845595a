"""Tests of the model folder (medseg.artifact): model.safetensors + model.json, nothing unpickled."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import medseg
from medseg.artifact import MODEL_META, MODEL_WEIGHTS, load_model, read_model_meta, save_model
from medseg.errors import DataValidationError
from medseg.models import UNet

KWARGS = {"in_channels": 1, "out_channels": 4, "depth": 2, "base_channels": 4, "norm": "batch"}


def _meta(**kwargs) -> dict:
    return {
        "model": {"name": "unet", "kwargs": {**KWARGS, **kwargs}},
        "task": {"mode": "multiclass", "class_names": ["bg", "a", "b", "ab"]},
        "preprocessing": {"size": [32, 32]},
    }


def _trained_model(seed: int = 0, **kwargs) -> UNet:
    torch.manual_seed(seed)
    model = UNet(**{**KWARGS, **kwargs})
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 24, 24))  # non-default BN running statistics
    return model.eval()


# ------------------------------------------------------------------------------------------- model files


def test_save_load_model_round_trip_gives_identical_outputs(tmp_path, no_pickle, only_safetensors_and_json):
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
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k  # buffers too (running stats, num_batches_tracked)
    assert meta["model"] == {"name": "unet", "kwargs": KWARGS}
    assert only_safetensors_and_json(tmp_path / "fold0") == [MODEL_META, MODEL_WEIGHTS]


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
