"""ARMS Net (Wang et al. 2021, "Overlapping chromosome segmentation based on Adaptive Receptive field
Multi-Scale network", BSPC 70:102811) and the ablation networks of its Table 2.

What the paper gives (§3, Fig. 3–5, Tables 1–5) and how it is read here:

* §3.1 / Table 3 — a U-Net with 4 poolings (3 and 5 compared): ``depth`` (default 4).
* Channels — the paper never lists the encoder/decoder widths. Table 1 gives the Res Path outputs as
  32/64/128/256 and a Res Path keeps the width of the skip it replaces, so the encoder stages are
  32, 64, 128, 256 and the bottom 512: ``base_channels=32`` (also the width of MultiResUNet's U-Net
  baseline, where Res Path and Table 1's 4/3/2/1 lengths come from). The decoder is the U-Net's (2×2
  transposed conv, concatenation with the Res Path output, two 3×3 ConvNormAct).
* §3.3 / Table 1 — Res Path I–IV replace the skips, with 4/3/2/1 residual blocks (3×3 conv + 1×1 conv
  shortcut, :class:`~medseg.models.context_blocks.ResPath`); for other depths the lengths are ``depth - i`` at level i.
* Table 2 — the bottom of the U-Net (its two standard convs) becomes two modules: the first is a standard
  conv, CE-Net's DAC or AMAC; the second a standard conv, PPM or ASSP (``bottom=(first, second)``). The
  first module takes the stage's input channels (256) to the bottom width (512).
* §3.2.1 / Fig. 4 — AMAC: four branches, branch l a 3×3 atrous conv of rate γ_l = ⌈√(m·n)/2^l⌉ computed from
  the ACTUAL bottom map m×n at every forward pass (8×8 → 4, 2, 1, 0.5; 16×16 → 8, 4, 2, 1). A raw rate below 1
  is replaced by 3 in the paper's 8×8 example "to distinguish it from the existing rates"; generalised here as
  the smallest positive integer not yet used (= 3 there; ``rate_replacement`` forces a constant). Every
  branch with γ > 1 ends with a 1×1 conv ("linearly corrected": no norm, no activation); the branches are
  added to the input. **Branch composition** (Fig. 4 is not in the text): the branches are read as PARALLEL
  single atrous convs (``amac_mode="parallel"``, default), because (i) the text lists one rate per branch,
  (ii) the authors want "a combination of continuous and small atrous rates" — rates 1, 2, 3, 4 give the
  parallel receptive fields 3, 5, 7, 9, the largest just covering the 8×8 map, which is the "receptive field
  adaptively matching the feature map" argument — and (iii) they fault DAC for fields (up to 19) far larger
  than the map, which a DAC-like cascade of 1+2+3+4 (field 21) would repeat. ``amac_mode="cascade"`` is the
  DAC-like alternative: branch k chains the k smallest rates (one shared conv per rate slot, as DAC's code).
  Each atrous conv is followed by the norm and the activation; the sum has none (as DAC). When the input and
  output widths differ the input is added through a 1×1 ConvNormAct projection (Fig. 4 labels ``c`` input
  and ``Channel`` output channels).
* §3.2.2 / Fig. 5 — ASSP: three branches, pooling step 2 and window ⌈√(m·n)/2^l⌉ (8×8 → 4, 2, 1; a window of
  1 is replaced by 3, generalised as the smallest unused integer ≥ 2). The fixed step 2 is meant to make the
  pooled map exactly half the input, which is Keras ``padding='same'`` pooling (output ⌈m/2⌉ for every
  window): that is used here. Max pooling (``pool``), a 1×1 ConvNormAct to C/4 channels per branch
  ("dimensionally reduced"; ``pyramid_channels``), nearest upsampling back to m×n (Keras ``UpSampling2D``'s
  default; ``pyramid_upsample``), concatenation with the input. The paper does not say how the C + 3·C/4
  channels return to C; ``fuse="conv1x1"`` (default) adds a 1×1 ConvNormAct to C, ``"conv3x3"`` a 3×3 one,
  ``"none"`` feeds the concatenation to the decoder (as CE-Net does with RMP's C + 4 channels).
* §4.3 — UNet(PR)'s PPM: windows = steps 2, 3, 4 (valid pooling), otherwise as ASSP.
* Table 5's "UNet(AAR)₁₂₈" — rates and windows designed for a 128×128 input while running at 256×256:
  ``input_size_for_rates=128`` (the design bottom map is input_size / 2^depth). ``None`` (default) = adapt.
* ARMS Net = UNet(AAR) trained with AS_wBCE (:mod:`medseg.losses.weighted`); the loss is set in the config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import (
    ConvNormAct,
    SegmentationNet,
    UpSample,
    make_act,
    make_norm,
    make_pool,
    stage_channels,
)
from medseg.models.context_blocks import DAC, PPM, PyramidPooling, ResPath
from medseg.models.registry import register_model
from medseg.models.unet import UNetDecoder, UNetEncoder

BOTTOM_FIRST = ("conv", "dac", "amac")
BOTTOM_SECOND = ("conv", "ppm", "assp")
_EPS = 1e-9


def adaptive_values(
    size: Sequence[float], n_branches: int, *, kind: str = "rate", replacement: int | None = None
) -> tuple[int, ...]:
    """The paper's ⌈√(m·n) / 2^l⌉ for l = 1..n, with its replacement rule (ARMS Net §3.2.1, §3.2.2).

    ``kind="rate"`` (AMAC): a raw value √(m·n)/2^l below 1 is invalid; ``kind="pool"`` (ASSP): a window
    ⌈·⌉ of 1 is invalid. Invalid values become ``replacement`` if given, else the smallest integer not yet used
    (≥ 1 for rates, ≥ 2 for windows) — 3 in both of the paper's 8×8 examples. For 3D maps √(m·n) becomes
    the geometric mean of the sizes.
    """
    if kind not in ("rate", "pool"):
        raise ValueError(f"kind must be rate or pool, got {kind!r}")
    g = math.prod(float(s) for s in size) ** (1.0 / len(size))
    lowest = 1 if kind == "rate" else 2
    values: list[int | None] = []
    for level in range(1, n_branches + 1):
        raw = g / 2**level
        value = math.ceil(raw - _EPS)
        ok = raw >= 1 - _EPS if kind == "rate" else value >= 2
        values.append(value if ok else None)
    used = {v for v in values if v is not None}
    out = []
    for v in values:
        if v is None:
            if replacement is not None:
                v = int(replacement)
            else:
                v = lowest
                while v in used:
                    v += 1
            used.add(v)
        out.append(v)
    return tuple(out)


def _design_size(input_size: int | Sequence[int] | None, depth: int, spatial_dims: int):
    if input_size is None:
        return None
    sizes = [input_size] * spatial_dims if isinstance(input_size, (int, float)) else list(input_size)
    if len(sizes) != spatial_dims:
        raise ValueError(f"input_size_for_rates needs {spatial_dims} sizes, got {len(sizes)}")
    return tuple(s / 2**depth for s in sizes)


class AMAC(nn.Module):
    """Adaptive Multi Atrous Convolution (ARMS Net §3.2.1, Fig. 4); see the module docstring.

    The conv weights do not depend on the dilation, so the rates are recomputed from the input size at every
    call (or from ``design_size``, a fixed map size, for Table 5's UNet(AAR)₁₂₈). After a forward pass
    ``last_rates`` holds the dilations used and ``last_pointwise`` which branches applied their 1×1 conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        spatial_dims: int = 2,
        n_branches: int = 4,
        mode: str = "parallel",
        design_size: Sequence[float] | None = None,
        replacement: int | None = None,
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        super().__init__()
        if mode not in ("parallel", "cascade"):
            raise ValueError(f"AMAC mode must be parallel or cascade, got {mode!r}")
        if n_branches < 1:
            raise ValueError(f"AMAC needs at least one branch, got {n_branches}")
        out_channels = out_channels or in_channels
        conv = Conv[Conv.CONV, spatial_dims]
        bias = norm in (None, "none")
        self.spatial_dims = spatial_dims
        self.n_branches = n_branches
        self.mode = mode
        self.design_size = None if design_size is None else tuple(design_size)
        self.replacement = replacement
        # parallel: conv l belongs to branch l; cascade: conv j is the j-th smallest rate's, shared by branches.
        self.atrous = nn.ModuleList(
            [
                conv(
                    in_channels if (mode == "parallel" or j == 0) else out_channels,
                    out_channels,
                    kernel_size=3,
                    bias=bias,
                )
                for j in range(n_branches)
            ]
        )
        self.norms = nn.ModuleList([make_norm(norm, out_channels, spatial_dims) for _ in range(n_branches)])
        self.act = make_act(act)
        self.pointwise = nn.ModuleList([conv(out_channels, out_channels, kernel_size=1) for _ in range(n_branches)])
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else ConvNormAct(in_channels, out_channels, spatial_dims=spatial_dims, kernel_size=1, norm=norm, act=None)
        )
        self.last_rates: tuple[int, ...] | None = None
        self.last_pointwise: tuple[bool, ...] | None = None

    def rates_for(self, size: Sequence[int]) -> tuple[int, ...]:
        """Atrous rate of each branch for a feature map of spatial ``size`` (``design_size`` if set)."""
        return adaptive_values(
            self.design_size or tuple(size), self.n_branches, kind="rate", replacement=self.replacement
        )

    def _atrous(self, j: int, x: torch.Tensor, rate: int) -> torch.Tensor:
        conv = self.atrous[j]
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[self.spatial_dims]
        return self.act(self.norms[j](fn(x, conv.weight, conv.bias, padding=rate, dilation=rate)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rates = self.rates_for(x.shape[2:])
        out = self.shortcut(x)
        used = []
        if self.mode == "parallel":
            for j, rate in enumerate(rates):
                y = self._atrous(j, x, rate)
                if rate > 1:
                    y = self.pointwise[j](y)
                out = out + y
                used.append(rate > 1)
        else:
            order = sorted(range(self.n_branches), key=lambda i: rates[i])  # slots by increasing rate
            y = x
            for k, slot in enumerate(order):  # branch k = chain of the k+1 smallest rates
                y = self._atrous(k, y, rates[slot])
                last = rates[slot]
                out = out + (self.pointwise[k](y) if last > 1 else y)
                used.append(last > 1)
            rates = tuple(rates[s] for s in order)
        self.last_rates = tuple(rates)
        self.last_pointwise = tuple(used)
        return out


class ASSP(PyramidPooling):
    """Adaptive Same Stride Pooling (ARMS Net §3.2.2, Fig. 5); see the module docstring.

    Windows ⌈√(m·n)/2^l⌉ (l = 1..``n_branches``) of the input size — or of ``design_size`` — at every call,
    step ``stride`` (2), Keras-'same' pooling. ``last_pool_sizes`` holds the windows of the last call.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        n_branches: int = 3,
        stride: int = 2,
        design_size: Sequence[float] | None = None,
        replacement: int | None = None,
        **kwargs,
    ):
        kwargs = {"padding": "same", "upsample": "nearest", "pool": "max", "fuse": "conv1x1", **kwargs}
        super().__init__(in_channels, (), (), n_branches=n_branches, **kwargs)
        self.stride = stride
        self.design_size = None if design_size is None else tuple(design_size)
        self.replacement = replacement

    def pool_params(self, size: Sequence[int]) -> list[tuple[int, int]]:
        sizes = adaptive_values(
            self.design_size or tuple(size), self.n_branches, kind="pool", replacement=self.replacement
        )
        return [(k, self.stride) for k in sizes]


def _skip_paths(
    skip: str, channels: list[int], respath_lengths: Sequence[int] | None, post_norm: bool, common: dict
) -> nn.ModuleList:
    """One skip connection per encoder level, shallow first: a Res Path of ``respath_lengths`` blocks (default
    ``depth, …, 1``) or the plain U-Net skip."""
    depth = len(channels) - 1
    if skip == "respath":
        lengths = list(respath_lengths) if respath_lengths is not None else list(range(depth, 0, -1))
        if len(lengths) != depth:
            raise ValueError(f"respath_lengths needs {depth} values (one per skip), got {len(lengths)}")
        return nn.ModuleList(
            [ResPath(ch, n, post_norm=post_norm, **common) for ch, n in zip(channels[:-1], lengths, strict=True)]
        )
    return nn.ModuleList([nn.Identity() for _ in channels[:-1]])


@register_model("arms_net")
class ARMSNet(SegmentationNet):
    """ARMS Net and its Table 2 ablations (U-Net + Res Path + bottom modules); see the module docstring.

    Args:
        in_channels, out_channels, spatial_dims: as every medseg model (1 grey channel, 4 classes, 2D).
        depth: number of poolings (4; Table 3 compares 3 and 5).
        base_channels: first stage width (32: Table 1's Res Path I width); stages double up to the bottom.
        norm, act, upsample: as :class:`~medseg.models.unet.UNet`.
        skip: ``respath`` (Table 1) or ``plain`` (U-Net skip, Table 2 row 1).
        respath_lengths: residual blocks per level, shallow first (default ``depth, …, 1``: 4/3/2/1).
        respath_post_norm: MultiResUNet's norm after each Res Path block's activation.
        bottom: ``(first, second)``: first in ``conv``/``dac``/``amac``, second in ``conv``/``ppm``/``assp``.
        input_size_for_rates: design AMAC rates and ASSP windows for this input size (Table 5's
            UNet(AAR)₁₂₈); ``None`` adapts to the actual size.
        amac_branches, amac_mode, rate_replacement: AMAC's branch count (4), ``parallel``/``cascade`` and a
            constant replacing invalid rates/windows (``None``: smallest unused, i.e. 3 at 8×8).
        assp_branches, assp_stride: ASSP's branch count (3) and pooling step (2).
        ppm_sizes: PPM windows = steps (2, 3, 4; §4.3).
        pool, pyramid_upsample, pyramid_channels, fuse: pooling kind (``max``), upsampling
            (``nearest``), per-branch width (C/4) and channel fusion (``conv1x1``) of ASSP and PPM.
        dac_rates, dac_share_weights: CE-Net DAC settings for UNet(DAR).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
        act: str = "relu",
        upsample: str = "transpose",
        skip: str = "respath",
        respath_lengths: Sequence[int] | None = None,
        respath_post_norm: bool = True,
        bottom: Sequence[str] = ("amac", "assp"),
        input_size_for_rates: int | Sequence[int] | None = None,
        amac_branches: int = 4,
        amac_mode: str = "parallel",
        rate_replacement: int | None = None,
        assp_branches: int = 3,
        assp_stride: int = 2,
        ppm_sizes: Sequence[int] = (2, 3, 4),
        pool: str = "max",
        pyramid_upsample: str = "nearest",
        pyramid_channels: int | None = None,
        fuse: str | None = "conv1x1",
        dac_rates: Sequence[int] = (1, 3, 5),
        dac_share_weights: bool = True,
        max_channels: int | None = None,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth (number of poolings) must be >= 1, got {depth}")
        if skip not in ("respath", "plain"):
            raise ValueError(f"skip must be respath or plain, got {skip!r}")
        bottom = tuple(bottom)
        if len(bottom) != 2 or bottom[0] not in BOTTOM_FIRST or bottom[1] not in BOTTOM_SECOND:
            raise ValueError(
                f"bottom must be (first, second) with first in {BOTTOM_FIRST} and second in "
                f"{BOTTOM_SECOND}, got {bottom!r}"
            )
        self.spatial_dims = spatial_dims
        self.divisor = 2**depth
        self.depth = depth
        self.bottom_modules = bottom
        channels = stage_channels(base_channels, depth, max_channels=max_channels)
        self.channels = channels
        common = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        design = _design_size(input_size_for_rates, depth, spatial_dims)

        self.encoder = UNetEncoder(in_channels, channels[:-1], **common)
        self.pool = make_pool(spatial_dims)

        c_in, c = channels[-2], channels[-1]
        if bottom[0] == "conv":
            first: nn.Module = ConvNormAct(c_in, c, **common)
        elif bottom[0] == "dac":
            first = DAC(c_in, c, rates=dac_rates, share_weights=dac_share_weights, **common)
        else:
            first = AMAC(
                c_in,
                c,
                n_branches=amac_branches,
                mode=amac_mode,
                design_size=design,
                replacement=rate_replacement,
                **common,
            )
        pyramid = dict(branch_channels=pyramid_channels, pool=pool, upsample=pyramid_upsample, fuse=fuse, **common)
        if bottom[1] == "conv":
            second: nn.Module = ConvNormAct(c, c, **common)
            bottom_out = c
        elif bottom[1] == "ppm":
            second = PPM(c, ppm_sizes, **pyramid)
            bottom_out = second.out_channels
        else:
            second = ASSP(
                c,
                n_branches=assp_branches,
                stride=assp_stride,
                design_size=design,
                replacement=rate_replacement,
                **pyramid,
            )
            bottom_out = second.out_channels
        self.bottom = nn.Sequential(first, second)

        self.skips = _skip_paths(skip, channels, respath_lengths, respath_post_norm, common)
        self.decoder = UNetDecoder(channels, upsample=upsample, **common)
        if bottom_out != c:  # fuse="none": the decoder's first upsampling takes the wider concatenation
            self.decoder.ups[0] = UpSample(
                bottom_out, channels[-2], spatial_dims=spatial_dims, mode=upsample, norm=norm, act=act
            )
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1)

    @property
    def first(self) -> nn.Module:
        """The first bottom module (conv, DAC or AMAC)."""
        return self.bottom[0]

    @property
    def second(self) -> nn.Module:
        """The second bottom module (conv, PPM or ASSP)."""
        return self.bottom[1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        deepest = self.bottom(self.pool(feats[-1]))
        skips = [s(f) for s, f in zip(self.skips, feats, strict=True)]
        return self.head(self.decoder(feats + [deepest], skips))


def _variant(kwargs: dict, skip: str, bottom: tuple[str, str]) -> ARMSNet:
    kwargs.setdefault("skip", skip)
    kwargs.setdefault("bottom", bottom)
    return ARMSNet(**kwargs)


@register_model("unet_r")
def unet_r(**kwargs) -> ARMSNet:
    """ARMS Net Table 2 row 2, UNet(R): U-Net with Res Path skips, standard bottom convs."""
    return _variant(kwargs, "respath", ("conv", "conv"))


@register_model("unet_pr")
def unet_pr(**kwargs) -> ARMSNet:
    """Table 2 row 3, UNet(PR): Res Path + PPM (windows = steps 2, 3, 4; §4.3) as the second bottom module."""
    return _variant(kwargs, "respath", ("conv", "ppm"))


@register_model("unet_ar")
def unet_ar(**kwargs) -> ARMSNet:
    """Table 2 row 4, UNet(AR): Res Path + ASSP."""
    return _variant(kwargs, "respath", ("conv", "assp"))


@register_model("unet_dar")
def unet_dar(**kwargs) -> ARMSNet:
    """Table 2 row 5, UNet(DAR): Res Path + CE-Net's DAC + ASSP."""
    return _variant(kwargs, "respath", ("dac", "assp"))


@register_model("unet_aar")
def unet_aar(**kwargs) -> ARMSNet:
    """Table 2 row 6, UNet(AAR): Res Path + AMAC + ASSP — ARMS Net's network (ARMS Net adds the AS_wBCE loss)."""
    return _variant(kwargs, "respath", ("amac", "assp"))
