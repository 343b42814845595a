"""CE-Net (Gu et al. 2019, "CE-Net: Context Encoder Network for 2D Medical Image Segmentation", IEEE TMI 38:2281),
the baseline of ARMS Net Table 6.

§II-A: a ResNet-34 encoder (7×7 stride-2 stem, 3×3 stride-2 max pooling, four stages of 3/4/6/3 basic
residual blocks at 64/128/256/512 channels, so the bottom is the input / 32); §II-B: DAC (rates 1, 3, 5 in
four cascaded branches, :class:`~medseg.models.context_blocks.DAC`); §II-C: RMP (max pooling 2, 3, 5, 6, a shared 1×1
conv to one channel per branch, concatenated: 512 + 4 channels, :class:`~medseg.models.context_blocks.RMP`); §II-D:
decoder blocks (1×1 conv to C/4, 3×3 stride-2 transposed conv, 1×1 conv, each with BN + ReLU) whose outputs are
*added* to the encoder features, then a 4×4 stride-2 transposed conv, two 3×3 convs and the logits.

Choices: the encoder is written here (no torchvision, no ImageNet weights; the original is pretrained) and
takes ``in_channels`` (1 for the grey chromosome images) in its stem; the head returns logits for
``out_channels`` classes (the official code ends with a sigmoid). The official module layout is kept, so
with ``in_channels=3, out_channels=1`` the parameter count is the official model's 29,003,093. At a 128×128
input the bottom map is 4×4, smaller than RMP's 5×5 and 6×6 windows: those windows shrink to the map
(global max pooling; Keras 'same' pooling gives the same), which is how a 128×128 CE-Net runs at all
(ARMS Net §4.3 blames exactly these windows for CE-Net's poor IoU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from medseg.models.blocks import SegmentationNet, check_channels, make_act, make_norm
from medseg.models.context_blocks import DAC, RMP
from medseg.models.registry import register_model


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): ``act(norm(conv3×3(act(norm(conv3×3(x))))) + shortcut(x))``; the
    shortcut is a strided 1×1 conv + norm when the stride or the width changes."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels, spatial_dims)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels, spatial_dims)
        self.act = make_act(act)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False),
                make_norm(norm, out_channels, spatial_dims),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(y)) + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet-34-style encoder: stem (7×7 stride 2 + norm + act + 3×3 stride-2 max pooling) and four stages of
    basic blocks; the first block of stages 2–4 strides by 2. Returns the four stages' outputs (÷4 … ÷32)."""

    def __init__(
        self,
        in_channels: int = 1,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (3, 4, 6, 3),
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        check_channels("widths", widths, 4)
        check_channels("blocks", blocks, 4)
        conv = Conv[Conv.CONV, spatial_dims]
        self.stem = nn.Sequential(
            conv(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            make_norm(norm, widths[0], spatial_dims),
            make_act(act),
            Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1),
        )
        self.stages = nn.ModuleList()
        prev = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            layers = [
                BasicBlock(
                    prev if j == 0 else w,
                    w,
                    stride=2 if (i > 0 and j == 0) else 1,
                    spatial_dims=spatial_dims,
                    norm=norm,
                    act=act,
                )
                for j in range(n)
            ]
            self.stages.append(nn.Sequential(*layers))
            prev = w

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class CENetDecoderBlock(nn.Sequential):
    """CE-Net decoder block: 1×1 conv to C/4, 3×3 stride-2 transposed conv (×2), 1×1 conv; each + norm + act."""

    def __init__(
        self, in_channels: int, out_channels: int, *, spatial_dims: int = 2, norm: str = "batch", act: str = "relu"
    ):
        mid = max(1, in_channels // 4)
        conv = Conv[Conv.CONV, spatial_dims]
        deconv = Conv[Conv.CONVTRANS, spatial_dims]
        super().__init__(
            conv(in_channels, mid, 1),
            make_norm(norm, mid, spatial_dims),
            make_act(act),
            deconv(mid, mid, 3, stride=2, padding=1, output_padding=1),
            make_norm(norm, mid, spatial_dims),
            make_act(act),
            conv(mid, out_channels, 1),
            make_norm(norm, out_channels, spatial_dims),
            make_act(act),
        )


@register_model("cenet")
class CENet(SegmentationNet):
    """CE-Net for C-class logits; see the module docstring.

    Args:
        in_channels, out_channels, spatial_dims: as every medseg model.
        widths, blocks: encoder stage widths (64, 128, 256, 512) and basic blocks per stage (3, 4, 6, 3:
            ResNet-34); smaller values give a light model for tests.
        dac_rates, dac_share_weights: DAC's rates (1, 3, 5) and the official code's weight sharing.
        rmp_sizes: RMP's pooling windows = steps (2, 3, 5, 6).
        head_channels: width of the final transposed conv and 3×3 convs (32).
        norm, act: for the encoder and decoder blocks (``batch``, ``relu``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (3, 4, 6, 3),
        dac_rates: Sequence[int] = (1, 3, 5),
        dac_share_weights: bool = True,
        rmp_sizes: Sequence[int] = (2, 3, 5, 6),
        head_channels: int = 32,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.divisor = 32
        widths = list(widths)
        common = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        self.encoder = ResNetEncoder(in_channels, widths=widths, blocks=blocks, **common)
        # DAC as in the official code: convs with bias, no norm, ReLU.
        self.dac = DAC(widths[3], rates=dac_rates, share_weights=dac_share_weights, spatial_dims=spatial_dims, act=act)
        self.rmp = RMP(widths[3], rmp_sizes, spatial_dims=spatial_dims)
        self.decoders = nn.ModuleList(
            [
                CENetDecoderBlock(self.rmp.out_channels, widths[2], **common),
                CENetDecoderBlock(widths[2], widths[1], **common),
                CENetDecoderBlock(widths[1], widths[0], **common),
                CENetDecoderBlock(widths[0], widths[0], **common),
            ]
        )
        conv = Conv[Conv.CONV, spatial_dims]
        self.head = nn.Sequential(
            Conv[Conv.CONVTRANS, spatial_dims](widths[0], head_channels, 4, stride=2, padding=1),
            make_act(act),
            conv(head_channels, head_channels, 3, padding=1),
            make_act(act),
            conv(head_channels, out_channels, 3, padding=1),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        e1, e2, e3, e4 = self.encoder(x)
        center = self.rmp(self.dac(e4))
        d = self.decoders[0](center) + e3
        d = self.decoders[1](d) + e2
        d = self.decoders[2](d) + e1
        d = self.decoders[3](d)
        return self.head(d)
