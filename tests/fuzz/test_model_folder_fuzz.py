"""Hostile and damaged model folders: loading one may only build registered architectures with plain,
bounded settings, never import what model.json names, never allocate what a header claims, and fail with one
line naming the file (``medseg predict`` exit code 2, nothing written)."""

from __future__ import annotations

import json
import shutil
import string
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from medseg.artifact import MODEL_META, MODEL_WEIGHTS, load_model, save_model
from medseg.cli import app
from medseg.errors import DataValidationError
from medseg.inference.predictor import Predictor
from medseg.models import UNet

runner = CliRunner()
KWARGS = {"in_channels": 1, "out_channels": 4, "depth": 2, "base_channels": 4, "norm": "batch", "spatial_dims": 2}
META = {
    "model": {"name": "unet", "kwargs": KWARGS},
    "task": {"mode": "multiclass", "class_names": ["background", "a", "b", "overlap"], "spatial_dims": 2},
    "preprocessing": {"size": [32, 32], "image_pad_value": 0},
}
FUZZ = settings(
    max_examples=int(__import__("os").environ.get("MEDSEG_FUZZ_EXAMPLES", 25)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "fold_0"
    torch.manual_seed(0)
    save_model(folder, UNet(**{k: v for k, v in KWARGS.items()}).eval(), META)
    return folder


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "cell.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(path)
    return path


def _copy(good_model, tmp_path):
    folder = tmp_path / "evil_model"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(good_model, folder)
    return folder


def _set_meta(folder, meta):
    (folder / MODEL_META).write_text(
        json.dumps(meta)
        if not isinstance(meta, (bytes, str))
        else (meta if isinstance(meta, str) else meta.decode("latin-1"))
    )


def assert_refused(folder, image, out, *extra):
    """``medseg predict`` refuses the folder: exit 2, one error line naming a file of the folder, no output."""
    result = runner.invoke(app, ["predict", str(folder), str(image), "-o", str(out), *extra])
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert folder.name in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


def test_a_model_json_naming_os_system_runs_nothing(good_model, image, tmp_path):
    folder = _copy(good_model, tmp_path)
    marker = tmp_path / "pwned"
    _set_meta(folder, {**META, "model": {"name": "os:system", "kwargs": {"command": f"touch {marker}"}}})
    line = assert_refused(folder, image, tmp_path / "out")
    assert "--trust-code" in line and "os:system" in line
    assert not marker.exists()
    # the other loaders refuse it the same way
    with pytest.raises(DataValidationError, match="--trust-code"):
        Predictor.from_path(folder)
    from medseg.server.registry import ModelRegistry

    with pytest.raises(DataValidationError, match="--trust-code"):
        ModelRegistry([folder])
    assert not marker.exists()


def test_trust_code_is_an_explicit_opt_in(good_model, image, tmp_path, monkeypatch):
    """With --trust-code a user's own ``package.module:Class`` loads (here: medseg's UNet by its dotted path)."""
    folder = _copy(good_model, tmp_path)
    _set_meta(folder, {**META, "model": {"name": "medseg.models.unet:UNet", "kwargs": KWARGS}})
    assert_refused(folder, image, tmp_path / "out")
    result = runner.invoke(app, ["predict", str(folder), str(image), "-o", str(tmp_path / "out2"), "--trust-code"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out2" / "cell_labels.png").is_file()


def test_a_huge_architecture_is_refused_before_allocation(good_model, image, tmp_path):
    """Within the settings' bounds, a network far larger than its weights is refused from the safetensors
    header: built on the meta device, nothing allocated."""
    folder = _copy(good_model, tmp_path)
    _set_meta(folder, {**META, "model": {"name": "unet", "kwargs": {**KWARGS, "base_channels": 60000}}})
    line = assert_refused(folder, image, tmp_path / "out")
    assert "do not fit" in line and MODEL_WEIGHTS in line


def test_weights_outside_the_folder_are_refused(good_model, image, tmp_path):
    folder = _copy(good_model, tmp_path)
    for name in ["../model.safetensors", "/etc/passwd", "..", ""]:
        _set_meta(folder, {**META, "weights": name})
        assert "'weights' must be a file name" in assert_refused(folder, image, tmp_path / "out")


def _safetensors_with_header(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


@pytest.mark.parametrize("damage", ["truncated", "empty", "zeros", "huge_claim", "pickle"])
def test_damaged_weights_are_named(good_model, image, tmp_path, damage):
    folder = _copy(good_model, tmp_path)
    weights = folder / MODEL_WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "empty": b"",
            "zeros": bytes(4096),
            "huge_claim": _safetensors_with_header(
                {"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}}
            ),
            "pickle": b"\x80\x04\x95" + b"cos\nsystem\n" + bytes(64),
        }[damage]
    )
    assert MODEL_WEIGHTS in assert_refused(folder, image, tmp_path / "out")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(string.printable, max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    name=json_values
    | st.sampled_from(["unet", "os:system", "subprocess:call", "builtins:eval", "unet:", ":", "medseg.models:UNet"]),
    kwargs=json_values
    | st.dictionaries(st.sampled_from(sorted(KWARGS) + ["command", "__class__"]), json_values, max_size=5),
)
def test_fuzzed_model_sections_never_build_code_nor_crash(good_model, tmp_path, name, kwargs):
    """Any model section read from a file gives either a loaded model (registered name, fitting settings) or
    a DataValidationError naming model.json or the weights: never another exception, never an import."""
    folder = _copy(good_model, tmp_path)
    _set_meta(folder, {**META, "model": {"name": name, "kwargs": kwargs}})
    try:
        model, _ = load_model(folder)
    except DataValidationError as exc:
        assert exc.path is not None and exc.path.parent == folder
        assert "\n" not in str(exc)
    else:
        assert name == "unet" and isinstance(model, UNet)


@FUZZ
@given(blob=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzzed_model_json_bytes(good_model, tmp_path, blob):
    folder = _copy(good_model, tmp_path)
    (folder / MODEL_META).write_bytes(blob)
    with pytest.raises(DataValidationError) as info:
        load_model(folder)
    assert info.value.path == folder / MODEL_META and "\n" not in str(info.value)
