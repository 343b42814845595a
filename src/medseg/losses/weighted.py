"""Class-imbalance losses of the chromosome papers: ARMS Net's AS_wBCE and wBCE, AMFL's Weight-Dice.

**AS_wBCE** (ARMS Net §3.4, Eq. 1–2). Eq. 1 is a binary cross-entropy over the four one-hot label maps t,
``L = -1/(4MN) Σ_t Σ_ij [w·y log p + (1-y) log(1-p)]``, and Eq. 2 gives the adaptive weight of map t,
``w = (1 + |log_1000(Neg^t / Pos^t)|)^(-1)`` followed by a two-row factor ``(1-y; 1)``. That factor is read
as saying *where* w applies: to the ``(1-y)`` (negative, background-of-this-map) term, with 1 on the positive
term. Two reasons: w ≤ 1, and the text wants the imbalance (few positives) corrected — shrinking the
majority (negative) term by w does that (positives end up 1 + |log_1000(Neg/Pos)| times heavier, a
"smoothed multiple" of the imbalance: 2 at 1000 : 1, 3 at 10⁶ : 1), whereas w ≤ 1 on the positive term, as
Eq. 1 is typeset, would *down*-weight the rare class. Per pixel:

    weight_on="negative" (default): ℓ = -[y log p + w (1-y) log(1-p)]
    weight_on="positive" (Eq. 1 as typeset): ℓ = -[w y log p + (1-y) log(1-p)]

The loss is the plain mean of ℓ over classes, pixels and batch (Eq. 1's 1/(4MN)), not renormalised by w.
Pos^t / Neg^t are counted over the batch (``pos_counts``/``neg_counts``: fixed counts, e.g. over the
training set). A class absent from the batch (Pos^t = 0), or covering it (Neg^t = 0), would give an infinite
log; counts are floored at ``min_count`` = 1 pixel, so w stays finite and positive (e.g. a 32×128×128 batch
without overlap pixels: w = 1/(1 + log_1000 524287) ≈ 0.34).

**wBCE** (ARMS Net Table 4: wBCE(1.1) … wBCE(3.0)): Eq. 1 with one fixed w for every map; "1.1 indicates
the weight w in Eq. (2) is 1.1", so w sits where Eq. 2's does (``weight_on="negative"`` by default, as
AS_wBCE); ``weight_on="positive"`` is the common weighted BCE (= ``bce`` with ``pos_weight``).

p is ``sigmoid(logits)`` per class map (the repository's ``bce`` convention, ``probabilities="sigmoid"``);
``probabilities="softmax"`` takes the softmax over the classes instead (a Keras ``binary_crossentropy`` on a
softmax output), clipped to [1e-7, 1 - 1e-7] as Keras does.

**Weight-Dice** (AMFL Table V; the paper gives no formula): soft Dice per class, pooled over the batch,
``D_c = (2 Σ p y + s) / (Σ p + Σ y + s)``, averaged with class weights: ``L = Σ_c w_c (1 - D_c) / Σ_c w_c``.
``weights`` fixes w_c; by default w_c is inverse to class c's pixel frequency in the batch
(``weight_type="inverse"``; ``"inverse_square"`` is the generalised Dice weighting of Sudre et al.;
``"uniform"`` gives plain batch Dice). A class absent from the batch takes the largest weight of the present
classes (MONAI's ``GeneralizedDiceLoss`` convention). AMFL's **Weight-CE** is ``ce`` with ``class_weights``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.losses.segmentation import SegLoss, register_loss

_PLACEMENTS = ("negative", "positive")
_KERAS_EPS = 1e-7


class _WeightedBCEBase(SegLoss):
    """Eq. 1 of ARMS Net with a per-class weight w (shape (C,)) on the negative or the positive term."""

    def __init__(self, mode: str = "multiclass", weight_on: str = "negative", probabilities: str = "sigmoid"):
        super().__init__(mode)
        if weight_on not in _PLACEMENTS:
            raise ConfigError(f"weight_on must be one of {_PLACEMENTS}, got {weight_on!r}")
        if probabilities not in ("sigmoid", "softmax"):
            raise ConfigError(f"probabilities must be sigmoid or softmax, got {probabilities!r}")
        if probabilities == "softmax" and mode != "multiclass":
            raise ConfigError("probabilities='softmax' needs exclusive classes (mode multiclass)")
        self.weight_on = weight_on
        self.probabilities = probabilities

    def class_weights(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_probs(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p and log(1 - p)."""
        if self.probabilities == "sigmoid":
            return F.logsigmoid(logits), F.logsigmoid(-logits)
        p = torch.softmax(logits, dim=1).clamp(_KERAS_EPS, 1 - _KERAS_EPS)
        return torch.log(p), torch.log1p(-p)

    def compute(self, logits, target):
        y = self.dense_target(logits, target)
        w = self.class_weights(y).to(logits).view(1, -1, *([1] * (logits.ndim - 2)))
        log_p, log_q = self._log_probs(logits)
        if self.weight_on == "negative":
            loss = -(y * log_p + w * (1 - y) * log_q)
        else:
            loss = -(w * y * log_p + (1 - y) * log_q)
        return loss.mean()


@register_loss("as_wbce")
class AdaptiveSmoothWeightedBCE(_WeightedBCEBase):
    """ARMS Net's adaptive smooth weighted BCE (AS_wBCE, §3.4 Eq. 1–2); see the module docstring.

    Args:
        weight_on: ``negative`` (default, w on the (1-y) term) or ``positive`` (Eq. 1 as typeset).
        base: the logarithm's base (1000).
        pos_counts, neg_counts: fixed Pos^t and Neg^t per class (e.g. over the training set); both or
            neither; ``None`` counts them in each batch.
        min_count: floor on the counts, so an absent class gives a finite weight.
        probabilities: ``sigmoid`` (default) or ``softmax``.
    """

    def __init__(
        self,
        mode: str = "multiclass",
        weight_on: str = "negative",
        base: float = 1000.0,
        pos_counts: Sequence[float] | None = None,
        neg_counts: Sequence[float] | None = None,
        min_count: float = 1.0,
        probabilities: str = "sigmoid",
    ):
        super().__init__(mode, weight_on, probabilities)
        if (pos_counts is None) != (neg_counts is None):
            raise ConfigError("as_wbce needs both pos_counts and neg_counts, or neither (count per batch)")
        if base <= 1:
            raise ConfigError(f"base must be > 1, got {base}")
        if min_count <= 0:
            raise ConfigError(f"min_count must be > 0, got {min_count}")
        self.log_base = math.log(base)
        self.min_count = float(min_count)
        for name, counts in (("pos_counts", pos_counts), ("neg_counts", neg_counts)):
            self.register_buffer(name, None if counts is None else torch.tensor(counts, dtype=torch.float32))

    @torch.no_grad()
    def counts(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Pos^t, Neg^t) per class: the fixed counts, or those of the batch's dense target ``y``."""
        if self.pos_counts is not None:
            if self.pos_counts.numel() != y.shape[1]:
                raise ConfigError(f"pos_counts has {self.pos_counts.numel()} values for {y.shape[1]} classes")
            return self.pos_counts, self.neg_counts
        dims = [0] + list(range(2, y.ndim))
        pos = y.sum(dim=dims)
        total = y[:, 0].numel()
        return pos, total - pos

    @torch.no_grad()
    def class_weights(self, y: torch.Tensor) -> torch.Tensor:
        """Eq. 2's ``(1 + |log_base(Neg^t / Pos^t)|)^(-1)`` per class, counts floored at ``min_count``."""
        pos, neg = self.counts(y)
        ratio = neg.clamp_min(self.min_count) / pos.clamp_min(self.min_count)
        return (1.0 / (1.0 + (torch.log(ratio) / self.log_base).abs())).float()


@register_loss("wbce")
class WeightedBCE(_WeightedBCEBase):
    """ARMS Net Table 4's wBCE(w): Eq. 1 with a fixed ``w`` (one value, or one per class).

    ``weight_on="negative"`` (default, the same place as AS_wBCE's w) or ``"positive"`` (Eq. 1 as typeset;
    equals ``bce`` with ``pos_weight``). ``w=1`` is plain BCE either way. (Named ``w`` as in the paper:
    ``weight`` in a loss config is the term's weight in a sum of losses.)
    """

    def __init__(
        self,
        mode: str = "multiclass",
        w: float | Sequence[float] = 1.0,
        weight_on: str = "negative",
        probabilities: str = "sigmoid",
    ):
        super().__init__(mode, weight_on, probabilities)
        weights = torch.tensor(w, dtype=torch.float32).reshape(-1)
        if (weights < 0).any():
            raise ConfigError(f"w must be >= 0, got {w}")
        self.register_buffer("weight", weights)

    def class_weights(self, y: torch.Tensor) -> torch.Tensor:
        if self.weight.numel() not in (1, y.shape[1]):
            raise ConfigError(f"wbce weight has {self.weight.numel()} values for {y.shape[1]} classes")
        return self.weight.expand(y.shape[1])


@register_loss("weighted_dice")
class WeightedDiceLoss(SegLoss):
    """Class-weighted soft Dice (AMFL's "Weight-Dice"); see the module docstring.

    Args:
        weights: fixed per-class weights (normalised internally); ``None`` derives them from the batch.
        weight_type: ``inverse`` (default: 1 / pixel count of the class in the batch), ``inverse_square``
            or ``uniform``.
        include_background: keep class 0 (default True, as ``dice``).
        smooth: added to numerator and denominator of each class's Dice.
    """

    WEIGHT_TYPES = ("inverse", "inverse_square", "uniform")

    def __init__(
        self,
        mode: str = "multiclass",
        weights: Sequence[float] | None = None,
        weight_type: str = "inverse",
        include_background: bool = True,
        smooth: float = 1e-5,
    ):
        super().__init__(mode)
        if weight_type not in self.WEIGHT_TYPES:
            raise ConfigError(f"weight_type must be one of {self.WEIGHT_TYPES}, got {weight_type!r}")
        self.weight_type = weight_type
        self.include_background = include_background
        self.smooth = float(smooth)
        self.register_buffer("weights", None if weights is None else torch.tensor(weights, dtype=torch.float32))

    @torch.no_grad()
    def class_weights(self, counts: torch.Tensor) -> torch.Tensor:
        """Weight per class from the target's per-class pixel counts (the fixed ``weights`` if given; with
        ``include_background=False`` a full-length list loses its first entry)."""
        if self.weights is not None:
            w = self.weights
            if not self.include_background and w.numel() == counts.numel() + 1:
                w = w[1:]
            if w.numel() != counts.numel():
                raise ConfigError(f"weighted_dice has {w.numel()} weights for {counts.numel()} classes")
            return w.to(counts)
        if self.weight_type == "uniform":
            return torch.ones_like(counts)
        power = 1.0 if self.weight_type == "inverse" else 2.0
        present = counts > 0
        if not present.any():
            return torch.ones_like(counts)
        w = torch.zeros_like(counts)
        w[present] = counts[present].pow(-power)
        w[~present] = w[present].max()
        return w

    def compute(self, logits, target):
        y = self.dense_target(logits, target)
        p = torch.softmax(logits, dim=1) if self.mode == "multiclass" else torch.sigmoid(logits)
        if not self.include_background:
            y, p = y[:, 1:], p[:, 1:]
        dims = [0] + list(range(2, y.ndim))
        inter = (p * y).sum(dim=dims)
        denom = p.sum(dim=dims) + y.sum(dim=dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        w = self.class_weights(y.sum(dim=dims))
        return (w * (1 - dice)).sum() / w.sum()
