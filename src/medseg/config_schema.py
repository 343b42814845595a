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

Nothing else of medseg is imported here (the config is read before anything else).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CHROMOSOME_CLASSES = ["background", "chromosome_alpha", "chromosome_beta", "overlap"]

NOISE_MODES = ("dilate", "erode", "both")


class Section(BaseModel):
    """Base of every section: unknown keys refused, types strict, no NaN/inf."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=False)


def _probability(value: float | None, where: str) -> None:
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{where} must be a probability in [0, 1], got {value!r}")


# --- task -----------------------------------------------------------------------------------------------


class TaskConfig(Section):
    mode: Literal["multiclass", "multilabel"] = Field(
        "multiclass", description="multiclass (softmax, exclusive classes) | multilabel (sigmoid)")
    class_names: list[str] = Field(default_factory=lambda: list(CHROMOSOME_CLASSES),
                                   description="class names, background first (multiclass)")
    derived: dict[str, list[int]] | None = Field(
        default_factory=lambda: {"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]},
        description="Named unions of classes evaluated as extra structures and written by `predict` as whole "
                    "objects: ARMS Net's \"complete chromosome\" IoU and the karyotyping cut-outs. Replaced whole "
                    "by a YAML file or --set, never merged key by key.")
    primary_metric: str = Field("overlap", description="class whose IoU heads reports and box plots")
    spatial_dims: Literal[2, 3] = Field(2, description="2 (images) or 3 (volumes)")

    @model_validator(mode="after")
    def _classes(self):
        n = len(self.class_names)
        if n < 2 and self.mode == "multiclass":
            raise ValueError("a multiclass task needs at least 2 classes (background included)")
        for name, members in (self.derived or {}).items():
            bad = [m for m in members if not 0 <= int(m) < n]
            if bad:
                raise ValueError(f"task.derived.{name} names classes {bad} outside 0..{n - 1}")
        if self.primary_metric not in self.class_names and self.primary_metric not in (self.derived or {}):
            raise ValueError(f"task.primary_metric {self.primary_metric!r} is not a class or derived structure")
        return self


# --- data -----------------------------------------------------------------------------------------------


class PhantomConfig(Section):
    """3D: ``data.path: synth:phantom`` writes this many CT-like phantom cases (DEMO DATA) once under
    $MEDSEG_HOME/synth; shape (z, y, x) voxels, spacing (z, y, x) mm (medseg.data.phantom)."""

    n: int = 12
    shape: list[int] = Field(default_factory=lambda: [24, 96, 96])
    spacing: list[float] = Field(default_factory=lambda: [3.0, 1.0, 1.0])
    seed: int = 0


class DataConfig(Section):
    path: str = Field("synth:demo", description="An HDF5 file in the Pommier layout, a folder (images/ + masks/), "
                      "or \"synth:demo\" / \"synth:pommier\" for the project's own synthesized sets (made on "
                      "first use, no download).")
    format: str = Field("auto", description="auto | pommier | folder")
    h5_key: str = "dataset_1"
    size: list[int] | None = Field(default_factory=lambda: [128, 128],
                                      description="the papers pad 94x93 to 128x128")
    image_pad_value: int | float | str = Field(
        "border", description="number, or \"border\" (median of each image's border)")
    stray_labels: Literal["reject", "background", "nearest"] = Field(
        "nearest", description="reject | background | nearest — the real file has a few label-4 pixels")
    mask_values: list[int] | None = Field(
        None, description="folder masks: stored grey values of classes 0..C-1, in order")
    limit: int | None = Field(None, description="use only the first N images (quick runs)")
    synth_pairs: int = Field(1500, description="size of the synth:demo set")
    synth_seed: int = 0
    patch_size: list[int] | None = Field(
        None, description="3D: train on random patches [D, H, W] instead of whole volumes "
                          "(medseg.data.transforms3d); null = whole.")
    patch_pos_fraction: float | None = Field(
        None, description="null: patch centre uniform; p: in the target with probability p")
    phantom: PhantomConfig = Field(default_factory=PhantomConfig)
    patient_pattern: str | None = Field(
        None, description="3D: regular expression whose first group is the patient id in a case name; splits "
                          "keep a patient's series together. null: every case is its own patient.")

    @field_validator("image_pad_value", mode="before")
    @classmethod
    def _pad_value(cls, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"data.image_pad_value must be a number or \"border\", got {value!r}")  # noqa: TRY004
        return value

    @model_validator(mode="after")
    def _patches(self):
        size, pos = self.patch_size, self.patch_pos_fraction
        if size is None:
            if pos is not None:
                raise ValueError("data.patch_pos_fraction needs data.patch_size")
            return self
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"data.patch_size must be [D, H, W] voxels, got {size!r}")
        if pos is not None and not 0.0 <= pos <= 1.0:
            raise ValueError(f"data.patch_pos_fraction must be in [0, 1] or null, got {pos!r}")
        return self


# --- preprocessing ----------------------------------------------------------------------------------------


class PreprocessConfig(Section):
    """3D CT preprocessing (CTV thesis §2.1, medseg.data.transforms3d.preprocess_volume): clip to
    [clip_min, clip_max], map to [0, 1], resample to `depth` slices (linear in z) and size_xy in x/y."""

    clip_min: float | None = 0.0
    clip_max: float | None = 1600.0
    normalize: Literal["range", "minmax", "none"] = "range"
    depth: int | None = 72
    size_xy: list[int] | None = Field(default_factory=lambda: [256, 256])
    depth_mode: Literal["trilinear", "nearest", "area"] = "trilinear"
    align_corners: bool = False

    @model_validator(mode="after")
    def _checks(self):
        lo, hi = self.clip_min, self.clip_max
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"preprocess.clip_min ({lo}) must be below preprocess.clip_max ({hi})")
        if self.normalize == "range" and (lo is None or hi is None):
            raise ValueError("preprocess.normalize: range needs both clip_min and clip_max (the window mapped to 0..1)")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"preprocess.depth must be a number of slices >= 1 or null, got {self.depth!r}")
        if self.size_xy is not None and (len(self.size_xy) != 2 or min(self.size_xy) < 1):
            raise ValueError(f"preprocess.size_xy must be [H, W] or null, got {self.size_xy!r}")
        return self


# --- splits ---------------------------------------------------------------------------------------------


class SplitsConfig(Section):
    test_fraction: float = 0.2
    n_folds: int = 5
    seed: int = 0
    protocol: Literal["random", "ordered"] = "random"
    file: str | None = Field(None, description="a splits JSON to use instead of drawing one")


# --- training -------------------------------------------------------------------------------------------


class SchedulerConfig(Section):
    """name: plateau (the papers: ReduceLROnPlateau on the validation loss, factor/patience) | cosine (cosine
    decay from lr to min_lr over `epochs`, after `warmup_epochs` of linear warm-up: for short fixed budgets)"""

    name: Literal["plateau", "cosine"] = "plateau"
    factor: float = 0.5
    patience: int = 3
    min_lr: float = 1.0e-7
    warmup_epochs: int = 0


class EarlyStoppingConfig(Section):
    """monitor: a history column, lower is better (val_loss; train_loss/train_g_loss as AMFL stops on training
    loss)"""

    patience: int = 9
    min_delta: float = 0.0
    monitor: str = "val_loss"


class TrainConfig(Section):
    epochs: int = 300
    batch_size: int = 8
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    seed: int = 0
    amp: bool = Field(True, description="CUDA only")
    channels_last: bool = Field(True, description="CUDA only")
    num_workers: int = 0
    device: str = "auto"
    max_batches_per_epoch: int | None = Field(None, description="cap for quick CPU runs")
    val_max_batches: int | None = None
    deterministic: bool = False

    @field_validator("epochs", "batch_size")
    @classmethod
    def _at_least_one(cls, value, info):
        if value < 1:
            raise ValueError(f"train.{info.field_name} must be >= 1, got {value!r}")
        return value

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, value):
        if value <= 0:
            raise ValueError(f"train.lr must be > 0, got {value!r}")
        return value


# --- adversarial ------------------------------------------------------------------------------------------


class DiscriminatorConfig(Section):
    name: str = "patchgan"
    channels: list[int] = Field(default_factory=lambda: [64, 128, 256, 512])
    strides: list[int] = Field(default_factory=lambda: [2, 2, 2, 1, 1])
    padding: int = 2
    norm: str = "none"
    sigmoid: bool = True


class AdversarialConfig(Section):
    """Adversarial training (AMFL §II-B/C): LSGAN against a discriminator on (image, segmentation) pairs."""

    enabled: bool = False
    lambda_seg: float = 10.0
    lr: float | None = Field(2.0e-4, description="the discriminator's lr (null: train.lr)")
    betas: list[float] = Field(default_factory=lambda: [0.5, 0.999])
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)


# --- noisy labels -----------------------------------------------------------------------------------------


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
        if value <= 0:
            raise ValueError(f"noisy_labels.ocm.lambda must be > 0, got {value!r}")
        return value


class NoisyLabelsConfig(Section):
    """Training on noisy labels (thesis ch. 3, medseg/training/noisy_labels.py). `enabled` simulates annotation
    noise on each fold's TRAINING samples only (never validation/test); qam/ocm pick the NoisyLabelTrainer
    and work with or without simulated noise."""

    enabled: bool = False
    fraction: float = Field(0.0, description="share of the fold's training samples corrupted "
                                             "(Table 3.1: 0, 0.25, 0.5, 0.75)")
    dilate_range: list[int] = Field(default_factory=lambda: [1, 8], description=(
        "n ~ uniform integer in [lo, hi] px, for dilation and shrinking (Table 3.1: 1-8, 5-13)"))
    mode: Literal["dilate", "erode", "both"] = Field(
        "both", description="dilate | erode | both (each corrupted sample dilated or eroded with probability ½)")
    structures: Literal["classes", "derived"] = Field(
        "classes", description="classes (each foreground class) | derived (task.derived unions: whole chromosomes)")
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
        if len(value) != 2 or not 0 <= value[0] <= value[1]:
            raise ValueError("noisy_labels.dilate_range: the noise range must be two integers 0 <= lo <= hi "
                             f"(pixels), got {value!r}")
        return value


def structure_signatures(structures: list[list[int]], num_classes: int) -> dict[int, int]:
    """Class of every membership pattern of the ``task.derived`` unions (bit k = inside union k); ValueError
    unless the unions code each class exactly once and the background lies in none. The noise simulation
    (:mod:`medseg.data.label_noise`) rebuilds label maps from these patterns."""
    k = len(structures)
    if k == 0:
        raise ValueError("noisy_labels.structures: derived needs task.derived to name at least one structure")
    if 2**k != num_classes:
        raise ValueError(f"noisy_labels.structures: derived needs the {k} task.derived unions to code each of the "
                         f"{num_classes} classes by which unions hold it (2^{k} = {2**k} patterns); use 'classes'")
    seen: dict[int, int] = {}
    for c in range(num_classes):
        sig = sum(1 << i for i, members in enumerate(structures) if c in {int(m) for m in members})
        if sig in seen:
            raise ValueError(f"noisy_labels.structures: classes {seen[sig]} and {c} lie in the same task.derived "
                             "unions, so a perturbed map could not tell them apart; use 'classes'")
        seen[sig] = c
    if seen.get(0) != 0:
        raise ValueError("noisy_labels.structures: the background (class 0) must lie in no task.derived union")
    return seen


def check_derived_structures(task: TaskConfig) -> None:
    """``noisy_labels.structures: derived``: multiclass tasks only, unions as :func:`structure_signatures`."""
    if task.mode != "multiclass":
        raise ValueError("noisy_labels.structures: derived needs a multiclass task; multilabel maps are perturbed "
                         "channel by channel")
    structure_signatures(list((task.derived or {}).values()), len(task.class_names))


# --- augmentation -----------------------------------------------------------------------------------------


class VolumeAugmentConfig(Section):
    """3D volumes (task.spatial_dims 3) only, CTV thesis §2.1: rotation <= 10°, x/y/z flips, shifts <= 8 voxels,
    Gaussian noise of variance 0.001 (medseg.data.transforms3d)."""

    enabled: bool = True
    rotate_deg: float = 10.0
    rotate_axes: Literal["axial", "all"] = "axial"
    shift_voxels: float = 8.0
    affine_prob: float = 1.0
    flip_axes: list[int] = Field(default_factory=lambda: [0, 1, 2], description="array axes 0 (z), 1 (y), 2 (x)")
    flip_prob: float = 0.5
    noise_var: float = 0.001
    noise_prob: float = 1.0
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros"

    @model_validator(mode="after")
    def _checks(self):
        for key in ("flip_prob", "affine_prob", "noise_prob"):
            _probability(getattr(self, key), f"augment.volume.{key}")
        for key in ("rotate_deg", "shift_voxels", "noise_var"):
            if getattr(self, key) < 0:
                raise ValueError(f"augment.volume.{key} must be >= 0, got {getattr(self, key)!r}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"augment.volume.flip_axes are array axes 0 (z), 1 (y), 2 (x); got {self.flip_axes!r}")
        return self


class AugmentConfig(Section):
    flip_prob: float = Field(0.0, description="2D: random flips along each axis")
    rot90_prob: float = Field(0.0, description="2D: random 90° rotations")
    volume: VolumeAugmentConfig = Field(default_factory=VolumeAugmentConfig)

    @model_validator(mode="after")
    def _checks(self):
        _probability(self.flip_prob, "augment.flip_prob")
        _probability(self.rot90_prob, "augment.rot90_prob")
        return self


# --- evaluation -------------------------------------------------------------------------------------------


class SlidingWindowConfig(Section):
    """3D: sliding-window inference with this roi (null: whole volumes), Gaussian blending."""

    roi_size: list[int] | None = None
    overlap: float = 0.5
    sw_batch_size: int = 1
    mode: Literal["gaussian", "constant"] = "gaussian"

    @model_validator(mode="after")
    def _checks(self):
        if self.roi_size is not None and (not self.roi_size or min(self.roi_size) < 1):
            raise ValueError(f"evaluate.sliding_window.roi_size must be positive voxel counts, got {self.roi_size!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"evaluate.sliding_window.overlap must be in [0, 1), got {self.overlap!r}")
        return self


class EvaluateConfig(Section):
    tta: bool = False
    batch_size: int = 32
    hausdorff: bool = True
    sliding_window: SlidingWindowConfig = Field(default_factory=SlidingWindowConfig)


class OutputConfig(Section):
    root: str = "runs"


# --- the whole config -------------------------------------------------------------------------------------


def _default_model() -> dict[str, Any]:
    return {"name": "unet", "depth": 4, "base_channels": 64, "norm": "batch"}


class Config(Section):
    """The whole experiment configuration (``configs/*.yaml`` over these defaults)."""

    name: str = "experiment"
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    splits: SplitsConfig = Field(default_factory=SplitsConfig)
    model: dict[str, Any] = Field(default_factory=_default_model, description=(
        "architecture name and settings, free-form (checked by medseg.models.registry); a model section "
        "naming another architecture replaces these U-Net settings instead of merging with them"))
    loss: Any = Field(default_factory=lambda: [{"name": "ce"}], description=(
        "a loss name, a mapping {name: ..., weight: ..., settings} or a list of them (medseg.losses)"))
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
        if not items or not all(isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("name"), str))
                                for v in items):
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
            raise ValueError("noisy_labels.qam weighs the samples of a batch against each other: train.batch_size "
                             "must be >= 2 (thesis line 559: batch size 1 made QAM unusable; in 3D train on "
                             "batches of patches)")
        if self.task.spatial_dims == 3:
            for key in ("flip_prob", "rot90_prob"):
                if getattr(self.augment, key) > 0:
                    raise ValueError(f"augment.{key} is a 2D setting; 3D volumes take augment.volume "
                                     f"(flip_prob, flip_axes, rotate_deg, shift_voxels, noise_var)")
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
