"""The layers every network is built from, written once for 2D and 3D: norm, activation, conv-norm-act,
double conv, pooling, ×2 upsampling (picked by ``spatial_dims`` through MONAI's layer factories).

:mod:`medseg.models.blocks` re-exports them beside the shared network bases and attention blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    table = {
        "relu": (Act.RELU, {"inplace": True}),
        "leakyrelu": (Act.LEAKYRELU, {"negative_slope": 0.01, "inplace": True}),
        "elu": (Act.ELU, {"inplace": True}),
        "prelu": (Act.PRELU, {}),
    }
    if act not in table:
        raise ValueError(f"unknown activation {act!r}; use relu, leakyrelu, elu, prelu or none")
    name, kwargs = table[act]
    return Act[name](**kwargs)


class ConvNormAct(nn.Sequential):
    """Convolution → normalisation → activation (→ dropout). Bias is dropped when a norm follows."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: str | None = "batch",
        act: str | None = "relu",
        dropout: float = 0.0,
    ):
        padding = dilation * (kernel_size - 1) // 2
        conv = Conv[Conv.CONV, spatial_dims](
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=norm in (None, "none"),
        )
        layers: list[nn.Module] = [conv, make_norm(norm, out_channels, spatial_dims), make_act(act)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout) if spatial_dims == 2 else nn.Dropout3d(dropout))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """The U-Net stage: two 3×3(×3) ConvNormAct (Ronneberger et al., 2015)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
        dropout: float = 0.0,
        mid_channels: int | None = None,
    ):
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
    """×2 upsampling: a 2×2 transposed convolution (the papers' choice) or interpolation + 1×1 conv.

    ``upconv`` is the "up_conv" of the public U-Net/AttU-Net/R2U-Net code (LeeJunHyun/Image_Segmentation)
    whose parameter counts AMFL Table IV reports: nearest ×2 then a 3×3(×3) ConvNormAct (``norm``/``act``,
    used by this mode only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        mode: str = "transpose",
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        super().__init__()
        self.mode = mode
        if mode == "transpose":
            self.op = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        elif mode in ("bilinear", "nearest"):
            self.op = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1)
        elif mode == "upconv":
            self.op = ConvNormAct(in_channels, out_channels, spatial_dims=spatial_dims, norm=norm, act=act)
        else:
            raise ValueError(f"unknown upsampling {mode!r}; use transpose, bilinear, nearest or upconv")
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.op(x)
        if self.mode == "upconv":
            return self.op(F.interpolate(x, scale_factor=2, mode="nearest"))
        interp = "nearest" if self.mode == "nearest" else ("bilinear" if self.spatial_dims == 2 else "trilinear")
        kwargs = {} if interp == "nearest" else {"align_corners": False}
        return self.op(F.interpolate(x, scale_factor=2, mode=interp, **kwargs))


def check_channels(name: str, values: Sequence[int], expected: int) -> None:
    if len(values) != expected:
        raise ValueError(f"{name} needs {expected} values, got {len(values)}")
