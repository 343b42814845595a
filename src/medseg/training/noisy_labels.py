"""Training on noisy labels (thesis ch. 3): simulated annotation noise, QAM, OCM and their trainer.

**Noise simulation (§3.1, §3.3).** Segmentation label noise is regional: a contour drawn too wide or too
tight. The thesis simulates it by dilating or shrinking the exact annotation by ``n_i`` pixels, ``n_i``
drawn with equal probability from a range (Table 3.1: 1–8 and 5–13 px), on 0/25/50/75 % of the training
set. :func:`simulate_label_noise` does this on the training indices it is given (``run.train_fold`` passes
a fold's training indices only — validation and test labels are never touched) and returns a record
``{index, op, n, changed}`` per corrupted sample. Choices the thesis leaves open, each a config option:

* ``n`` is an integer drawn uniformly from ``dilate_range`` = [lo, hi], both ends included. The text
  (line 362) says "0-8 and 5-13", the table (lines 372–389) "1-8" and "5-13"; the default follows the table
  (n = 0 would be a clean label).
* ``mode``: every corrupted sample is dilated (``dilate``), eroded (``erode``), or either with probability ½
  (``both``, the default: Fig. 3.1 shows both kinds and §3.2 argues that their mixture is what hurts). One
  ``op`` and one ``n`` per sample, applied to each of its structures.
* Morphology is Euclidean in pixel (voxel) units, 2D or 3D: dilation by n adds every pixel within distance
  n of the structure, erosion removes every pixel within distance n of a pixel outside it. This is exactly
  ``scipy.ndimage.binary_dilation`` / ``binary_erosion(border_value=1)`` with the ball footprint
  ``{o : |o| <= n}`` (tested), computed with distance transforms so that radii up to 13 px stay cheap in
  3D. The image border is not a structure boundary: a structure cut by the border does not shrink from it.
* ``structures``: what a "structure" is in a label map.
  ``classes`` — each foreground class of an exclusive (multiclass) map. Dilation grows a class into
  *background* only (an annotated pixel of another class is never overwritten); a background pixel reached
  by several dilated classes goes to the nearest one, ties to the lower class index. Erosion shrinks each
  class by its own mask (a boundary with another class counts) and the removed pixels become background.
  ``derived`` — the unions of ``task.derived`` (for chromosomes the whole chromosomes α = {1, 3} and
  β = {2, 3}): each union is dilated/eroded as one binary mask and the label map is rebuilt from which
  unions cover a pixel (α only → 1, β only → 2, both → 3 overlap, none → background), so a chromosome
  drawn too wide over its neighbour widens the overlap, as a real wide contour would. This needs the unions
  to code every class exactly once (2^K classes for K unions).
  Multilabel tasks (``(C, *S)`` binary maps) perturb every channel independently.

**QAM (§3.2.2, Eq. 3-1/3-2).** :class:`QualityAwarenessModule` Φ is VGG-shaped: stages of 3×3(×3)
conv + ReLU (VGG-16: 64-128-256-512-512 channels, 2-2-3-3-3 convolutions) each followed by a 2× max-pool,
input channels n + 1 (the image and the n-class one-hot label — the *training* label, not the prediction);
VGG's last layer is replaced by average pooling: a 1×1 conv to one channel averaged over space, which is the
same as a linear unit on the globally averaged features. This gives the absolute score AbS_i = Φ(x_i; y_i)
(Eq. 3-1); a softmax *across the batch* turns the scores into relative weights Θ_i with Σ_i Θ_i = 1, and
the loss is ``Loss = Σ_i Θ_i · L_i`` (Eq. 3-2), L_i being the configured segmentation loss of sample i
alone. Eq. 3-2 is taken literally — no factor N — so with equal weights (Θ_i = 1/N) it is the usual batch
mean and learning rates stay comparable with the base method.

Joint training: the thesis (line 344) back-propagates this one loss into both networks. The segmentation
network gets Σ Θ_i ∂L_i; QAM gets ∂Loss/∂AbS_i = Θ_i (L_i − Loss), i.e. it raises the scores of samples
whose loss is below the batch's weighted mean. The trivial way to lower a weighted loss — shrinking every
weight — is ruled out by the softmax's Σ Θ = 1; QAM sees only (image, label), never the prediction, so it
must judge the label. What remains is the degenerate optimum the thesis describes in §3.2.3: all weight on
the few easiest samples (over-fitting, and saturated softmax gradients that freeze early choices).

**OCM (§3.2.3, Eq. 3-3).** Γ(t) = λ·tanh(t) is applied to the absolute scores *before* the softmax, so
scores lie in (−λ, λ) and any two weights of a batch differ by at most a factor e^(2λ) (λ = 2: e^4 ≈ 54.6).

QAM ranks the samples *of a batch*, so it needs batches of several samples: the thesis trained with
batch 32 and notes (line 559) that its 3D system's batch size 1 left the method unusable. In 3D train on
batches of patches (``train.batch_size`` >= 2 is enforced). QAM is used only in training; validation,
checkpoints' ``model.safetensors`` and inference involve the segmentation network alone, while the
resumable state (``last.safetensors``) includes QAM and its optimizer.

:class:`NoisyLabelTrainer` overrides ``build_optimizers`` (adds QAM's Adam, lr ``noisy_labels.qam.lr``,
thesis 1e-4), ``extra_modules`` and ``train_step``; ``train_epoch`` only adds the epoch's weight statistics
to the loop's row: ``train_qam_w_mean/min/max`` (weights Θ), ``train_qam_ratio_max`` (largest max/min
ratio within a batch) and, when the fold's noise records are known, ``train_qam_rel_clean`` /
``train_qam_rel_noisy`` — the mean relative weight N·Θ_i (1 = uniform) of clean and corrupted samples,
the quantity of Fig. 3.4.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from scipy import ndimage
from torch import nn

from medseg.errors import ConfigError, DataValidationError
from medseg.losses.segmentation import one_hot
from medseg.models.blocks import ConvNormAct
from medseg.progress import Progress
from medseg.training.trainer import Trainer, model_kwargs

__all__ = [
    "NOISE_OPS",
    "THESIS",
    "THESIS_TABLE_3_1",
    "NoisyLabelTrainer",
    "QualityAwarenessModule",
    "apply_label_noise",
    "ball",
    "check_noise_config",
    "dilate_mask",
    "erode_mask",
    "merge_noise_report",
    "noise_structures",
    "per_sample_loss",
    "perturb_label",
    "quality_weights",
    "simulate_label_noise",
]

NOISE_OPS = ("dilate", "erode")
NOISE_MODES = ("dilate", "erode", "both")
# The thesis' Table 3.1 lives with the other papers' published numbers.
from medseg.evaluation.paper_numbers import CTV_THESIS_FILE as THESIS, THESIS_TABLE_3_1  # noqa: E402


# --------------------------------------------------------------------------------------------------------
# Noise simulation
# --------------------------------------------------------------------------------------------------------
def ball(n: int, spatial_dims: int) -> np.ndarray:
    """The Euclidean ball footprint ``{o : |o| <= n}`` (a disk in 2D), shape (2n + 1,) * spatial_dims."""
    g = np.indices((2 * n + 1,) * spatial_dims) - n
    return (g**2).sum(0) <= n * n


def dilate_mask(mask: np.ndarray, n: int) -> np.ndarray:
    """``binary_dilation(mask, ball(n))``: every pixel within Euclidean distance n of the mask."""
    mask = np.asarray(mask, dtype=bool)
    if n <= 0 or not mask.any() or mask.all():
        return mask.copy()
    # The distance to the nearest mask pixel is sqrt(integer); sqrt is exact on squares, so <= n is exact.
    return ndimage.distance_transform_edt(~mask) <= n


def erode_mask(mask: np.ndarray, n: int) -> np.ndarray:
    """``binary_erosion(mask, ball(n), border_value=1)``: pixels farther than n from any pixel outside the mask.

    Outside the array counts as unknown, not as background: a structure cut by the image border does not
    shrink from the border.
    """
    mask = np.asarray(mask, dtype=bool)
    if n <= 0 or not mask.any() or mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask) > n


def _morph(mask: np.ndarray, op: str, n: int) -> np.ndarray:
    if op == "dilate":
        return dilate_mask(mask, n)
    if op == "erode":
        return erode_mask(mask, n)
    raise ValueError(f"unknown noise operation {op!r}; use {' or '.join(NOISE_OPS)}")


def _signature_table(structures: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Class of every membership pattern (bit k = inside structure k); checks the unions code each class once."""
    k = len(structures)
    if k == 0:
        raise ConfigError("noisy_labels.structures: derived needs task.derived to name at least one structure")
    if 2**k != num_classes:
        raise ConfigError(f"noisy_labels.structures: derived needs the {k} task.derived unions to code each of the "
                          f"{num_classes} classes by which unions hold it (2^{k} = {2**k} patterns); use 'classes'")
    table = np.full(2**k, -1, dtype=np.int64)
    for c in range(num_classes):
        sig = sum(1 << i for i, members in enumerate(structures) if c in {int(m) for m in members})
        if table[sig] != -1:
            raise ConfigError(f"noisy_labels.structures: classes {int(table[sig])} and {c} lie in the same task.derived "
                              "unions, so a perturbed map could not tell them apart; use 'classes'")
        table[sig] = c
    if table[0] != 0:
        raise ConfigError("noisy_labels.structures: the background (class 0) must lie in no task.derived union")
    return table


def perturb_label(label: np.ndarray, op: str, n: int, *, task_mode: str = "multiclass",
                  structures: Sequence[Sequence[int]] | None = None, num_classes: int | None = None) -> np.ndarray:
    """Dilate or erode every structure of one label by ``n`` pixels (see the module docstring for the rules).

    ``label``: (*S) class indices (multiclass) or (C, *S) binary maps (multilabel), 2D or 3D.
    ``structures``: None = each foreground class; else unions of classes (``task.derived``), multiclass only,
    coding ``num_classes`` classes (default 2^len(structures)).
    """
    if op not in NOISE_OPS:
        raise ValueError(f"unknown noise operation {op!r}; use {' or '.join(NOISE_OPS)}")
    label = np.asarray(label)
    if task_mode == "multilabel":
        return np.stack([_morph(ch != 0, op, n) for ch in label]).astype(label.dtype)
    if task_mode != "multiclass":
        raise ValueError(f"task_mode must be multiclass or multilabel, got {task_mode!r}")
    if structures is not None:
        num_classes = int(num_classes if num_classes is not None else 2 ** len(structures))
        table = _signature_table(structures, num_classes)
        code = np.zeros(label.shape, dtype=np.int64)
        for i, members in enumerate(structures):
            code |= _morph(np.isin(label, [int(m) for m in members]), op, n).astype(np.int64) << i
        return table[code].astype(label.dtype)
    out = label.copy()
    classes = [int(c) for c in np.unique(label) if c != 0]
    if not classes or n <= 0:
        return out
    if op == "erode":
        for c in classes:
            mask = label == c
            out[mask & ~erode_mask(mask, n)] = 0
        return out
    # Dilation: background pixels within n of a class go to the nearest class (ties: lower index, argmin's
    # first); other classes' pixels are never overwritten.
    dist = np.stack([ndimage.distance_transform_edt(label != c) for c in classes])
    nearest = dist.argmin(0)
    claim = (label == 0) & (dist.min(0) <= n)
    out[claim] = np.asarray(classes, dtype=label.dtype)[nearest[claim]]
    return out


def simulate_label_noise(labels: np.ndarray, indices: Sequence[int], *, fraction: float,
                         n_range: Sequence[int] = (1, 8), mode: str = "both", seed: int | Sequence[int] = 0,
                         task_mode: str = "multiclass", structures: Sequence[Sequence[int]] | None = None,
                         num_classes: int | None = None, progress: bool = False) -> tuple[np.ndarray, list[dict]]:
    """Corrupt ``round(fraction · len(indices))`` of the samples ``indices`` of ``labels`` (N, [C,] *S).

    Returns a copy of ``labels`` (the input is never modified) and one record ``{"index", "op", "n",
    "changed"}`` per corrupted sample, in index order; ``changed`` counts the label entries that differ.
    Samples outside ``indices`` are untouched. Which samples, which operation and which n come from
    ``numpy.random.default_rng(seed)``: the same seed gives the same noise.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    lo, hi = _n_range(n_range)
    if mode not in NOISE_MODES:
        raise ValueError(f"mode must be one of {NOISE_MODES}, got {mode!r}")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(labels)):
        raise IndexError(f"sample indices must lie in 0..{len(labels) - 1}")
    if len(np.unique(indices)) != len(indices):
        raise ValueError("sample indices contain duplicates")
    rng = np.random.default_rng(seed)
    k = int(np.floor(fraction * len(indices) + 0.5))
    chosen = np.sort(rng.choice(indices, size=k, replace=False)) if k else np.zeros(0, np.int64)
    out = labels.copy()
    records = []
    for idx in Progress(chosen, desc="simulating label noise", unit="sample", leave=False, disable=not progress):
        op = NOISE_OPS[int(rng.integers(2))] if mode == "both" else mode
        n = int(rng.integers(lo, hi + 1))
        out[idx] = perturb_label(labels[idx], op, n, task_mode=task_mode, structures=structures, num_classes=num_classes)
        records.append({"index": int(idx), "op": op, "n": n, "changed": int((out[idx] != labels[idx]).sum())})
    return out, records


def _n_range(n_range) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in n_range)
        ok = [lo, hi] == [float(v) for v in n_range]
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0 <= lo <= hi:
        raise ValueError(f"the noise range must be two integers 0 <= lo <= hi (pixels), got {n_range!r}")
    return lo, hi


def noise_structures(cfg: dict) -> list[list[int]] | None:
    """``noisy_labels.structures`` resolved: None (each class) or the ``task.derived`` unions."""
    kind = cfg["noisy_labels"]["structures"]
    if kind == "classes":
        return None
    if cfg["task"]["mode"] != "multiclass":
        raise ConfigError("noisy_labels.structures: derived needs a multiclass task; multilabel maps are perturbed "
                          "channel by channel")
    return [[int(m) for m in members] for members in (cfg["task"].get("derived") or {}).values()]


def check_noise_config(cfg: dict) -> dict:
    """Validate the ``noisy_labels`` section (ConfigError naming the key); returns it."""
    nl = cfg["noisy_labels"]
    try:
        fraction = float(nl["fraction"])
    except (TypeError, ValueError):
        fraction = -1.0
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"noisy_labels.fraction must be a number in [0, 1], got {nl['fraction']!r}")
    try:
        _n_range(nl["dilate_range"])
    except ValueError as exc:
        raise ConfigError(f"noisy_labels.dilate_range: {exc}") from None
    if nl["mode"] not in NOISE_MODES:
        raise ConfigError(f"noisy_labels.mode must be one of {', '.join(NOISE_MODES)}, got {nl['mode']!r}")
    if nl["structures"] not in ("classes", "derived"):
        raise ConfigError(f"noisy_labels.structures must be classes or derived, got {nl['structures']!r}")
    if nl["structures"] == "derived":
        _signature_table(noise_structures(cfg), len(cfg["task"]["class_names"]))
    qam = nl["qam"]
    if len(qam["channels"]) != len(qam["convs"]) or not qam["channels"]:
        raise ConfigError("noisy_labels.qam.channels and .convs need one value per VGG stage (same length, >= 1)")
    if any(int(c) < 1 for c in list(qam["channels"]) + list(qam["convs"])):
        raise ConfigError("noisy_labels.qam.channels and .convs must be >= 1")
    if float(qam["lr"]) <= 0:
        raise ConfigError("noisy_labels.qam.lr must be > 0")
    if float(nl["ocm"]["lambda"]) <= 0:
        raise ConfigError(f"noisy_labels.ocm.lambda must be > 0, got {nl['ocm']['lambda']!r}")
    return nl


def apply_label_noise(cfg: dict, data, train_idx: Sequence[int], fold: int = 0, *, progress: bool = True):
    """The data a fold trains on: ``data`` with its *training* samples' labels corrupted per ``noisy_labels``.

    Returns ``(noisy_data, report)``; ``noisy_data`` is a new :class:`SegmentationData` sharing the images,
    with a copied label array (``data`` is unchanged, so folds of one cross-validation never see each
    other's noise). The noise is seeded by ``(noisy_labels.seed, fold)``. ``report`` (for data.json) holds
    the settings and one record per corrupted sample.
    """
    nl = check_noise_config(cfg)
    task_mode = cfg["task"]["mode"]
    spatial_dims = int(cfg["task"]["spatial_dims"])
    expected = 1 + spatial_dims + (task_mode == "multilabel")
    if data.labels.ndim != expected:
        raise DataValidationError(data.source, f"labels of shape {data.labels.shape} do not fit a {spatial_dims}D "
                                  f"{task_mode} task (expected {expected} dimensions) for the label-noise simulation")
    lo, hi = _n_range(nl["dilate_range"])
    labels, records = simulate_label_noise(
        data.labels, train_idx, fraction=float(nl["fraction"]), n_range=(lo, hi), mode=nl["mode"],
        seed=[int(nl["seed"]), int(fold)], task_mode=task_mode, structures=noise_structures(cfg),
        num_classes=len(cfg["task"]["class_names"]), progress=progress)
    note = (f"label noise: {len(records)} of {len(train_idx)} training samples of fold {fold} {nl['mode']} "
            f"by {lo}-{hi} px (seed {nl['seed']}); validation and test labels are clean")
    noisy = dataclasses.replace(data, labels=labels, notes=[*data.notes, note])
    report = {"fold": int(fold), "fraction": float(nl["fraction"]), "dilate_range": [lo, hi], "mode": nl["mode"],
              "structures": nl["structures"], "seed": [int(nl["seed"]), int(fold)], "n_train": len(train_idx),
              "n_corrupted": len(records), "records": records}
    return noisy, report


def merge_noise_report(data_json: Path, report: dict) -> dict:
    """``label_noise`` of data.json: the folds recorded there before, plus this fold's ``report``."""
    merged: dict = {}
    try:
        previous = json.loads(Path(data_json).read_text()).get("label_noise")
        if isinstance(previous, dict):
            merged.update({k: v for k, v in previous.items() if k.startswith("fold_")})
    except (OSError, ValueError, AttributeError):
        pass
    merged[f"fold_{report['fold']}"] = report
    return dict(sorted(merged.items()))


# --------------------------------------------------------------------------------------------------------
# QAM and OCM
# --------------------------------------------------------------------------------------------------------
def _halve(x: torch.Tensor) -> torch.Tensor:
    """VGG's 2× max-pool, on every spatial dimension still >= 2 (thin 3D patches keep their 1-voxel axes)."""
    k = [2 if s >= 2 else 1 for s in x.shape[2:]]
    if all(v == 1 for v in k):
        return x
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(x, kernel_size=k, stride=k)


class QualityAwarenessModule(nn.Module):
    """Φ(x; y) of Eq. 3-1: a VGG-shaped network on image ⊕ label → one absolute score per sample.

    ``in_channels`` = image channels + label channels (n + 1 for a one-channel image and n classes).
    Stages of ``convs[i]`` 3×3(×3) ConvNormAct (ReLU; ``norm`` none as in VGG) with ``channels[i]``
    filters, each followed by a 2× max-pool; then a 1×1 conv to one channel and global average pooling
    (the average-pooling layer that replaces VGG's last layer). 2D or 3D via ``spatial_dims``. VGG's
    initialisation (:meth:`reset_parameters`).
    """

    def __init__(self, in_channels: int, *, spatial_dims: int = 2, channels: Sequence[int] = (64, 128, 256, 512, 512),
                 convs: Sequence[int] = (2, 2, 3, 3, 3), norm: str | None = "none"):
        super().__init__()
        if len(channels) != len(convs) or not channels:
            raise ValueError("channels and convs need one value per stage (same length, >= 1)")
        self.spatial_dims = spatial_dims
        self.stages = nn.ModuleList()
        prev = in_channels
        for c, k in zip(channels, convs):
            layers = []
            for _ in range(int(k)):
                layers.append(ConvNormAct(prev, int(c), spatial_dims=spatial_dims, norm=norm, act="relu"))
                prev = int(c)
            self.stages.append(nn.Sequential(*layers))
        self.score = Conv[Conv.CONV, spatial_dims](prev, 1, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """VGG's initialisation (as torchvision's ``vgg16``): Kaiming-normal (fan-out, ReLU) convolutions with
        zero bias, the scoring layer N(0, 0.01). PyTorch's default init shrinks the signal through the 13
        convolutions until every sample gets the same score (std ~1e-7 across a batch of chromosome pairs,
        measured), which delays QAM's first distinctions by tens of steps."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.score.weight, 0.0, 0.01)
        nn.init.zeros_(self.score.bias)

    def forward(self, image: torch.Tensor, label_map: torch.Tensor | None = None) -> torch.Tensor:
        """AbS (B,) for image (B, 1, *S) and label map (B, n, *S) (or one tensor already concatenated)."""
        x = image if label_map is None else torch.cat([image, label_map.to(image.dtype)], 1)
        for stage in self.stages:
            x = _halve(stage(x))
        return self.score(x).mean(dim=tuple(range(2, x.ndim))).flatten()


def quality_weights(scores: torch.Tensor, ocm_lambda: float | None = None) -> torch.Tensor:
    """Θ: softmax over the batch of the absolute scores (Eq. 3-2's Σ Θ_i = 1), float32.

    With OCM (``ocm_lambda`` = λ) the scores first go through Γ(t) = λ·tanh(t) (Eq. 3-3), which bounds the
    ratio of any two weights by e^(2λ).
    """
    t = scores.float().flatten()
    if ocm_lambda is not None:
        t = float(ocm_lambda) * torch.tanh(t)
    return torch.softmax(t, dim=0)


def per_sample_loss(loss_fn: nn.Module, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) the configured loss evaluated on each sample of the batch alone (Eq. 3-2's L_i).

    Works for every registered loss (each sees a batch of one); a loss that pools over the batch (Dice with
    ``batch: true``) therefore becomes per-image here. For mean-reduced losses on equal-sized samples (CE,
    BCE) the mean of the L_i equals the batch loss.
    """
    return torch.stack([loss_fn(logits[i : i + 1], target[i : i + 1]) for i in range(logits.shape[0])])


class NoisyLabelTrainer(Trainer):
    """:class:`Trainer` with QAM (and optionally OCM) weighting each sample's loss (config ``noisy_labels``)."""

    qam: QualityAwarenessModule
    #: the fold's noise report (set by ``run.train_fold`` when noise is simulated): logs clean vs noisy weights
    label_noise: dict | None = None

    def build_qam(self) -> QualityAwarenessModule:
        q = self.cfg["noisy_labels"]["qam"]
        in_channels = int(model_kwargs(self.cfg)["in_channels"]) + len(self.class_names)
        return QualityAwarenessModule(in_channels, spatial_dims=int(self.cfg["task"]["spatial_dims"]),
                                      channels=[int(c) for c in q["channels"]], convs=[int(c) for c in q["convs"]],
                                      norm=q["norm"])

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # Called by Trainer.__init__ after the segmentation network is built and seeded: QAM is built here.
        nl = check_noise_config(self.cfg)
        if int(self.cfg["train"]["batch_size"]) < 2:
            raise ConfigError("noisy_labels.qam weighs the samples of a batch against each other: train.batch_size "
                              "must be >= 2 (thesis line 559: batch size 1 made QAM unusable; in 3D train on "
                              "batches of patches)")
        self.ocm_lambda = float(nl["ocm"]["lambda"]) if nl["ocm"]["enabled"] else None
        self.qam = self.build_qam().to(self.device)
        if self.channels_last:
            self.qam = self.qam.to(memory_format=torch.channels_last)
        optimizers = super().build_optimizers()
        optimizers["qam"] = torch.optim.Adam(self.qam.parameters(), lr=float(nl["qam"]["lr"]))
        self._weight_log: list[tuple[torch.Tensor, torch.Tensor]] = []
        return optimizers

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"qam": self.qam}

    def label_map(self, label: torch.Tensor) -> torch.Tensor:
        """The training label as QAM sees it: one-hot (multiclass) or the binary maps (multilabel)."""
        return one_hot(label, len(self.class_names)) if self.mode == "multiclass" else label.float()

    def train_step(self, batch: dict) -> dict[str, float]:
        image, label = self.to_device(batch)
        opt_seg, opt_qam = self.optimizers["model"], self.optimizers["qam"]
        opt_seg.zero_grad(set_to_none=True)
        opt_qam.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.model(image)
            scores = self.qam(image, self.label_map(label))  # AbS, Eq. 3-1
        weights = quality_weights(scores, self.ocm_lambda)  # Θ, Eq. 3-2/3-3
        losses = per_sample_loss(self.loss_fn, logits, label)  # L_i
        loss = (weights * losses).sum()  # Eq. 3-2: one loss for both networks
        self.scaler.scale(loss).backward()
        self.scaler.step(opt_seg)
        self.scaler.step(opt_qam)
        self.scaler.update()
        index = batch.get("index")
        index = torch.as_tensor(index) if index is not None else torch.full((len(weights),), -1)
        self._weight_log.append((weights.detach().cpu(), index.cpu()))
        return {"loss": float(losses.detach().mean()), "weighted_loss": float(loss.detach())}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self._weight_log = []
        row = super().train_epoch(epoch)
        row.update(self.weight_stats())
        self._weight_log = []
        return row

    def weight_stats(self) -> dict[str, float]:
        """The epoch's QAM weights: mean/min/max of Θ, largest in-batch max/min ratio, clean vs noisy N·Θ."""
        if not self._weight_log:
            return {}
        w = torch.cat([b for b, _ in self._weight_log])
        rel = torch.cat([b * len(b) for b, _ in self._weight_log])
        idx = torch.cat([i for _, i in self._weight_log])
        ratio = max(float(b.max() / b.min()) if float(b.min()) > 0 else float("inf") for b, _ in self._weight_log)
        out = {"train_qam_w_mean": float(w.mean()), "train_qam_w_min": float(w.min()), "train_qam_w_max": float(w.max()),
               "train_qam_ratio_max": ratio}
        if self.label_noise is not None:
            noisy = torch.tensor(sorted(r["index"] for r in self.label_noise["records"]), dtype=idx.dtype)
            is_noisy = torch.isin(idx, noisy)
            out["train_qam_rel_clean"] = float(rel[~is_noisy].mean()) if (~is_noisy).any() else float("nan")
            out["train_qam_rel_noisy"] = float(rel[is_noisy].mean()) if is_noisy.any() else float("nan")
        return out
