"""The CTV-delineation 3D U-Net of the thesis (ch. 2, §2.2, Fig. 2.1/2.4, Table 2.1), with its additions.

``/work/shared/papers/ctv-delineation-system-thesis.txt`` (cervical-cancer CTV on abdominal CT). What each
part implements:

* §2.2.1 — base network (UNet3D, Çiçek et al. 2016): 5 down- and 5 up-sampling steps; before every down-
  and up-sampling layer two consecutive "conv modules", each a 3×3×3 convolution, an ELU and a batch norm;
  the channel counts of the 5 down-sampling steps are 16, 32, 64, 96, 128 (chosen for GPU memory, batch 1);
  a "bridge" of two conv modules joins the down- and up-sampling paths; before each down-sampling the
  encoder features are passed to the decoder level of the same resolution and concatenated there.
* §2.2.2 — the additions of Table 2.1, each switchable: ``residual`` (He et al.'s residual module, Fig.
  2.2(1)), ``se`` (Hu et al.'s squeeze-and-excitation on top of the residual module, Fig. 2.2(2);
  :class:`~medseg.models.blocks.SqueezeExcitation`), ``recurrent`` (the "循环损失函数" after Mosinska et
  al., CVPR 2018: the network takes the image and its previous prediction, starting from all zeros, and
  refines it for ``recurrent_steps`` passes). The Dice term of the last row is a loss setting
  (``loss: [{name: bce}, {name: dice}]``, Eq. 2-3: loss = Bloss + Dloss), not a model option.

How the five steps map to the five widths (the thesis: "5 次下采样后的通道数分别是 16, 32, 64, 96 和 128"
and "每次下采样和上采样层之前都两个连续的卷积模块"): stage i (i = 0…4) works at 1/2ⁱ of the input size with
``channels[i]`` = 16, 32, 64, 96, 128 channels and is followed by the i-th 2×2×2 max pooling; the bridge
(two conv modules) works at 1/32 with ``bridge_channels`` channels — the thesis gives no number, and since the
widths are capped for memory the default keeps the last, 128. The decoder mirrors the encoder: the bridge,
then 5 × (2×2×2 up-sampling to ``channels[i]``, concatenation with stage i's features, two conv modules),
then a 1×1×1 convolution to the logits. Inputs are padded (replicate) to a multiple of 2⁵ = 32 per axis and
the logits cropped back, so the thesis' 72 × 256 × 256 volumes run as 96 × 256 × 256.

Choices where the thesis is silent or ambiguous (each an option):

* ``order``: the thesis lists a conv module as "a 3×3×3 convolution, an ELU activation and a batch norm",
  in that order, in the text and in Fig. 2.1's legend; ``conv_act_norm`` (default) follows that order
  (the convolution then keeps its bias); ``conv_norm_act`` is the usual Conv-BN-ELU
  (:class:`~medseg.models.blocks.ConvNormAct`).
* Residual module: ``body(x) + shortcut(x)`` over each stage's two conv modules, the shortcut the identity
  when the width is unchanged and a 1×1×1 conv + norm otherwise (ResNet's projection shortcut); nothing
  follows the addition (each conv module already ends in its activation/norm) — as RSE-UNet's ResSE block.
  Every stage (encoder, bridge, decoder) gets it.
* SE: on the residual branch before the addition (SE-ResNet, as Fig. 2.2(2) builds it "on the basis of the
  residual module"); with ``residual=False`` it rescales the stage output. Reduction r = 16 (Hu et al.),
  hidden width ``max(1, C // r)`` (``se_reduction``).
* Up-sampling: 2×2×2 transposed convolution (Çiçek's up-convolution; ``upsample``).
* Recurrent refinement: the previous prediction is fed back as probabilities (``feedback: sigmoid`` for the
  binary CTV task, ``softmax`` for exclusive classes, ``logits`` raw), concatenated to the image as
  ``out_channels`` extra input channels (zeros at the first pass), with gradients flowing through the
  passes (``detach_feedback=False``). The thesis gives no number of passes: ``recurrent_steps`` = 3
  (Mosinska et al.'s choice). Inference runs the same passes and returns the last one.
* Batch norm under recurrence (``pass_norm``): the weights are shared by the passes, but their inputs are
  not alike (pass 1 sees an all-zero prediction, the later ones a probability map), and one set of running
  averages mixes them. Measured on the phantom demo after 96 steps: with shared averages the eval-mode
  passes 1/2/3 marked 18 % / 86 % / 95 % of the volume (Dice 0.10 / 0.02 / 0.02) while the same weights with
  batch statistics marked 4 % (Dice 0.38 / 0.41 / 0.42). ``per_pass`` (default) keeps the running
  statistics per pass with one shared affine transform (:class:`PerPassBatchNorm`, after Cooijmans et
  al. 2017): training is unchanged, parameters too (only buffers are added); ``shared`` is the plain reading.
* Which passes the loss sees (``loss_steps``): the thesis calls the addition a *recurrent loss function*
  ("循环损失函数") after Mosinska et al., whose loss sums the loss of every pass with weight k / Z
  (Z = 1 + … + K, later passes weigh more): ``weighted`` (default). ``all`` weights every pass 1/K,
  ``last`` only the final pass. The per-pass loss needs the per-pass logits: the model's
  :meth:`CTVUNet3D.training_loss` hook computes it, and every trainer (plain, noisy-label, adversarial) calls
  that hook, so every pass is trained. A plain ``model(x)`` returns only the last pass's logits: a custom loop
  that puts its loss on ``model(x)`` in training mode trains the last pass only (a warning says so once).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import (
    ConvNormAct,
    SegmentationNet,
    SqueezeExcitation,
    UpSample,
    make_norm,
    make_pool,
)
from medseg.models.registry import register_model

THESIS_CHANNELS = (16, 32, 64, 96, 128)
ORDERS = ("conv_act_norm", "conv_norm_act")
LOSS_STEPS = ("weighted", "all", "last")
FEEDBACK = ("sigmoid", "softmax", "logits")


def conv_module(
    in_channels: int,
    out_channels: int,
    *,
    spatial_dims: int = 3,
    order: str = "conv_act_norm",
    norm: str | None = "batch",
    act: str | None = "elu",
) -> nn.Module:
    """The thesis' conv module: 3×3×3 conv, ELU and batch norm, in ``order`` (see the module docstring)."""
    if order == "conv_norm_act":
        return ConvNormAct(in_channels, out_channels, spatial_dims=spatial_dims, norm=norm, act=act)
    if order == "conv_act_norm":
        # conv (with bias: no norm follows it directly) + act, then the norm.
        return nn.Sequential(
            ConvNormAct(in_channels, out_channels, spatial_dims=spatial_dims, norm=None, act=act),
            make_norm(norm, out_channels, spatial_dims),
        )
    raise ValueError(f"unknown conv module order {order!r}; use {' or '.join(ORDERS)}")


class CTVStage(nn.Module):
    """Two conv modules, optionally with the residual shortcut and SE: ``SE(body(x)) [+ shortcut(x)]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 3,
        residual: bool = False,
        se: bool = False,
        se_reduction: int = 16,
        order: str = "conv_act_norm",
        norm: str | None = "batch",
        act: str | None = "elu",
    ):
        super().__init__()
        kw = {"spatial_dims": spatial_dims, "order": order, "norm": norm, "act": act}
        self.body = nn.Sequential(
            conv_module(in_channels, out_channels, **kw), conv_module(out_channels, out_channels, **kw)
        )
        self.se = SqueezeExcitation(out_channels, spatial_dims=spatial_dims, reduction=se_reduction) if se else None
        if residual:
            self.shortcut = (
                nn.Identity()
                if in_channels == out_channels
                else ConvNormAct(
                    in_channels, out_channels, spatial_dims=spatial_dims, kernel_size=1, norm=norm, act=None
                )
            )
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.se is not None:
            y = self.se(y)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return y


class UNet3DCore(nn.Module):
    """One pass of the network: encoder stages + max pooling, bridge, up-sampling + skip + decoder stages,
    1×1×1 head. (B, in_channels, *S) → logits (B, out_channels, *S), S divisible by 2**len(channels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        bridge_channels: int,
        *,
        spatial_dims: int = 3,
        upsample: str = "transpose",
        **stage_kw,
    ):
        super().__init__()
        self.encoder = nn.ModuleList()
        prev = in_channels
        for c in channels:
            self.encoder.append(CTVStage(prev, c, spatial_dims=spatial_dims, **stage_kw))
            prev = c
        self.pool = make_pool(spatial_dims, "max")
        self.bridge = CTVStage(prev, bridge_channels, spatial_dims=spatial_dims, **stage_kw)
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        prev = bridge_channels
        for c in reversed(channels):
            self.ups.append(
                UpSample(
                    prev,
                    c,
                    spatial_dims=spatial_dims,
                    mode=upsample,
                    norm=stage_kw.get("norm", "batch"),
                    act=stage_kw.get("act", "elu"),
                )
            )
            self.decoder.append(CTVStage(2 * c, c, spatial_dims=spatial_dims, **stage_kw))
            prev = c
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bridge(x)
        for up, dec, skip in zip(self.ups, self.decoder, reversed(skips), strict=True):
            x = dec(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


class PerPassBatchNorm(nn.Module):
    """Batch norm with running statistics kept per refinement pass and one shared affine transform.

    Training normalises with the batch's statistics, exactly as a plain batch norm; only the running
    averages used at inference are separate per pass (as in Cooijmans et al., "Recurrent Batch
    Normalization", ICLR 2017, which keeps statistics per time step). The passes see different inputs — the
    first an all-zero prediction, the later ones the network's own — so one set of averages mixes them and
    the refined passes drift in eval mode. Set :attr:`pass_index` before each pass.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, passes: int):
        super().__init__()
        c = bn.num_features
        self.eps, self.momentum, self.passes = bn.eps, bn.momentum, int(passes)
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())
        self.register_buffer("running_mean", torch.zeros(passes, c))
        self.register_buffer("running_var", torch.ones(passes, c))
        self.register_buffer("num_batches_tracked", torch.zeros(passes, dtype=torch.long))
        self.pass_index = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pass_index
        factor = 0.0
        if self.training:
            self.num_batches_tracked[k] += 1
            factor = 1.0 / float(self.num_batches_tracked[k]) if self.momentum is None else self.momentum
        # the row views are updated in place by batch_norm in training mode
        return F.batch_norm(
            x, self.running_mean[k], self.running_var[k], self.weight, self.bias, self.training, factor, self.eps
        )

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, passes={self.passes}, eps={self.eps}, momentum={self.momentum}"


def _per_pass_norms(module: nn.Module, passes: int) -> list[PerPassBatchNorm]:
    """Replace every batch norm under ``module`` by a :class:`PerPassBatchNorm`; return them."""
    out = []
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            new = PerPassBatchNorm(child, passes)
            setattr(module, name, new)
            out.append(new)
        else:
            out += _per_pass_norms(child, passes)
    return out


def step_weights(steps: int, loss_steps: str) -> list[float]:
    """Loss weight of each refinement pass: ``weighted`` k / Z with Z = K(K+1)/2 (K = 3: 1/6, 2/6, 3/6),
    ``all`` 1/K each, ``last`` (0, …, 0, 1)."""
    if loss_steps not in LOSS_STEPS:
        raise ValueError(f"unknown loss_steps {loss_steps!r}; use one of {', '.join(LOSS_STEPS)}")
    k = int(steps)
    if loss_steps == "last":
        return [0.0] * (k - 1) + [1.0]
    if loss_steps == "all":
        return [1.0 / k] * k
    z = k * (k + 1) / 2
    return [(i + 1) / z for i in range(k)]


@register_model("ctv_unet3d")
class CTVUNet3D(SegmentationNet):
    """The thesis' 3D U-Net with switchable residual, SE and recurrent refinement (see the module docstring).

    Args:
        in_channels: image channels (1, CT).
        out_channels: C logits channels (1 for the binary CTV task, sigmoid).
        spatial_dims: 3 (2 also builds, for tests and 2D use).
        channels: widths of the 5 encoder stages, one pooling after each (thesis 16, 32, 64, 96, 128);
            fewer or narrower for small models.
        depth: number of poolings, optional; when given it must equal ``len(channels)`` (a config check).
        bridge_channels: width of the bridge at the bottom (default: ``channels[-1]``).
        residual, se: the Table 2.1 additions. se_reduction: SE ratio r (16).
        recurrent: the recurrent refinement; recurrent_steps: passes K (3); loss_steps: ``weighted``
            (Mosinska's k/Z, default), ``all`` or ``last``; feedback: ``sigmoid`` (default), ``softmax`` or
            ``logits``; detach_feedback: stop gradients between passes (default False); pass_norm:
            ``per_pass`` (default) keeps batch-norm running statistics per pass (:class:`PerPassBatchNorm`),
            ``shared`` one set for all passes.
        order: ``conv_act_norm`` (thesis text order, default) or ``conv_norm_act``.
        norm, act: ``batch`` and ``elu`` (thesis); upsample: ``transpose`` (default), ``bilinear``, ``nearest``
            (interpolation + 1×1 conv) or ``upconv``.

    ``forward(x)`` → logits (B, C, *S) of the last pass; ``forward(x, return_steps=True)`` → the list of
    the K passes' logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        spatial_dims: int = 3,
        channels: Sequence[int] = THESIS_CHANNELS,
        depth: int | None = None,
        bridge_channels: int | None = None,
        residual: bool = False,
        se: bool = False,
        se_reduction: int = 16,
        recurrent: bool = False,
        recurrent_steps: int = 3,
        loss_steps: str = "weighted",
        feedback: str = "sigmoid",
        detach_feedback: bool = False,
        pass_norm: str = "per_pass",
        order: str = "conv_act_norm",
        norm: str = "batch",
        act: str = "elu",
        upsample: str = "transpose",
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be one or more positive widths, got {channels}")
        if depth is not None and int(depth) != len(channels):
            raise ValueError(
                f"depth (number of poolings) {depth} does not match the {len(channels)} stage widths "
                f"{channels}: one pooling follows each stage"
            )
        if order not in ORDERS:
            raise ValueError(f"unknown conv module order {order!r}; use {' or '.join(ORDERS)}")
        if feedback not in FEEDBACK:
            raise ValueError(f"unknown feedback {feedback!r}; use one of {', '.join(FEEDBACK)}")
        if pass_norm not in ("per_pass", "shared"):
            raise ValueError(f"pass_norm must be per_pass or shared, got {pass_norm!r}")
        if int(recurrent_steps) < 1:
            raise ValueError(f"recurrent_steps must be >= 1, got {recurrent_steps}")
        step_weights(int(recurrent_steps), loss_steps)  # checks loss_steps
        self.spatial_dims = spatial_dims
        self.divisor = 2 ** len(channels)
        self.channels = channels
        self.out_channels = int(out_channels)
        self.recurrent = bool(recurrent)
        self.steps = int(recurrent_steps) if self.recurrent else 1
        self.loss_steps = loss_steps
        self.feedback = feedback
        self.detach_feedback = bool(detach_feedback)
        self._warned = False
        core_in = in_channels + (out_channels if self.recurrent else 0)
        self.core = UNet3DCore(
            core_in,
            out_channels,
            channels,
            int(bridge_channels or channels[-1]),
            spatial_dims=spatial_dims,
            upsample=upsample,
            residual=residual,
            se=se,
            se_reduction=se_reduction,
            order=order,
            norm=norm,
            act=act,
        )
        self.pass_norm = pass_norm
        self._pass_norms = _per_pass_norms(self.core, self.steps) if self.recurrent and pass_norm == "per_pass" else []

    def step_weights(self) -> list[float]:
        """The loss weight of each pass (one pass, weight 1, without recurrence)."""
        return step_weights(self.steps, self.loss_steps) if self.recurrent else [1.0]

    def _feed(self, logits: torch.Tensor) -> torch.Tensor:
        fb = (
            logits.sigmoid()
            if self.feedback == "sigmoid"
            else logits.softmax(1)
            if self.feedback == "softmax"
            else logits
        )
        return fb.detach() if self.detach_feedback else fb

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every pass concatenated on the channel axis: (B, K·C, *S)."""
        if not self.recurrent:
            return self.core(x)
        prev = x.new_zeros((x.shape[0], self.out_channels, *x.shape[2:]))  # the all-zero first "prediction"
        outs = []
        for k in range(self.steps):
            for bn in self._pass_norms:
                bn.pass_index = k
            logits = self.core(torch.cat([x, prev], dim=1))
            outs.append(logits)
            prev = self._feed(logits)
        return torch.cat(outs, dim=1)

    def forward(self, x: torch.Tensor, return_steps: bool = False) -> torch.Tensor | list[torch.Tensor]:
        steps = list(super().forward(x).split(self.out_channels, dim=1))
        if return_steps:
            return steps
        if self.training and self.recurrent and self.loss_steps != "last" and not self._warned:
            warnings.warn(
                f"CTVUNet3D(loss_steps={self.loss_steps!r}): model(x) returns only the last of "
                f"{self.steps} passes, so a loss on it trains the last pass only; use "
                f"model.training_loss(loss_fn, x, y) (or loss_steps='last')",
                stacklevel=2,
            )
            self._warned = True
        return steps[-1]

    def training_loss(
        self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], image: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``Σ_k w_k · loss_fn(logits_k, target)`` over the refinement passes (weights :meth:`step_weights`)
        and the last pass's logits; without recurrence ``loss_fn(model(image), target)``.

        Every trainer (plain, noisy-label with QAM, adversarial) calls this hook through
        :func:`medseg.models.blocks.training_loss`, so all passes are trained whatever the trainer.
        ``loss_fn`` may return per-sample losses (B,): the weighted sum keeps that shape.
        """
        if not self.recurrent:
            return super().training_loss(loss_fn, image, target)
        steps = self(image, return_steps=True)
        total = None
        for w, logits in zip(self.step_weights(), steps, strict=True):
            if w == 0:
                continue
            term = w * loss_fn(logits, target)
            total = term if total is None else total + term
        return total, steps[-1]


__all__ = [
    "THESIS_CHANNELS",
    "CTVStage",
    "CTVUNet3D",
    "PerPassBatchNorm",
    "UNet3DCore",
    "conv_module",
    "step_weights",
]
