"""Order-free α/β scoring of chromosome pairs (medseg.metrics.pairs)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.metrics import SegmentationMetrics
from medseg.metrics.pairs import best_assignment


def _pair(h: int = 20, w: int = 20) -> np.ndarray:
    """A truth label map: α a horizontal bar (1), β a vertical bar (2), their crossing the overlap (3)."""
    t = np.zeros((h, w), np.int64)
    t[9:12, 2:18] = 1
    t[2:18, 9:12] = 2
    t[9:12, 9:12] = 3
    return t


def _swap(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[a == 1], out[a == 2] = 2, 1
    return out


def test_a_perfect_segmentation_named_the_other_way_round_is_swapped_and_then_perfect():
    truth = np.stack([_pair(), _pair()])
    pred = np.stack([_swap(_pair()), _pair()])  # image 0 named the other way round, image 1 as the rule says
    fixed, swapped = best_assignment(pred, truth)
    assert swapped.tolist() == [True, False]
    assert np.array_equal(fixed, truth)
    assert np.array_equal(pred[0], _swap(_pair())), "the input is not modified"
    m_rule = SegmentationMetrics(["background", "chromosome_alpha", "chromosome_beta", "overlap"], hausdorff=False)
    m_rule.update(pred, truth)
    m_free = SegmentationMetrics(["background", "chromosome_alpha", "chromosome_beta", "overlap"], hausdorff=False)
    m_free.update(fixed, truth)
    rule, free = m_rule.aggregate()["per_class"], m_free.aggregate()["per_class"]
    assert rule["chromosome_alpha"]["iou"] == pytest.approx(0.5)  # image 0 scores 0 under the rule
    assert free["chromosome_alpha"]["iou"] == pytest.approx(1.0)
    assert free["overlap"]["iou"] == rule["overlap"]["iou"], "the overlap does not depend on the naming"


def test_the_naming_that_fits_the_complete_chromosomes_better_wins_and_a_tie_keeps_the_prediction():
    truth = _pair()[None]
    pred = _pair()[None].copy()
    pred[0, 9:12, 2:6] = 2  # part of α's arm called β: still closer to the rule's naming than to the swap
    fixed, swapped = best_assignment(pred, truth)
    assert not swapped[0] and np.array_equal(fixed, pred)
    empty = np.zeros((1, 20, 20), np.int64)
    fixed, swapped = best_assignment(empty, empty)  # both namings score the same: kept
    assert not swapped[0]
    only_overlap = np.where(_pair() == 3, 3, 0)[None]
    _, swapped = best_assignment(only_overlap, truth)  # α and β equally (un)matched: kept
    assert not swapped[0]


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="shapes differ"):
        best_assignment(np.zeros((1, 4, 4), int), np.zeros((1, 4, 5), int))
    with pytest.raises(ValueError, match="batch of label maps"):
        best_assignment(np.zeros((4, 4), int), np.zeros((4, 4), int))
