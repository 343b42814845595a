"""Networks: one file per architecture, shared pieces in :mod:`medseg.models.blocks`."""

from medseg.models.registry import available_models, build_model, register_model
from medseg.models import unet  # noqa: F401  (registers the U-Net family)
from medseg.models.unet import UNet

__all__ = ["UNet", "available_models", "build_model", "register_model"]
