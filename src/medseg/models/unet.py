"""U-Net (Ronneberger et al., 2015) with a configurable number of poolings, for 2D and 3D.

The chromosome papers compare U-Nets by pooling count: Hu et al.'s sim-UNet (2 poolings), Saleh et al.'s
U-Net (3), the standard U-Net (4, RSE-UNet Table 4 / ARMS Net Table 5), and 5 (RSE-UNet Table 3). Here one
class serves all of them through ``depth``; channels double per stage from ``base_channels``
(64 → 1024 for the standard 4-pooling U-Net).
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.models.blocks import DoubleConv, EncoderDecoderNet, UpSample, make_pool
from medseg.models.registry import register_model
from monai.networks.layers.factories import Conv


class UNetEncoder(nn.Module):
    """The contracting path: DoubleConv stages separated by 2× pooling; returns every stage's features."""

    def __init__(self, in_channels: int, channels: list[int], *, spatial_dims: int, norm: str, act: str,
                 dropout: float = 0.0, pool: str = "max"):
        super().__init__()
        self.stages = nn.ModuleList()
        prev = in_channels
        for i, c in enumerate(channels):
            drop = dropout if i == len(channels) - 1 else 0.0
            self.stages.append(DoubleConv(prev, c, spatial_dims=spatial_dims, norm=norm, act=act, dropout=drop))
            prev = c
        self.pool = make_pool(spatial_dims, pool)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                x = self.pool(x)
            x = stage(x)
            feats.append(x)
        return feats


class UNetDecoder(nn.Module):
    """The expanding path: upsample, concatenate the skip, DoubleConv."""

    def __init__(self, channels: list[int], *, spatial_dims: int, norm: str, act: str, upsample: str = "transpose"):
        super().__init__()
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        for deep, skip in zip(channels[:0:-1], channels[-2::-1]):
            self.ups.append(UpSample(deep, skip, spatial_dims=spatial_dims, mode=upsample, norm=norm, act=act))
            self.convs.append(DoubleConv(2 * skip, skip, spatial_dims=spatial_dims, norm=norm, act=act))

    def forward(self, feats: list[torch.Tensor], skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        skips = feats[:-1] if skips is None else skips
        x = feats[-1]
        for up, conv, skip in zip(self.ups, self.convs, reversed(skips)):
            x = conv(torch.cat([skip, up(x)], dim=1))
        return x


@register_model("unet")
class UNet(EncoderDecoderNet):
    """U-Net for C-class logits.

    Args:
        in_channels: image channels (1 for the grey chromosome images).
        out_channels: classes C; logits are (B, C, H, W[, D]) for softmax or sigmoid heads alike.
        spatial_dims: 2 or 3.
        depth: number of poolings (2 sim-UNet, 3 Saleh, 4 standard, 5).
        base_channels: width of the first stage (64 in the original).
        norm: ``batch`` (default), ``instance``, ``group`` or ``none``.
        act: ``relu`` (default), ``leakyrelu``, ``elu``, ``prelu``.
        upsample: ``transpose`` (2×2 transposed conv, default) or ``bilinear``/``nearest`` + 1×1 conv.
        dropout: dropout after the bottleneck stage.
        max_channels: optional cap on the stage width.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 4, *, spatial_dims: int = 2, depth: int = 4,
                 base_channels: int = 64, norm: str = "batch", act: str = "relu", upsample: str = "transpose",
                 dropout: float = 0.0, max_channels: int | None = None):
        super().__init__()
        channels = self.init_stages(spatial_dims, depth, base_channels, max_channels)
        self.encoder = UNetEncoder(in_channels, channels, spatial_dims=spatial_dims, norm=norm, act=act, dropout=dropout)
        self.decoder = UNetDecoder(channels, spatial_dims=spatial_dims, norm=norm, act=act, upsample=upsample)
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1)


@register_model("sim_unet")
def sim_unet(**kwargs) -> UNet:
    """Hu et al. (2017)'s simplified U-Net: 2 poolings (RSE-UNet Table 4 'sim-UNet')."""
    kwargs.setdefault("depth", 2)
    return UNet(**kwargs)


@register_model("saleh_unet")
def saleh_unet(**kwargs) -> UNet:
    """Saleh et al. (2019)'s U-Net: 3 poolings (RSE-UNet Table 4, used with test-time augmentation)."""
    kwargs.setdefault("depth", 3)
    return UNet(**kwargs)
