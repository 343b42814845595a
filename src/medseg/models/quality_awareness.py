"""The quality awareness module (QAM) and overfitting control (OCM) of the CTV thesis, ch. 3 (§3.2.2–3.2.3).

**QAM (§3.2.2, Eq. 3-1/3-2).** :class:`QualityAwarenessModule` Φ is VGG-shaped: stages of 3×3(×3)
conv + ReLU (VGG-16: 64-128-256-512-512 channels, 2-2-3-3-3 convolutions) each followed by a 2× max-pool,
input channels n + 1 (the image and the n-class one-hot label — the *training* label, not the prediction);
VGG's last layer is replaced by average pooling: a 1×1 conv to one channel averaged over space, which is the
same as a linear unit on the globally averaged features. This gives the absolute score AbS_i = Φ(x_i; y_i)
(Eq. 3-1); a softmax *across the batch* turns the scores into relative weights Θ_i with Σ_i Θ_i = 1, and
the loss is ``Loss = Σ_i Θ_i · L_i`` (Eq. 3-2), L_i being the configured segmentation loss of sample i
alone. Eq. 3-2 is taken literally — no factor N — so with equal weights (Θ_i = 1/N) it is the usual batch
mean and learning rates stay comparable with the base method.

**OCM (§3.2.3, Eq. 3-3).** Γ(t) = λ·tanh(t) is applied to the absolute scores *before* the softmax, so
scores lie in (−λ, λ) and any two weights of a batch differ by at most a factor e^(2λ) (λ = 2: e^4 ≈ 54.6).

Trained jointly with the segmentation network by :class:`medseg.training.noisy_labels.NoisyLabelTrainer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import ConvNormAct


def _halve(x: torch.Tensor) -> torch.Tensor:
    """VGG's 2× max-pool, on every spatial dimension still >= 2 (thin 3D patches keep their 1-voxel axes)."""
    k = [2 if s >= 2 else 1 for s in x.shape[2:]]
    if all(v == 1 for v in k):
        return x
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(x, kernel_size=k, stride=k)


class QualityAwarenessModule(nn.Module):
    """Φ(x; y) of Eq. 3-1: a VGG-shaped network on image ⊕ label → one absolute score per sample.

    ``in_channels`` = image channels + label channels (n + 1 for a one-channel image and n classes).
    Stages of ``convs[i]`` 3×3(×3) ConvNormAct (ReLU; ``norm`` none as in VGG) with ``channels[i]``
    filters, each followed by a 2× max-pool; then a 1×1 conv to one channel and global average pooling
    (the average-pooling layer that replaces VGG's last layer). 2D or 3D via ``spatial_dims``. VGG's
    initialisation (:meth:`reset_parameters`).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        spatial_dims: int = 2,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        convs: Sequence[int] = (2, 2, 3, 3, 3),
        norm: str | None = "none",
    ):
        super().__init__()
        if len(channels) != len(convs) or not channels:
            raise ValueError("channels and convs need one value per stage (same length, >= 1)")
        self.spatial_dims = spatial_dims
        self.stages = nn.ModuleList()
        prev = in_channels
        for c, k in zip(channels, convs, strict=True):
            layers = []
            for _ in range(int(k)):
                layers.append(ConvNormAct(prev, int(c), spatial_dims=spatial_dims, norm=norm, act="relu"))
                prev = int(c)
            self.stages.append(nn.Sequential(*layers))
        self.score = Conv[Conv.CONV, spatial_dims](prev, 1, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """VGG's initialisation (as torchvision's ``vgg16``): Kaiming-normal (fan-out, ReLU) convolutions with
        zero bias, the scoring layer N(0, 0.01). PyTorch's default init shrinks the signal through the 13
        convolutions until every sample gets the same score (std ~1e-7 across a batch of chromosome pairs,
        measured), which delays QAM's first distinctions by tens of steps."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.score.weight, 0.0, 0.01)
        nn.init.zeros_(self.score.bias)

    def forward(self, image: torch.Tensor, label_map: torch.Tensor | None = None) -> torch.Tensor:
        """AbS (B,) for image (B, 1, *S) and label map (B, n, *S) (or one tensor already concatenated)."""
        x = image if label_map is None else torch.cat([image, label_map.to(image.dtype)], 1)
        for stage in self.stages:
            x = _halve(stage(x))
        return self.score(x).mean(dim=tuple(range(2, x.ndim))).flatten()


def quality_weights(scores: torch.Tensor, ocm_lambda: float | None = None) -> torch.Tensor:
    """Θ: softmax over the batch of the absolute scores (Eq. 3-2's Σ Θ_i = 1), float32.

    With OCM (``ocm_lambda`` = λ) the scores first go through Γ(t) = λ·tanh(t) (Eq. 3-3), which bounds the
    ratio of any two weights by e^(2λ).
    """
    t = scores.float().flatten()
    if ocm_lambda is not None:
        t = float(ocm_lambda) * torch.tanh(t)
    return torch.softmax(t, dim=0)


__all__ = ["QualityAwarenessModule", "quality_weights"]
