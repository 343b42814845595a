"""Building blocks shared by every architecture, written once for 2D and 3D: the network bases, attention
and recurrent blocks; the layers (:mod:`medseg.models.layers`) and context modules
(:mod:`medseg.models.context_blocks`) are re-exported from here.

Layers are picked by ``spatial_dims`` through MONAI's layer factories (``Conv[Conv.CONV, dims]`` …), so
a block is the same code for chromosome images (2D) and CT volumes (3D).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.context_blocks import DAC, PPM, RMP, ResPath, pool_same
from medseg.models.layers import (
    ConvNormAct,
    DoubleConv,
    UpSample,
    check_channels,
    make_act,
    make_norm,
    make_pool,
)

# The layers (medseg.models.layers) and context modules (medseg.models.context_blocks) are re-exported here.
__all__ = [
    "DAC",
    "PPM",
    "RMP",
    "AttentionGate",
    "ConvNormAct",
    "DoubleConv",
    "EncoderDecoderNet",
    "RRCNNBlock",
    "RecurrentConv",
    "ResPath",
    "SegmentationNet",
    "SpatialAttention",
    "SqueezeExcitation",
    "UpSample",
    "check_channels",
    "make_act",
    "make_norm",
    "make_pool",
    "pool_same",
    "stage_channels",
    "training_loss",
]


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
