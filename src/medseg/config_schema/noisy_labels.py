"""The ``noisy_labels`` section (simulated annotation noise, QAM, OCM) and the checks its settings share with
:mod:`medseg.data.label_noise`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medseg.config_schema.base import Section, positive
from medseg.config_schema.task import TaskConfig

__all__ = [
    "NOISE_MODES",
    "NoisyLabelsConfig",
    "OcmConfig",
    "QamConfig",
    "check_derived_structures",
    "noise_range",
    "structure_signatures",
]

NOISE_MODES = ("dilate", "erode", "both")


class QamConfig(Section):
    """Quality awareness module (§3.2.2): VGG-shaped Φ(image ⊕ label) → score, softmax over the batch."""

    enabled: bool = False
    lr: float = 1.0e-4
    channels: list[int] = Field(default_factory=lambda: [64, 128, 256, 512, 512])
    convs: list[int] = Field(default_factory=lambda: [2, 2, 3, 3, 3])
    norm: str = "none"

    @model_validator(mode="after")
    def _stages(self):
        if len(self.channels) != len(self.convs) or not self.channels:
            raise ValueError("noisy_labels.qam.channels and .convs need one value per VGG stage (same length, >= 1)")
        if any(c < 1 for c in self.channels + self.convs):
            raise ValueError("noisy_labels.qam.channels and .convs must be >= 1")
        if self.lr <= 0:
            raise ValueError("noisy_labels.qam.lr must be > 0")
        return self


class OcmConfig(Section):
    """Overfitting control (§3.2.3): λ·tanh on the scores."""

    enabled: bool = False
    lambda_: float = Field(2.0, alias="lambda", description="λ > 0")

    @field_validator("lambda_")
    @classmethod
    def _positive(cls, value):
        return positive(value, "noisy_labels.ocm.lambda")


class NoisyLabelsConfig(Section):
    """Training on noisy labels (thesis ch. 3, medseg/training/noisy_labels.py). `enabled` simulates annotation
    noise on each fold's TRAINING samples only (never validation/test); qam/ocm pick the NoisyLabelTrainer
    and work with or without simulated noise."""

    enabled: bool = False
    fraction: float = Field(
        0.0, description="share of the fold's training samples corrupted (Table 3.1: 0, 0.25, 0.5, 0.75)"
    )
    dilate_range: list[int] = Field(
        default_factory=lambda: [1, 8],
        description=("n ~ uniform integer in [lo, hi] px, for dilation and shrinking (Table 3.1: 1-8, 5-13)"),
    )
    mode: Literal["dilate", "erode", "both"] = Field(
        "both", description="dilate | erode | both (each corrupted sample dilated or eroded with probability ½)"
    )
    structures: Literal["classes", "derived"] = Field(
        "classes", description="classes (each foreground class) | derived (task.derived unions: whole chromosomes)"
    )
    seed: int = 0
    qam: QamConfig = Field(default_factory=QamConfig)
    ocm: OcmConfig = Field(default_factory=OcmConfig)

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, value):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"noisy_labels.fraction must be a number in [0, 1], got {value!r}")
        return value

    @field_validator("dilate_range")
    @classmethod
    def _range(cls, value):
        try:
            noise_range(value)
        except ValueError as exc:
            raise ValueError(f"noisy_labels.dilate_range: {exc}") from None
        return value


def noise_range(n_range) -> tuple[int, int]:
    """``(lo, hi)`` of a noise range in pixels: two integers 0 <= lo <= hi (the config's
    ``noisy_labels.dilate_range`` and :func:`medseg.data.label_noise.simulate_label_noise`'s ``n_range``)."""
    try:
        lo, hi = (int(v) for v in n_range)
        ok = [lo, hi] == [float(v) for v in n_range]
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0 <= lo <= hi:
        raise ValueError(f"the noise range must be two integers 0 <= lo <= hi (pixels), got {n_range!r}")
    return lo, hi


def structure_signatures(structures: list[list[int]], num_classes: int) -> dict[int, int]:
    """Class of every membership pattern of the ``task.derived`` unions (bit k = inside union k); ValueError
    unless the unions code each class exactly once and the background lies in none. The noise simulation
    (:mod:`medseg.data.label_noise`) rebuilds label maps from these patterns."""
    k = len(structures)
    if k == 0:
        raise ValueError("noisy_labels.structures: derived needs task.derived to name at least one structure")
    if 2**k != num_classes:
        raise ValueError(
            f"noisy_labels.structures: derived needs the {k} task.derived unions to code each of the "
            f"{num_classes} classes by which unions hold it (2^{k} = {2**k} patterns); use 'classes'"
        )
    seen: dict[int, int] = {}
    for c in range(num_classes):
        sig = sum(1 << i for i, members in enumerate(structures) if c in {int(m) for m in members})
        if sig in seen:
            raise ValueError(
                f"noisy_labels.structures: classes {seen[sig]} and {c} lie in the same task.derived "
                "unions, so a perturbed map could not tell them apart; use 'classes'"
            )
        seen[sig] = c
    if seen.get(0) != 0:
        raise ValueError("noisy_labels.structures: the background (class 0) must lie in no task.derived union")
    return seen


def check_derived_structures(task: TaskConfig) -> None:
    """``noisy_labels.structures: derived``: multiclass tasks only, unions as :func:`structure_signatures`."""
    if task.mode != "multiclass":
        raise ValueError(
            "noisy_labels.structures: derived needs a multiclass task; multilabel maps are perturbed channel by channel"
        )
    structure_signatures(list((task.derived or {}).values()), len(task.class_names))
