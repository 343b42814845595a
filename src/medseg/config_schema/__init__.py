"""The experiment configuration's schema: every section, its keys, their types, defaults and checks (pydantic v2).

This is the one place where a default or a check of the configuration lives. :mod:`medseg.config` merges the
YAML files and ``--set`` overrides, validates the result with :class:`Config` and hands the rest of the code a
plain dict (``Config.model_validate(merged).model_dump(by_alias=True)``): the same keys and values as the
YAML, now with their types checked and every default filled in.

Rules the models follow:

* every section forbids unknown keys (``extra="forbid"``) and is strict about types: an integer stays an
  integer, a flag a flag (``amp: 1`` is refused), a number may be written as an integer (``lr: 1`` is 1.0);
  ``null`` is accepted only where it means something (``Optional`` fields, e.g. ``data.limit``);
* free-form parts stay free-form: ``model`` (each architecture has its own settings, checked by
  :mod:`medseg.models.registry`), ``loss`` (a name, a mapping or a list of them, checked by
  :func:`medseg.losses.build_loss`) and ``task.derived`` (structure name → class indices);
* a check raises ``ValueError`` with the whole message, naming the key's dotted path (``train.epochs``);
  :mod:`medseg.config` turns it, and pydantic's own type errors, into one-line :class:`ConfigError` messages.

The sections' models live in the modules of this package (:mod:`.task`, :mod:`.data` with ``preprocess`` and
``splits``, :mod:`.training` with ``adversarial``, :mod:`.noisy_labels`, :mod:`.augment`, :mod:`.evaluate` with
``output``); every name is re-exported here, so ``from medseg.config_schema import ...`` reaches all of them.

Nothing of medseg outside this package is imported here (the config is read before anything else).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from medseg.config_schema.augment import AugmentConfig, VolumeAugmentConfig
from medseg.config_schema.base import Section
from medseg.config_schema.data import DataConfig, PhantomConfig, PreprocessConfig, SplitsConfig
from medseg.config_schema.evaluate import EvaluateConfig, OutputConfig, SlidingWindowConfig
from medseg.config_schema.noisy_labels import (
    NOISE_MODES,
    NoisyLabelsConfig,
    OcmConfig,
    QamConfig,
    check_derived_structures,
    noise_range,
    structure_signatures,
)
from medseg.config_schema.task import CHROMOSOME_CLASSES, TaskConfig, scored_class_names
from medseg.config_schema.training import (
    AdversarialConfig,
    DiscriminatorConfig,
    DistributedConfig,
    EarlyStoppingConfig,
    SchedulerConfig,
    TrainConfig,
    ValidationConfig,
)

__all__ = [
    "CHROMOSOME_CLASSES",
    "NOISE_MODES",
    "AdversarialConfig",
    "AugmentConfig",
    "Config",
    "DataConfig",
    "DiscriminatorConfig",
    "DistributedConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "NoisyLabelsConfig",
    "OcmConfig",
    "OutputConfig",
    "PhantomConfig",
    "PreprocessConfig",
    "QamConfig",
    "SchedulerConfig",
    "Section",
    "SlidingWindowConfig",
    "SplitsConfig",
    "TaskConfig",
    "TrainConfig",
    "ValidationConfig",
    "VolumeAugmentConfig",
    "check_derived_structures",
    "field_map",
    "noise_range",
    "scored_class_names",
    "section_model",
    "structure_signatures",
    "sub_model",
]


def _default_model() -> dict[str, Any]:
    return {"name": "unet", "depth": 4, "base_channels": 64, "norm": "batch"}


class Config(Section):
    """The whole experiment configuration (``configs/*.yaml`` over these defaults)."""

    name: str = "experiment"
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    splits: SplitsConfig = Field(default_factory=SplitsConfig)
    model: dict[str, Any] = Field(
        default_factory=_default_model,
        description=(
            "architecture name and settings, free-form (checked by medseg.models.registry); a model section "
            "naming another architecture replaces these U-Net settings instead of merging with them"
        ),
    )
    loss: Any = Field(
        default_factory=lambda: [{"name": "ce"}],
        description=("a loss name, a mapping {name: ..., weight: ..., settings} or a list of them (medseg.losses)"),
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    noisy_labels: NoisyLabelsConfig = Field(default_factory=NoisyLabelsConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value):
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise ValueError(f"model must be a mapping with the architecture's name (model.name), got {value!r}")  # noqa: TRY004
        return value

    @field_validator("loss")
    @classmethod
    def _loss(cls, value):
        items = value if isinstance(value, list) else [value]
        if not items or not all(
            isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("name"), str)) for v in items
        ):
            raise ValueError(f"loss must be a loss name, a mapping with a name, or a list of these; got {value!r}")
        return value

    @model_validator(mode="after")
    def _across_sections(self):
        nl = self.noisy_labels
        if nl.structures == "derived" and (nl.enabled or nl.qam.enabled):
            check_derived_structures(self.task)
        if self.adversarial.enabled and nl.qam.enabled:
            raise ValueError("adversarial and noisy_labels.qam cannot be combined (each has its own trainer)")
        if nl.qam.enabled and self.train.batch_size < 2:
            raise ValueError(
                "noisy_labels.qam weighs the samples of a batch against each other: train.batch_size "
                "must be >= 2 (thesis line 559: batch size 1 made QAM unusable; in 3D train on "
                "batches of patches)"
            )
        dims = self.task.spatial_dims
        shape_names = "[H, W] pixels" if dims == 2 else "[D, H, W] voxels"
        patch = self.data.patch_size
        if patch is not None and len(patch) != dims:
            raise ValueError(f"data.patch_size must be {shape_names} for task.spatial_dims {dims}, got {patch!r}")
        roi = self.evaluate.sliding_window.roi_size
        if roi is not None and len(roi) != dims:
            raise ValueError(
                f"evaluate.sliding_window.roi_size must be {shape_names} for task.spatial_dims {dims}, got {roi!r}"
            )
        if self.task.spatial_dims == 3:
            for key in ("flip_prob", "rot90_prob", "elastic_prob", "noise_prob"):
                if getattr(self.augment, key) > 0:
                    raise ValueError(
                        f"augment.{key} is a 2D setting; 3D volumes take augment.volume "
                        f"(flip_prob, flip_axes, rotate_deg, shift_voxels, noise_var)"
                    )
        return self


def section_model(dotted: str) -> type[Section]:
    """The model of a section by its dotted path (``"augment.volume"`` → :class:`VolumeAugmentConfig`)."""
    cls: type[BaseModel] = Config
    for key in dotted.split("."):
        field = next((f for n, f in cls.model_fields.items() if (f.alias or n) == key), None)
        ann = None if field is None else field.annotation
        if not (isinstance(ann, type) and issubclass(ann, Section)):
            raise KeyError(dotted)
        cls = ann
    return cls


def field_map(cls: type[BaseModel]) -> dict[str, Any]:
    """``{key as written in YAML: field}`` of a model (aliases such as ``lambda`` applied)."""
    return {(f.alias or n): f for n, f in cls.model_fields.items()}


def sub_model(field) -> type[Section] | None:
    """The section model a field holds, or None for a leaf or a free-form mapping."""
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, Section) else None
