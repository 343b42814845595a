"""The PatchGAN discriminator of AMFL (Mei et al., §II-A-2), conditioned on the image.

AMFL: "five convolution layers with a filter size of 4×4 kernel and {64, 128, 256, 512, 1} channels. The
first four convolution layers with padding of 2 and the stride of 2, the last two layer with padding of 2
and the stride of 1. Each convolution layer is followed by a Leaky-ReLu parameterized by 0.2 except the last
layer. And then a Sigmoid function follow with the last layer". Its input is the image concatenated with a
segmentation map along the channels (the generator's softmax probabilities, or the one-hot ground truth).

Layer by layer, as implemented by default (input 128×128 → output 19×19 patch scores)::

    1  Conv 4×4, in → 64,   stride 2, padding 2, LeakyReLU(0.2)     128 → 65
    2  Conv 4×4, 64 → 128,  stride 2, padding 2, LeakyReLU(0.2)      65 → 33
    3  Conv 4×4, 128 → 256, stride 2, padding 2, LeakyReLU(0.2)      33 → 17
    4  Conv 4×4, 256 → 512, stride 1, padding 2, LeakyReLU(0.2)      17 → 18
    5  Conv 4×4, 512 → 1,   stride 1, padding 2, Sigmoid             18 → 19

The text contradicts itself for layer 4 ("first four … stride 2" but "last two … stride 1" out of five).
The default ``strides=(2, 2, 2, 1, 1)`` follows "the last two … stride 1", which is also the layout of the
pix2pix PatchGAN the paper cites ([25], ``n_layers=3``: three stride-2 layers, then two stride-1 layers,
with padding ceil((4-1)/2) = 2 in its early code, the 70×70 receptive field). ``strides=(2, 2, 2, 2, 1)``
reads "the first four … stride 2" literally (128 → 65 → 33 → 17 → 9 → 10). The paper names no
normalisation (pix2pix has BatchNorm in layers 2–4), so ``norm="none"`` is the default and ``"batch"`` an
option; weights use PyTorch's default initialisation (the paper states none).

Why not MONAI's ``PatchDiscriminator``: its last convolution's padding is fixed at (k-1)//2 = 1 (the paper
says 2), it applies no sigmoid, it puts BatchNorm in the hidden layers by default, it re-initialises the
weights (DCGAN normal init) and it returns the list of every intermediate feature map; matching the paper
would take more overriding than these few lines. (Its ``PatchAdversarialLoss("least_squares")`` is a plain
MSE against 1/0 targets without the ½ of LSGAN; medseg.training.adversarial writes the two lines itself.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.blocks import make_norm
from medseg.models.registry import register_model


@register_model("patchgan")
class PatchGANDiscriminator(nn.Module):
    """AMFL's discriminator D(image, segmentation) → (B, 1, h, w) patch scores in (0, 1).

    Not a :class:`SegmentationNet`: its output is a grid of patch decisions, not logits at the input size.

    Args:
        in_channels: image channels + segmentation channels (1 + 4 for the chromosome task).
        out_channels: channels of the score map (1).
        spatial_dims: 2 or 3.
        channels: widths of the hidden layers (64, 128, 256, 512).
        strides: one per layer, hidden layers then the output layer (2, 2, 2, 1, 1); see the module docstring.
        padding: of every layer (2).
        kernel_size: of every layer (4).
        negative_slope: of the LeakyReLU after every layer but the last (0.2).
        norm: ``none`` (paper) or ``batch``/``instance``/``group`` after hidden layers 2.. (pix2pix style).
        sigmoid: apply the final sigmoid (paper: yes).
    """

    def __init__(
        self,
        in_channels: int = 5,
        out_channels: int = 1,
        *,
        spatial_dims: int = 2,
        channels: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (2, 2, 2, 1, 1),
        padding: int = 2,
        kernel_size: int = 4,
        negative_slope: float = 0.2,
        norm: str | None = "none",
        sigmoid: bool = True,
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        strides = [int(s) for s in strides]
        if len(strides) != len(channels) + 1:
            raise ValueError(f"strides needs one value per layer ({len(channels) + 1}), got {len(strides)}")
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = []
        prev = in_channels
        for i, (c, s) in enumerate(zip(channels, strides, strict=False)):
            use_norm = i > 0 and norm not in (None, "none")
            layers.append(conv(prev, c, kernel_size, stride=s, padding=padding, bias=not use_norm))
            if use_norm:
                layers.append(make_norm(norm, c, spatial_dims))
            layers.append(nn.LeakyReLU(negative_slope, inplace=True))
            prev = c
        layers.append(conv(prev, out_channels, kernel_size, stride=strides[-1], padding=padding))
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        self.spatial_dims = spatial_dims

    def convolutions(self) -> list[nn.Module]:
        return [m for m in self.net if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]

    def forward(self, image: torch.Tensor, segmentation: torch.Tensor | None = None) -> torch.Tensor:
        """``D(image, segmentation)``: the two are concatenated along the channels (or pass one tensor)."""
        x = image if segmentation is None else torch.cat([image, segmentation.to(image.dtype)], dim=1)
        return self.net(x)
