"""What seeds a training: Python's, NumPy's and PyTorch's generators from ``train.seed`` (the data loader's
generator is seeded per epoch by the trainer), and PyTorch's deterministic algorithms when asked."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
