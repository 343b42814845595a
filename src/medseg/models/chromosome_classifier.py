"""A chromosome classifier for karyotyping (issue 14, part 6): one class (1–22, X, Y) per DAPI cut-out.

No paper of medseg's defines this network; it is the plain choice of the karyotyping literature — a convolutional
encoder, global pooling, one linear layer — fitted to medseg's one training loop. The karyotype set
(``data.path: mfish:karyotype``, :mod:`medseg.data.mfish_karyotype`) gives each chromosome as a cut-out centred on a
fixed canvas (grey values inside its mask, background zeroed) labelled ``mask × class``. A per-pixel network (the
U-Net of ``configs/mfish/karyotype_unet.yaml``) must learn the class from each pixel's receptive field; this one
decides once per chromosome from the whole cut-out:

* **encoder**: ``depth`` stages of two 3×3 ConvNormAct (the U-Net stage, :class:`~medseg.models.blocks.DoubleConv`),
  each followed by 2×2 max pooling, widths ``base_channels · 2ⁱ``;
* **head**: global average *and* max pooling of the last stage, concatenated, dropout, a linear layer to one logit
  per chromosome class (``out_channels − 1``). The canvas is never rescaled and the average runs over the whole
  canvas, so the chromosome's size (a class cue: chromosome 1 is ~5× chromosome 21) stays in the features;
* **output as a segmentation**: the forward pass paints the class logits over the cut-out's pixels and a certain
  background elsewhere, ``(N, C, H, W)`` like every medseg network, so validation, ``medseg evaluate`` (its
  per-chromosome vote gives back exactly the softmax of the class logits), ``predict`` and the server take it
  unchanged. The cut-out's pixels are those that differ from the canvas corner (the zeroed background, whatever
  ``data.normalize`` made of it);
* **loss**: the model owns it (:meth:`training_loss`): cross-entropy of the class logits against the chromosome's
  class (the largest label value of its canvas), one term per chromosome — not per pixel, which would weigh a
  chromosome by its area. The config's ``loss`` section is not used by this model (said here, and in its config).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.blocks import DoubleConv, SegmentationNet, make_pool, stage_channels
from medseg.models.registry import register_model

BACKGROUND_LOGIT = 30.0  # painted outside the cut-out: softmax gives the background class there, ~1 - 1e-13


@register_model("chromosome_classifier")
class ChromosomeClassifier(SegmentationNet):
    """Encoder + global pooling + linear: one class per chromosome cut-out, painted over its pixels.

    Args:
        in_channels: input channels (1: DAPI).
        out_channels: classes including the background (25: background, 1–22, X, Y).
        spatial_dims: 2 only.
        depth: poolings (4: a 128 canvas ends at 8 × 8).
        base_channels: width of the first stage.
        norm, act: of every conv.
        dropout: before the linear layer.
        label_smoothing: of the chromosome-level cross-entropy.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 25, *, spatial_dims: int = 2, depth: int = 4,
                 base_channels: int = 16, norm: str = "batch", act: str = "relu", dropout: float = 0.2,
                 label_smoothing: float = 0.0):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("chromosome_classifier is a 2D network (cut-outs of metaphase images)")
        if out_channels < 3:
            raise ValueError(f"out_channels counts the background and ≥ 2 classes, got {out_channels}")
        self.divisor = 2**depth
        widths = stage_channels(base_channels, depth)
        self.stages = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.stages.append(DoubleConv(prev, w, spatial_dims=2, norm=norm, act=act))
            prev = w
        self.pool = make_pool(2)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * widths[-1], out_channels - 1)
        self.label_smoothing = float(label_smoothing)

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, out_channels − 1): one logit per chromosome class (label value 1, 2, …)."""
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))

    @staticmethod
    def cutout_mask(x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) bool: the pixels that differ from the canvas corner in any channel."""
        return (x - x[:, :, :1, :1]).abs().amax(dim=1, keepdim=True) > 1e-6

    def paint(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K) → (N, K + 1, H, W): background certain outside ``mask``, the classes inside."""
        n, k = logits.shape
        h, w = mask.shape[2:]
        inside = logits[:, :, None, None].expand(n, k, h, w)
        classes = torch.where(mask, inside, torch.zeros_like(inside))
        background = torch.where(mask, torch.full_like(mask, -BACKGROUND_LOGIT, dtype=logits.dtype),
                                 torch.full_like(mask, BACKGROUND_LOGIT, dtype=logits.dtype))
        return torch.cat([background, classes], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.cutout_mask(x)
        padded, _ = self.pad_input(x)
        return self.paint(self.class_logits(padded), mask)

    def training_loss(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], image: torch.Tensor,
                      target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy per chromosome (``loss_fn`` is not used: see the module docstring); a canvas without a
        chromosome (label all 0) adds nothing."""
        padded, _ = self.pad_input(image)
        logits = self.class_logits(padded)
        cls = target.reshape(len(target), -1).amax(dim=1).long() - 1
        keep = cls >= 0
        if keep.any():
            loss = F.cross_entropy(logits[keep], cls[keep], label_smoothing=self.label_smoothing)
        else:
            loss = logits.sum() * 0.0
        return loss, self.paint(logits, self.cutout_mask(image))
