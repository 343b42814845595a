"""Context modules of ARMS Net and CE-Net, 2D and 3D: MultiResUNet's Res Path, CE-Net's dense atrous
convolution (DAC) and residual multi-kernel pooling (RMP), and the pyramid pooling (PPM) they build on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.layers import ConvNormAct, check_channels, make_act, make_norm


class ResPathBlock(nn.Module):
    """Residual unit of MultiResUNet's Res Path (Ibtehaz & Rahman 2020), used by ARMS Net §3.3 / Table 1.

    ``norm(act(Conv3×3-norm-act(x) + Conv1×1-norm(x)))``: a 3×3(×3) conv branch and a 1×1(×1) conv shortcut,
    added, then the activation and — as in the MultiResUNet code (``add → Activation → BatchNormalization``)
    — a final norm (``post_norm=False`` drops it). Convs before a norm have no bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        spatial_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
        post_norm: bool = True,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv = ConvNormAct(in_channels, out_channels, spatial_dims=spatial_dims, norm=norm, act=act)
        self.shortcut = ConvNormAct(
            in_channels, out_channels, spatial_dims=spatial_dims, kernel_size=1, norm=norm, act=None
        )
        self.act = make_act(act)
        self.norm = make_norm(norm, out_channels, spatial_dims) if post_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.conv(x) + self.shortcut(x)))


class ResPath(nn.Sequential):
    """``length`` :class:`ResPathBlock` in a chain, replacing one skip connection (ARMS Net Table 1)."""

    def __init__(self, in_channels: int, length: int, out_channels: int | None = None, **kwargs):
        if length < 1:
            raise ValueError(f"a Res Path needs at least one residual block, got {length}")
        out_channels = out_channels or in_channels
        super().__init__(
            *[ResPathBlock(in_channels if i == 0 else out_channels, out_channels, **kwargs) for i in range(length)]
        )


class DAC(nn.Module):
    """Dense Atrous Convolution of CE-Net (Gu et al. 2019, §II-B, Fig. 3).

    Four cascaded branches from rates ``(r1, r2, r3)`` = (1, 3, 5): ``[r1]``, ``[r2 → 1×1]``,
    ``[r1 → r2 → 1×1]``, ``[r1 → r2 → r3 → 1×1]`` (receptive fields 3, 7, 9, 19), each followed by ReLU, summed
    with the input: ``x + Σ branches``. As in the official code the 3×3 convs have biases and no norm, and
    ``share_weights=True`` (default) reuses one conv per rate and one 1×1 conv across branches (the paper's
    figure draws separate ones: ``share_weights=False``). When ``in_channels != out_channels`` a 1×1
    ConvNormAct first projects the input (the official module keeps its 512 channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        spatial_dims: int = 2,
        rates: Sequence[int] = (1, 3, 5),
        share_weights: bool = True,
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        super().__init__()
        check_channels("DAC rates", rates, 3)
        out_channels = out_channels or in_channels
        c = out_channels
        conv = Conv[Conv.CONV, spatial_dims]
        self.rates = tuple(int(r) for r in rates)
        self.proj = (
            nn.Identity()
            if in_channels == c
            else ConvNormAct(in_channels, c, spatial_dims=spatial_dims, kernel_size=1, norm=norm, act=act)
        )
        # Which of the three atrous convs each branch chains; every branch but the first ends with the 1×1.
        self.branch_slots = ((0,), (1,), (0, 1), (0, 1, 2))
        self.share_weights = share_weights

        def atrous(r):
            return conv(c, c, kernel_size=3, padding=r, dilation=r)

        if share_weights:
            self.atrous = nn.ModuleList([atrous(r) for r in self.rates])
            self.conv1x1 = conv(c, c, kernel_size=1)
        else:
            self.branches = nn.ModuleList()
            for i, chain in enumerate(self.branch_slots):
                layers = [atrous(self.rates[j]) for j in chain] + ([conv(c, c, kernel_size=1)] if i else [])
                self.branches.append(nn.Sequential(*layers))
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        out = x
        if self.share_weights:
            for i, chain in enumerate(self.branch_slots):
                y = x
                for j in chain:
                    y = self.atrous[j](y)
                if i:
                    y = self.conv1x1(y)
                out = out + self.act(y)
        else:
            for branch in self.branches:
                out = out + self.act(branch(x))
        return out


def _pool_fn(kind: str, spatial_dims: int):
    return {
        ("max", 1): F.max_pool1d,
        ("max", 2): F.max_pool2d,
        ("max", 3): F.max_pool3d,
        ("avg", 1): F.avg_pool1d,
        ("avg", 2): F.avg_pool2d,
        ("avg", 3): F.avg_pool3d,
    }[(kind, spatial_dims)]


def pool_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], kind: str = "max") -> torch.Tensor:
    """Pooling with TensorFlow/Keras ``padding='same'``: output size ``ceil(size / stride)`` per dimension.

    Padding is split as Keras does (the extra pixel at the end); max pooling ignores padded positions and
    average pooling divides by the number of real pixels in each window.
    """
    pads: list[int] = []
    for s, k, st in zip(reversed(x.shape[2:]), reversed(list(kernel)), reversed(list(stride)), strict=False):
        total = max((math.ceil(s / st) - 1) * st + k - s, 0)
        pads += [total // 2, total - total // 2]
    pool_fn = _pool_fn(kind, x.ndim - 2)
    if kind == "max":
        return pool_fn(F.pad(x, pads, value=float("-inf")), tuple(kernel), tuple(stride))
    summed = pool_fn(F.pad(x, pads), tuple(kernel), tuple(stride))
    ones = F.pad(torch.ones_like(x[:1, :1]), pads)
    return summed / pool_fn(ones, tuple(kernel), tuple(stride))


class PyramidPooling(nn.Module):
    """Pool at several window sizes, reduce each branch by a 1×1 conv, upsample to the input, concatenate.

    The common form of PSPNet's PPM, CE-Net's RMP and ARMS Net's ASSP. Branch ``i`` pools with window
    ``kernel_sizes[i]`` and step ``strides[i]`` (``None``: equal to the window), ``padding="valid"`` (PyTorch
    default: the window does not run past the map; a window larger than the map shrinks to it, i.e. global
    pooling, so CE-Net's 5×5/6×6 windows run on the 4×4 bottom of a 128×128 input) or ``"same"``
    (Keras: output ``ceil(size / step)``). Then a 1×1 conv to ``branch_channels`` (one conv per branch, or
    one shared by all with ``shared_conv``; ``branch_norm_act`` adds norm + act after it), upsampling back to
    the input size (``upsample``: ``nearest``/``bilinear``), and ``[branches…, x]`` concatenated (RMP's order).
    ``fuse``: ``None`` keeps the ``C + n·branch_channels`` channels (CE-Net), ``"conv1x1"``/``"conv3x3"`` a
    ConvNormAct back to ``out_channels`` (default C). Subclasses override :meth:`pool_params` to pick the
    windows from the input size (ARMS Net's ASSP).
    """

    def __init__(
        self,
        in_channels: int,
        kernel_sizes: Sequence[int],
        strides: Sequence[int] | None = None,
        *,
        spatial_dims: int = 2,
        branch_channels: int | None = None,
        shared_conv: bool = False,
        branch_norm_act: bool = True,
        pool: str = "max",
        padding: str = "valid",
        upsample: str = "bilinear",
        fuse: str | None = "conv1x1",
        out_channels: int | None = None,
        norm: str | None = "batch",
        act: str | None = "relu",
        n_branches: int | None = None,
    ):
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be max or avg, got {pool!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be valid or same, got {padding!r}")
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be nearest or bilinear, got {upsample!r}")
        if fuse not in (None, "none", "conv1x1", "conv3x3"):
            raise ValueError(f"fuse must be none, conv1x1 or conv3x3, got {fuse!r}")
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.strides = tuple(int(s) for s in strides) if strides is not None else self.kernel_sizes
        self.n_branches = n_branches or len(self.kernel_sizes)
        self.spatial_dims = spatial_dims
        self.pool = pool
        self.padding = padding
        self.upsample = upsample
        bc = branch_channels or max(1, in_channels // 4)
        self.branch_channels = bc

        def reducer():
            if branch_norm_act:
                return ConvNormAct(in_channels, bc, spatial_dims=spatial_dims, kernel_size=1, norm=norm, act=act)
            return Conv[Conv.CONV, spatial_dims](in_channels, bc, kernel_size=1)

        self.shared_conv = shared_conv
        self.reduce = reducer() if shared_conv else nn.ModuleList([reducer() for _ in range(self.n_branches)])
        cat_channels = in_channels + self.n_branches * bc
        if fuse in (None, "none"):
            self.fuse = nn.Identity()
            self.out_channels = cat_channels
        else:
            self.out_channels = out_channels or in_channels
            self.fuse = ConvNormAct(
                cat_channels,
                self.out_channels,
                spatial_dims=spatial_dims,
                kernel_size=1 if fuse == "conv1x1" else 3,
                norm=norm,
                act=act,
            )
        self.last_pool_sizes: tuple[int, ...] | None = None

    def pool_params(self, size: Sequence[int]) -> list[tuple[int, int]]:
        """(window, step) of each branch for an input of spatial ``size``."""
        return list(zip(self.kernel_sizes, self.strides, strict=False))

    def _pool(self, x: torch.Tensor, k: int, s: int) -> torch.Tensor:
        size = x.shape[2:]
        if self.padding == "same":
            return pool_same(x, [k] * len(size), [s] * len(size), self.pool)
        kernel = tuple(min(k, d) for d in size)  # windows larger than the map: global pooling
        return _pool_fn(self.pool, len(size))(x, kernel, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        params = self.pool_params(size)
        self.last_pool_sizes = tuple(k for k, _ in params)
        mode = self.upsample if self.upsample == "nearest" else ("bilinear" if self.spatial_dims == 2 else "trilinear")
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        outs = []
        for i, (k, s) in enumerate(params):
            reduce = self.reduce if self.shared_conv else self.reduce[i]
            y = reduce(self._pool(x, k, s))
            outs.append(F.interpolate(y, size=size, mode=mode, **kwargs))
        return self.fuse(torch.cat(outs + [x], dim=1))


class PPM(PyramidPooling):
    """Pyramid pooling with window = step, as ARMS Net's UNet(PR) (§4.3: "pooling steps and sizes are 2, 3
    and 4" on the 8×8 bottom), after PSPNet/Ruan et al.: 1×1 ConvNormAct to C/4 per branch, bilinear
    upsampling, concatenation, and (``fuse="conv1x1"``) a 1×1 ConvNormAct back to C."""

    def __init__(self, in_channels: int, sizes: Sequence[int] = (2, 3, 4), **kwargs):
        kwargs.setdefault("upsample", "bilinear")
        super().__init__(in_channels, sizes, sizes, **kwargs)


class RMP(PyramidPooling):
    """Residual Multi-kernel Pooling of CE-Net (Gu et al. 2019, §II-C, Fig. 4), as the official code.

    Max pooling with windows = steps 2, 3, 5, 6; one 1×1 conv (with bias, no norm) shared by the branches
    maps each to a single channel; bilinear upsampling; output ``[4 maps, x]``: C + 4 channels.
    """

    def __init__(self, in_channels: int, sizes: Sequence[int] = (2, 3, 5, 6), **kwargs):
        kwargs = {
            "branch_channels": 1,
            "shared_conv": True,
            "branch_norm_act": False,
            "pool": "max",
            "upsample": "bilinear",
            "fuse": None,
            **kwargs,
        }
        super().__init__(in_channels, sizes, sizes, **kwargs)
