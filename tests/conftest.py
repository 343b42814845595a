"""Shared fixtures: small data made on the fly, so tests need neither the real set nor a download."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.config import load_config
from medseg.data.datasets import SegmentationData


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """The tests' tensors are tiny: one thread avoids OpenMP overhead and contention on 2-core machines
    (seen here: small convs up to 100× slower with 2 threads competing with other processes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    return load_config(overrides={
        "name": "tiny",
        "data": {"size": [32, 32]},
        "model": {"name": "unet", "depth": 2, "base_channels": 4},
        "loss": [{"name": "ce"}],
        "train": {"epochs": 3, "batch_size": 8, "lr": 1e-2, "seed": 0},
        "evaluate": {"batch_size": 16},
        "output": {"root": str(tmp_path / "runs")},
    })
