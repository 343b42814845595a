"""NestedUNet / UNet++ (Zhou et al., 2018/2020), the generator of AMFL (Mei et al., §II-A-1, Eq. 1–2).

Node ``X^{i,j}`` sits at down-sampling level ``i`` (0 = full resolution) and is the ``j``-th convolution block
along the skip pathway of that level. Its output is (AMFL Eq. 1, Zhou et al. Eq. 1)::

    x^{i,0} = N(D(x^{i-1,0}))                                (j = 0: the encoder; x^{0,0} = N(image))
    x^{i,j} = N([x^{i,0}, …, x^{i,j-1}, U(x^{i+1,j-1})])      (j > 0: dense skips + the upsampled node below)

with N a nested convolution block (two 3×3 Conv-BN-ReLU, padding 1, stride 1), D a 2×2 max-pooling, U a ×2
up-sampling and [·] channel concatenation. The final output is a 1×1 convolution of ``x^{0,depth}``.

Filters ``f = {64, 128, 256, 512, 1024}`` (``base_channels`` = 64, doubled per level). Channels of node
``ij`` (AMFL Eq. 2 lists ``M_ij = O_ij = f(i)``):

* ``I_{i,0} = f(i-1)`` (``in_channels`` for ``i = 0``), ``I_{i,j} = j·f(i) + f(i+1)`` for ``j > 0``.

Ambiguities and choices:

* AMFL's printed Eq. 1 up-samples the same-level nodes ``x^{i,k}`` and writes ``x^{i+1,j} - 1``; both are
  typesetting slips of Zhou et al.'s Eq. 1, which is what is implemented above. Its Eq. 2 gives
  ``I_ij = f(i)·j + f(i)`` for ``j > 0`` and ``f(i)`` for ``j = 0``; the concatenation actually holds j
  same-level maps of f(i) channels plus the up-sampled map of f(i+1) channels, and the encoder node receives
  the previous level's f(i-1) channels, which is what the public NestedUNet (4uiiurz1/pytorch-nested-unet)
  builds and what reproduces Table IV's 36.63M parameters.
* Up-sampling ``U``: "2×2 up-sampling" without weights, i.e. bilinear ×2 interpolation with
  ``align_corners=True`` as in that public code (``upsample="bilinear"``, trilinear in 3D) or ``"nearest"``.
* Convolution bias: the public code keeps a bias before every BatchNorm (redundant); medseg drops it
  (``conv_bias=False``, 36,622,532 parameters with 3 input channels and 4 classes). ``conv_bias=True`` gives
  36,629,828 = Table IV's 36.63M exactly.
* ``deep_supervision`` (default off, as AMFL uses the last node's output): 1×1 heads on ``x^{0,1..depth}``
  and the returned logits are their mean (Zhou et al.'s "accurate mode" ensemble). medseg losses take one
  logit map, so the heads are trained through that mean, not each by its own loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import SegmentationNet, make_act, make_norm, make_pool, stage_channels
from medseg.models.registry import register_model


class NestedConvBlock(nn.Sequential):
    """N(·): Conv 3×3 (pad 1, stride 1) → norm → act, twice, with I → M → O channels (AMFL Eq. 2)."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
        bias: bool = False,
    ):
        conv = Conv[Conv.CONV, spatial_dims]
        has_norm = norm not in (None, "none")
        super().__init__(
            conv(in_channels, mid_channels, 3, stride=1, padding=1, bias=bias or not has_norm),
            make_norm(norm, mid_channels, spatial_dims),
            make_act(act),
            conv(mid_channels, out_channels, 3, stride=1, padding=1, bias=bias or not has_norm),
            make_norm(norm, out_channels, spatial_dims),
            make_act(act),
        )


@register_model("nested_unet")
class NestedUNet(SegmentationNet):
    """UNet++ generator of AMFL (§II-A-1, Eq. 1–2); see the module docstring for the node equations.

    Args:
        in_channels: image channels (1 for the grey chromosome images; Table IV counts with 3).
        out_channels: classes C.
        spatial_dims: 2 or 3.
        depth: down-sampling levels (4: nodes X^{0..4,·}, filters 64…1024).
        base_channels: f(0) (64); f(i) = base·2^i.
        norm, act: of the nested blocks (``batch``/``relu`` as the paper).
        upsample: ``bilinear`` (align_corners=True, as the public code; trilinear in 3D) or ``nearest``.
        deep_supervision: heads on every x^{0,j}, output their mean logits (default False = last node only).
        conv_bias: keep the conv bias before the norm (True reproduces Table IV's count exactly).
        max_channels: optional cap on f(i).
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
        upsample: str = "bilinear",
        deep_supervision: bool = False,
        conv_bias: bool = False,
        max_channels: int | None = None,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth (number of poolings) must be >= 1, got {depth}")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"unknown upsampling {upsample!r}; use bilinear or nearest")
        self.spatial_dims = spatial_dims
        self.divisor = 2**depth
        self.depth = depth
        self.deep_supervision = deep_supervision
        self.upsample = upsample
        f = stage_channels(base_channels, depth, max_channels=max_channels)
        self.channels = f
        self.pool = make_pool(spatial_dims, "max")
        block = dict(spatial_dims=spatial_dims, norm=norm, act=act, bias=conv_bias)
        # nodes[i][j] = X^{i,j}; level i has depth + 1 - i nodes.
        self.nodes = nn.ModuleList()
        for i in range(depth + 1):
            level = nn.ModuleList()
            for j in range(depth + 1 - i):
                if j == 0:
                    cin = in_channels if i == 0 else f[i - 1]
                else:
                    cin = j * f[i] + f[i + 1]
                level.append(NestedConvBlock(cin, f[i], f[i], **block))
            self.nodes.append(level)
        conv1 = Conv[Conv.CONV, spatial_dims]
        n_heads = depth if deep_supervision else 1
        self.heads = nn.ModuleList(conv1(f[0], out_channels, kernel_size=1) for _ in range(n_heads))

    def up(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        return F.interpolate(x, scale_factor=2, mode=mode, align_corners=True)

    def node_outputs(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """All x^{i,j}, computed column by column of the encoder (as Zhou et al.'s forward pass)."""
        out: list[list[torch.Tensor]] = [[] for _ in range(self.depth + 1)]
        for i in range(self.depth + 1):
            # x^{i,0}: the encoder node; then every node x^{i-k,k} on the anti-diagonal it completes.
            out[i].append(self.nodes[i][0](x if i == 0 else self.pool(out[i - 1][0])))
            for j in range(1, i + 1):
                level = i - j
                out[level].append(self.nodes[level][j](torch.cat([*out[level][:j], self.up(out[level + 1][j - 1])], 1)))
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        top = self.node_outputs(x)[0]  # x^{0,0..depth}
        if not self.deep_supervision:
            return self.heads[0](top[-1])
        return torch.stack([head(t) for head, t in zip(self.heads, top[1:], strict=True)]).mean(0)
