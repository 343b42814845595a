"""ENet (Paszke, Chaurasia, Kim & Culurciello, 2016, "ENet: A Deep Neural Network Architecture for Real-Time
Semantic Segmentation"), the small real-time baseline of AMFL Table II (0.35 M parameters in its Table IV).

Layout of the paper's Table 1 (``b`` = ``base_channels`` = 16):

* initial block (Fig. 2a): a 3×3 stride-2 conv with ``b − in_channels`` filters concatenated with a 2×2 max
  pooling of the input → ``b`` channels at ½ resolution;
* stage 1: a downsampling bottleneck to 4b (64), then 4 regular bottlenecks; spatial dropout 0.01;
* stages 2 and 3: (stage 2 only) a downsampling bottleneck to 8b (128), then regular, dilated 2,
  asymmetric 5, dilated 4, regular, dilated 8, asymmetric 5, dilated 16; spatial dropout 0.1;
* stage 4: an upsampling bottleneck to 4b, 2 regular; stage 5: an upsampling bottleneck to b, 1 regular;
* full conv: a 2×2 stride-2 transposed conv to the classes, at the input's resolution.

Bottleneck (Fig. 2b, §3): 1×1 projection to a quarter of the output width (2×2 stride 2 when downsampling),
the main conv (3×3, dilated 3×3, asymmetric 5×1 then 1×5, or 3×3 stride-2 transposed when upsampling),
1×1 expansion, batch norm + PReLU (one slope per channel) after each but the last, spatial dropout, then the
sum with the main branch and a PReLU. Downsampling main branch: max pooling with indices and zero-padded
channels; upsampling main branch: 1×1 conv + BN then max-unpooling with the indices of the matching
downsampling. Choices: PReLU in the decoder too (the paper's Torch code uses ReLU there), no conv biases
before batch norm. 2D only (asymmetric convolutions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.blocks import SegmentationNet, make_norm
from medseg.models.registry import register_model


def _cna(
    in_ch: int, out_ch: int, kernel, *, stride=1, padding=0, dilation=1, norm: str = "batch", act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation, bias=norm in (None, "none")
        ),
        make_norm(norm, out_ch, 2),
    ]
    if act:
        layers.append(nn.PReLU(out_ch))
    return nn.Sequential(*layers)


class InitialBlock(nn.Module):
    """Fig. 2a: concat(3×3 stride-2 conv with ``out − in`` filters, 2×2 max pooling of the input), BN, PReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str = "batch"):
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(
                f"the initial block needs more output ({out_channels}) than input ({in_channels}) channels"
            )
        self.conv = nn.Conv2d(
            in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=norm in (None, "none")
        )
        self.pool = nn.MaxPool2d(2, 2)
        self.norm = make_norm(norm, out_channels, 2)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """ENet bottleneck; ``kind`` is ``regular``, ``dilated``, ``asymmetric``, ``down`` or ``up``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kind: str = "regular",
        dilation: int = 1,
        dropout: float = 0.1,
        norm: str = "batch",
        ratio: int = 4,
        internal: str = "output",
    ):
        super().__init__()
        self.kind = kind
        if internal not in ("output", "input"):
            raise ValueError(f"internal must be output or input, got {internal!r}")
        mid = max(1, (out_channels if internal == "output" else in_channels) // ratio)
        if kind == "down":
            proj = _cna(in_channels, mid, 2, stride=2, norm=norm)
            self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        else:
            proj = _cna(in_channels, mid, 1, norm=norm)
        if kind in ("regular", "down"):
            main = _cna(mid, mid, 3, padding=1, norm=norm)
        elif kind == "dilated":
            main = _cna(mid, mid, 3, padding=dilation, dilation=dilation, norm=norm)
        elif kind == "asymmetric":
            main = nn.Sequential(
                nn.Conv2d(mid, mid, (5, 1), padding=(2, 0), bias=False),
                *_cna(mid, mid, (1, 5), padding=(0, 2), norm=norm),
            )
        elif kind == "up":
            main = nn.Sequential(
                nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1, bias=norm in (None, "none")),
                make_norm(norm, mid, 2),
                nn.PReLU(mid),
            )
            self.main_proj = _cna(in_channels, out_channels, 1, norm=norm, act=False)
            self.unpool = nn.MaxUnpool2d(2, 2)
        else:
            raise ValueError(f"unknown ENet bottleneck {kind!r}")
        self.ext = nn.Sequential(proj, main, _cna(mid, out_channels, 1, norm=norm, act=False), nn.Dropout2d(dropout))
        self.out_channels = out_channels
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None):
        ext = self.ext(x)
        if self.kind == "down":
            main, idx = self.pool(x)
            main = F.pad(main, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))  # zero channels up to the width
            return self.act(main + ext), idx
        if self.kind == "up":
            main = self.unpool(self.main_proj(x), indices, output_size=ext.shape)
            return self.act(main + ext)
        return self.act(x + ext)


# The paper's Table 1 after each downsampling of stage 2 (and for stage 3 without it).
_STAGE23 = [
    ("regular", 1),
    ("dilated", 2),
    ("asymmetric", 1),
    ("dilated", 4),
    ("regular", 1),
    ("dilated", 8),
    ("asymmetric", 1),
    ("dilated", 16),
]


@register_model("enet")
class ENet(SegmentationNet):
    """ENet.

    Args:
        in_channels, out_channels: image channels and classes.
        spatial_dims: must be 2.
        depth: accepted for configs shared with the U-Net family; ENet always downsamples 3 times (the input
            is padded to a multiple of 8), so only 3 is valid.
        base_channels: width of the initial block (16); stages 1–3 have 4× and 8× it (64, 128).
        norm: normalisation (batch in the paper).
        dropout: spatial dropout of stage 1 and of stages 2–5 (0.01, 0.1).
        internal: a bottleneck's inner width is a quarter of its ``output`` (default, the paper's Torch
            code: 362,784 parameters for 3 channels in, 1 class) or of its ``input`` width (as some PyTorch
            ports do: 359,136). AMFL Table IV's 0.35 M is within 4 % of either; the paper says 0.37 M.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int = 3,
        base_channels: int = 16,
        norm: str = "batch",
        dropout: tuple[float, float] = (0.01, 0.1),
        internal: str = "output",
    ):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("ENet is 2D only (its asymmetric 5×1 / 1×5 convolutions)")
        if depth != 3:
            raise ValueError(f"ENet downsamples exactly 3 times; depth must be 3, got {depth}")
        self.divisor = 8
        b, p1, p2 = base_channels, dropout[0], dropout[1]
        kw = dict(norm=norm, internal=internal)
        self.initial = InitialBlock(in_channels, b, norm=norm)
        self.down1 = Bottleneck(b, 4 * b, kind="down", dropout=p1, **kw)
        self.stage1 = nn.Sequential(*[Bottleneck(4 * b, 4 * b, dropout=p1, **kw) for _ in range(4)])
        self.down2 = Bottleneck(4 * b, 8 * b, kind="down", dropout=p2, **kw)
        self.stage2 = nn.Sequential(
            *[Bottleneck(8 * b, 8 * b, kind=k, dilation=d, dropout=p2, **kw) for k, d in _STAGE23]
        )
        self.stage3 = nn.Sequential(
            *[Bottleneck(8 * b, 8 * b, kind=k, dilation=d, dropout=p2, **kw) for k, d in _STAGE23]
        )
        self.up4 = Bottleneck(8 * b, 4 * b, kind="up", dropout=p2, **kw)
        self.stage4 = nn.Sequential(*[Bottleneck(4 * b, 4 * b, dropout=p2, **kw) for _ in range(2)])
        self.up5 = Bottleneck(4 * b, b, kind="up", dropout=p2, **kw)
        self.stage5 = Bottleneck(b, b, dropout=p2, **kw)
        self.fullconv = nn.ConvTranspose2d(b, out_channels, kernel_size=2, stride=2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial(x)
        x, idx1 = self.down1(x)
        x = self.stage1(x)
        x, idx2 = self.down2(x)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, idx2))
        x = self.stage5(self.up5(x, idx1))
        return self.fullconv(x)
