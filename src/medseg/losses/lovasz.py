"""Lovász-Softmax loss (Berman, Rannen Triki & Blaschko, CVPR 2018), the segmentation loss of AMFL (§II-B-1).

For every class c, the pixel errors ``m_i(c) = |[y_i = c] - p_i(c)|`` (AMFL Eq. 4, p = softmax probabilities)
are sorted in decreasing order and dotted with the gradient of the Jaccard loss's Lovász extension
(Berman et al. Alg. 1): with ``g`` the ground-truth indicator in that order and ``G = Σ g``,
``J_k = 1 - (G - Σ_{t≤k} g_t) / (G + Σ_{t≤k} (1 - g_t))`` and the weights are ``J_1, J_2 - J_1, …``.
The loss is the mean of these per-class surrogates (AMFL Eq. 3) over the classes present in the ground truth
(``classes="present"``, the reference default), all classes (``"all"``) or a given list.

``per_image=False`` (default, as Berman's ``lovasz_softmax``) pools the pixels of the whole batch;
``per_image=True`` computes the loss of every image and averages over the images. All sorts run batched, one
row per (image or batch, class), instead of the reference's Python loops; ignored pixels
(``ignore_index``) get error 0 and no ground truth, which sorts them last and leaves the value unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medseg.errors import ConfigError
from medseg.losses.segmentation import SegLoss, register_loss


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors, along the last dim."""
    gts = gt_sorted.sum(-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(-1)
    union = gts + (1.0 - gt_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_softmax(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Lovász-Softmax of probabilities ``probs`` (B, C, *S) against class indices ``target`` (B, *S)."""
    n_classes = probs.shape[1]
    probs = probs.flatten(2)  # B, C, N
    target = target.flatten(1).long()  # B, N
    if not per_image:  # one "image" holding every pixel of the batch
        probs = probs.movedim(1, 0).reshape(1, n_classes, -1)
        target = target.reshape(1, -1)
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    class_ids = torch.arange(n_classes, device=probs.device).view(1, -1, 1)
    fg = ((target.unsqueeze(1) == class_ids) & valid.unsqueeze(1)).to(probs.dtype)  # G, C, N
    errors = (fg - probs).abs() * valid.unsqueeze(1)
    errors_sorted, perm = torch.sort(errors, dim=-1, descending=True)
    grad = lovasz_grad(torch.gather(fg, -1, perm))
    per_class = (errors_sorted * grad).sum(-1)  # G, C

    if isinstance(classes, str):
        if classes == "present":
            use = fg.sum(-1) > 0
        elif classes == "all":
            use = torch.ones_like(per_class, dtype=torch.bool)
        else:
            raise ConfigError(f"lovasz classes must be 'present', 'all' or a list of class indices, got {classes!r}")
    else:
        use = torch.zeros_like(per_class, dtype=torch.bool)
        use[:, list(classes)] = True
    use = use & valid.any(-1, keepdim=True)  # an image with only ignored pixels contributes 0
    counts = use.sum(-1)
    per_row = (per_class * use).sum(-1) / counts.clamp(min=1)
    return per_row.mean()


@register_loss("lovasz")
class LovaszSoftmaxLoss(SegLoss):
    """Lovász-Softmax on softmax probabilities (exclusive classes only); see the module docstring.

    Args:
        per_image: average per-image losses (True) or pool the batch (False, default).
        classes: ``present`` (default), ``all`` or a list of class indices.
        ignore_index: label value to leave out (none by default).
    """

    def __init__(
        self,
        mode: str = "multiclass",
        per_image: bool = False,
        classes: str | Sequence[int] = "present",
        ignore_index: int | None = None,
    ):
        super().__init__(mode)
        if mode != "multiclass":
            raise ConfigError("the Lovász-Softmax loss ('lovasz') needs exclusive classes (mode multiclass)")
        if isinstance(classes, str) and classes not in ("present", "all"):
            raise ConfigError(f"lovasz classes must be 'present', 'all' or a list of class indices, got {classes!r}")
        self.per_image = bool(per_image)
        self.classes = classes if isinstance(classes, str) else [int(c) for c in classes]
        self.ignore_index = ignore_index

    def compute(self, logits, target):
        return lovasz_softmax(
            logits.softmax(1), target, classes=self.classes, per_image=self.per_image, ignore_index=self.ignore_index
        )
