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
    primary_metric: str = Field(
        "overlap", description="class (or derived structure) whose IoU heads reports and box plots and is logged each "
                               "epoch; must be a scored class, so not the task.background one")
    background: int | None = Field(
        0, description="index in task.class_names of the background class (multiclass): left out of the scored "
                       "classes (validation and evaluation metrics, their mean, reports) and the 'foreground' of "
                       "foreground accuracy is every other class; null: no background, every class is scored. "
                       "multilabel: every channel is a structure and the background is where no channel is set, so "
                       "every channel is scored; only 0 or null are accepted there.")
    spatial_dims: Literal[2, 3] = Field(2, description="2 (images) or 3 (volumes)")

    @model_validator(mode="after")
    def _classes(self):
        n = len(self.class_names)
        if n < 2 and self.mode == "multiclass":
            raise ValueError("a multiclass task needs at least 2 classes (background included)")
        bg = self.background
        if self.mode == "multiclass" and bg is not None and not 0 <= bg < n:
            raise ValueError(f"task.background is {bg} but task.class_names holds {n} classes (0..{n - 1}); give the "
                             "index of the background class, or null when no class is background")
        if self.mode == "multilabel" and bg not in (0, None):
            raise ValueError(f"task.background is {bg}, but in multilabel mode every channel of task.class_names is a "
                             "structure and the background is where no channel is set: use 0 (the default) or null")
        for name, members in (self.derived or {}).items():
            bad = [m for m in members if not 0 <= int(m) < n]
            if bad:
                raise ValueError(f"task.derived.{name} names classes {bad} outside 0..{n - 1}")
            if self.mode == "multiclass" and bg is not None and bg in members:
                raise ValueError(f"task.derived.{name} includes class {bg} ({self.class_names[bg]!r}), the "
                                 "task.background class; a derived structure unites foreground classes only")
        allowed = scored_class_names(self) + list(self.derived or {})
        if self.primary_metric not in allowed:
            why = ""
            if self.primary_metric in self.class_names:
                why = (f" (class {self.class_names.index(self.primary_metric)} is task.background, which is never "
                       "scored; set task.background: null to score every class)")
            raise ValueError(f"task.primary_metric {self.primary_metric!r} is not a class or derived structure that "
                             f"is scored{why}; allowed: {', '.join(allowed)}")
        return self


def scored_class_names(task: TaskConfig | dict) -> list[str]:
    """The classes a task's metrics score, in class order: every name of ``task.class_names`` but the
    ``task.background`` one (multiclass; all of them when it is null). Multilabel: every channel (the
    background is where no channel is set). The rule :meth:`medseg.metrics.segmentation.SegmentationMetrics.from_task`
    applies, checked here so that ``primary_metric`` names a class that will have a score."""
    get = task.get if isinstance(task, dict) else lambda key, default=None: getattr(task, key, default)
    names = [str(n) for n in get("class_names")]
    bg = get("background", 0)
    if get("mode", "multiclass") != "multiclass" or bg is None:
        return names
    return [name for k, name in enumerate(names) if k != int(bg)]


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
                      "a UW-Madison GI-tract folder (train.csv + train/), or \"synth:demo\" / \"synth:pommier\" / "
                      "\"synth:gi\" for the project's own synthesized sets (made on first use, no download), or \"mfish:pairs\" / "
                      "\"mfish:synth\" / \"mfish:both\" (real M-FISH pairs, pairs synthesized from its chromosomes, "
                      "both; made from the real folder, medseg.data.mfish_sets) / \"mfish:karyotype\" (each real "
                      "isolated chromosome's DAPI cut-out labelled with its class 1-22, X, Y) / "
                      "\"mfish:karyotype-upright\" (the same chromosomes upright, scaled to their metaphase).")
    format: str = Field("auto", description="auto | pommier | folder | uwgi (the UW-Madison GI-tract competition "
                        "folder: train.csv + train/case*/case*_day*/scans/*.png; auto detects it)")
    h5_key: str = "dataset_1"
    size: list[int] | None = Field(default_factory=lambda: [128, 128], description=(
        "2D: every image padded all round (or centre-cropped, with a warning) to [H, W] when loaded; the papers "
        "pad 94x93 to 128x128. null: full resolution, each image keeps its own size (train on data.patch_size "
        "patches then)."))
    normalize: Literal["range", "zscore", "minmax"] = Field(
        "range", description="2D intensities: range (the stored dtype's range to [0, 1]: uint8 / 255, uint16 / "
                             "65535) | zscore (then per image (x - mean) / std, std floored) | minmax (then per image "
                             "(x - min) / (max - min): 16-bit MRI fills a small, scan-dependent part of its range); "
                             "recorded in model.json and applied again by predict and the server")
    resize: bool = Field(
        False, description="2D: scale every image to data.size (images bilinear, masks nearest) instead of padding "
                           "or centre-cropping it; predictions are scaled back to each image's own size (the GI "
                           "paper resizes to 128x128)")
    context_slices: int = Field(
        0, description="2.5D (slice data with scans, e.g. the GI tract): k neighbouring slices of the same scan "
                       "on each side are fed as extra input channels (2k + 1 in all; at the scan's ends the edge "
                       "slice repeats); 0: one slice")
    context_stride: int = Field(1, description="2.5D: slices between neighbours (1: adjacent slices)")
    image_pad_value: int | float | str = Field(
        "border", description="number, or \"border\" (median of each image's border)")
    stray_labels: Literal["reject", "background", "nearest"] = Field(
        "nearest", description="reject | background | nearest — the real file has a few label-4 pixels")
    mask_values: list[int] | None = Field(
        None, description="folder masks: stored grey values of classes 0..C-1, in order")
    limit: int | None = Field(None, description="use only the first N images (quick runs)")
    synth_pairs: int = Field(1500, description="size of the synth:demo set")
    synth_seed: int = 0
    mfish_source: str | None = Field(
        None, description="mfish:pairs / mfish:synth / mfish:both (medseg.data.mfish_sets): the real M-FISH folder; "
                          "null: $MEDSEG_MFISH, else ../shared/data/mfish")
    mfish_touching_px: int = Field(
        0, description="whole M-FISH metaphases (data.format mfish): 0 = three classes (background / chromosome / "
                       "overlap); k > 0 = a fourth class, touching: the chromosome pixels within k px of a touching "
                       "chromosome of another instance, the line that seeds their separation "
                       "(medseg.data.mfish_metaphase.touching_labels; task.class_names then ends in touching)")
    mfish_synth_pairs: int = Field(13434, description="size of the mfish:synth set (13,434: Pommier's published size)")
    synth_gi_cases: int = Field(6, description="size of the synth:gi set (cases of 1-5 scans of 80 or 144 slices; "
                                               "medseg data synth-gi)")
    patch_size: list[int] | None = Field(
        None, description="train on random patches instead of whole images: [H, W] in 2D (medseg.data.transforms, "
                          "images smaller than a patch are padded), [D, H, W] in 3D (medseg.data.transforms3d); "
                          "null = whole. Validation and prediction stay on whole images (by sliding window with "
                          "evaluate.sliding_window.roi_size).")
    patch_pos_fraction: float | None = Field(
        None, description="foreground oversampling, 2D and 3D: null: patch position uniform; p: centred on a "
                          "foreground (target) pixel with probability p")
    phantom: PhantomConfig = Field(default_factory=PhantomConfig)
    patient_pattern: str | None = Field(
        None, description="3D: regular expression whose first group is the patient id in a case name; splits "
                          "keep a patient's series together. null: every case is its own patient.")

    @field_validator("context_slices", "context_stride")
    @classmethod
    def _context(cls, value, info):
        low = 0 if info.field_name == "context_slices" else 1
        if value < low:
            raise ValueError(f"data.{info.field_name} must be >= {low}, got {value!r}")
        return value

    @field_validator("image_pad_value", mode="before")
    @classmethod
    def _pad_value(cls, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"data.image_pad_value must be a number or \"border\", got {value!r}")  # noqa: TRY004
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value):
        if value is not None and (len(value) != 2 or min(value) < 1):
            raise ValueError(f"data.size must be [H, W] pixels or null (full resolution), got {value!r}")
        return value

    @model_validator(mode="after")
    def _patches(self):
        size, pos = self.patch_size, self.patch_pos_fraction
        if size is None:
            if pos is not None:
                raise ValueError("data.patch_pos_fraction needs data.patch_size")
            return self
        if len(size) not in (2, 3) or min(size) < 1:
            raise ValueError(f"data.patch_size must be [H, W] pixels (2D) or [D, H, W] voxels (3D), got {size!r}")
        if pos is not None and not 0.0 <= pos <= 1.0:
            raise ValueError(f"data.patch_pos_fraction must be in [0, 1] or null, got {pos!r}")
        return self


# --- preprocessing ----------------------------------------------------------------------------------------


class PreprocessConfig(Section):
    """3D CT preprocessing (CTV thesis §2.1, medseg.data.transforms3d.preprocess_volume): clip to
    [clip_min, clip_max], map to [0, 1] (or z-score, as nnU-Net), resample to `depth` slices (linear in z)
    and size_xy in x/y."""

    clip_min: float | None = 0.0
    clip_max: float | None = 1600.0
    normalize: Literal["range", "minmax", "none", "zscore"] = Field(
        "range", description="after clipping: range (the window [clip_min, clip_max] to [0, 1], the thesis) | "
                             "minmax (each volume's own min/max to [0, 1]) | none | zscore ((x - mean) / std with "
                             "preprocess.mean/std — nnU-Net's CT normalisation, `medseg plan` fills them from the "
                             "foreground statistics —, or each volume's own mean/std when they are null: MR)")
    mean: float | None = Field(None, description="normalize: zscore: the intensity subtracted after clipping "
                                                 "(null: each volume's own mean)")
    std: float | None = Field(None, description="normalize: zscore: the intensity scale, > 0 (null: each volume's "
                                                "own std)")
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
        if (self.mean is None) != (self.std is None):
            raise ValueError("preprocess.mean and preprocess.std go together: give both (a fixed z-score, as for CT) "
                             "or neither (each volume's own mean and std)")
        if self.mean is not None and self.normalize != "zscore":
            raise ValueError(f"preprocess.mean/std are used by normalize: zscore only; normalize is "
                             f"{self.normalize!r} (set normalize: zscore or remove mean/std)")
        if self.std is not None and not self.std > 0:
            raise ValueError(f"preprocess.std must be > 0 (the z-score's scale), got {self.std!r}")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"preprocess.depth must be a number of slices >= 1 or null, got {self.depth!r}")
        if self.size_xy is not None and (len(self.size_xy) != 2 or min(self.size_xy) < 1):
            raise ValueError(f"preprocess.size_xy must be [H, W] or null, got {self.size_xy!r}")
        return self


# --- splits ---------------------------------------------------------------------------------------------


class SplitsConfig(Section):
    """How cases are split (medseg.data.splits, medseg.data.runs.splits_for): a held-out test set of
    test_fraction, then n_folds folds on the rest; drawn once, saved as JSON under output.root/splits and reused
    by every run on the same data."""

    test_fraction: float = Field(0.2, description="share of the cases held out as the test set, in [0, 1)")
    n_folds: int = Field(5, description="number of folds (k-fold cross-validation on the non-test cases; with "
                                        "val_fraction, folds of their own random validation subsets)")
    seed: int = 0
    protocol: Literal["random", "ordered"] = Field(
        "random", description="random (seeded test set) | ordered (Hu et al.: the test set is the last "
                              "test_fraction of the cases in natural name order: 2 before 10)")
    val_fraction: float | None = Field(
        None, description="null: k-fold, the validation sets of the n_folds folds partition the non-test cases | a "
                          "number in (0, 1): each fold validates on its own random subset of that share of the "
                          "non-test cases | 0: no validation set (train on every non-test case, keep the last "
                          "checkpoint)")
    file: str | None = Field(
        None, description="a split to use instead of drawing one: a YAML/JSON of case names, {test: [name, ...], "
                          "folds: [{val: [...], train: [...]}, ...]} (folds and train optional: without folds they "
                          "are drawn from the non-test cases by n_folds/val_fraction/seed; names with or without "
                          "their suffix), or a split JSON medseg wrote (indices); a path that does not exist yet "
                          "gets a split drawn by these settings")

    stratify: bool = Field(
        False, description="k-fold grouped by patient/case and stratified by each image's stratum (the GI data: "
                           "the number of organs in the image, 0-3), as scikit-learn's StratifiedGroupKFold (the GI "
                           "paper's split); with test_fraction 0 only")

    @model_validator(mode="after")
    def _stratified(self):
        if self.stratify and (self.test_fraction != 0 or self.val_fraction is not None):
            raise ValueError("splits.stratify makes k-fold cross-validation folds only: set splits.test_fraction: 0 "
                             "and leave splits.val_fraction null")
        return self

    @field_validator("val_fraction")
    @classmethod
    def _val_fraction(cls, value):
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"splits.val_fraction must be in [0, 1) or null (k-fold), got {value!r}")
        return value


# --- training -------------------------------------------------------------------------------------------


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

    sync_batchnorm: bool = Field(False, description="BatchNorm statistics over the global batch (SyncBatchNorm; "
                                                    "CUDA only in PyTorch); off: each rank normalises its own share")
    find_unused_parameters: bool = Field(False, description="DDP's find_unused_parameters, for models with parameters "
                                                            "a step does not use")
    timeout_minutes: float = Field(10.0, description="a collective waiting longer for a peer (a dead rank) fails "
                                                     "instead of hanging")

    @field_validator("timeout_minutes")
    @classmethod
    def _positive_timeout(cls, value):
        if value <= 0:
            raise ValueError(f"train.distributed.timeout_minutes must be > 0, got {value!r}")
        return value


class ValidationConfig(Section):
    """What is validated while training, so validating never eats the budget. Every epoch: ``images``
    validation images at most (a fixed subset drawn once with ``seed``; null: all of them) pick the best model
    and drive the plateau schedule and early stopping. With a subset, ``full_every`` N > 0 also validates all
    of them every N epochs (``full_val_*`` columns of the history), and ``final`` validates the selected model
    on all of them once training ends (``final_validation`` in summary.json)."""

    images: int | None = Field(None, ge=1, description="validation images per epoch: a fixed seeded subset; null = all")
    full_every: int = Field(0, ge=0, description="every N epochs also validate on every validation image (0: never)")
    final: bool = Field(True, description="when a subset is validated per epoch: the selected model on every "
                                          "validation image once training ends")
    seed: int = 0


class TrainConfig(Section):
    epochs: int = 300
    steps_per_epoch: int | None = Field(
        None, description="an epoch is this many optimizer steps, batches drawn with replacement whatever the "
                          "training set's size (nnU-Net: 250); null: one pass over the training images (the papers)")
    iterations: int | None = Field(
        None, description="training budget in optimizer steps (nnU-Net style); when set it overrides epochs: "
                          "ceil(iterations / batches per epoch) epochs, the last one cut at exactly this many steps")
    time_limit_minutes: float | None = Field(
        None, description="wall-clock budget of one fold's training in minutes: training stops at the first batch "
                          "past it (the epoch is then validated and saved); null: no limit. For comparisons at equal "
                          "time; poly and cosine schedules then reach their end at the limit")
    sampling: Literal["uniform", "class_balanced"] = Field(
        "uniform", description="which training images a step draws: uniform, or class_balanced (each foreground "
                               "class about equally often: an image stands for the rarest class it holds; "
                               "medseg.training.sampling)")
    batch_size: int = 8
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    seed: int = 0
    amp: bool = Field(True, description="mixed precision: on CUDA bf16 (fp16 + loss scaling where the GPU has no "
                                        "bf16); on a CPU bf16 only where it has native bf16 (AVX512-BF16, AMX, Arm "
                                        "BF16), else off")
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="2D models in channels-last memory format: auto = where measured to gain (CUDA; not "
                            "the CPU, see the README), true = on any device, false = never")
    compile: bool = Field(False, description="torch.compile the network for training (validation and the saved "
                                             "model use the plain module); needs a C++ compiler on the CPU")
    compile_backend: str = Field("inductor", description="torch.compile backend (inductor; eager / aot_eager to "
                                                         "check the wiring without compiling)")
    num_workers: int | Literal["auto"] = Field(
        "auto", description="DataLoader worker processes: auto = sized from this process's share of the cores "
                            "(0 on the CPU, where it was measured not to gain; on CUDA the share less one, at most "
                            "8); or a number >= 0")
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
    elastic_prob: float = Field(0.0, description="2D: probability of an elastic deformation (the GI paper, after "
                                                 "Simard et al.; MONAI Rand2DElastic: image bilinear, masks nearest)")
    elastic_spacing: list[float] = Field(default_factory=lambda: [16.0, 16.0], description=(
        "2D elastic: distance between the deformation's control points, pixels [H, W]"))
    elastic_magnitude: list[float] = Field(default_factory=lambda: [1.0, 2.0], description=(
        "2D elastic: range [lo, hi] of the control points' random displacement, in pixels (MONAI's magnitude_range; "
        "the smooth field between them moves pixels by about that much)"))
    noise_prob: float = Field(0.0, description="2D: probability of additive Gaussian noise on the image")
    noise_std: float = Field(0.05, description="2D: the noise's standard deviation (in the normalised input's units)")
    volume: VolumeAugmentConfig = Field(default_factory=VolumeAugmentConfig)

    @model_validator(mode="after")
    def _checks(self):
        _probability(self.flip_prob, "augment.flip_prob")
        _probability(self.rot90_prob, "augment.rot90_prob")
        _probability(self.elastic_prob, "augment.elastic_prob")
        _probability(self.noise_prob, "augment.noise_prob")
        if len(self.elastic_spacing) != 2 or min(self.elastic_spacing) <= 0:
            raise ValueError(f"augment.elastic_spacing must be two positive pixel distances [H, W], got "
                             f"{self.elastic_spacing!r}")
        lo_hi = self.elastic_magnitude
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"augment.elastic_magnitude must be [lo, hi] with 0 <= lo <= hi, got {lo_hi!r}")
        if self.noise_std < 0:
            raise ValueError(f"augment.noise_std must be >= 0, got {self.noise_std!r}")
        return self


# --- evaluation -------------------------------------------------------------------------------------------


class SlidingWindowConfig(Section):
    """Validation and inference by sliding window (MONAI, blended by `mode`), 2D and 3D alike: windows of
    roi_size ([H, W] in 2D, [D, H, W] in 3D; null: whole images/volumes) overlapping by `overlap`."""

    roi_size: list[int] | None = Field(
        None, description="[H, W] (2D) or [D, H, W] (3D) window; null: whole images or volumes (2D images larger "
                          "than 1024 px a side are still tiled at inference)")
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
    references: Literal["auto", "none"] = Field(
        "auto", description="published numbers set beside ours in the report (medseg.evaluation.paper_numbers): "
                            "auto = the chromosome papers' rows for the model's family on the chromosome task "
                            "(task.class_names = background, chromosome_alpha, chromosome_beta, overlap), the CTV "
                            "thesis' rows for its model (ctv_unet3d), none for any other task | none = no "
                            "published rows (a chromosome task's report then keeps its own rows and definitions)")
    karyotype_vote: Literal["soft", "majority"] = Field(
        "soft", description="karyotype task (classes background, 1-22, X, Y; data.path mfish:karyotype): a "
                            "chromosome's class from its pixels' probabilities: soft = argmax over 1-24 of the mean "
                            "probability over its mask | majority = the most frequent pixel argmax "
                            "(medseg.metrics.karyotype)")


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
        dims = self.task.spatial_dims
        shape_names = "[H, W] pixels" if dims == 2 else "[D, H, W] voxels"
        patch = self.data.patch_size
        if patch is not None and len(patch) != dims:
            raise ValueError(f"data.patch_size must be {shape_names} for task.spatial_dims {dims}, got {patch!r}")
        roi = self.evaluate.sliding_window.roi_size
        if roi is not None and len(roi) != dims:
            raise ValueError(f"evaluate.sliding_window.roi_size must be {shape_names} for task.spatial_dims {dims}, "
                             f"got {roi!r}")
        if self.task.spatial_dims == 3:
            for key in ("flip_prob", "rot90_prob", "elastic_prob", "noise_prob"):
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
