"""Shared fixtures: small data made on the fly, so tests need neither the real set nor a download."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.artifact import model_kwargs, model_meta, save_model
from medseg.config import load_config
from medseg.data.datasets import SegmentationData
from medseg.models import build_model


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """The tests' tensors are tiny: one thread avoids OpenMP overhead and contention on 2-core machines
    (seen here: small convs up to 100× slower with 2 threads competing with other processes)."""
    before, env = torch.get_num_threads(), os.environ.get("MEDSEG_THREADS")
    torch.set_num_threads(1)
    os.environ["MEDSEG_THREADS"] = "1"  # what medseg.threads.configure_threads (the CLI's train/cv) then sets too
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("MEDSEG_THREADS", None)
    else:
        os.environ["MEDSEG_THREADS"] = env


def make_toy_pairs(n: int = 48, size: int = 32, seed: int = 0) -> SegmentationData:
    """Two crossing bars per image: α horizontal (grey 0.5), β vertical (0.8), overlap where both (1.0)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r, c = rng.integers(6, size - 10, 2)
        h, w = rng.integers(3, 6, 2)
        a = np.zeros((size, size), bool)
        b = np.zeros((size, size), bool)
        a[r : r + h, 3 : size - 3] = True
        b[3 : size - 3, c : c + w] = True
        labels[i][a & ~b] = 1
        labels[i][b & ~a] = 2
        labels[i][a & b] = 3
        images[i][a] = 0.5
        images[i][b] = 0.8
        images[i][a & b] = 1.0
        images[i] += rng.normal(0, 0.02, (size, size)).astype(np.float32)
    return SegmentationData(images, labels, [f"toy[{i}]" for i in range(n)], "toy", synthesized=True)


@pytest.fixture
def toy_data() -> SegmentationData:
    return make_toy_pairs()


@pytest.fixture
def tiny_cfg(tmp_path):
    """A config for a U-Net small enough to train for a few epochs in seconds on a CPU."""
    return load_config(
        overrides={
            "name": "tiny",
            "data": {"size": [32, 32]},
            "model": {"name": "unet", "depth": 2, "base_channels": 4},
            "loss": [{"name": "ce"}],
            "train": {"epochs": 3, "batch_size": 8, "lr": 1e-2, "seed": 0},
            "evaluate": {"batch_size": 16},
            "output": {"root": str(tmp_path / "runs")},
        }
    )


def make_toy_volumes(n: int = 4, shape=(8, 16, 16), seed: int = 0) -> SegmentationData:
    """Binary 3D toy task: a bright 3×5×5 box (the target) in faint noise, one channel of labels."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, *shape), dtype=np.float32) * 0.2
    labels = np.zeros((n, 1, *shape), np.uint8)
    for i in range(n):
        z, y, x = rng.integers(2, 5), rng.integers(3, 9), rng.integers(3, 9)
        labels[i, 0, z : z + 3, y : y + 5, x : x + 5] = 1
    images += labels[:, 0] * 0.7
    return SegmentationData(images, labels, [f"vol{i}" for i in range(n)], "toy3d", synthesized=True)


@pytest.fixture
def toy_volumes() -> SegmentationData:
    return make_toy_volumes()


def save_constant_model(directory: Path, names: list[str], winner: int, size=None) -> Path:
    """A model folder of a bias-only U-Net (depth 2, width 4) of the classes ``names`` that says class ``winner``
    everywhere (a test that needs a known output patches its predictor or uses this as it is)."""
    cfg = load_config(
        overrides={
            "name": directory.name,
            "task": {"class_names": names, "derived": None, "background": 0, "primary_metric": names[-1]},
            "data": {"size": size},
            "model": {"name": "unet", "depth": 2, "base_channels": 4},
        }
    )
    model = build_model("unet", **model_kwargs(cfg))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias[winner] = 5.0
    return save_model(directory, model, model_meta(cfg))


@pytest.fixture(scope="session")
def constant_model():
    """:func:`save_constant_model`, for tests (pytest's importlib mode cannot import conftest by name)."""
    return save_constant_model


@pytest.fixture
def no_pickle(monkeypatch):
    """Make every pickle / torch.save / torch.load entry point fail loudly."""

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle-based serialisation used")

    for mod, name in [
        (pickle, "dump"),
        (pickle, "dumps"),
        (pickle, "load"),
        (pickle, "loads"),
        (torch, "save"),
        (torch, "load"),
    ]:
        monkeypatch.setattr(mod, name, forbidden)


@pytest.fixture
def only_safetensors_and_json():
    """A check that a folder holds only .safetensors/.json files and no temporary leftovers; returns the names."""

    def check(directory) -> list[str]:
        names = sorted(p.name for p in directory.iterdir())
        assert names, "nothing written"
        assert all(n.endswith((".safetensors", ".json")) for n in names), names
        assert not any(n.startswith(".") for n in names), names  # no temporary files left behind
        return names

    return check


def _save_gi_model(
    directory: Path,
    *,
    context: int = 0,
    mode: str = "multilabel",
    names=("large_bowel", "small_bowel", "stomach"),
    bias: float | None = None,
    seed: int = 0,
    size=(32, 32),
    resize: bool = True,
) -> Path:
    """A tiny untrained U-Net folder as training writes it (model.json + safetensors), for the GI task.
    ``bias``: every weight zero and the head's bias this value, so the output is that logit everywhere."""
    names = list(names)
    cfg = load_config(
        overrides={
            "name": directory.name,
            "task": {
                "mode": mode,
                "class_names": names,
                "spatial_dims": 2,
                "derived": None,
                "background": 0,
                "primary_metric": names[-1],
            },
            "data": {
                "size": None if size is None else list(size),
                "resize": resize,
                "normalize": "minmax",
                "context_slices": context,
            },
            "model": {"name": "unet", "depth": 2, "base_channels": 4},
        }
    )
    torch.manual_seed(seed)
    model = build_model("unet", **model_kwargs(cfg))
    if bias is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            model.head.bias.fill_(bias)
    return save_model(directory, model, model_meta(cfg))


@pytest.fixture(scope="session")
def save_gi_model():
    """``save_gi_model(directory, *, context=0, mode="multilabel", names=organs, bias=None, seed=0, size=(32, 32),
    resize=True)``: a tiny GI U-Net folder as training writes it (tests of prediction, submission, CLI)."""
    return _save_gi_model


SHARED_MFISH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfish"
# five slides with overlapping pairs (A02's folders are one slide): mfish-pairs' split holds one slide out
SMALL_MFISH_FOLDERS = ("A01__XY", "A02__15", "A02__XY", "A04__XY", "A06__12", "A21__46")


@pytest.fixture(scope="session")
def small_mfish(tmp_path_factory) -> Path:
    """A copy of six real M-FISH folders (five slides) with the set's licence notice, made in the test
    session (nothing of ../shared/data is kept in the repo); skips when the real data is absent."""
    import shutil

    if not SHARED_MFISH.is_dir():
        pytest.skip(f"real M-FISH data not found at {SHARED_MFISH} (../shared/data)")
    root = tmp_path_factory.mktemp("mfish") / "mfish"
    for name in SMALL_MFISH_FOLDERS:
        shutil.copytree(SHARED_MFISH / name, root / name)
    shutil.copyfile(SHARED_MFISH / "README.TXT", root / "README.TXT")
    return root
