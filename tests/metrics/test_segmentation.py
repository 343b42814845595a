"""Tests of medseg.metrics.segmentation: hand-worked cases, empty-mask policy, and agreement with MONAI."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import directed_hausdorff

from medseg.metrics import (
    SegmentationMetrics,
    binary_stats,
    confusion_matrix,
    hausdorff_distance,
    image_diagonal,
    scores_from_counts,
)

# MONAI's own deprecation notice from inside its Hausdorff code, not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")

CLASSES = ["background", "chromosome_alpha", "chromosome_beta", "overlap"]
WHOLE = {"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]}


def _m(rows: list[str]) -> np.ndarray:
    return np.array([[int(c) for c in r] for r in rows])


# --------------------------------------------------------------------------- confusion matrix
def test_confusion_matrix_hand_case_rows_truth_cols_pred():
    target = np.array([[0, 1], [2, 3]])
    pred = np.array([[0, 1], [3, 3]])
    # truth 0->pred 0, 1->1, 2->3 (the error), 3->3
    expected = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]])
    cm = confusion_matrix(pred, target, 4)
    assert cm.dtype == np.int64 and cm.shape == (4, 4)
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 4), expected)


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside 0..3"):
        confusion_matrix(np.array([0, 4]), np.array([0, 1]), 4)
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 4)


# --------------------------------------------------------------------------- one binary structure
TRUE_SQ = _m(["1100", "1100", "0000", "0000"])
PRED_SQ = _m(["0110", "0110", "0000", "0000"])


def test_binary_stats_and_scores_hand_case():
    # truth 4 px, prediction 4 px, shared column 1 of rows 0-1 -> tp 2, fp 2, fn 2, tn 16 - 6 = 10
    stats = binary_stats(PRED_SQ, TRUE_SQ)
    assert stats == {"tp": 2, "fp": 2, "fn": 2, "tn": 10}
    s = scores_from_counts(**stats)
    assert s["iou"] == pytest.approx(2 / 6)  # 2 / (2 + 2 + 2)
    assert s["dice"] == pytest.approx(0.5)  # 2*2 / (2*2 + 2 + 2)
    assert s["precision"] == pytest.approx(0.5)  # 2 / 4
    assert s["recall"] == pytest.approx(0.5)  # 2 / 4
    assert s["fnr"] == pytest.approx(0.5)  # 2 / 4
    assert s["fpr"] == pytest.approx(1 / 6)  # 2 / (2 + 10)
    assert s["accuracy"] == pytest.approx(0.75)  # (2 + 10) / 16


def test_hausdorff_hand_case():
    # truth {(0,0),(0,1),(1,0),(1,1)}, prediction shifted right by one column:
    # truth (0,0) -> nearest prediction (0,1) at 1; prediction (0,2) -> nearest truth (0,1) at 1 -> HD = 1
    assert hausdorff_distance(PRED_SQ, TRUE_SQ) == pytest.approx(1.0)
    assert hausdorff_distance(PRED_SQ, TRUE_SQ, points="surface") == pytest.approx(1.0)
    # single pixels at (0,0) and (0,3): HD = 3; with spacing (1, 0.5) -> 1.5
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[0, 0], b[0, 3] = True, True
    assert hausdorff_distance(a, b) == pytest.approx(3.0)
    assert hausdorff_distance(a, b, spacing=(1.0, 0.5)) == pytest.approx(1.5)


def test_hausdorff_percentile_hand_case():
    # truth = {(0,0)}, prediction = row of 5 pixels. truth->pred distances: [0]; pred->truth: [0,1,2,3,4]
    g = np.zeros((1, 5), bool)
    g[0, 0] = True
    p = np.ones((1, 5), bool)
    assert hausdorff_distance(p, g) == pytest.approx(4.0)
    assert hausdorff_distance(p, g, percentile=50) == pytest.approx(2.0)  # median of 0..4
    assert hausdorff_distance(p, g, percentile=95) == pytest.approx(3.8)  # linear: 0.95 * 4
    assert hausdorff_distance(p, g, percentile=100) == pytest.approx(4.0)


def test_hausdorff_all_points_vs_surface_points_differ_for_a_hole():
    # truth: 7x7 square with its centre pixel missing; prediction: the full square.
    # All points (AMFL Eq. 15): pred centre (4,4) is 1 from the nearest truth pixel, truth is inside pred -> HD 1.
    # Surface points (MONAI): truth's boundary includes the 4 pixels around the hole, e.g. (3,4), which are
    # 2 from the prediction's boundary ring (row 1) -> HD 2.
    pred = np.zeros((9, 9), bool)
    pred[1:8, 1:8] = True
    truth = pred.copy()
    truth[4, 4] = False
    assert hausdorff_distance(pred, truth) == pytest.approx(1.0)
    assert hausdorff_distance(pred, truth, points="surface") == pytest.approx(2.0)


# --------------------------------------------------------------------------- empty-mask policy
DIAG_4x4 = 3 * math.sqrt(2)  # (4 - 1) * sqrt(2) = 4.2426


def _scores(pred, true):
    return {k: float(v) for k, v in scores_from_counts(**binary_stats(pred, true)).items()}


def test_empty_both():
    z = np.zeros((4, 4), bool)
    s = _scores(z, z)
    assert (s["iou"], s["dice"], s["precision"], s["recall"], s["fnr"], s["fpr"]) == (1, 1, 1, 1, 0, 0)
    assert hausdorff_distance(z, z) == 0.0
    assert hausdorff_distance(z, z, points="surface", percentile=95) == 0.0


def test_empty_truth_prediction_not():
    z = np.zeros((4, 4), bool)
    p = z.copy()
    p[0, :2] = True  # 2 false-positive pixels, tn = 14
    s = _scores(p, z)
    assert (s["iou"], s["dice"], s["precision"], s["recall"], s["fnr"]) == (0, 0, 0, 0, 1)
    assert s["fpr"] == pytest.approx(2 / 16)
    assert hausdorff_distance(p, z) == pytest.approx(DIAG_4x4)
    assert image_diagonal((4, 4)) == pytest.approx(DIAG_4x4)


def test_empty_prediction_truth_not():
    z = np.zeros((4, 4), bool)
    g = z.copy()
    g[0, :2] = True
    s = _scores(z, g)
    assert (s["iou"], s["dice"], s["precision"], s["recall"], s["fnr"], s["fpr"]) == (0, 0, 0, 0, 1, 0)
    assert hausdorff_distance(z, g) == pytest.approx(DIAG_4x4)
    assert hausdorff_distance(z, g, percentile=95, spacing=(2.0, 1.0)) == pytest.approx(math.sqrt(36 + 9))


def test_both_non_empty_disjoint():
    # truth (0,0), prediction (0,3): no overlap but finite distance 3
    g = np.zeros((4, 4), bool)
    p = g.copy()
    g[0, 0], p[0, 3] = True, True
    s = _scores(p, g)
    assert (s["iou"], s["dice"], s["precision"], s["recall"], s["fnr"]) == (0, 0, 0, 0, 1)
    assert hausdorff_distance(p, g) == pytest.approx(3.0)


def test_misses_are_counted_in_means_never_nan():
    # image 0: overlap predicted perfectly; image 1: overlap present in truth, prediction misses it
    t = np.zeros((2, 4, 4), int)
    t[:, 0, :2] = 1
    t[:, 1, 1] = 3
    p = t.copy()
    p[1, 1, 1] = 1  # the overlap pixel predicted as alpha
    m = SegmentationMetrics(CLASSES)
    m.update(p, t)
    agg = m.aggregate()
    ov = agg["per_class"]["overlap"]
    assert ov["iou"] == pytest.approx(0.5)  # (1 + 0) / 2: the miss counts as 0
    assert ov["hausdorff"] == pytest.approx(DIAG_4x4 / 2)  # (0 + diagonal) / 2
    assert ov["recall"] == pytest.approx(0.5) and ov["precision"] == pytest.approx(0.5)
    assert ov["n_images_present"] == 2
    flat = json.dumps(agg, allow_nan=False)  # raises on NaN/inf
    assert "NaN" not in flat


# --------------------------------------------------------------------------- SegmentationMetrics, multi-class
T1 = _m(["1132", "1132", "0000", "0000"])
P1 = _m(["1112", "1132", "0002", "0000"])


def test_multiclass_hand_case_with_derived_structures():
    m = SegmentationMetrics(CLASSES, derived=WHOLE)
    m.update(P1[None], T1[None])
    row = m.per_image()[0]
    # alpha (1): truth 4 px, pred 5 px (+ (0,2)) -> tp 4, fp 1 -> IoU 4/5
    assert row["iou/chromosome_alpha"] == pytest.approx(0.8)
    assert row["precision/chromosome_alpha"] == pytest.approx(0.8)
    # beta (2): truth 2 px, pred 3 px (+ (2,3)) -> IoU 2/3, Dice 4/5
    assert row["iou/chromosome_beta"] == pytest.approx(2 / 3)
    assert row["dice/chromosome_beta"] == pytest.approx(0.8)
    # overlap (3): truth {(0,2),(1,2)}, pred {(1,2)} -> IoU 1/2, recall 1/2, HD 1
    assert row["iou/overlap"] == pytest.approx(0.5)
    assert row["recall/overlap"] == pytest.approx(0.5)
    assert row["hausdorff/overlap"] == pytest.approx(1.0)
    # complete alpha {1,3}: same 6 pixels in truth and prediction -> IoU 1, HD 0
    assert row["iou/chromosome_alpha_whole"] == pytest.approx(1.0)
    assert row["hausdorff/chromosome_alpha_whole"] == pytest.approx(0.0)
    # complete beta {2,3}: truth {(0,2),(1,2),(0,3),(1,3)}, pred {(1,2),(0,3),(1,3),(2,3)} -> tp 3 fp 1 fn 1
    assert row["iou/chromosome_beta_whole"] == pytest.approx(0.6)
    # accuracies: 2 wrong pixels of 16 (Eq. 8) -> 14/16; fg/bg: only (2,3) wrong -> 15/16;
    # derived: alpha-whole 16/16, beta-whole 14/16 -> mean 0.9375
    assert row["pixel_accuracy"] == pytest.approx(14 / 16)
    assert row["foreground_accuracy"] == pytest.approx(15 / 16)
    assert row["derived_accuracy"] == pytest.approx((1 + 14 / 16) / 2)
    agg = m.aggregate()
    assert agg["derived_accuracy"] == pytest.approx(0.9375)
    assert agg["per_class"]["chromosome_beta_whole"]["members"] == ["chromosome_beta", "overlap"]
    assert "background" not in agg["per_class"]
    # mean over the three non-background classes: IoU (0.8 + 2/3 + 0.5) / 3
    assert agg["mean"]["iou"] == pytest.approx((0.8 + 2 / 3 + 0.5) / 3)
    assert agg["mean_over"] == CLASSES[1:]
    np.testing.assert_array_equal(m.confusion(), [[7, 0, 1, 0], [0, 4, 0, 0], [0, 0, 2, 0], [0, 1, 0, 1]])


def test_pooled_iou_differs_from_mean_over_images():
    # image 0 = hand case (overlap tp 1, fn 1, IoU 0.5); image 1 = all background (overlap absent, IoU 1)
    m = SegmentationMetrics(CLASSES)
    m.update(np.stack([P1, np.zeros_like(P1)]), np.stack([T1, np.zeros_like(T1)]))
    ov = m.aggregate()["per_class"]["overlap"]
    assert ov["iou"] == pytest.approx(0.75)  # (0.5 + 1) / 2
    assert ov["iou_pooled"] == pytest.approx(0.5)  # 1 / (1 + 0 + 1)
    assert ov["dice_pooled"] == pytest.approx(2 / 3)  # 2 / (2 + 0 + 1)
    assert ov["n_images_present"] == 1


def test_update_accumulates_and_reset_and_torch_input():
    m = SegmentationMetrics(CLASSES, include_background=True, hausdorff=False)
    m.update(torch.from_numpy(P1[None]), torch.from_numpy(T1[None]))
    m.update(P1[None], T1[None])
    rows = m.per_image()
    assert [r["index"] for r in rows] == [0, 1]
    assert "hausdorff/overlap" not in rows[0]
    agg = m.aggregate()
    assert agg["n_images"] == 2 and "background" in agg["per_class"]
    # background: truth 8 px, pred 7 px all correct -> IoU 7/8
    assert agg["per_class"]["background"]["iou"] == pytest.approx(7 / 8)
    assert agg["mean_over"] == CLASSES
    np.testing.assert_array_equal(m.confusion(), 2 * np.array([[7, 0, 1, 0], [0, 4, 0, 0], [0, 0, 2, 0], [0, 1, 0, 1]]))
    m.reset()
    with pytest.raises(ValueError, match="no images"):
        m.aggregate()


def test_input_validation():
    m = SegmentationMetrics(CLASSES)
    with pytest.raises(ValueError, match="outside 0..3"):
        m.update(np.full((1, 2, 2), 5), np.zeros((1, 2, 2), int))
    with pytest.raises(ValueError, match="batch dimension"):
        m.update(np.zeros((4, 4), int), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="clashes"):
        SegmentationMetrics(CLASSES, derived={"overlap": [1, 3]})
    with pytest.raises(ValueError, match="background"):
        SegmentationMetrics(CLASSES, derived={"x": [0, 1]})
    with pytest.raises(ValueError, match="spacing"):
        SegmentationMetrics(CLASSES, spacing=(1.0, 1.0, 1.0)).update(P1[None], T1[None])


# --------------------------------------------------------------------------- multi-label
def test_multilabel_hand_case_overlapping_channels():
    names = ["large_bowel", "stomach"]
    t = np.zeros((1, 2, 2, 3), bool)
    p = np.zeros_like(t)
    t[0, 0, 0, :2] = True  # channel 0 truth: (0,0),(0,1)
    t[0, 1, 0, 1:] = True  # channel 1 truth: (0,1),(0,2) -> (0,1) carries both labels
    p[0, 0, 0, :] = True  # channel 0 pred: (0,0),(0,1),(0,2) -> tp 2, fp 1
    p[0, 1, 0, 1:] = True  # channel 1 pred: exact
    m = SegmentationMetrics(names, mode="multilabel", derived={"any": [0, 1]})
    m.update(torch.from_numpy(p), torch.from_numpy(t))
    row = m.per_image()[0]
    assert row["iou/large_bowel"] == pytest.approx(2 / 3)
    assert row["dice/large_bowel"] == pytest.approx(0.8)  # 4 / 5
    assert row["iou/stomach"] == pytest.approx(1.0)
    assert row["iou/any"] == pytest.approx(1.0)  # unions agree
    # pixel correct iff all channels correct: only (0,2) is wrong (channel 0) -> 5/6
    assert row["pixel_accuracy"] == pytest.approx(5 / 6)
    assert row["foreground_accuracy"] == pytest.approx(1.0)
    agg = m.aggregate()
    assert set(agg["per_class"]) == {"large_bowel", "stomach", "any"}
    assert "confusion_matrix" not in agg
    with pytest.raises(ValueError, match="multiclass"):
        m.confusion()
    with pytest.raises(ValueError, match="binary"):
        m.update(np.full((1, 2, 2, 3), 0.7), t)


# --------------------------------------------------------------------------- 3D, anisotropic spacing
def test_hausdorff_3d_anisotropic_hand_case():
    # volume (D, H, W) = (3, 4, 5), spacing (2.0, 0.5, 1.0)
    sp = (2.0, 0.5, 1.0)
    g = np.zeros((3, 4, 5), bool)
    p = np.zeros_like(g)
    g[0, 0, 0] = g[0, 0, 4] = True
    p[1, 0, 0] = True
    # truth (0,0,4) -> pred (1,0,0): sqrt((1*2)^2 + (4*1)^2) = sqrt(20); truth (0,0,0) -> 2; pred -> truth 2
    assert hausdorff_distance(p, g, spacing=sp) == pytest.approx(math.sqrt(20))
    assert hausdorff_distance(p, g) == pytest.approx(math.sqrt(17))  # unit spacing: sqrt(1 + 16)
    # diagonal: sqrt((2*2)^2 + (3*0.5)^2 + (4*1)^2) = sqrt(34.25)
    assert hausdorff_distance(p, np.zeros_like(g), spacing=sp) == pytest.approx(math.sqrt(34.25))
    m = SegmentationMetrics(["background", "organ"], spacing=sp)
    m.update(p[None].astype(int), g[None].astype(int))
    assert m.aggregate()["per_class"]["organ"]["hausdorff"] == pytest.approx(math.sqrt(20))


# --------------------------------------------------------------------------- brute force and MONAI
def _blobs(rng, shape, n_classes, batch):
    """Smooth random label maps: argmax of Gaussian-filtered noise, so classes form blobs."""
    noise = rng.standard_normal((batch, n_classes, *shape))
    smooth = np.stack([[ndimage.gaussian_filter(c, 3) for c in b] for b in noise])
    return smooth.argmax(axis=1)


def _pair(seed, shape=(48, 48), n_classes=4, batch=4):
    rng = np.random.default_rng(seed)
    t = _blobs(rng, shape, n_classes, batch)
    p = t.copy()
    flip = rng.random(t.shape) < 0.05
    p[flip] = rng.integers(0, n_classes, flip.sum())
    p = ndimage.median_filter(p, size=(1,) + (3,) * len(shape))  # keep the errors blob-like
    for b in range(batch):  # every class present in both, so all definitions are finite
        for c in range(n_classes):
            assert (t[b] == c).any() and (p[b] == c).any()
    return p, t


def _onehot(x, c):
    return torch.nn.functional.one_hot(torch.as_tensor(x, dtype=torch.long), c).movedim(-1, 1).float()


def _brute_hd(p, g, spacing):
    a = np.argwhere(p) * np.asarray(spacing)
    b = np.argwhere(g) * np.asarray(spacing)
    return max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])


@pytest.mark.parametrize("shape,spacing", [((40, 40), (1.0, 1.0)), ((12, 20, 16), (3.0, 0.8, 1.1))])
def test_all_point_hausdorff_equals_brute_force(shape, spacing):
    p, t = _pair(1, shape=shape, batch=2)
    for b in range(2):
        for c in range(4):
            ours = hausdorff_distance(p[b] == c, t[b] == c, spacing=spacing)
            assert ours == pytest.approx(_brute_hd(p[b] == c, t[b] == c, spacing), rel=1e-9)


def test_dice_iou_match_monai():
    from monai.metrics import DiceMetric, MeanIoU

    p, t = _pair(2)
    m = SegmentationMetrics(CLASSES, include_background=True, hausdorff=False)
    m.update(p, t)
    rows = m.per_image()
    ours_dice = np.array([[r[f"dice/{n}"] for n in CLASSES] for r in rows])
    ours_iou = np.array([[r[f"iou/{n}"] for n in CLASSES] for r in rows])
    yp, yt = _onehot(p, 4), _onehot(t, 4)
    monai_dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(yp, yt).numpy()
    monai_iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)(yp, yt).numpy()
    np.testing.assert_allclose(ours_dice, monai_dice, rtol=1e-6)
    np.testing.assert_allclose(ours_iou, monai_iou, rtol=1e-6)


def test_confusion_counts_and_rates_match_monai():
    from monai.metrics import compute_confusion_matrix_metric, get_confusion_matrix

    p, t = _pair(3)
    m = SegmentationMetrics(CLASSES, include_background=True, hausdorff=False)
    m.update(p, t)
    rows = m.per_image()
    cm = get_confusion_matrix(_onehot(p, 4), _onehot(t, 4), include_background=True)  # (B, C, [tp, fp, tn, fn])
    for b in range(len(p)):
        for c in range(len(CLASSES)):
            st = binary_stats(p[b] == c, t[b] == c)
            assert [st["tp"], st["fp"], st["tn"], st["fn"]] == cm[b, c].int().tolist()
    for ours_key, monai_name in [("precision", "precision"), ("recall", "recall"), ("fnr", "fnr"), ("fpr", "fpr")]:
        ref = compute_confusion_matrix_metric(monai_name, cm).numpy()
        ours = np.array([[r[f"{ours_key}/{n}"] for n in CLASSES] for r in rows])
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7, err_msg=ours_key)


@pytest.mark.parametrize("percentile", [None, 95])
def test_surface_hausdorff_matches_monai_2d(percentile):
    from monai.metrics import HausdorffDistanceMetric

    p, t = _pair(4)
    ref = HausdorffDistanceMetric(include_background=True, reduction="none", percentile=percentile)(
        _onehot(p, 4), _onehot(t, 4)
    ).numpy()
    m = SegmentationMetrics(
        CLASSES, include_background=True, hausdorff_points="surface", hausdorff_percentile=percentile
    )
    m.update(p, t)
    ours = np.array([[r[f"hausdorff/{n}"] for n in CLASSES] for r in m.per_image()])
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_surface_hausdorff_matches_monai_3d_anisotropic():
    from monai.metrics import HausdorffDistanceMetric

    sp = (3.0, 0.8, 1.1)
    p, t = _pair(5, shape=(12, 20, 16), batch=2)
    ref = HausdorffDistanceMetric(include_background=True, reduction="none")(
        _onehot(p, 4), _onehot(t, 4), spacing=list(sp)
    ).numpy()
    ours = np.array(
        [[hausdorff_distance(p[b] == c, t[b] == c, spacing=sp, points="surface") for c in range(4)] for b in range(2)]
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_all_point_hausdorff_equals_monai_for_disjoint_convex_shapes():
    # For disjoint convex shapes the farthest point and its nearest partner both lie on the boundaries,
    # so Eq. 15 over all points and MONAI's surface-point HD coincide.
    from monai.metrics import HausdorffDistanceMetric

    rng = np.random.default_rng(6)
    for _ in range(10):
        g = np.zeros((1, 1, 40, 40), bool)
        p = np.zeros_like(g)
        r0, c0 = rng.integers(0, 10, 2)
        g[0, 0, r0 : r0 + rng.integers(3, 10), c0 : c0 + rng.integers(3, 10)] = True
        r1, c1 = rng.integers(22, 30, 2)
        p[0, 0, r1 : r1 + rng.integers(3, 10), c1 : c1 + rng.integers(3, 10)] = True
        ref = float(HausdorffDistanceMetric(include_background=True)(torch.from_numpy(p), torch.from_numpy(g)))
        assert hausdorff_distance(p[0, 0], g[0, 0]) == pytest.approx(ref, rel=1e-6)


def test_monai_empty_mask_behaviour_is_what_our_policy_avoids():
    # Documents the difference: MONAI returns non-finite values on one-sided empty masks (which a
    # nanmean then drops); ours returns the worst finite value.
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    g = torch.zeros(1, 1, 8, 8)
    g[0, 0, 2:4, 2:4] = 1
    empty = torch.zeros_like(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_hd = float(HausdorffDistanceMetric(include_background=True)(empty, g))
        monai_dice = float(DiceMetric(include_background=True, ignore_empty=True)(g, empty))
    assert not math.isfinite(monai_hd)
    assert math.isnan(monai_dice)
    assert hausdorff_distance(empty[0, 0], g[0, 0]) == pytest.approx(7 * math.sqrt(2))
    assert float(scores_from_counts(**binary_stats(g[0, 0], empty[0, 0]))["dice"]) == 0.0


def test_hausdorff_speed_128():
    import time

    p, t = _pair(7, shape=(128, 128), batch=1)
    start = time.perf_counter()
    for c in range(4):
        hausdorff_distance(p[0] == c, t[0] == c)
    # generous bound: only guards against an accidental O(n^2) implementation
    assert time.perf_counter() - start < 2.0
