"""Segmentation losses with one calling convention: ``loss(logits, target)``.

``logits`` are (B, C, *spatial). ``target`` is (B, *spatial) int class indices in ``multiclass`` mode
(exclusive classes, softmax) or (B, C, *spatial) 0/1 in ``multilabel`` mode (sigmoid). Every loss
computes in float32 even under autocast: soft-Dice sums overflow in fp16.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss as MonaiDiceLoss
from monai.losses import FocalLoss as MonaiFocalLoss
from torch import nn

from medseg.errors import ConfigError

_LOSSES: dict[str, Callable[..., nn.Module]] = {}
MODES = ("multiclass", "multilabel")


def register_loss(name: str):
    def deco(cls):
        _LOSSES[name] = cls
        return cls

    return deco


def available_losses() -> list[str]:
    return sorted(_LOSSES)


def one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, *S) int → (B, C, *S) float."""
    return F.one_hot(target.long(), num_classes).movedim(-1, 1).float()


class SegLoss(nn.Module):
    """Base: checks the mode and gives subclasses float32 logits and both target forms."""

    def __init__(self, mode: str = "multiclass"):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"loss mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def dense_target(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.mode == "multiclass":
            return one_hot(target, logits.shape[1])
        return target.float()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute(logits.float(), target)

    def compute(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@register_loss("ce")
class CrossEntropyLoss(SegLoss):
    """Softmax cross-entropy, optionally class-weighted (``class_weights``, one per class)."""

    def __init__(self, mode: str = "multiclass", class_weights: Sequence[float] | None = None):
        super().__init__(mode)
        if mode != "multiclass":
            raise ConfigError("cross-entropy ('ce') needs exclusive classes; use 'bce' for multilabel tasks")
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        )

    def compute(self, logits, target):
        return F.cross_entropy(logits, target.long(), weight=self.class_weights)


@register_loss("bce")
class BCELoss(SegLoss):
    """Binary cross-entropy on every class map (sigmoid), mean over classes and pixels.

    In multiclass mode the target is one-hot encoded, so each class is a binary map (as ARMS Net's
    Keras BCE over the four label maps, Eq. 1 with w = 1).
    """

    def __init__(self, mode: str = "multiclass", pos_weight: Sequence[float] | None = None):
        super().__init__(mode)
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32)
        )

    def compute(self, logits, target):
        pw = None if self.pos_weight is None else self.pos_weight.view(-1, *([1] * (logits.ndim - 2)))
        return F.binary_cross_entropy_with_logits(logits, self.dense_target(logits, target), pos_weight=pw)


@register_loss("dice")
class DiceLoss(SegLoss):
    """Soft Dice (MONAI ``DiceLoss``): softmax in multiclass mode, sigmoid in multilabel mode.

    ``batch=True`` pools the sums over the batch (nnU-Net style), which keeps images with an empty class
    from dominating; ``include_background`` defaults to True for 4-class chromosome maps.
    """

    def __init__(
        self, mode: str = "multiclass", include_background: bool = True, batch: bool = False, smooth: float = 1e-5
    ):
        super().__init__(mode)
        self.dice = MonaiDiceLoss(
            include_background=include_background,
            softmax=mode == "multiclass",
            sigmoid=mode == "multilabel",
            batch=batch,
            smooth_nr=smooth,
            smooth_dr=smooth,
        )

    def compute(self, logits, target):
        return self.dice(logits, self.dense_target(logits, target))


@register_loss("focal")
class FocalLoss(SegLoss):
    """Focal loss FL = -α_t (1 - p_t)^γ log p_t (Lin et al.; RSE-UNet §2.6, Eq. 6–8: α = 0.25, γ = 2).

    RSE-UNet writes the binary form (α for y = 1, 1 - α otherwise). ``use_softmax`` (default True for
    exclusive classes) applies it to softmax probabilities with α on the foreground classes and 1 - α on
    the background, as MONAI does; ``use_softmax=False`` applies the binary form to every one-hot class map
    (sigmoid), which is the paper's equation read literally. ``alpha`` may also be one value per class.
    """

    def __init__(
        self,
        mode: str = "multiclass",
        alpha: float | Sequence[float] | None = 0.25,
        gamma: float = 2.0,
        use_softmax: bool | None = None,
    ):
        super().__init__(mode)
        use_softmax = (mode == "multiclass") if use_softmax is None else use_softmax
        if use_softmax and mode == "multilabel":
            raise ConfigError("focal loss with use_softmax needs exclusive classes (mode multiclass)")
        self.use_softmax = use_softmax
        self.focal = MonaiFocalLoss(gamma=gamma, alpha=alpha, use_softmax=use_softmax, reduction="none")

    def compute(self, logits, target):
        per_class = self.focal(logits, self.dense_target(logits, target))
        if self.use_softmax:
            # Only the true class's entry is non-zero: sum over classes, mean over pixels, so that
            # γ = 0, α = None gives exactly the cross-entropy (RSE-UNet §2.6), not CE / C.
            return per_class.sum(1).mean()
        return per_class.mean()  # binary form: the mean over every class map, like BCE


class CompositeLoss(nn.Module):
    """Weighted sum of losses, e.g. BCE + Dice at 1 : 1 or 1 : ½. ``parts`` reports each term's last value."""

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float], names: Sequence[str]):
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.weights = list(weights)
        self.names = list(names)
        self.parts: dict[str, float] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for name, w, loss in zip(self.names, self.weights, self.losses, strict=True):
            value = loss(logits, target)
            self.parts[name] = float(value.detach())
            total = total + w * value
        return total


def build_loss(spec: str | dict | Sequence[dict], mode: str = "multiclass") -> CompositeLoss:
    """Build from config: ``"ce"``, ``{"name": "focal", "gamma": 2}`` or a list of such with ``weight``."""
    specs = [spec] if isinstance(spec, (str, dict)) else list(spec)
    losses, weights, names = [], [], []
    for item in specs:
        item = {"name": item} if isinstance(item, str) else dict(item)
        name = item.pop("name", None)
        weight = float(item.pop("weight", 1.0))
        if name not in _LOSSES:
            raise ConfigError(f"unknown loss {name!r}; available: {', '.join(available_losses())}")
        try:
            losses.append(_LOSSES[name](mode=mode, **item))
        except TypeError as exc:
            raise ConfigError(f"loss {name!r} does not take these settings: {exc}") from exc
        weights.append(weight)
        names.append(name if name not in names else f"{name}_{len(names)}")
    return CompositeLoss(losses, weights, names)


def per_sample_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """(B,) the configured loss evaluated on each sample of the batch alone (Eq. 3-2's L_i).

    Works for every registered loss (each sees a batch of one); a loss that pools over the batch (Dice with
    ``batch: true``) therefore becomes per-image here. For mean-reduced losses on equal-sized samples (CE,
    BCE) the mean of the L_i equals the batch loss.
    """
    return torch.stack([loss_fn(logits[i : i + 1], target[i : i + 1]) for i in range(logits.shape[0])])
