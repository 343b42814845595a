"""Hausdorff distances of volumes with their own voxel sizes: given per batch or per image, reported in mm
(``hausdorff_unit``), and never mixed with distances in voxels in one mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.metrics import SegmentationMetrics, hausdorff_distance

NAMES = ["background", "organ"]


def _pair():
    """(D, H, W) = (3, 4, 5): truth at (0,0,0) and (0,0,4), prediction at (1,0,0)."""
    g = np.zeros((3, 4, 5), np.uint8)
    p = np.zeros_like(g)
    g[0, 0, 0] = g[0, 0, 4] = 1
    p[1, 0, 0] = 1
    return p, g


def test_anisotropic_volume_pair_in_mm_differs_from_voxels():
    p, g = _pair()
    sp = (2.0, 0.5, 1.0)
    voxels = SegmentationMetrics(NAMES)
    voxels.update(p[None], g[None])
    mm = SegmentationMetrics(NAMES)
    mm.update(p[None], g[None], spacing=sp)
    agg_px, agg_mm = voxels.aggregate(), mm.aggregate()
    assert agg_px["per_class"]["organ"]["hausdorff"] == pytest.approx(math.sqrt(17))  # sqrt(1 + 16) voxels
    assert agg_mm["per_class"]["organ"]["hausdorff"] == pytest.approx(math.sqrt(20))  # sqrt(2² + 4²) mm
    assert agg_px["hausdorff_unit"] == "px" and agg_mm["hausdorff_unit"] == "mm"
    assert agg_mm["spacing"] == list(sp) and agg_px["spacing"] is None
    assert mm.per_image()[0]["hausdorff_unit"] == "mm" and mm.per_image()[0]["spacing"] == list(sp)
    # the constructor's spacing says the same
    fixed = SegmentationMetrics(NAMES, spacing=sp)
    fixed.update(p[None], g[None])
    assert fixed.aggregate()["hausdorff_unit"] == "mm"
    assert fixed.aggregate()["per_class"]["organ"]["hausdorff"] == pytest.approx(math.sqrt(20))


def test_one_spacing_per_image():
    p, g = _pair()
    spacings = [(2.0, 0.5, 1.0), (1.0, 1.0, 3.0)]
    m = SegmentationMetrics(NAMES)
    m.update(np.stack([p, p]), np.stack([g, g]), spacing=spacings)
    rows = m.per_image()
    for row, sp in zip(rows, spacings, strict=True):
        assert row["hausdorff/organ"] == pytest.approx(hausdorff_distance(p, g, spacing=sp))
        assert row["spacing"] == list(sp)
    assert rows[1]["hausdorff/organ"] == pytest.approx(math.sqrt(1 + 144))  # (0,0,4) -> (1,0,0): 1 mm, 12 mm
    agg = m.aggregate()
    assert agg["spacing"] == "per image" and agg["hausdorff_unit"] == "mm"


def test_spacing_shape_and_mixing_are_checked():
    p, g = _pair()
    m = SegmentationMetrics(NAMES)
    with pytest.raises(ValueError, match="spacing"):
        m.update(p[None], g[None], spacing=(1.0, 1.0))  # 2 values for 3 axes
    with pytest.raises(ValueError, match="one per image"):
        m.update(p[None], g[None], spacing=[(1.0, 1.0, 1.0)] * 2)  # 2 spacings for 1 image
    m.update(p[None], g[None], spacing=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="mix"):
        m.update(p[None], g[None])  # no spacing now: mm and voxels in one mean
    assert len(m) == 1


def test_refused_spacing_leaves_the_confusion_matrix_alone():
    p, g = _pair()
    m = SegmentationMetrics(NAMES)
    with pytest.raises(ValueError, match="spacing"):
        m.update(p[None], g[None], spacing=(1.0, 1.0))
    assert m.confusion().sum() == 0 and len(m) == 0
