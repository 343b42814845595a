"""RSE-UNet: multi-scale residual attention U-Net for overlapping chromosomes.

Wang, Ma & Zhang (2023), "基于多尺度残差注意力网络的重叠染色体分割模型" (Modeling and Simulation 12(3)),
``/work/shared/papers/rse-unet-overlapping-chromosomes.txt``. What each part implements:

* §2.1 / Fig. 2 — encoder: one Resblock, then a ResSE block after each of the 4 max-poolings (widths
  64, 128, 256, 512, 1024); MDPAC on the bottom features; decoder: 2×2 stride-2 transposed convolution,
  concatenation with the (ResPath-filtered) encoder features, ResSE block; 1×1 convolution to the logits.
* §2.2 / Table 3 — ``depth`` = number of poolings (3L, 4L = the paper's choice, 5L).
* §2.3 / Fig. 3 — :class:`ResSEBlock` with ``se=False`` is the Resblock (two 3×3 conv + skip, no SE, the
  paper deliberately treats the low-level channels equally). Fig. 4 / Eq. 1–3 — the ResSE block: two 3×3
  Conv-BN-ReLU, squeeze-and-excitation (:class:`~medseg.models.blocks.SqueezeExcitation`, r = 16), then
  "X̃ + the original input".
* §2.4 / Fig. 5 / Eq. 4 — :class:`MDPAC`.
* §2.5 / Fig. 6 / Table 1 — :class:`AttentionResPath`, blocks 4/3/2/1 at 64/128/256/512 channels.
* Table 5 — ``res_se``, ``mdpac``, ``res_path`` switch the three modules off one by one; all three off is
  exactly :class:`~medseg.models.unet.UNet` (same parameters, same output: tested).

Choices where the paper is silent or ambiguous (figures are not in the text; each one is an option):

* The ResSE/Resblock shortcut is the identity when the width is unchanged, else a 1×1 conv + norm (ResNet's
  projection shortcut); nothing follows the addition (the paper names no activation there, and both conv
  layers already end in ReLU).
* Eq. 2 has no bias terms, so the SE layers have none (``se_bias=True`` gives the SENet / MONAI layers).
  The hidden width is ``max(1, C // r)``.
* MDPAC dilation rates are not given: default ``(1, 2, 4)``. At 128×128 with 4 poolings MDPAC sees 8×8
  maps; three 3×3 layers at rates 1, 2, 4 reach 1 + 2 + 4 = 7 pixels either side (a 15×15 field covering
  the whole map, every offset reachable because 1, 2, 4 are binary digits), whereas 2, 4, 8 would sample
  mostly padding and leave odd offsets unreachable — the paper's own criticism of CE-Net (§3.4.2) is that
  DAC's field far exceeds the feature map. ``mdpac_dilations=(2, 4, 8)`` is available.
* MDPAC connectivity: the text says each layer's output is *concatenated* with all lower layers' outputs
  and the initial map F and fed to the next layer (DenseASPP-style), while Eq. 4 writes the input of
  layer j as ``ℓ_{j-1}^o + F``. ``mdpac_mode="dense"`` (default) reads "+" as concatenation and follows
  the text: layer j sees ``[F, o_1, …, o_{j-1}]`` and outputs ``growth`` channels; a 1×1 Conv-BN-ReLU fuses
  ``[F, o_1, …, o_n]`` back to C channels. ``mdpac_growth`` defaults to C // 4 (256 at the 1024-wide bottom;
  DenseASPP-like growth keeps the module at ~10.7 M parameters instead of ~57 M for growth C).
  ``mdpac_mode="sum"`` reads Eq. 4 literally: every layer is C → C, layer j's input is ``o_{j-1} + F``
  (``F`` for the first) and the module returns ``o_n + F`` (Eq. 4 continued one step).
* ResPath (after MultiResUNet, Ibtehaz & Rahman 2020, which introduced it; the shared
  :class:`~medseg.models.context_blocks.ResPathBlock`): each block is ``BN(ReLU(SA(SE(Conv3×3-BN-ReLU(x))) +
  Conv1×1-BN(x)))`` — channel attention (the same SE as ResSE) then CBAM spatial attention (7×7) on the
  residual branch, before the addition; the final BN is MultiResUNet's (``respath_post_norm=False`` drops
  it). Channels are kept (Table 1's output channels equal the encoder widths). Block counts default to
  ``depth - i`` at level i (4/3/2/1 for 4 poolings as in Table 1; 3/2/1 for 3L and 5/4/3/2/1 for 5L, the
  paper gives no table for those). ``respath_attention`` picks ``channel+spatial`` (default), ``channel``,
  ``spatial`` or ``none``.
* MDPAC placement: "a Resblock and four ResSE modules" make the encoder (§2.1), so the bottom stage is a
  ResSE block (1024 wide) and MDPAC follows it; ``mdpac=False`` leaves that bottom block alone. Widths keep
  doubling for 5L (2048 at the bottom, 192 M parameters); ``max_channels=1024`` caps them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import (
    ConvNormAct,
    DoubleConv,
    EncoderDecoderNet,
    SpatialAttention,
    SqueezeExcitation,
    UpSample,
    check_channels,
    make_pool,
)
from medseg.models.context_blocks import ResPathBlock
from medseg.models.registry import register_model

RESPATH_ATTENTION = ("channel+spatial", "channel", "spatial", "none")


class ResSEBlock(nn.Module):
    """ResSE block (§2.3, Fig. 4): ``SE(ConvBNReLU(ConvBNReLU(x))) + shortcut(x)``; ``se=False``: Resblock (Fig. 3).

    The shortcut is the identity when ``in_channels == out_channels``, else a 1×1 conv + norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
        se: bool = True,
        se_reduction: int = 16,
        se_bias: bool = False,
    ):
        super().__init__()
        self.body = DoubleConv(in_channels, out_channels, spatial_dims=spatial_dims, norm=norm, act=act)
        self.se = (
            SqueezeExcitation(out_channels, spatial_dims=spatial_dims, reduction=se_reduction, bias=se_bias)
            if se
            else nn.Identity()
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else ConvNormAct(in_channels, out_channels, spatial_dims=spatial_dims, kernel_size=1, norm=norm, act=None)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.body(x)) + self.shortcut(x)


class MDPAC(nn.Module):
    """Multi-scaled Dense Pyramid Atrous Convolution (§2.4, Fig. 5, Eq. 4).

    Three (``len(dilations)``) 3×3 Conv-BN-ReLU layers with increasing dilation. ``mode="dense"``: layer j
    takes ``[F, o_1, …, o_{j-1}]`` (concatenated) and gives ``growth`` channels, a 1×1 Conv-BN-ReLU maps
    ``[F, o_1, …, o_n]`` back to ``channels``. ``mode="sum"``: layer j (C → C) takes ``o_{j-1} + F`` and the
    output is ``o_n + F``. Either way the output at a pixel depends on inputs up to ``sum(dilations)``
    pixels away. See the module docstring for the reading of Eq. 4.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        dilations: Sequence[int] = (1, 2, 4),
        mode: str = "dense",
        growth: int | None = None,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        if mode not in ("dense", "sum"):
            raise ValueError(f"unknown MDPAC mode {mode!r}; use dense or sum")
        dilations = [int(d) for d in dilations]
        if not dilations or min(dilations) < 1:
            raise ValueError(f"MDPAC needs one or more dilation rates >= 1, got {dilations}")
        self.mode = mode
        self.dilations = dilations
        self.layers = nn.ModuleList()
        if mode == "dense":
            growth = int(growth) if growth else max(1, channels // 4)
            for j, d in enumerate(dilations):
                self.layers.append(
                    ConvNormAct(
                        channels + j * growth, growth, spatial_dims=spatial_dims, dilation=d, norm=norm, act=act
                    )
                )
            self.fuse = ConvNormAct(
                channels + len(dilations) * growth,
                channels,
                spatial_dims=spatial_dims,
                kernel_size=1,
                norm=norm,
                act=act,
            )
        else:
            for d in dilations:
                self.layers.append(
                    ConvNormAct(channels, channels, spatial_dims=spatial_dims, dilation=d, norm=norm, act=act)
                )
            self.fuse = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "dense":
            feats = [x]
            for layer in self.layers:
                feats.append(layer(torch.cat(feats, dim=1)))
            return self.fuse(torch.cat(feats, dim=1))
        inp = x
        for layer in self.layers:
            inp = layer(inp) + x  # Eq. 4: ℓ_j^i = ℓ_{j-1}^o + F
        return inp


class AttentionResPathBlock(ResPathBlock):
    """One ResPath unit of RSE-UNet (§2.5, Fig. 6): MultiResUNet's residual unit with attention on its branch.

    ``norm(act(SA(SE(Conv3×3-BN-act(x))) + Conv1×1-BN(x)))``: the shared
    :class:`~medseg.models.context_blocks.ResPathBlock` (also ARMS Net's) with channel attention (the SE of Eq. 1–3)
    and then CBAM spatial attention applied to the 3×3 branch before the addition.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
        attention: str = "channel+spatial",
        se_reduction: int = 16,
        se_bias: bool = False,
        spatial_kernel: int = 7,
        post_norm: bool = True,
    ):
        if attention not in RESPATH_ATTENTION:
            raise ValueError(f"unknown ResPath attention {attention!r}; use one of {', '.join(RESPATH_ATTENTION)}")
        super().__init__(channels, channels, spatial_dims=spatial_dims, norm=norm, act=act, post_norm=post_norm)
        self.channel_att = (
            SqueezeExcitation(channels, spatial_dims=spatial_dims, reduction=se_reduction, bias=se_bias)
            if "channel" in attention
            else nn.Identity()
        )
        self.spatial_att = (
            SpatialAttention(spatial_dims=spatial_dims, kernel_size=spatial_kernel)
            if "spatial" in attention
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.spatial_att(self.channel_att(self.conv(x))) + self.shortcut(x)))


class AttentionResPath(nn.Sequential):
    """A chain of ``n_blocks`` :class:`AttentionResPathBlock` replacing one skip connection (Table 1)."""

    def __init__(self, channels: int, n_blocks: int, **kwargs):
        if n_blocks < 1:
            raise ValueError(f"a ResPath needs at least one block, got {n_blocks}")
        super().__init__(*[AttentionResPathBlock(channels, **kwargs) for _ in range(n_blocks)])


@register_model("rse_unet")
class RSEUNet(EncoderDecoderNet):
    """RSE-UNet (Wang et al. 2023, §2, Fig. 2–6, Table 1); see the module docstring for the choices made.

    Args:
        in_channels, out_channels, spatial_dims: as for every medseg model; logits (B, C, *spatial).
        depth: number of poolings (Table 3: 3, 4 = paper, 5).
        base_channels: first-stage width (64); stages double up to 1024 at the bottom for depth 4.
        res_se: Resblock + ResSE blocks (True) or plain DoubleConv stages (False) — Table 5 column "RSE".
        mdpac: MDPAC on the bottom features (True) or nothing extra (False) — column "MDPAC".
        res_path: ResPath skips (True) or plain skips (False) — column "Res Path".
        se_reduction: SE reduction ratio r (16, §2.3). se_bias: bias terms in W1, W2 (Eq. 2 has none).
        mdpac_dilations, mdpac_mode, mdpac_growth: see :class:`MDPAC` (defaults (1, 2, 4), dense, C // 4).
        respath_blocks: blocks per level from the top (default ``depth - i``: 4, 3, 2, 1 as in Table 1).
        respath_attention: ``channel+spatial`` (default), ``channel``, ``spatial`` or ``none``.
        spatial_kernel: kernel of the spatial attention conv (7, CBAM).
        respath_post_norm: the norm after each ResPath unit's activation (MultiResUNet's code; default True).
        norm, act, upsample, max_channels: as for :class:`~medseg.models.unet.UNet`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        res_se: bool = True,
        mdpac: bool = True,
        res_path: bool = True,
        se_reduction: int = 16,
        se_bias: bool = False,
        mdpac_dilations: Sequence[int] = (1, 2, 4),
        mdpac_mode: str = "dense",
        mdpac_growth: int | None = None,
        respath_blocks: Sequence[int] | None = None,
        respath_attention: str = "channel+spatial",
        spatial_kernel: int = 7,
        respath_post_norm: bool = True,
        norm: str = "batch",
        act: str = "relu",
        upsample: str = "transpose",
        max_channels: int | None = None,
    ):
        super().__init__()
        channels = self.init_stages(spatial_dims, depth, base_channels, max_channels)
        common = {"spatial_dims": spatial_dims, "norm": norm, "act": act}
        se_kw = {"se_reduction": se_reduction, "se_bias": se_bias}

        def block(cin: int, cout: int, se: bool = True) -> nn.Module:
            if res_se:
                return ResSEBlock(cin, cout, se=se, **common, **se_kw)
            return DoubleConv(cin, cout, **common)

        # Registration order (encoder, bottleneck, skips, ups, decoder, head) mirrors UNet's, so with every
        # module off the state dicts line up one to one.
        self.encoder = nn.ModuleList()
        prev = in_channels
        for i, c in enumerate(channels):
            self.encoder.append(block(prev, c, se=i > 0))  # stage 0 is the Resblock: no SE (§2.3)
            prev = c
        self.pool = make_pool(spatial_dims, "max")
        self.bottleneck = (
            MDPAC(channels[-1], dilations=mdpac_dilations, mode=mdpac_mode, growth=mdpac_growth, **common)
            if mdpac
            else nn.Identity()
        )
        if respath_blocks is None:
            respath_blocks = [depth - i for i in range(depth)]
        check_channels("respath_blocks", respath_blocks, depth)
        self.respath_blocks = [int(n) for n in respath_blocks]
        self.skips = nn.ModuleList(
            AttentionResPath(
                c,
                n,
                attention=respath_attention,
                spatial_kernel=spatial_kernel,
                post_norm=respath_post_norm,
                **common,
                **se_kw,
            )
            if res_path
            else nn.Identity()
            for c, n in zip(channels[:-1], self.respath_blocks, strict=True)
        )
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for deep, skip in zip(channels[:0:-1], channels[-2::-1], strict=True):
            self.ups.append(UpSample(deep, skip, spatial_dims=spatial_dims, mode=upsample))
            self.decoder.append(block(2 * skip, skip))
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for i, stage in enumerate(self.encoder):
            if i:
                x = self.pool(x)
            x = stage(x)
            feats.append(x)
        x = self.bottleneck(feats.pop())
        skips = [path(f) for path, f in zip(self.skips, feats, strict=True)]
        for up, dec, skip in zip(self.ups, self.decoder, reversed(skips), strict=True):
            x = dec(torch.cat([skip, up(x)], dim=1))
        return self.head(x)
