"""The Dice-type losses of the GI-tract paper's Table 6 (UW-Madison, multi-label sigmoid segmentation).

Table 6 compares five training losses: BCE, DICE, SD (soft-dice), BCEDICE and BCEDICE 2:1. Three of them need
no code of their own: ``bce`` is the existing loss, and the two mixtures are loss lists with weights,

    BCEDICE:      loss: [{name: bce}, {name: dice}]
    BCEDICE 2:1:  loss: [{name: bce}, {name: dice, weight: 0.5}]

(:func:`medseg.losses.build_loss` sums the terms with their weights; ``paper_dice`` may stand in for ``dice``
to use the Dice below instead of MONAI's per-image soft Dice). The paper's BCE,
``-1/N Σ_c Σ_n [y log p + (1-y) log(1-p)]``, sums over the classes where ``bce`` averages over them (a
factor C = 3, i.e. the 1 : 1 mixture's BCE weighs three times what it does here); Keras's
``binary_crossentropy``, which the paper used, averages as ``bce`` does.

**paper_dice** (the paper's "Dice loss"), printed as

    L_Dice(Y, P) = Σ_c 2 Y_c·P_c / (sum(Y_c) + sum(P_c)),

i.e. the Dice *coefficient* summed over the classes, with no ``1 -``: minimised by gradient descent it
drives the overlap *down* (its minimum, 0, is a prediction that misses every organ). That is one reading of
Table 6's empty DICE row ("the DICE loss could not be optimised"); the paper does not say what its code did.
``as_written=True`` returns exactly the printed expression (to reproduce that row); the default is the loss
that expression evidently means, ``1 - mean_c D_c`` with the Dice coefficient of each class

    D_c = 2 Σ y p / (Σ y + Σ p + eps),

the sums running over the *whole batch* and every pixel (one coefficient per class per batch, as a Keras
``dice_coef`` on the flattened batch tensor). Smoothing (our choice; the paper prints none): ``eps``
(default 1e-6) in the denominator only, so it just guards against 0 / 0 and does not bias the coefficient. A
class absent from the whole batch (Σ y = 0) then has D_c = 0 whatever the prediction (numerator 0): its
term is a constant 1 with zero gradient, i.e. false positives of an absent organ are not penalised by this
loss (BCE does that in the mixtures). The loss reaches its minimum 0 (up to eps) for a perfect prediction
when every class is present in the batch.

**pixel_soft_dice** (the paper's "SD", after its reference [6]):

    L_SD(Y, P) = -(1/N) Σ_c Σ_n 2 y p / (y² + p² + eps),

N the number of pixels (here: of the batch, i.e. the mean over batch and pixels) and the sum over the
classes as printed. ``eps`` (1e-6) is added to the denominator: without it a pixel with y = p = 0 is 0 / 0.
Pixels with y = 0 contribute 0 whatever p (the numerator vanishes), so the loss only pulls p → 1 on each
organ's pixels and never penalises false positives; on y = 1 the term 2p / (1 + p²) rises to 1 at p = 1. Its
minimum for a given target is therefore ``-(positives summed over classes) / N``, reached when p = 1 on every
positive pixel (p elsewhere is free).

Both use sigmoid probabilities in ``multilabel`` mode and softmax probabilities against the one-hot target
in ``multiclass`` mode (where every pixel is positive in exactly one class).
"""

from __future__ import annotations

import torch

from medseg.errors import ConfigError
from medseg.losses.segmentation import SegLoss, register_loss


class _ProbabilityLoss(SegLoss):
    """Sigmoid (multilabel) or softmax (multiclass) probabilities and the dense (B, C, ...) target."""

    def __init__(self, mode: str = "multiclass", eps: float = 1e-6):
        super().__init__(mode)
        eps = float(eps)
        if not eps > 0:
            raise ConfigError(f"eps must be > 0 (it keeps the denominator away from 0), got {eps!r}")
        self.eps = eps

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.mode == "multilabel" else torch.softmax(logits, dim=1)


@register_loss("paper_dice")
class PaperDiceLoss(_ProbabilityLoss):
    """The GI paper's Dice loss (module docstring): ``1 - mean_c 2ΣYP / (ΣY + ΣP + eps)`` over the batch, or
    with ``as_written`` the printed ``Σ_c 2ΣYP / (ΣY + ΣP + eps)`` (which descent lowers: the DICE row)."""

    def __init__(self, mode: str = "multiclass", as_written: bool = False, eps: float = 1e-6):
        super().__init__(mode, eps)
        if not isinstance(as_written, bool):
            raise ConfigError(f"as_written must be true or false, got {as_written!r}")
        self.as_written = as_written

    def coefficients(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(C,) Dice coefficient of each class over the whole batch."""
        p = self.probabilities(logits)
        y = self.dense_target(logits, target)
        dims = [0, *range(2, logits.ndim)]
        inter = (y * p).sum(dims)
        return 2.0 * inter / (y.sum(dims) + p.sum(dims) + self.eps)

    def compute(self, logits, target):
        dice = self.coefficients(logits, target)
        return dice.sum() if self.as_written else 1.0 - dice.mean()


@register_loss("pixel_soft_dice")
class PixelSoftDiceLoss(_ProbabilityLoss):
    """The GI paper's soft-dice ``-(1/N) Σ_c Σ_n 2yp / (y² + p² + eps)`` (module docstring)."""

    def compute(self, logits, target):
        p = self.probabilities(logits)
        y = self.dense_target(logits, target)
        per_pixel = 2.0 * y * p / (y * y + p * p + self.eps)
        return -per_pixel.sum(1).mean()  # Σ over classes, mean over the batch's pixels (1/N)
