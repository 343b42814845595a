"""The training sections: ``train`` (budget, optimiser, schedule, validation, devices) and ``adversarial``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from medseg.config_schema.base import Section, positive

__all__ = [
    "AdversarialConfig",
    "DiscriminatorConfig",
    "DistributedConfig",
    "EarlyStoppingConfig",
    "SchedulerConfig",
    "TrainConfig",
    "ValidationConfig",
]


class SchedulerConfig(Section):
    """name: plateau (the papers: ReduceLROnPlateau on the validation loss, factor/patience; on the training loss
    when there is no validation set) | cosine (cosine decay from lr to min_lr over `epochs`, after
    `warmup_epochs` of linear warm-up: for short fixed budgets) | poly (nnU-Net: lr·(1 − t)^0.9) | constant (lr
    throughout: Keras' Adam without a callback, the GI paper). cosine and poly follow the budget: t = steps done /
    the step budget, or elapsed / train.time_limit_minutes when further (medseg.training.schedules)"""

    name: Literal["plateau", "cosine", "poly", "constant"] = "plateau"
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


class DistributedConfig(Section):
    """Data-parallel training (``torchrun`` / ``medseg train --nproc N``; medseg.training.distributed). The
    global batch is ``train.batch_size``, split evenly over the processes."""

    sync_batchnorm: bool = Field(
        False,
        description="BatchNorm statistics over the global batch (SyncBatchNorm; "
        "CUDA only in PyTorch); off: each rank normalises its own share",
    )
    find_unused_parameters: bool = Field(
        False, description="DDP's find_unused_parameters, for models with parameters a step does not use"
    )
    timeout_minutes: float = Field(
        10.0, description="a collective waiting longer for a peer (a dead rank) fails instead of hanging"
    )

    @field_validator("timeout_minutes")
    @classmethod
    def _positive_timeout(cls, value):
        return positive(value, "train.distributed.timeout_minutes")


class ValidationConfig(Section):
    """What is validated while training, so validating never eats the budget. Every epoch: ``images``
    validation images at most (a fixed subset drawn once with ``seed``; null: all of them) pick the best model
    and drive the plateau schedule and early stopping. With a subset, ``full_every`` N > 0 also validates all
    of them every N epochs (``full_val_*`` columns of the history), and ``final`` validates the selected model
    on all of them once training ends (``final_validation`` in summary.json)."""

    images: int | None = Field(None, ge=1, description="validation images per epoch: a fixed seeded subset; null = all")
    full_every: int = Field(0, ge=0, description="every N epochs also validate on every validation image (0: never)")
    final: bool = Field(
        True,
        description="when a subset is validated per epoch: the selected model on every "
        "validation image once training ends",
    )
    seed: int = 0


class TrainConfig(Section):
    epochs: int = 300
    steps_per_epoch: int | None = Field(
        None,
        description="an epoch is this many optimizer steps, batches drawn with replacement whatever the "
        "training set's size (nnU-Net: 250); null: one pass over the training images (the papers)",
    )
    iterations: int | None = Field(
        None,
        description="training budget in optimizer steps (nnU-Net style); when set it overrides epochs: "
        "ceil(iterations / batches per epoch) epochs, the last one cut at exactly this many steps",
    )
    time_limit_minutes: float | None = Field(
        None,
        description="wall-clock budget of one fold's training in minutes: training stops at the first batch "
        "past it (the epoch is then validated and saved); null: no limit. For comparisons at equal "
        "time; poly and cosine schedules then reach their end at the limit",
    )
    sampling: Literal["uniform", "class_balanced"] = Field(
        "uniform",
        description="which training images a step draws: uniform, or class_balanced (each foreground "
        "class about equally often: an image stands for the rarest class it holds; "
        "medseg.training.sampling)",
    )
    batch_size: int = 8
    ema_decay: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="validate, select and save an exponential moving average of the weights, updated after "
        "every optimizer step with this decay (0.999: about the last 1,000 steps; "
        "medseg.training.weight_average); null: the weights as trained",
    )
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    seed: int = 0
    amp: bool = Field(
        True,
        description="mixed precision: on CUDA bf16 (fp16 + loss scaling where the GPU has no "
        "bf16); on a CPU bf16 only where it has native bf16 (AVX512-BF16, AMX, Arm "
        "BF16), else off",
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="2D models in channels-last memory format: auto = where measured to gain (CUDA; not "
        "the CPU, see the README), true = on any device, false = never",
    )
    compile: bool = Field(
        False,
        description="torch.compile the network for training (validation and the saved "
        "model use the plain module); needs a C++ compiler on the CPU",
    )
    compile_backend: str = Field(
        "inductor",
        description="torch.compile backend (inductor; eager / aot_eager to check the wiring without compiling)",
    )
    num_workers: int | Literal["auto"] = Field(
        "auto",
        description="DataLoader worker processes: auto = sized from this process's share of the cores "
        "(0 on the CPU, where it was measured not to gain; on CUDA the share less one, at most "
        "8); or a number >= 0",
    )
    device: str = "auto"
    max_batches_per_epoch: int | None = Field(None, description="cap for quick CPU runs")
    val_max_batches: int | None = None
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    deterministic: bool = False
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @field_validator("epochs", "batch_size")
    @classmethod
    def _at_least_one(cls, value, info):
        if value < 1:
            raise ValueError(f"train.{info.field_name} must be >= 1, got {value!r}")
        return value

    @field_validator("channels_last", mode="before")
    @classmethod
    def _channels_last(cls, value):
        if not isinstance(value, bool) and value != "auto":
            raise ValueError(f"train.channels_last must be auto, true or false, got {value!r}")
        return value

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers(cls, value):
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"train.num_workers must be auto or a number of worker processes >= 0, got {value!r}")
        return value

    @field_validator("compile_backend")
    @classmethod
    def _backend(cls, value):
        if not value.strip():
            raise ValueError("train.compile_backend must name a torch.compile backend (inductor, aot_eager, eager)")
        return value

    @field_validator("iterations", "steps_per_epoch")
    @classmethod
    def _iterations(cls, value, info):
        if value is not None and value < 1:
            raise ValueError(f"train.{info.field_name} must be >= 1 optimizer steps or null, got {value!r}")
        return value

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, value):
        return positive(value, "train.lr")


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
