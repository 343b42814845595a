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

__all__ = ["BCELoss", "CompositeLoss", "CrossEntropyLoss", "DiceLoss", "FocalLoss", "available_losses", "build_loss",
           "register_loss"]
