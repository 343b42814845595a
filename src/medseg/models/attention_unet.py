"""Attention U-Net (Oktay et al., 2018, "Attention U-Net: Learning Where to Look for the Pancreas").

The U-Net of :mod:`medseg.models.unet` (same encoder, same decoder stages) whose skip connections pass
through additive attention gates (:class:`~medseg.models.blocks.AttentionGate`, paper §2, Eq. 1–2) before
they are concatenated with the upsampled decoder features. It is the "AttUNet" baseline of AMFL Table II
(overlapping chromosomes); with ``in_channels=3, out_channels=1`` and the defaults it has the 34.88 M
parameters that AMFL Table IV lists, the count of the public AttU-Net code (LeeJunHyun/Image_Segmentation):
upsampling by nearest ×2 + 3×3 conv (``upsample="upconv"``), gates computed from the upsampled decoder
features with ``F_int = skip channels / 2``.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import AttentionGate, EncoderDecoderNet
from medseg.models.registry import register_model
from medseg.models.unet import UNetDecoder, UNetEncoder


class AttentionUNetDecoder(UNetDecoder):
    """:class:`UNetDecoder` with an attention gate on every skip: ``conv(cat[α·skip, up(x)])``.

    ``gate_stride=1``: the gating signal is ``up(x)``, at the skip's resolution (public AttU-Net code);
    ``gate_stride=2``: it is ``x`` before upsampling, on the coarser grid, as in Oktay et al. §2 / Fig. 2.
    ``self.gates`` may be ``None`` (plain U-Net decoder) so that subclasses with other stage blocks (R2U-Net)
    share this forward pass.
    """

    def __init__(
        self,
        channels: list[int],
        *,
        spatial_dims: int,
        norm: str,
        act: str,
        upsample: str = "upconv",
        gate_stride: int = 1,
    ):
        super().__init__(channels, spatial_dims=spatial_dims, norm=norm, act=act, upsample=upsample)
        self.gate_stride = gate_stride
        self.gates: nn.ModuleList | None = make_gates(
            channels, spatial_dims=spatial_dims, norm=norm, gate_stride=gate_stride
        )

    def forward(self, feats: list[torch.Tensor], skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        skips = feats[:-1] if skips is None else skips
        gates = self.gates if self.gates is not None else [None] * len(self.ups)
        x = feats[-1]
        for up, gate, conv, skip in zip(self.ups, gates, self.convs, reversed(skips), strict=True):
            u = up(x)
            if gate is not None:
                skip = gate(skip, u if self.gate_stride == 1 else x)
            x = conv(torch.cat([skip, u], dim=1))
        return x


def make_gates(channels: list[int], *, spatial_dims: int, norm: str, gate_stride: int) -> nn.ModuleList:
    """One gate per decoder level, deepest first (the order of ``UNetDecoder.ups``); F_int = skip / 2."""
    gates = nn.ModuleList()
    for deep, skip in zip(channels[:0:-1], channels[-2::-1], strict=True):
        gate_channels = skip if gate_stride == 1 else deep  # up(x) has `skip` channels, x has `deep`
        gates.append(
            AttentionGate(
                skip, gate_channels, max(1, skip // 2), spatial_dims=spatial_dims, norm=norm, gate_stride=gate_stride
            )
        )
    return gates


@register_model("attention_unet")
class AttentionUNet(EncoderDecoderNet):
    """Attention U-Net: U-Net whose skips are rescaled by attention coefficients α ∈ [0, 1].

    Args:
        in_channels, out_channels, spatial_dims: as :class:`~medseg.models.unet.UNet`.
        depth: number of poolings (4 in the paper and in the public code).
        base_channels: width of the first stage (64 → 1024).
        norm, act: normalisation and activation of every conv block.
        upsample: ``upconv`` (default: nearest ×2 + 3×3 ConvNormAct, the public code and AMFL Table IV's
            count), ``transpose``, ``bilinear`` or ``nearest`` (see :class:`~medseg.models.blocks.UpSample`).
        gate_stride: 1 (default, gate at the skip's resolution as in the public code) or 2 (Oktay et al.'s
            gate on the coarser grid of the gating signal, α resampled) — the paper and the code differ here.
        dropout: dropout after the bottleneck stage.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        norm: str = "batch",
        act: str = "relu",
        upsample: str = "upconv",
        gate_stride: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.init_stages(spatial_dims, depth, base_channels)
        self.encoder = UNetEncoder(
            in_channels, self.channels, spatial_dims=spatial_dims, norm=norm, act=act, dropout=dropout
        )
        self.decoder = AttentionUNetDecoder(
            self.channels, spatial_dims=spatial_dims, norm=norm, act=act, upsample=upsample, gate_stride=gate_stride
        )
        self.head = Conv[Conv.CONV, spatial_dims](self.channels[0], out_channels, kernel_size=1)
