"""MONAI's residual U-Net (``monai.networks.nets.UNet``, Kerfoot et al. 2018) as a medseg model.

A well-known reference network to compare medseg's own U-Net family against on the same data, trainer and
metrics, so that a comparison with MONAI runs through medseg's pipeline. Settings are MONAI's; ``channels`` and
``strides`` default to the 4-pooling 32…512 layout of MONAI's tutorials, ``num_res_units`` 2, ``norm``
MONAI's default (instance). The input is padded to a multiple of the total stride and the logits cropped
back (:class:`SegmentationNet`), since MONAI's UNet needs sizes divisible by it.

It also takes the U-Net family's settings, so a plan (and ``--set model.depth=2``) speaks one language for both:
``depth`` D with ``base_channels`` B (and ``max_channels`` M) means ``channels`` = B·2^k capped at M for k = 0…D
and ``strides`` 2 D times; ``act`` names MONAI's activation (``leakyrelu``, ``prelu``, ``relu``…).

Why the CPU plans of 2D data use it (medseg.planning): MONAI's UNet convolves with stride 2 from its first layer,
so little of its work is at full resolution — one training step of its 16…256 layout (1.63 M parameters) costs
less than medseg's U-Net at 8 base channels (0.49 M) on the same patches (``benchmarks/bench_peer.py``), and
with medseg's recipe it was ahead of a plain MONAI loop on the real metaphases.
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

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        *,
        spatial_dims: int = 2,
        channels: Sequence[int] | None = None,
        strides: Sequence[int] | None = None,
        num_res_units: int = 2,
        norm: str = "instance",
        dropout: float = 0.0,
        act: str = "prelu",
        depth: int | None = None,
        base_channels: int | None = None,
        max_channels: int | None = None,
    ):
        super().__init__()
        from monai.networks.nets import UNet as _MonaiUNet

        if depth is not None or base_channels is not None:
            if channels is not None or strides is not None:
                raise ValueError("give channels/strides or depth/base_channels, not both")
            depth, base = (
                int(depth if depth is not None else 4),
                int(base_channels if base_channels is not None else 32),
            )
            if depth < 1 or base < 1:
                raise ValueError(f"depth and base_channels must be >= 1, got {depth} and {base}")
            channels = [min(base * 2**k, int(max_channels)) if max_channels else base * 2**k for k in range(depth + 1)]
            strides = [2] * depth
        channels = [int(c) for c in (channels if channels is not None else (32, 64, 128, 256, 512))]
        strides = [int(s) for s in (strides if strides is not None else (2, 2, 2, 2))]
        if len(strides) != len(channels) - 1:
            raise ValueError(f"strides need one value fewer than channels ({len(channels) - 1}), got {strides}")
        self.spatial_dims = int(spatial_dims)
        self.divisor = math.prod(strides)
        self.net = _MonaiUNet(
            spatial_dims=self.spatial_dims,
            in_channels=int(in_channels),
            out_channels=int(out_channels),
            channels=channels,
            strides=strides,
            num_res_units=int(num_res_units),
            norm=norm,
            dropout=float(dropout),
            act=str(act).upper(),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


__all__ = ["MonaiUNet"]
