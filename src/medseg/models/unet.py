"""U-Net (Ronneberger et al., 2015) with a configurable number of poolings, for 2D and 3D.

The chromosome papers compare U-Nets by pooling count: Hu et al.'s sim-UNet (2 poolings), Saleh et al.'s
U-Net (3), the standard U-Net (4, RSE-UNet Table 4 / ARMS Net Table 5), and 5 (RSE-UNet Table 3). Here one
class serves all of them through ``depth``; channels double per stage from ``base_channels``
(64 → 1024 for the standard 4-pooling U-Net), or are given stage by stage with ``channels``.

The GI-tract paper (UW-Madison, multi-label stomach / large bowel / small bowel) compares U-Nets with 4 and
5 poolings on 128×128 inputs and reports only their sizes, 2.50 M and 5.72 M parameters, no widths. No
plain doubling matches (from 16: 1.94 M / 7.78 M; no other integer base or cap gives both counts either),
so we keep the usual doubling from 16 (the common Keras base) and choose the one bottleneck width that
gives the reported count (BatchNorm, 2×2 transposed-conv upsampling, padded 3×3 convs, 3 output maps; the
same for 1 or 3 input channels, and the only such width):

* 4 poolings: ``channels=[16, 32, 64, 128, 336]`` → 2,502,291 parameters with 3 input channels (2,502,003
  with 1), i.e. 2.50 M;
* 5 poolings: ``channels=[16, 32, 64, 128, 256, 322]`` → 5,719,423 (5,719,135 with 1), i.e. 5.72 M.

These widths are our reconstruction from the counts, not the paper's (see ``GI_UNET_CHANNELS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import DoubleConv, EncoderDecoderNet, UpSample, make_pool
from medseg.models.registry import register_model

# The GI-tract paper's two U-Nets by their pooling count, widths reconstructed from its parameter counts
# (2.50 M and 5.72 M; module docstring): doubling from 16, the bottleneck width chosen to give the count.
GI_UNET_CHANNELS: dict[int, list[int]] = {4: [16, 32, 64, 128, 336], 5: [16, 32, 64, 128, 256, 322]}


def resolve_stages(
    depth: int | None, channels: list[int] | None, default_depth: int = 4
) -> tuple[int, list[int] | None]:
    """``(depth, channels)`` of a U-Net given ``depth`` and/or explicit per-stage ``channels``.

    ``channels`` (first = full resolution, last = bottleneck) fixes the depth at ``len(channels) - 1``; a
    ``depth`` that is also given must agree. Without ``channels`` the depth is ``depth`` or ``default_depth``.
    """
    if channels is None:
        return (default_depth if depth is None else depth), None
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__len__"):
        raise ValueError(f"channels must be a list of stage widths, got {channels!r}")
    widths = list(channels)
    if len(widths) < 2:
        raise ValueError(
            f"channels needs at least 2 stage widths (full resolution ... bottleneck, i.e. depth >= 1), got {widths!r}"
        )
    for c in widths:
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"channels must be whole numbers >= 1 (one width per stage), got {widths!r}")
    if depth is not None and int(depth) != len(widths) - 1:
        raise ValueError(
            f"depth = {depth} poolings disagrees with channels = {widths} ({len(widths)} stages give "
            f"depth {len(widths) - 1}): set depth to {len(widths) - 1} or leave it out"
        )
    return len(widths) - 1, widths


class UNetEncoder(nn.Module):
    """The contracting path: DoubleConv stages separated by 2× pooling; returns every stage's features."""

    def __init__(
        self,
        in_channels: int,
        channels: list[int],
        *,
        spatial_dims: int,
        norm: str,
        act: str,
        dropout: float = 0.0,
        pool: str = "max",
    ):
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
        for deep, skip in zip(channels[:0:-1], channels[-2::-1], strict=True):
            self.ups.append(UpSample(deep, skip, spatial_dims=spatial_dims, mode=upsample, norm=norm, act=act))
            self.convs.append(DoubleConv(2 * skip, skip, spatial_dims=spatial_dims, norm=norm, act=act))

    def forward(
        self, feats: list[torch.Tensor], skips: list[torch.Tensor] | None = None, return_all: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """The last decoder stage's features; ``return_all``: every decoder stage's, deepest first."""
        skips = feats[:-1] if skips is None else skips
        x = feats[-1]
        outs = []
        for up, conv, skip in zip(self.ups, self.convs, reversed(skips), strict=True):
            x = conv(torch.cat([skip, up(x)], dim=1))
            outs.append(x)
        return outs if return_all else x


@register_model("unet")
class UNet(EncoderDecoderNet):
    """U-Net for C-class logits.

    Args:
        in_channels: image channels (1 for the grey chromosome images).
        out_channels: classes C; logits are (B, C, H, W[, D]) for softmax or sigmoid heads alike.
        spatial_dims: 2 or 3.
        depth: number of poolings (2 sim-UNet, 3 Saleh, 4 standard, 5); 4 when neither it nor ``channels`` is
            given.
        base_channels: width of the first stage (64 in the original).
        channels: explicit stage widths instead of the doubling, first = full resolution, last = bottleneck
            (e.g. the GI paper's reconstructed ``[16, 32, 64, 128, 336]``, see the module docstring). Fixes
            the depth at ``len(channels) - 1`` (a ``depth`` given as well must agree: ValueError otherwise);
            ``base_channels`` and ``max_channels`` are then ignored. At least 2 widths, each >= 1.
        norm: ``batch`` (default), ``instance``, ``group`` or ``none``.
        act: ``relu`` (default), ``leakyrelu``, ``elu``, ``prelu``.
        upsample: ``transpose`` (2×2 transposed conv, default) or ``bilinear``/``nearest`` + 1×1 conv.
        dropout: dropout after the bottleneck stage.
        max_channels: optional cap on the stage width.
        deep_supervision: number of lower-resolution decoder stages that also get a 1×1 head and a loss term in
            training (0 = off, the papers' U-Net; nnU-Net supervises all but the two deepest). Inference and the
            saved model's outputs are unchanged; the extra heads only exist in training's loss.

    Deep supervision (nnU-Net's recipe, one choice of ours): each supervised stage's logits are *upsampled*
    (linear) to the full size and scored against the full-resolution target with the configured loss,
    rather than downsampling the target (which needs a rule for class-index and multi-label maps alike);
    stage k (k = 0 the full-resolution output) weighs 1/2^k, the weights normalised to sum 1, as nnU-Net.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int | None = None,
        base_channels: int = 64,
        norm: str = "batch",
        act: str = "relu",
        upsample: str = "transpose",
        dropout: float = 0.0,
        max_channels: int | None = None,
        deep_supervision: int = 0,
        channels: list[int] | None = None,
    ):
        super().__init__()
        depth, widths = resolve_stages(depth, channels)
        channels = self.init_stages(spatial_dims, depth, base_channels, max_channels, channels=widths)
        if not 0 <= int(deep_supervision) < depth:
            raise ValueError(
                f"deep_supervision must be between 0 and depth - 1 = {depth - 1} decoder stages, got {deep_supervision}"
            )
        self.encoder = UNetEncoder(
            in_channels, channels, spatial_dims=spatial_dims, norm=norm, act=act, dropout=dropout
        )
        self.decoder = UNetDecoder(channels, spatial_dims=spatial_dims, norm=norm, act=act, upsample=upsample)
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1)
        self.deep_supervision = int(deep_supervision)
        # decoder stages k = 1..K above the output, at 1/2^k resolution (stage widths channels[k])
        self.aux_heads = nn.ModuleList(
            Conv[Conv.CONV, spatial_dims](channels[k], out_channels, kernel_size=1)
            for k in range(1, self.deep_supervision + 1)
        )

    def supervision_weights(self) -> list[float]:
        """Loss weights of the output (first) and the supervised lower stages: 1/2^k, normalised."""
        raw = [0.5**k for k in range(self.deep_supervision + 1)]
        return [w / sum(raw) for w in raw]

    def training_loss(self, loss_fn, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output's loss plus, with ``deep_supervision``, the weighted losses of the lower decoder stages
        (see the class docstring); the full-resolution logits."""
        if not self.deep_supervision:
            return super().training_loss(loss_fn, image, target)
        size = image.shape[2:]
        x, pads = self.pad_input(image)
        outs = self.decoder(self.encoder(x), return_all=True)  # deepest first; the last is full resolution
        logits = self.crop_output(self.head(outs[-1]), size, pads)
        weights = self.supervision_weights()
        total = weights[0] * loss_fn(logits, target)
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        for k, (w, head) in enumerate(zip(weights[1:], self.aux_heads, strict=True), start=1):
            aux = F.interpolate(head(outs[-1 - k]), size=x.shape[2:], mode=mode, align_corners=False)
            total = total + w * loss_fn(self.crop_output(aux, size, pads), target)
        return total, logits


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
