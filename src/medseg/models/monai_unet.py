"""MONAI's residual U-Net (``monai.networks.nets.UNet``, Kerfoot et al. 2018) as a medseg model.

A well-known reference network to compare medseg's own U-Net family against on the same data, trainer and
metrics (issue 12's comparison "through a MONAI UNet in medseg"). Settings are MONAI's; ``channels`` and
``strides`` default to the 4-pooling 32…512 layout of MONAI's tutorials, ``num_res_units`` 2, ``norm``
MONAI's default (instance). The input is padded to a multiple of the total stride and the logits cropped
back (:class:`SegmentationNet`), since MONAI's UNet needs sizes divisible by it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from medseg.models.blocks import SegmentationNet
from medseg.models.registry import register_model


@register_model("monai_unet")
class MonaiUNet(SegmentationNet):
    """``monai.networks.nets.UNet`` with medseg's padding to the stride product and the ``training_loss`` hook."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, spatial_dims: int = 2,
                 channels: Sequence[int] = (32, 64, 128, 256, 512), strides: Sequence[int] = (2, 2, 2, 2),
                 num_res_units: int = 2, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        from monai.networks.nets import UNet as _MonaiUNet

        channels, strides = [int(c) for c in channels], [int(s) for s in strides]
        if len(strides) != len(channels) - 1:
            raise ValueError(f"strides need one value fewer than channels ({len(channels) - 1}), got {strides}")
        self.spatial_dims = int(spatial_dims)
        self.divisor = math.prod(strides)
        self.net = _MonaiUNet(spatial_dims=self.spatial_dims, in_channels=int(in_channels),
                              out_channels=int(out_channels), channels=channels, strides=strides,
                              num_res_units=int(num_res_units), norm=norm, dropout=float(dropout))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


__all__ = ["MonaiUNet"]
