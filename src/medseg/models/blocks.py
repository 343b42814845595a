"""Building blocks shared by every architecture, written once for 2D and 3D.

Layers are picked by ``spatial_dims`` through MONAI's layer factories (``Conv[Conv.CONV, dims]`` …), so
a block is the same code for chromosome images (2D) and CT volumes (3D).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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


def stage_channels(
    base_channels: int, depth: int, multiplier: float = 2.0, max_channels: int | None = None
) -> list[int]:
    """Channels of the ``depth + 1`` encoder stages: base·mᶦ, capped at ``max_channels``."""
    chans = [int(round(base_channels * multiplier**i)) for i in range(depth + 1)]
    return [min(c, max_channels) for c in chans] if max_channels else chans


def training_loss(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, logits)`` of a training step for any model: its ``training_loss`` hook when it has one
    (every :class:`SegmentationNet`; a ``torch.compile`` wrapper is looked through), else
    ``loss_fn(model(image), target)`` for a plain ``nn.Module``."""
    hook = getattr(getattr(model, "_orig_mod", model), "training_loss", None)
    if callable(hook):
        return hook(loss_fn, image, target)
    logits = model(image)
    return loss_fn(logits, target), logits


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

    def training_loss(
        self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], image: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` of one training step: ``loss_fn(self(image), target)`` and the logits.

        The hook through which a model owns what is special about its training loss (a loss over several
        refinement passes, deep supervision): every trainer calls :func:`training_loss` and never checks
        the model's type. ``loss_fn`` may return a scalar or per-sample losses (B,); an override must
        combine its terms linearly so both work.
        """
        logits = self(image)
        return loss_fn(logits, target), logits

    def pad_input(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """``x`` replicate-padded to a multiple of ``divisor`` per spatial axis, and the pads (F.pad order)."""
        pads: list[int] = []
        for s in reversed(x.shape[2:]):
            extra = (-s) % self.divisor
            pads += [extra // 2, extra - extra // 2]
        return (F.pad(x, pads, mode="replicate") if any(pads) else x), pads

    @staticmethod
    def crop_output(out: torch.Tensor, size: Sequence[int], pads: list[int]) -> torch.Tensor:
        """Undo :meth:`pad_input` on an output at the padded input's size."""
        if not any(pads):
            return out
        slices = [slice(None), slice(None)]
        for d, s in enumerate(size):
            lo = pads[2 * (len(size) - 1 - d)]
            slices.append(slice(lo, lo + s))
        return out[tuple(slices)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x, pads = self.pad_input(x)
        return self.crop_output(self.forward_features(x), size, pads)


class EncoderDecoderNet(SegmentationNet):
    """U-Net-shaped networks: ``head(decoder(encoder(x)))`` over ``depth`` poolings.

    Subclasses call :meth:`init_stages` first (it checks ``depth`` and sets the padding divisor and the
    stage widths), then build ``self.encoder``, ``self.decoder`` and ``self.head``.
    """

    def init_stages(
        self,
        spatial_dims: int,
        depth: int,
        base_channels: int,
        max_channels: int | None = None,
        channels: Sequence[int] | None = None,
    ) -> list[int]:
        """Check ``depth``, set the padding divisor and return the ``depth + 1`` stage widths: base·2ᶦ capped
        at ``max_channels``, or ``channels`` as given (then exactly ``depth + 1`` of them)."""
        if depth < 1:
            raise ValueError(f"depth (number of poolings) must be >= 1, got {depth}")
        if channels is not None and len(channels) != depth + 1:
            raise ValueError(f"{depth} poolings need {depth + 1} stage widths, got {list(channels)}")
        self.spatial_dims = spatial_dims
        self.divisor = 2**depth
        self.channels = (
            [int(c) for c in channels]
            if channels is not None
            else stage_channels(base_channels, depth, max_channels=max_channels)
        )
        return self.channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


def check_channels(name: str, values: Sequence[int], expected: int) -> None:
    if len(values) != expected:
        raise ValueError(f"{name} needs {expected} values, got {len(values)}")


# --- attention (SE, spatial) ---


class SqueezeExcitation(nn.Module):
    """Channel attention of Hu et al.'s Squeeze-and-Excitation (RSE-UNet §2.3, Eq. 1–3).

    squeeze ``z_c = mean_{i,j} u_c(i, j)`` (Eq. 1); excitation ``s = σ(W2 δ(W1 z))`` with
    ``W1 ∈ R^{C/r × C}``, ``W2 ∈ R^{C × C/r}``, δ = ReLU, σ = sigmoid (Eq. 2); scale ``x̃_c = s_c u_c`` (Eq. 3).

    Eq. 2 has no bias terms, so ``bias=False`` is the default; ``bias=True`` gives the fully connected layers
    of the SENet code and of MONAI's ``ChannelSELayer`` (same computation, tested against it). The hidden
    width is ``max(1, C // r)`` so narrow test models (C < r) still build.
    """

    def __init__(self, channels: int, *, spatial_dims: int = 2, reduction: int = 16, bias: bool = False):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        hidden = max(1, channels // reduction)
        self.spatial_dims = spatial_dims
        self.fc1 = nn.Linear(channels, hidden, bias=bias)  # W1
        self.fc2 = nn.Linear(hidden, channels, bias=bias)  # W2

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights s (B, C) of Eq. 2."""
        z = x.mean(dim=tuple(range(2, x.ndim)))  # Eq. 1: global average pooling
        return torch.sigmoid(self.fc2(F.relu(self.fc1(z))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.weights(x)
        return x * s.view(*s.shape, *([1] * (x.ndim - 2)))  # Eq. 3


class SpatialAttention(nn.Module):
    """Spatial attention of CBAM (Woo et al., 2018): ``x · σ(conv_k([mean_c x; max_c x]))``.

    The channel-wise mean and max maps are stacked, a k×k(×k) convolution (with bias, no norm) maps them to
    one map, and its sigmoid rescales every position of ``x``. Used in RSE-UNet's ResPath (§2.5).
    """

    def __init__(self, *, spatial_dims: int = 2, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size, padding=kernel_size // 2, bias=True)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 1, *spatial) attention map."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


# --- U-Net variants (attention gate, recurrent blocks) ---


class AttentionGate(nn.Module):
    """Additive attention gate of Attention U-Net (Oktay et al., 2018, §2 "Attention Gates", Eq. 1–2).

    ``q = ψᵀ σ₁(W_xᵀ x + W_gᵀ g + b_g) + b_ψ``, ``α = σ₂(q) ∈ [0, 1]`` (σ₁ = ReLU, σ₂ = sigmoid), and the gate
    returns ``α · x``: the skip ``x`` rescaled per position by one coefficient shared by all its channels.

    The paper computes the gate on the coarser grid of the gating signal ``g`` (``W_x`` strides by 2 and α is
    resampled back); the public AttU-Net code whose parameter count AMFL Table IV reports instead gates with
    the already upsampled decoder features, at the skip's resolution, with 1×1 convs. Both are here:
    ``gate_stride=1`` (default, the public code: W_x, W_g 1×1 conv + norm, ψ 1×1 conv + norm + sigmoid) and
    ``gate_stride=2`` (the paper: W_x a 2×2(×2) stride-2 conv, α bilinearly/trilinearly upsampled to x).
    Convolutions followed by a norm drop their bias (the norm's shift is b_g / b_ψ).
    """

    def __init__(
        self,
        skip_channels: int,
        gate_channels: int,
        inter_channels: int,
        *,
        spatial_dims: int = 2,
        norm: str | None = "batch",
        gate_stride: int = 1,
    ):
        super().__init__()
        if gate_stride not in (1, 2):
            raise ValueError(
                f"gate_stride must be 1 (gate at the skip's grid) or 2 (Oktay's coarse grid), got {gate_stride}"
            )
        conv = Conv[Conv.CONV, spatial_dims]
        bias = norm in (None, "none")
        self.spatial_dims = spatial_dims
        self.gate_stride = gate_stride
        self.w_x = nn.Sequential(
            conv(skip_channels, inter_channels, kernel_size=gate_stride, stride=gate_stride, bias=bias),
            make_norm(norm, inter_channels, spatial_dims),
        )
        self.w_g = nn.Sequential(
            conv(gate_channels, inter_channels, kernel_size=1, bias=bias), make_norm(norm, inter_channels, spatial_dims)
        )
        self.psi = nn.Sequential(conv(inter_channels, 1, kernel_size=1, bias=bias), make_norm(norm, 1, spatial_dims))

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """α of Eq. 2, shape (B, 1, *x.spatial)."""
        theta = self.w_x(x)
        phi = self.w_g(g)
        if phi.shape[2:] != theta.shape[2:]:
            phi = F.interpolate(phi, size=theta.shape[2:], mode="nearest")
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        if alpha.shape[2:] != x.shape[2:]:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            alpha = F.interpolate(alpha, size=x.shape[2:], mode=mode, align_corners=False)
        return alpha

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x, g)


class RecurrentConv(nn.Module):
    """Recurrent convolutional layer of R2U-Net (Alom et al., 2018, §III, Eq. 1–2), unfolded for ``t`` steps.

    Eq. 1: ``O(t) = w_fᵀ x + w_rᵀ h(t−1) + b`` and Eq. 2: ``h(t) = ReLU(O(t))``; here each step also has the
    norm, and ``h(0) = f(w_f x)``. So the convolution runs ``t + 1`` times (t = 2: three times).

    Eq. 1 has separate feed-forward and recurrent weights, but the public R2U-Net code (whose parameter count
    AMFL Table IV reports) feeds ``x + h(t−1)`` to one shared conv, i.e. ``w_f = w_r``. ``weights="shared"``
    (default) is that; ``weights="separate"`` gives Eq. 1 literally (a second 3×3 conv for ``h``).
    """

    def __init__(
        self,
        channels: int,
        *,
        t: int = 2,
        spatial_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
        weights: str = "shared",
    ):
        super().__init__()
        if t < 1:
            raise ValueError(f"t (recurrent steps) must be >= 1, got {t}")
        if weights not in ("shared", "separate"):
            raise ValueError(f"weights must be shared or separate, got {weights!r}")
        self.t = t
        self.weights = weights
        self.conv = ConvNormAct(channels, channels, spatial_dims=spatial_dims, norm=norm, act=act)
        if weights == "separate":
            # w_r: the conv of the recurrent input; norm and act come after the sum w_f x + w_r h.
            self.conv_r = Conv[Conv.CONV, spatial_dims](channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights == "shared":
            h = self.conv(x)
            for _ in range(self.t):
                h = self.conv(x + h)
            return h
        conv, norm, act = self.conv[0], self.conv[1], self.conv[2]
        ff = conv(x)  # w_f x does not change over the steps: x is the same input at every t
        h = act(norm(ff))
        for _ in range(self.t):
            h = act(norm(ff + self.conv_r(h)))
        return h


class RRCNNBlock(nn.Module):
    """Recurrent residual convolutional unit of R2U-Net (Alom et al., 2018, §III, Eq. 3).

    ``x_{l+1} = x_l + F(x_l, w_l)`` with F two stacked :class:`RecurrentConv` layers; a 1×1(×1) conv (with bias,
    as in the public code) first maps the input to ``out_channels`` so that the residual sum is defined.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        t: int = 2,
        spatial_dims: int = 2,
        norm: str | None = "batch",
        act: str | None = "relu",
        weights: str = "shared",
    ):
        super().__init__()
        self.proj = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1)
        kw = dict(t=t, spatial_dims=spatial_dims, norm=norm, act=act, weights=weights)
        self.rcnn = nn.Sequential(RecurrentConv(out_channels, **kw), RecurrentConv(out_channels, **kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return x + self.rcnn(x)


# --- context modules (ARMS Net, CE-Net) ---


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
