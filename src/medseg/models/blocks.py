"""Building blocks shared by every architecture, written once for 2D and 3D.

Layers are picked by ``spatial_dims`` through MONAI's layer factories (``Conv[Conv.CONV, dims]`` …), so
a block is the same code for chromosome images (2D) and CT volumes (3D).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Act, Conv, Norm, Pool
from torch import nn


def make_norm(norm: str | None, channels: int, spatial_dims: int) -> nn.Module:
    """``batch``, ``instance``, ``group`` (8 groups or fewer) or ``none``."""
    if norm is None or norm == "none":
        return nn.Identity()
    if norm == "batch":
        return Norm[Norm.BATCH, spatial_dims](channels)
    if norm == "instance":
        return Norm[Norm.INSTANCE, spatial_dims](channels, affine=True)
    if norm == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown norm {norm!r}; use batch, instance, group or none")


def make_act(act: str | None) -> nn.Module:
    """``relu``, ``leakyrelu`` (slope 0.01), ``elu``, ``prelu`` or ``none``."""
    if act is None or act == "none":
        return nn.Identity()
    table = {"relu": (Act.RELU, {"inplace": True}), "leakyrelu": (Act.LEAKYRELU, {"negative_slope": 0.01, "inplace": True}),
             "elu": (Act.ELU, {"inplace": True}), "prelu": (Act.PRELU, {})}
    if act not in table:
        raise ValueError(f"unknown activation {act!r}; use relu, leakyrelu, elu, prelu or none")
    name, kwargs = table[act]
    return Act[name](**kwargs)


class ConvNormAct(nn.Sequential):
    """Convolution → normalisation → activation (→ dropout). Bias is dropped when a norm follows."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int = 2, kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1, norm: str | None = "batch", act: str | None = "relu",
                 dropout: float = 0.0):
        padding = dilation * (kernel_size - 1) // 2
        conv = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                             dilation=dilation, bias=norm in (None, "none"))
        layers: list[nn.Module] = [conv, make_norm(norm, out_channels, spatial_dims), make_act(act)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout) if spatial_dims == 2 else nn.Dropout3d(dropout))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """The U-Net stage: two 3×3(×3) ConvNormAct (Ronneberger et al., 2015)."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int = 2, norm: str | None = "batch",
                 act: str | None = "relu", dropout: float = 0.0, mid_channels: int | None = None):
        mid = mid_channels or out_channels
        super().__init__(
            ConvNormAct(in_channels, mid, spatial_dims=spatial_dims, norm=norm, act=act),
            ConvNormAct(mid, out_channels, spatial_dims=spatial_dims, norm=norm, act=act, dropout=dropout),
        )


def make_pool(spatial_dims: int, kind: str = "max") -> nn.Module:
    """2×2(×2) max or average pooling with stride 2."""
    pool = Pool[Pool.MAX if kind == "max" else Pool.AVG, spatial_dims]
    return pool(kernel_size=2, stride=2)


class UpSample(nn.Module):
    """×2 upsampling: a 2×2 transposed convolution (the papers' choice) or interpolation + 1×1 conv."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int = 2, mode: str = "transpose"):
        super().__init__()
        self.mode = mode
        if mode == "transpose":
            self.op = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        elif mode in ("bilinear", "nearest"):
            self.op = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1)
        else:
            raise ValueError(f"unknown upsampling {mode!r}; use transpose, bilinear or nearest")
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.op(x)
        interp = "nearest" if self.mode == "nearest" else ("bilinear" if self.spatial_dims == 2 else "trilinear")
        kwargs = {} if interp == "nearest" else {"align_corners": False}
        return self.op(F.interpolate(x, scale_factor=2, mode=interp, **kwargs))


def stage_channels(base_channels: int, depth: int, multiplier: float = 2.0, max_channels: int | None = None) -> list[int]:
    """Channels of the ``depth + 1`` encoder stages: base·mᶦ, capped at ``max_channels``."""
    chans = [int(round(base_channels * multiplier**i)) for i in range(depth + 1)]
    return [min(c, max_channels) for c in chans] if max_channels else chans


class SegmentationNet(nn.Module):
    """Base of every medseg network: logits for C classes at the input's size.

    Subclasses set ``self.divisor`` (2**poolings) and implement ``forward_features``. ``forward`` pads the
    input up to a multiple of the divisor (replicate padding) and crops the logits back, so any image size
    works, e.g. the Pommier set's raw 94×93 as well as the papers' 128×128.
    """

    divisor: int = 1
    spatial_dims: int = 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        pads: list[int] = []
        for s in reversed(size):
            extra = (-s) % self.divisor
            pads += [extra // 2, extra - extra // 2]
        if any(pads):
            x = F.pad(x, pads, mode="replicate")
        out = self.forward_features(x)
        if any(pads):
            slices = [slice(None), slice(None)]
            for d, s in enumerate(size):
                lo = pads[2 * (len(size) - 1 - d)]
                slices.append(slice(lo, lo + s))
            out = out[tuple(slices)]
        return out


def check_channels(name: str, values: Sequence[int], expected: int) -> None:
    if len(values) != expected:
        raise ValueError(f"{name} needs {expected} values, got {len(values)}")
