"""Distances between a predicted and a true mask (the Hausdorff distance, at a percentile, in pixels or mm) and
the small array helpers they share with the overlap scores of :mod:`medseg.metrics.segmentation`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage

__all__ = ["HausdorffPoints", "as_bool_mask", "hausdorff_distance", "image_diagonal"]

#: the points the Hausdorff distance measures over: every point of both masks (AMFL Eq. 15), or their boundaries
HausdorffPoints = Literal["all", "surface"]


def _to_numpy(x: Any) -> np.ndarray:
    """A numpy view of a torch tensor (any device) or array-like."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_bool_mask(x: Any, what: str) -> np.ndarray:
    a = _to_numpy(x)
    if a.dtype == bool:
        return a
    if not np.isin(a, (0, 1)).all():
        raise ValueError(
            f"{what} must be a binary mask (bool or 0/1); got values {np.unique(a)[:8].tolist()}... "
            "Threshold probabilities (or take the argmax of logits) before computing metrics."
        )
    return a.astype(bool)


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Largest distance between two pixel centres of an image of ``shape``, in spacing units."""
    sp = _spacing_for(len(shape), spacing)
    return float(math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, sp, strict=True))))


def _spacing_for(ndim: int, spacing: Sequence[float] | float | None) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        return (float(spacing),) * ndim  # type: ignore[arg-type]
    sp = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} values for {ndim} spatial dimensions")
    if any(s <= 0 for s in sp):
        raise ValueError(f"spacing values must be positive, got {sp}")
    return sp


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary points: the mask minus its erosion by the cross-shaped element (MONAI's ``get_mask_edges``)."""
    return mask & ~ndimage.binary_erosion(mask)


def hausdorff_distance(
    pred_mask: Any,
    true_mask: Any,
    spacing: Sequence[float] | float | None = None,
    percentile: float | None = None,
    *,
    points: HausdorffPoints = "all",
) -> float:
    """Symmetric Euclidean Hausdorff distance between two binary masks, in spacing units (AMFL Eq. 15).

    ``points="all"`` (default, Eq. 15) measures over all points of both sets; ``points="surface"`` over their
    boundary points only, as MONAI does. ``percentile`` (0..100) replaces each directed maximum by that
    percentile. Empty masks follow the module policy: 0 when both are empty, the image diagonal when one is.
    Computed with ``scipy.ndimage.distance_transform_edt`` on the bounding box of the union, so a 128 x 128
    image takes well under a millisecond.
    """
    p = as_bool_mask(pred_mask, "pred_mask")
    g = as_bool_mask(true_mask, "true_mask")
    if p.shape != g.shape:
        raise ValueError(f"pred_mask and true_mask shapes differ: {p.shape} vs {g.shape}")
    if points not in ("all", "surface"):
        raise ValueError(f"points must be 'all' or 'surface', got {points!r}")
    if percentile is not None and not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    sp = _spacing_for(p.ndim, spacing)
    p_any, g_any = bool(p.any()), bool(g.any())
    if not p_any and not g_any:
        return 0.0
    if not p_any or not g_any:
        return image_diagonal(p.shape, sp)
    # Crop to the bounding box of the union: every point of both sets lies inside, so the nearest point of
    # one set to a point of the other is inside too and the distances are unchanged.
    union = p | g
    box = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in np.nonzero(union))
    p, g = p[box], g[box]
    if points == "surface":
        p, g = _surface(p), _surface(g)
    d_pg = ndimage.distance_transform_edt(~g, sampling=sp)[p]  # each point of P to the nearest of G
    d_gp = ndimage.distance_transform_edt(~p, sampling=sp)[g]
    if percentile is None:
        return float(max(d_pg.max(), d_gp.max()))
    return float(max(np.percentile(d_pg, percentile), np.percentile(d_gp, percentile)))
