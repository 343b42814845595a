"""UW-Madison GI Tract competition score: hand-computed examples, empty rules, aggregation, scipy agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import directed_hausdorff

from medseg.metrics.uw_score import UW_ORGANS, UWScore, uw_scan_score, volume_diagonal


def _vol(c: int, d: int, h: int, w: int, voxels: dict[int, list[tuple[int, int, int]]] | None = None) -> np.ndarray:
    a = np.zeros((c, d, h, w), dtype=bool)
    for ch, pts in (voxels or {}).items():
        for z, y, x in pts:
            a[ch, z, y, x] = True
    return a


def _two_slice_scan():
    # slice 0: pred {(0,0),(0,1)}, truth {(0,1),(0,2)} -> Dice 2*1/4 = 0.5; slice 1: identical -> Dice 1
    pred = _vol(1, 2, 4, 4, {0: [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1)]})
    true = _vol(1, 2, 4, 4, {0: [(0, 0, 1), (0, 0, 2), (1, 0, 0), (1, 0, 1)]})
    return pred, true


def test_two_slice_scan_hand_computed():
    pred, true = _two_slice_scan()
    r = uw_scan_score(pred, true, organ_names=["organ"])
    assert r["dice"] == pytest.approx(0.75)  # mean of the slice Dices 0.5 and 1
    # HD: (0,0,0) -> nearest truth at distance 1; truth (0,0,2) -> nearest pred (0,0,1) at 1. diagonal sqrt(4+16+16)=6
    assert r["per_organ"]["organ"]["hausdorff"] == pytest.approx(1.0)
    assert r["diagonal"] == pytest.approx(6.0)
    assert r["hausdorff_score"] == pytest.approx(5 / 6)
    assert r["score"] == pytest.approx(0.4 * 0.75 + 0.6 * 5 / 6)  # 0.8
    assert r["score"] == pytest.approx(0.8)
    # no empty slice: both conventions agree
    assert r["by_convention"]["zero"]["dice"] == pytest.approx(0.75)
    assert r["per_organ"]["organ"]["n_slices_true"] == 2


def test_single_voxel_offset_hausdorff_and_diagonal():
    d, h, w = 3, 4, 5
    pred = _vol(1, d, h, w, {0: [(1, 1, 1)]})
    true = _vol(1, d, h, w, {0: [(1, 2, 3)]})
    r = uw_scan_score(pred, true)
    hd = math.sqrt(0 + 1 + 4)
    diag = math.sqrt(3**2 + 4**2 + 5**2)
    assert volume_diagonal((d, h, w)) == pytest.approx(diag)
    assert r["diagonal"] == pytest.approx(diag)
    assert r["per_organ"]["organ_0"]["hausdorff"] == pytest.approx(hd)
    assert r["hausdorff_score"] == pytest.approx(1 - hd / diag)
    # slice 1 misses (Dice 0); slices 0 and 2 are empty on both sides: 1 (competition) or 0 (paper)
    assert r["dice"] == pytest.approx(2 / 3)
    assert r["by_convention"]["one"]["dice"] == pytest.approx(2 / 3)
    assert r["by_convention"]["zero"]["dice"] == pytest.approx(0.0)
    assert r["by_convention"]["zero"]["score"] == pytest.approx(0.6 * (1 - hd / diag))
    rz = uw_scan_score(pred, true, empty_dice="zero")
    assert rz["dice"] == pytest.approx(0.0)
    assert rz["empty_dice"] == "zero"
    assert rz["hausdorff_score"] == pytest.approx(r["hausdorff_score"])


def test_slice_offset_counts_one_unit_deep():
    # the same pixel on neighbouring slices: HD 1 (slice depth 1)
    pred = _vol(1, 4, 6, 6, {0: [(1, 2, 2)]})
    true = _vol(1, 4, 6, 6, {0: [(2, 2, 2)]})
    r = uw_scan_score(pred, true)
    assert r["per_organ"]["organ_0"]["hausdorff"] == pytest.approx(1.0)
    assert r["hausdorff_score"] == pytest.approx(1 - 1 / math.sqrt(16 + 36 + 36))


def test_both_empty_under_both_conventions():
    empty = _vol(1, 2, 3, 3)
    r = uw_scan_score(empty, empty)
    assert (r["dice"], r["hausdorff_score"], r["score"]) == (1.0, 1.0, 1.0)
    assert r["per_organ"]["organ_0"]["hausdorff"] == 0.0
    rz = uw_scan_score(empty, empty, empty_dice="zero")
    assert rz["dice"] == 0.0
    assert rz["hausdorff_score"] == 1.0
    assert rz["score"] == pytest.approx(0.6)
    assert r["by_convention"]["zero"] == rz["by_convention"]["zero"]


@pytest.mark.parametrize("conv", ["one", "zero"])
@pytest.mark.parametrize("pred_has", [True, False])
def test_exactly_one_empty(conv, pred_has):
    some = _vol(1, 1, 3, 3, {0: [(0, 1, 1)]})
    empty = _vol(1, 1, 3, 3)
    pred, true = (some, empty) if pred_has else (empty, some)
    r = uw_scan_score(pred, true, empty_dice=conv)
    assert r["dice"] == 0.0
    assert r["hausdorff_score"] == 0.0
    assert r["score"] == 0.0
    assert r["per_organ"]["organ_0"]["hausdorff"] is None


def test_one_empty_volume_with_empty_slices():
    # slice 0 has truth but no prediction (Dice 0), slice 1 is empty on both sides
    pred = _vol(1, 2, 3, 3)
    true = _vol(1, 2, 3, 3, {0: [(0, 0, 0)]})
    r = uw_scan_score(pred, true)
    assert r["dice"] == pytest.approx(0.5)
    assert r["by_convention"]["zero"]["dice"] == 0.0
    assert r["hausdorff_score"] == 0.0


def test_perfect_prediction_is_one():
    rng = np.random.default_rng(0)
    true = rng.random((3, 5, 8, 8)) < 0.3
    true[:, :, 0, 0] = True  # every (organ, slice) image non-empty, so both conventions give 1
    for target in (true, torch.from_numpy(true)):
        r = uw_scan_score(target, target)
        assert r["dice"] == r["hausdorff_score"] == r["score"] == 1.0
        assert r["by_convention"]["zero"]["score"] == 1.0
        assert list(r["per_organ"]) == list(UW_ORGANS)
        assert all(o["score"] == 1.0 for o in r["per_organ"].values())


def test_completely_wrong_components_are_zero():
    rng = np.random.default_rng(1)
    true = rng.random((3, 4, 6, 6)) < 0.4
    true[:, :, 0, 0] = True
    empty = np.zeros_like(true)
    r = uw_scan_score(empty, true)  # nothing found anywhere
    assert r["dice"] == 0.0
    assert r["hausdorff_score"] == 0.0
    assert r["score"] == 0.0
    # found everywhere it is not: every slice Dice 0
    r2 = uw_scan_score(~true, true)
    assert r2["dice"] == 0.0
    assert r2["by_convention"]["zero"]["dice"] == 0.0
    # opposite corners: Dice 0, HD = corner-to-corner distance, score 1 - sqrt(Σ(n-1)²)/sqrt(Σn²)
    d, h, w = 3, 4, 5
    p = _vol(1, d, h, w, {0: [(0, 0, 0)]})
    t = _vol(1, d, h, w, {0: [(d - 1, h - 1, w - 1)]})
    r3 = uw_scan_score(p, t, empty_dice="zero")
    assert r3["dice"] == 0.0
    far = math.sqrt(2**2 + 3**2 + 4**2)
    assert r3["per_organ"]["organ_0"]["hausdorff"] == pytest.approx(far)
    assert r3["hausdorff_score"] == pytest.approx(1 - far / math.sqrt(50))


def test_per_organ_and_means_across_organs():
    pred, true = _two_slice_scan()
    empty = np.zeros_like(pred)
    p = np.concatenate([pred, empty, pred], axis=0)
    t = np.concatenate([true, empty, empty], axis=0)
    r = uw_scan_score(p, t)
    po = r["per_organ"]
    assert po["large_bowel"]["dice"] == pytest.approx(0.75)
    assert po["small_bowel"]["dice"] == 1.0 and po["small_bowel"]["hausdorff_score"] == 1.0
    assert po["stomach"]["dice"] == 0.0 and po["stomach"]["hausdorff_score"] == 0.0
    assert r["dice"] == pytest.approx((0.75 + 1 + 0) / 3)
    assert r["hausdorff_score"] == pytest.approx((5 / 6 + 1 + 0) / 3)
    assert r["score"] == pytest.approx(np.mean([o["score"] for o in po.values()]))
    zero = r["by_convention"]["zero"]
    assert zero["per_organ"]["small_bowel"]["dice"] == 0.0
    assert zero["dice"] == pytest.approx(0.75 / 3)


def test_uwscore_aggregates_over_scans():
    pred, true = _two_slice_scan()  # 2 slices: dice 0.75 (both conventions), haus 5/6
    empty = _vol(1, 3, 4, 4)  # 3 slices: dice 1 / 0, haus 1
    m = UWScore(organ_names=["organ"])
    m.update(pred, true, "case1_day1")
    m.update(empty, empty, "case1_day2")
    assert len(m) == 2
    agg = m.aggregate()
    assert agg["n_scans"] == 2 and agg["empty_dice"] == "one"
    assert agg["dice"] == pytest.approx((0.75 + 1) / 2)
    assert agg["hausdorff_score"] == pytest.approx((5 / 6 + 1) / 2)
    assert agg["uw_score"] == pytest.approx((0.8 + 1.0) / 2)
    assert agg["dice_over_images"] == pytest.approx((0.75 * 2 + 1 * 3) / 5)
    assert agg["per_organ"]["organ"]["uw_score"] == pytest.approx(0.9)
    other = agg["other_convention"]
    assert other["empty_dice"] == "zero"
    assert other["dice"] == pytest.approx(0.75 / 2)
    assert other["hausdorff_score"] == pytest.approx(agg["hausdorff_score"])
    assert other["uw_score"] == pytest.approx((0.8 + 0.6) / 2)
    assert other["dice_over_images"] == pytest.approx(0.75 * 2 / 5)
    # the paper's convention as the main one swaps the two summaries
    mz = UWScore(empty_dice="zero", organ_names=["organ"])
    mz.update(pred, true, "a")
    mz.update(empty, empty, "b")
    aggz = mz.aggregate()
    assert aggz["uw_score"] == pytest.approx(other["uw_score"])
    assert aggz["other_convention"]["uw_score"] == pytest.approx(agg["uw_score"])
    assert list(m.per_scan()) == ["case1_day1", "case1_day2"]


def test_uwscore_errors():
    m = UWScore()
    with pytest.raises(ValueError, match="no scans"):
        m.aggregate()
    a = _vol(3, 2, 4, 4)
    m.update(a, a, 7)
    with pytest.raises(ValueError, match="already added"):
        m.update(a, a, "7")
    with pytest.raises(ValueError, match="organs"):
        m.update(_vol(2, 2, 4, 4), _vol(2, 2, 4, 4), "other")
    m.reset()
    assert len(m) == 0
    with pytest.raises(ValueError, match="empty_dice"):
        UWScore(empty_dice="nan")


def test_input_errors():
    a = _vol(1, 2, 4, 4)
    with pytest.raises(ValueError, match="C, D, H, W"):
        uw_scan_score(a[0], a[0])
    with pytest.raises(ValueError, match="shapes differ"):
        uw_scan_score(a, _vol(1, 3, 4, 4))
    with pytest.raises(ValueError, match="empty_dice"):
        uw_scan_score(a, a, empty_dice="nan")
    with pytest.raises(ValueError, match="binary"):
        uw_scan_score(a * 0.5 + 0.2, a)
    with pytest.raises(ValueError, match="organ names"):
        uw_scan_score(a, a, organ_names=["x", "y"])


@pytest.mark.parametrize("seed", range(6))
def test_hausdorff_matches_scipy_directed_hausdorff(seed):
    rng = np.random.default_rng(seed)
    shape = (2, 6, 13, 11)
    pred = rng.random(shape) < 0.03
    true = rng.random(shape) < 0.03
    pred[:, rng.integers(6), rng.integers(13), rng.integers(11)] = True  # non-empty on both sides
    true[:, rng.integers(6), rng.integers(13), rng.integers(11)] = True
    r = uw_scan_score(torch.from_numpy(pred), torch.from_numpy(true.astype(np.uint8)))
    diag = math.sqrt(6**2 + 13**2 + 11**2)
    expected_scores = []
    for j, name in enumerate(r["per_organ"]):
        a, b = np.argwhere(pred[j]).astype(float), np.argwhere(true[j]).astype(float)  # (z, y, x), unit spacing
        hd = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
        assert r["per_organ"][name]["hausdorff"] == pytest.approx(hd)
        expected_scores.append(1 - hd / diag)
        assert r["per_organ"][name]["hausdorff_score"] == pytest.approx(expected_scores[-1])
    assert r["hausdorff_score"] == pytest.approx(np.mean(expected_scores))
