"""DeepLabV3+ (Chen et al., 2018, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV), written here without segmentation_models_pytorch / torchvision.

* Backbone (§3.2 / §4.1 "ResNet-101 as network backbone"): a bottleneck ResNet (He et al., 2016) with a
  7×7 stride-2 stem and 3×3 max pooling; ``resnet101`` = [3, 4, 23, 3] bottlenecks per stage. Output stride
  16 (§3.1): the last stage keeps stride 1 and dilates its 3×3 convs by 2 instead (×``multi_grid`` (1, 2, 4),
  DeepLabv3's Multi-Grid, §4.1 of that paper). ``depth=3`` gives output stride 8 (stage 3 dilated too).
* ASPP (DeepLabv3 §3.3): a 1×1 conv, three 3×3 atrous convs with rates 6/12/18 (doubled at output stride 8),
  and image pooling, 256 channels each, concatenated and projected by a 1×1 conv to 256 channels.
* Decoder (§3.1, Fig. 2): the ASPP output is bilinearly upsampled ×4 and concatenated with the stage-1
  ("low-level", output stride 4) features reduced to 48 channels by a 1×1 conv (§4.1 finds 48 best), refined
  by two 3×3 convs (256) and classified by a 1×1 conv; the logits are upsampled ×4 to the input.

Choices where the paper leaves room: plain (not depthwise-separable) atrous convs in ASPP and decoder, as
in the ResNet-101 rows of the paper and the public ResNet implementations; no pretrained ImageNet weights
(none ship here); the image-pooling branch has no normalisation (a biased 1×1 conv + ReLU) because batch norm
over a 1×1 map of a batch of one is undefined and the papers train chromosomes at batch sizes where that
happens; no dropout by default (``dropout`` adds it after the ASPP projection).

With ResNet-101, 3 input channels and 1 class the model has 59.34 M parameters (42.50 M backbone): AMFL
Table IV lists 59.46 M for its DeepLabV3+, i.e. this is the configuration its count corresponds to, within
0.2 % (its code's convs keep their biases and its exact heads are not given).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from medseg.models.blocks import ConvNormAct, SegmentationNet, make_act
from medseg.models.registry import register_model

BACKBONES = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1×1 → 3×3 (stride, dilation) → 1×1 (×4 channels), plus the (projected) input."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        out = mid_channels * self.expansion
        kw = dict(spatial_dims=spatial_dims, norm=norm)
        self.conv1 = ConvNormAct(in_channels, mid_channels, kernel_size=1, act=act, **kw)
        self.conv2 = ConvNormAct(
            mid_channels, mid_channels, kernel_size=3, stride=stride, dilation=dilation, act=act, **kw
        )
        self.conv3 = ConvNormAct(mid_channels, out, kernel_size=1, act=None, **kw)
        self.shortcut = (
            ConvNormAct(in_channels, out, kernel_size=1, stride=stride, act=None, **kw)
            if stride != 1 or in_channels != out
            else nn.Identity()
        )
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNetBackbone(nn.Module):
    """Bottleneck ResNet returning (stage-1 features at stride 4, last-stage features at ``output_stride``)."""

    def __init__(
        self,
        in_channels: int,
        *,
        layers: tuple[int, ...],
        base_channels: int = 64,
        output_stride: int = 16,
        multi_grid: tuple[int, ...] = (1, 2, 4),
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if len(layers) != 4:
            raise ValueError(f"layers needs 4 stage lengths, got {layers}")
        kw = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, base_channels, kernel_size=7, stride=2, **kw),
            Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1),
        )
        # (stride, dilation) of stages 1-4: stride 4 after the stem; each later stride-2 stage halves again
        # until the output stride is reached, after which stages dilate instead.
        plan = [(1, 1), (2, 1), (2, 1), (1, 2)] if output_stride == 16 else [(1, 1), (2, 1), (1, 2), (1, 4)]
        self.stages = nn.ModuleList()
        prev = base_channels
        for i, (n, (stride, dilation)) in enumerate(zip(layers, plan, strict=True)):
            mid = base_channels * 2**i
            grid = multi_grid if i == 3 else (1,)
            blocks = []
            for j in range(n):
                blocks.append(
                    Bottleneck(prev, mid, stride=stride if j == 0 else 1, dilation=dilation * grid[j % len(grid)], **kw)
                )
                prev = mid * Bottleneck.expansion
            self.stages.append(nn.Sequential(*blocks))
        self.low_channels = base_channels * Bottleneck.expansion
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        low = x = self.stages[0](x)
        for stage in self.stages[1:]:
            x = stage(x)
        return low, x


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, three atrous 3×3 and image pooling branches, then a 1×1 projection."""

    def __init__(
        self,
        in_channels: int,
        channels: int = 256,
        *,
        rates: tuple[int, ...] = (6, 12, 18),
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        kw = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        atrous = [ConvNormAct(in_channels, channels, kernel_size=3, dilation=r, **kw) for r in rates]
        self.branches = nn.ModuleList([ConvNormAct(in_channels, channels, kernel_size=1, **kw)] + atrous)
        self.pool_branch = nn.Sequential(
            Pool[Pool.ADAPTIVEAVG, spatial_dims](1),
            ConvNormAct(in_channels, channels, kernel_size=1, norm=None, act=act, spatial_dims=spatial_dims),
        )
        self.project = ConvNormAct((len(rates) + 2) * channels, channels, kernel_size=1, dropout=dropout, **kw)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool_branch(x).expand(-1, -1, *x.shape[2:]))  # upsampling a 1×1 map = broadcasting it
        return self.project(torch.cat(outs, dim=1))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


@register_model("deeplabv3plus")
class DeepLabV3Plus(SegmentationNet):
    """DeepLabV3+ with a ResNet backbone.

    Args:
        in_channels, out_channels, spatial_dims: as :class:`~medseg.models.unet.UNet` (2D or 3D).
        backbone: ``resnet101`` (default, the paper's and AMFL Table IV's), ``resnet50`` or ``resnet152``.
        layers: explicit bottleneck counts per stage (overrides ``backbone``; tests use (1, 1, 1, 1)).
        depth: log2 of the output stride: 4 → 16 (the paper's default), 3 → 8 (its denser setting). The input is
            padded to a multiple of 2**depth.
        base_channels: stem width (64); stage i has ``base · 2**i`` bottleneck channels, ×4 at its output.
        aspp_channels: width of the ASPP branches and of the decoder convs (256).
        aspp_rates: atrous rates at output stride 16 (6, 12, 18); doubled at output stride 8.
        low_level_channels: the 1×1 reduction of the low-level features (48).
        multi_grid: dilation multipliers of the last stage's bottlenecks (1, 2, 4).
        norm, act: of every conv; dropout: after the ASPP projection.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        backbone: str = "resnet101",
        layers: tuple[int, ...] | None = None,
        depth: int = 4,
        base_channels: int = 64,
        aspp_channels: int = 256,
        aspp_rates: tuple[int, ...] = (6, 12, 18),
        low_level_channels: int = 48,
        multi_grid: tuple[int, ...] = (1, 2, 4),
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth not in (3, 4):
            raise ValueError(f"depth is log2 of the output stride: 4 (stride 16) or 3 (stride 8), got {depth}")
        if layers is None:
            if backbone not in BACKBONES:
                raise ValueError(f"unknown backbone {backbone!r}; use {', '.join(BACKBONES)} or give layers")
            layers = BACKBONES[backbone]
        self.spatial_dims = spatial_dims
        self.divisor = 2**depth
        kw = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        self.backbone = ResNetBackbone(
            in_channels,
            layers=tuple(layers),
            base_channels=base_channels,
            output_stride=2**depth,
            multi_grid=tuple(multi_grid),
            **kw,
        )
        rates = tuple(r * (16 // 2**depth) for r in aspp_rates)
        self.aspp = ASPP(self.backbone.out_channels, aspp_channels, rates=rates, dropout=dropout, **kw)
        self.reduce = ConvNormAct(self.backbone.low_channels, low_level_channels, kernel_size=1, **kw)
        self.decoder = nn.Sequential(
            ConvNormAct(aspp_channels + low_level_channels, aspp_channels, **kw),
            ConvNormAct(aspp_channels, aspp_channels, **kw),
        )
        self.head = Conv[Conv.CONV, spatial_dims](aspp_channels, out_channels, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        low, deep = self.backbone(x)
        y = _resize(self.aspp(deep), low.shape[2:])
        y = self.decoder(torch.cat([y, self.reduce(low)], dim=1))
        return _resize(self.head(y), size)
