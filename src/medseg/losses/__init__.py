"""Losses for exclusive (softmax) and multi-label (sigmoid) segmentation, selectable by config."""

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
from medseg.losses import lovasz  # noqa: F401,E402  (registers lovasz)
from medseg.losses import weighted  # noqa: F401,E402  (registers as_wbce, wbce, weighted_dice)
from medseg.losses import gi_tract  # noqa: F401,E402  (registers paper_dice, pixel_soft_dice)

__all__ = ["BCELoss", "CompositeLoss", "CrossEntropyLoss", "DiceLoss", "FocalLoss", "available_losses", "build_loss",
           "register_loss"]
