"""Which training images a step draws (``train.sampling``).

``uniform`` (the default): every training image equally often. ``class_balanced``: each foreground class about
equally often, as classification recipes do for imbalanced classes (and nnU-Net's foreground oversampling does
for rare structures). An image stands for the *rarest* foreground class it holds — the class found in the fewest
training images — and is drawn with weight ``1 / (number of training images standing for that class)``;
images without foreground form one group of their own. On a karyotype set (one chromosome per cut-out) this
draws the X and Y chromosomes (about 1.5 and 0.5 per cell) as often as each autosome (2 per cell); on
segmentation sets whose images all hold every class it is uniform.

Background is the task's ``task.background`` class (multiclass) or none (multilabel: a channel is a class).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler


def image_classes(labels: np.ndarray, mode: str, background: int | None) -> list[np.ndarray]:
    """The foreground classes each label map holds: (N, H, W) class indices (multiclass) or (N, K, H, W)
    channels (multilabel: channel k present when any pixel is set)."""
    if mode == "multilabel":
        return [np.flatnonzero(lab.reshape(lab.shape[0], -1).any(axis=1)) for lab in labels]
    out = []
    for lab in labels:
        present = np.unique(lab)
        out.append(present[present != background] if background is not None else present)
    return out


def class_balanced_weights(classes: Sequence[np.ndarray]) -> np.ndarray:
    """One weight per image (summing to 1) from the foreground classes each holds, as the module says."""
    counts = Counter(c for present in classes for c in present.tolist())
    groups = [min(present.tolist(), key=lambda c: (counts[c], c)) if len(present) else None for present in classes]
    size = Counter(groups)
    weights = np.array([1.0 / size[g] for g in groups], dtype=np.float64)
    return weights / weights.sum()


def class_balanced_sampler(weights: np.ndarray, num_samples: int, generator: torch.Generator) -> Sampler:
    """Draws ``num_samples`` positions into the training set with replacement, by ``weights``."""
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double), num_samples, replacement=True, generator=generator
    )
