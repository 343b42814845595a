"""Order-free scoring of overlapping-chromosome pairs: which chromosome is "α" is a convention, not a finding.

The chromosome papers score chromosome α (label 1) and β (label 2) by a fixed rule: in Pommier's set the
labels follow the order his synthesizer drew the two chromosomes; ``medseg data mfish-pairs`` calls the larger
one α. A network that separates the two chromosomes perfectly but names them the other way round scores 0 on
α and β under the rule. To keep label convention and segmentation quality apart, :func:`best_assignment`
swaps labels α ↔ β in the prediction of every image where the swapped naming fits the truth better; scoring
the result with the usual metrics gives the **order-free** α/β IoU (the best of the two assignments, image by
image). The overlap class and the background do not change under the swap, so their scores are the same
either way.

"Better" is decided on the complete chromosomes (α ∪ overlap, β ∪ overlap): the assignment with the larger sum
of the two IoUs; a tie keeps the prediction as it is. The complete chromosomes decide (rather than the
α-only/β-only regions) because they are what a karyotyping user cuts out.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_assignment"]


def _iou(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-image IoU of boolean (B, ...) masks; both empty → 1 (the metrics' empty policy)."""
    axes = tuple(range(1, p.ndim))
    inter = np.count_nonzero(p & t, axis=axes)
    union = np.count_nonzero(p | t, axis=axes)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def best_assignment(
    pred: np.ndarray, target: np.ndarray, *, alpha: int = 1, beta: int = 2, overlap: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` (B, H, W) label maps with α and β swapped where that fits ``target`` better (see the module
    docstring), and the boolean (B,) array of the images swapped. ``pred`` itself is not modified."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
    if pred.ndim < 3:
        raise ValueError(f"expected a batch of label maps (B, H, W), got shape {pred.shape}")
    t_alpha, t_beta = np.isin(target, (alpha, overlap)), np.isin(target, (beta, overlap))
    p_alpha, p_beta = np.isin(pred, (alpha, overlap)), np.isin(pred, (beta, overlap))
    as_is = _iou(p_alpha, t_alpha) + _iou(p_beta, t_beta)
    swapped_score = _iou(p_beta, t_alpha) + _iou(p_alpha, t_beta)
    swap = swapped_score > as_is
    out = pred.copy()
    if swap.any():
        chosen = out[swap]
        is_alpha, is_beta = chosen == alpha, chosen == beta
        chosen[is_alpha] = beta
        chosen[is_beta] = alpha
        out[swap] = chosen
    return out, swap
