"""BiSeNet V2 (Yu, Gao, Wang, Yu, Shen & Sang, 2021, "BiSeNet V2: Bilateral Network with Guided Aggregation
for Real-time Semantic Segmentation", IJCV), a real-time baseline of AMFL Table II (2.85 M in its Table IV).

* Detail branch (§4.1, Table 1): three stages of 3×3 ConvNormAct, (2, 3, 3) convs, each stage starting with
  stride 2: C₁ = C₂ = 64, C₃ = 128 channels, output at ⅛ resolution.
* Semantic branch (§4.2, λ = ¼ so 16, 32, 64, 128 channels): the stem block (Fig. 4a: a 3×3 stride-2 conv,
  then a 1×1 → 3×3 stride-2 conv path beside a 3×3 stride-2 max pooling, concatenated and fused by a 3×3
  conv; ¼ resolution), gather-and-expansion layers (Fig. 5b/c, expansion ratio 6: 3×3 conv; a 3×3 depth-wise
  conv expanding the channels ×6, with stride 2 plus a second depth-wise conv in the downsampling variant;
  a 1×1 projection; the identity or a depth-wise + 1×1 shortcut; ReLU after the sum) — stage 3: GE s2 + GE,
  stage 4: GE s2 + GE, stage 5: GE s2 + 3 GE + the context embedding block (Fig. 4b: global average pooling,
  1×1 conv, broadcast sum with the input, 3×3 conv); output at 1/32.
* Bilateral guided aggregation (Fig. 6): the detail features, kept (3×3 depth-wise + norm + 1×1) and
  downsampled (3×3 stride-2 conv + norm + 3×3 stride-2 average pooling), are multiplied by the sigmoids of
  the semantic features upsampled ×4 (3×3 conv + norm) and kept (depth-wise + norm + 1×1); the two products,
  brought to ⅛ resolution, are summed and fused by a 3×3 conv + norm.
* Segmentation head (Fig. 7): 3×3 ConvNormAct to ``head_channels`` (1024, as the public code), dropout 0.1,
  1×1 conv to the classes, bilinear ×8 to the input.

What is counted: the inference network above. The booster auxiliary heads of §4.4 are training-only extras
and are not built (the trainer takes one logits map). Choices: no norm in the context block's pooled path
(batch norm over a 1×1 map of a batch of one is undefined, so a biased 1×1 conv + ReLU), no ReLU inside the
GE layers' depth-wise convs (as drawn in Fig. 5; the public code adds one), interpolation to the exact size
instead of fixed ×4 factors. Written for 2D and 3D (the paper is 2D; in 3D every side must be ≥ 64 after
padding, since PyTorch's 3D average pooling refuses a 2-voxel input to its 3-wide window at 1/16).

Parameters (3 input channels, 1 class): 3,339,793, of which 1,182,721 are the 1024-wide head — 17 % above the
2.85 M of AMFL Table IV. No head width of the public implementations gives 2.85 M (a 128-wide head, as in
PaddleSeg, gives 2,304,913), so the AMFL count comes from some other variant; ``head_channels`` sets the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from medseg.models.blocks import ConvNormAct, SegmentationNet, make_act, make_norm
from medseg.models.registry import register_model


def _conv_norm(
    in_ch: int, out_ch: int, *, kernel_size: int = 3, stride: int = 1, groups: int = 1, spatial_dims: int, norm: str
) -> nn.Sequential:
    """Conv (no act) + norm; depth-wise when ``groups == in_ch``."""
    conv = Conv[Conv.CONV, spatial_dims](
        in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=norm in (None, "none")
    )
    return nn.Sequential(conv, make_norm(norm, out_ch, spatial_dims))


def _pw(in_ch: int, out_ch: int, spatial_dims: int) -> nn.Module:
    return Conv[Conv.CONV, spatial_dims](in_ch, out_ch, kernel_size=1, bias=False)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear" if x.ndim == 4 else "trilinear", align_corners=False)


class StemBlock(nn.Module):
    """Fig. 4a: ¼ resolution, ``channels`` wide."""

    def __init__(self, in_channels: int, channels: int, *, spatial_dims: int, norm: str, act: str):
        super().__init__()
        kw = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        self.conv = ConvNormAct(in_channels, channels, stride=2, **kw)
        self.left = nn.Sequential(
            ConvNormAct(channels, max(1, channels // 2), kernel_size=1, **kw),
            ConvNormAct(max(1, channels // 2), channels, stride=2, **kw),
        )
        self.right = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1)
        self.fuse = ConvNormAct(2 * channels, channels, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpansion(nn.Module):
    """Gather-and-expansion layer, Fig. 5b (stride 1) and 5c (stride 2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expansion: int = 6,
        spatial_dims: int,
        norm: str,
        act: str,
    ):
        super().__init__()
        mid = in_channels * expansion
        kw = dict(spatial_dims=spatial_dims, norm=norm)
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, in_channels, act=act, **kw),
            _conv_norm(in_channels, mid, stride=stride, groups=in_channels, **kw),
        ]
        if stride == 2:
            layers.append(_conv_norm(mid, mid, groups=mid, **kw))
        layers.append(_conv_norm(mid, out_channels, kernel_size=1, **kw))
        self.body = nn.Sequential(*layers)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                _conv_norm(in_channels, in_channels, stride=stride, groups=in_channels, **kw),
                _conv_norm(in_channels, out_channels, kernel_size=1, **kw),
            )
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """Fig. 4b: ``conv3(x + conv1(GAP(x)))``; the pooled path has no norm (see the module docstring)."""

    def __init__(self, channels: int, *, spatial_dims: int, norm: str, act: str):
        super().__init__()
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.gap_conv = ConvNormAct(channels, channels, kernel_size=1, norm=None, act=act, spatial_dims=spatial_dims)
        self.last = ConvNormAct(channels, channels, spatial_dims=spatial_dims, norm=norm, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(x + self.gap_conv(self.pool(x)))


class SemanticBranch(nn.Module):
    def __init__(self, in_channels: int, widths: list[int], *, expansion: int, spatial_dims: int, norm: str, act: str):
        super().__init__()
        kw = dict(expansion=expansion, spatial_dims=spatial_dims, norm=norm, act=act)
        c1, c3, c4, c5 = widths
        self.stem = StemBlock(in_channels, c1, spatial_dims=spatial_dims, norm=norm, act=act)
        self.s3 = nn.Sequential(GatherExpansion(c1, c3, stride=2, **kw), GatherExpansion(c3, c3, **kw))
        self.s4 = nn.Sequential(GatherExpansion(c3, c4, stride=2, **kw), GatherExpansion(c4, c4, **kw))
        self.s5 = nn.Sequential(
            GatherExpansion(c4, c5, stride=2, **kw),
            *[GatherExpansion(c5, c5, **kw) for _ in range(3)],
            ContextEmbedding(c5, spatial_dims=spatial_dims, norm=norm, act=act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s5(self.s4(self.s3(self.stem(x))))


class GuidedAggregation(nn.Module):
    """Bilateral guided aggregation layer, Fig. 6."""

    def __init__(self, channels: int, *, spatial_dims: int, norm: str):
        super().__init__()
        kw = dict(spatial_dims=spatial_dims, norm=norm)
        self.detail_keep = nn.Sequential(
            _conv_norm(channels, channels, groups=channels, **kw), _pw(channels, channels, spatial_dims)
        )
        self.detail_down = nn.Sequential(
            _conv_norm(channels, channels, stride=2, **kw),
            Pool[Pool.AVG, spatial_dims](kernel_size=3, stride=2, padding=1),
        )
        self.semantic_up = _conv_norm(channels, channels, **kw)
        self.semantic_keep = nn.Sequential(
            _conv_norm(channels, channels, groups=channels, **kw), _pw(channels, channels, spatial_dims)
        )
        self.fuse = _conv_norm(channels, channels, **kw)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        left = self.detail_keep(detail) * torch.sigmoid(_resize(self.semantic_up(semantic), detail.shape[2:]))
        down = self.detail_down(detail)
        right = down * torch.sigmoid(_resize(self.semantic_keep(semantic), down.shape[2:]))
        return self.fuse(left + _resize(right, detail.shape[2:]))


@register_model("bisenetv2")
class BiSeNetV2(SegmentationNet):
    """BiSeNet V2 (inference network, no booster heads).

    Args:
        in_channels, out_channels, spatial_dims: as :class:`~medseg.models.unet.UNet`.
        depth: accepted for configs shared with the U-Net family; the semantic branch always downsamples
            5 times (input padded to a multiple of 32), so only 5 is valid.
        base_channels: detail-branch width C₁ = C₂ (64); C₃ and the aggregation are 2× it (128).
        semantic_ratio: λ of §4.2 (¼): semantic widths are λ·C for C = 64, 128, 256, 512 → 16, 32, 64, 128,
            so its last stage matches the detail branch's C₃.
        expansion: GE expansion ratio ε (6).
        head_channels: width of the segmentation head's 3×3 conv (1024, the public code; not in the paper).
        norm, act: of every conv; dropout: before the head's classifier (0.1).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int = 5,
        base_channels: int = 64,
        semantic_ratio: float = 0.25,
        expansion: int = 6,
        head_channels: int = 1024,
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.1,
    ):
        super().__init__()
        if depth != 5:
            raise ValueError(f"BiSeNetV2's semantic branch downsamples exactly 5 times; depth must be 5, got {depth}")
        self.spatial_dims = spatial_dims
        self.divisor = 32
        b = base_channels
        kw = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        self.detail = nn.Sequential(
            ConvNormAct(in_channels, b, stride=2, **kw),
            ConvNormAct(b, b, **kw),
            ConvNormAct(b, b, stride=2, **kw),
            ConvNormAct(b, b, **kw),
            ConvNormAct(b, b, **kw),
            ConvNormAct(b, 2 * b, stride=2, **kw),
            ConvNormAct(2 * b, 2 * b, **kw),
            ConvNormAct(2 * b, 2 * b, **kw),
        )
        widths = [max(1, int(round(semantic_ratio * b * m))) for m in (1, 2, 4, 8)]
        self.semantic = SemanticBranch(in_channels, widths, expansion=expansion, **kw)
        if widths[-1] != 2 * b:
            raise ValueError(f"semantic_ratio·8·base ({widths[-1]}) must equal the detail width 2·base ({2 * b})")
        self.aggregate = GuidedAggregation(2 * b, spatial_dims=spatial_dims, norm=norm)
        self.head = nn.Sequential(
            ConvNormAct(2 * b, head_channels, dropout=dropout, **kw),
            Conv[Conv.CONV, spatial_dims](head_channels, out_channels, kernel_size=1),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aggregate(self.detail(x), self.semantic(x))
        return _resize(self.head(y), x.shape[2:])
