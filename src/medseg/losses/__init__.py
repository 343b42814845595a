"""Losses for exclusive (softmax) and multi-label (sigmoid) segmentation, selectable by config."""

# The built-in losses first, then the modules that register more, in the order they are listed.
# isort: off
from medseg.losses.segmentation import (
    BCELoss,
    CompositeLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    available_losses,
    build_loss,
    register_loss,
)
from medseg.losses import lovasz  # noqa: F401  (registers lovasz)
from medseg.losses import weighted  # noqa: F401  (registers as_wbce, wbce, weighted_dice)
from medseg.losses import gi_tract  # noqa: F401  (registers paper_dice, pixel_soft_dice)
# isort: on

__all__ = [
    "BCELoss",
    "CompositeLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "available_losses",
    "build_loss",
    "register_loss",
]
