"""SegNet (Badrinarayanan, Kendall & Cipolla, 2017, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", IEEE TPAMI).

§3: the encoder is the 13 convolutional layers of VGG-16 (five stages of 2, 2, 3, 3, 3 conv + BN + ReLU,
64 → 512 channels) without its fully connected layers; every 2×2 max pooling keeps its argmax indices, and
the mirrored decoder upsamples with those indices (max-unpooling, Fig. 3) — no learned upsampling — then
convolves the sparse maps to dense ones. The last decoder conv of each stage reduces the channels to the
next stage's width, and a final 3×3 conv gives the class scores (the paper's softmax classifier; here
logits). No ImageNet weights here (none ship with the package); the encoder trains from scratch.

With the paper's configuration the encoder has the 14.7 M parameters §3 gives for it (VGG-16 without the
fully connected layers) and the whole network ≈29.4 M (29,435,649 for 3 input channels and 1 class). SegNet
is not among AMFL Table IV's baselines, so there is no chromosome-paper count to match.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from medseg.models.blocks import ConvNormAct, SegmentationNet
from medseg.models.registry import register_model

VGG16_CONVS = (2, 2, 3, 3, 3)  # conv layers per VGG-16 stage


@register_model("segnet")
class SegNet(SegmentationNet):
    """SegNet with max-unpooling by the encoder's pooling indices.

    Args:
        in_channels, out_channels, spatial_dims: as :class:`~medseg.models.unet.UNet` (2D or 3D).
        depth: number of encoder stages, each ending in a 2×2 pooling (5 in the paper, 1–5 here: the first
            ``depth`` VGG-16 stages); the input is padded to a multiple of 2**depth.
        base_channels: width of the first stage (64); stage i has ``base · min(2**i, 8)`` channels (64, 128,
            256, 512, 512 as VGG-16).
        norm, act: of every conv (the paper: batch norm and ReLU).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int = 5,
        base_channels: int = 64,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        if not 1 <= depth <= len(VGG16_CONVS):
            raise ValueError(f"depth (encoder stages) must be in 1..{len(VGG16_CONVS)}, got {depth}")
        self.spatial_dims = spatial_dims
        self.divisor = 2**depth
        widths = [base_channels * min(2**i, 8) for i in range(depth)]
        self.channels = widths
        n_convs = VGG16_CONVS[:depth]
        kw = dict(spatial_dims=spatial_dims, norm=norm, act=act)

        self.encoder = nn.ModuleList()
        prev = in_channels
        for width, n in zip(widths, n_convs, strict=True):
            layers = []
            for _ in range(n):
                layers.append(ConvNormAct(prev, width, **kw))
                prev = width
            self.encoder.append(nn.Sequential(*layers))

        # Decoder stage i mirrors encoder stage i: n convs, the last one reducing to stage i-1's width. The
        # top stage (i = 0) keeps its width for the classifier, so it has n - 1 convs + the classifier.
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth)):
            width, n = widths[i], n_convs[i]
            out = widths[i - 1] if i else width
            count = n if i else n - 1
            layers = [ConvNormAct(width, out if j == count - 1 else width, **kw) for j in range(count)]
            self.decoder.append(nn.Sequential(*layers))
        self.head = Conv[Conv.CONV, spatial_dims](widths[0], out_channels, kernel_size=3, padding=1)

        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2, return_indices=True)
        self.unpool = (nn.MaxUnpool2d if spatial_dims == 2 else nn.MaxUnpool3d)(kernel_size=2, stride=2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        memory = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape
            x, idx = self.pool(x)
            memory.append((idx, size))
        for stage, (idx, size) in zip(self.decoder, reversed(memory), strict=True):
            x = stage(self.unpool(x, idx, output_size=size))
        return self.head(x)
