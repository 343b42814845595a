"""A chromosome classifier for karyotyping: one class (1–22, X, Y) per DAPI cut-out.

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

For the upright cut-outs of ``mfish:karyotype-upright`` (each chromosome rotated to its long axis and scaled to
its own metaphase, ``configs/mfish/karyotype_upright.yaml``) three options make the CPU minutes count:

* ``head_grid: [rows, cols]`` — the last stage average-pooled to that grid and flattened instead of the global
  pooling: the chromosome stands upright and centred, so *where* along it a band lies is kept (the banding
  pattern is the class cue global pooling throws away);
* ``side_features: true`` — the numbers the classical baseline reads, measured on the cut-out itself
  (:meth:`shape_features`: area, length and width as shares of the canvas, mean and summed grey, the mean grey of
  12 equal parts along its rows) go through a small MLP to the linear layer beside the image features. On a canvas
  scaled per metaphase they are the chromosome's size and banding relative to its own cell — the cues a forest
  reaches 55 % with — so the network starts from them instead of finding them in its first thousand steps;
* ``augment: true`` — during training only, each cut-out is rotated by up to ±``augment_degrees``, scaled by up
  to ±``augment_scale``, shifted by up to 2 px and its grey values inside the chromosome changed by a random gain
  (±15 %) and gamma (0.8–1.25): segmentation masks and exposures vary that much from cell to cell. Done here and
  not in the data pipeline because only this model's labels (one class per cut-out) survive any warp unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.blocks import DoubleConv, SegmentationNet, make_pool, stage_channels
from medseg.models.registry import register_model

PROFILE_PARTS = 12  # as the baseline's profile (medseg.data.karyotype_features.PROFILE_BINS)
SHAPE_FEATURES = 5 + PROFILE_PARTS
SIDE_WIDTH = 64  # the MLP over the shape features
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
        head_grid: [rows, cols] to pool the last stage to and flatten; None: global average + max pooling.
        side_features: give the head the cut-out's measured shape and profile (:meth:`shape_features`, via an MLP).
        augment: random rotation, scale, shift, gain and gamma of each training cut-out (see above).
        augment_degrees, augment_scale: the largest rotation (degrees) and relative scale change.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 25,
        *,
        spatial_dims: int = 2,
        depth: int = 4,
        base_channels: int = 16,
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        head_grid: list[int] | None = None,
        side_features: bool = False,
        augment: bool = False,
        augment_degrees: float = 10.0,
        augment_scale: float = 0.08,
    ):
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
        self.head_grid = None if head_grid is None else tuple(int(v) for v in head_grid)
        if self.head_grid is not None and (len(self.head_grid) != 2 or min(self.head_grid) < 1):
            raise ValueError(f"head_grid must be [rows, cols] of at least 1, got {head_grid!r}")
        pooled = widths[-1] * math.prod(self.head_grid) if self.head_grid else 2 * widths[-1]
        self.side_features = bool(side_features)
        # the features differ between classes by a few hundredths (an area share of 0.06 or 0.08): standardised
        # first, else the MLP's weights must grow for thousands of steps before it sees them
        self.side = (
            nn.Sequential(
                nn.BatchNorm1d(SHAPE_FEATURES),
                nn.Linear(SHAPE_FEATURES, SIDE_WIDTH),
                nn.ReLU(),
                nn.Linear(SIDE_WIDTH, SIDE_WIDTH),
                nn.ReLU(),
            )
            if self.side_features
            else None
        )
        self.head = nn.Linear(pooled + (SIDE_WIDTH if self.side_features else 0), out_channels - 1)
        self.label_smoothing = float(label_smoothing)
        self.augment = bool(augment)
        self.augment_degrees, self.augment_scale = float(augment_degrees), float(augment_scale)

    def class_logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(N, out_channels − 1): one logit per chromosome class (label value 1, 2, …); ``mask``: the cut-out's
        pixels (for the side features; default: :meth:`cutout_mask` of ``x``)."""
        side = (
            self.side(self.shape_features(x, self.cutout_mask(x) if mask is None else mask))
            if self.side is not None
            else None
        )
        x, _ = self.pad_input(x)
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
        if self.head_grid:
            pooled = F.adaptive_avg_pool2d(x, self.head_grid).flatten(1)
        else:
            pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        pooled = self.dropout(pooled)
        return self.head(pooled if side is None else torch.cat([pooled, side], dim=1))

    @staticmethod
    def shape_features(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, 17) of an upright cut-out ``x`` (N, C, H, W; channel 0 read) inside ``mask`` (N, 1, H, W): area,
        row extent and column extent as shares of the canvas; mean grey and summed grey / canvas pixels; the mean
        grey of each of 12 equal parts of its row extent (top to bottom)."""
        m = mask[:, 0].to(x.dtype)
        grey = x[:, 0] * m
        n, h, w = m.shape
        rows, cols = m.amax(dim=2), m.amax(dim=1)
        area = m.sum(dim=(1, 2))

        def span(line: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.arange(line.shape[1], device=line.device, dtype=line.dtype).expand_as(line)
            first = torch.where(line > 0, idx, torch.full_like(line, float(line.shape[1]))).amin(dim=1)
            last = torch.where(line > 0, idx, torch.full_like(line, -1.0)).amax(dim=1)
            return first, (last - first + 1).clamp(min=1)

        top, length = span(rows)
        _, width = span(cols)
        r = torch.arange(h, device=x.device, dtype=x.dtype)[None, :]
        part = ((r - top[:, None]) * PROFILE_PARTS / length[:, None]).floor().clamp(0, PROFILE_PARTS - 1).long()
        onehot = F.one_hot(part, PROFILE_PARTS).to(x.dtype) * rows[:, :, None]  # (N, H, parts), rows inside only
        sums = torch.einsum("nhp,nh->np", onehot, grey.sum(dim=2))
        counts = torch.einsum("nhp,nh->np", onehot, m.sum(dim=2))
        mean = grey.sum(dim=(1, 2)) / area.clamp(min=1)
        profile = torch.where(counts > 0, sums / counts.clamp(min=1), mean[:, None])
        return torch.cat(
            [
                torch.stack([area / (h * w), length / h, width / w, mean, grey.sum(dim=(1, 2)) / (h * w)], dim=1),
                profile,
            ],
            dim=1,
        )

    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        """A random rotation / scale / shift of every cut-out and a gain and gamma of its grey values (the
        background, 0 after ``data.normalize: range``, stays 0)."""
        n, _, h, w = x.shape
        g = torch.rand(n, 5, device=x.device, dtype=x.dtype) * 2 - 1  # uniform in [-1, 1]
        angle = g[:, 0] * math.radians(self.augment_degrees)
        zoom = 1 + g[:, 1] * self.augment_scale
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid's coordinates run -1..1 along each axis: rotate in pixels, not in those units
        theta = torch.stack(
            [torch.stack([cos, -sin * h / w, g[:, 2] * 2 / w], 1), torch.stack([sin * w / h, cos, g[:, 3] * 2 / h], 1)],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        inside = (
            F.grid_sample(
                self.cutout_mask(x).to(x.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            >= 0.5
        )
        gain = (1 + 0.15 * g[:, 4]).view(n, 1, 1, 1)
        gamma = torch.exp(
            torch.empty(n, 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(math.log(0.8), math.log(1.25))
        )
        out = gain * warped.clamp(min=1e-6) ** gamma
        return torch.where(inside, out.clamp(min=1e-3), torch.zeros_like(out))

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
        background = torch.where(
            mask,
            torch.full_like(mask, -BACKGROUND_LOGIT, dtype=logits.dtype),
            torch.full_like(mask, BACKGROUND_LOGIT, dtype=logits.dtype),
        )
        return torch.cat([background, classes], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.cutout_mask(x)
        return self.paint(self.class_logits(x, mask), mask)

    def training_loss(
        self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], image: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy per chromosome (``loss_fn`` is not used: see the module docstring); a canvas without a
        chromosome (label all 0) adds nothing."""
        logits = self.class_logits(self.augmented(image) if self.augment else image)
        cls = target.reshape(len(target), -1).amax(dim=1).long() - 1
        keep = cls >= 0
        if keep.any():
            loss = F.cross_entropy(logits[keep], cls[keep], label_smoothing=self.label_smoothing)
        else:
            loss = logits.sum() * 0.0
        return loss, self.paint(logits, self.cutout_mask(image))
