"""Instance scores of whole metaphases (medseg.evaluation.instances) on hand-made label maps that pin each count."""

from __future__ import annotations

import math

import numpy as np

from medseg.evaluation.instances import match_instances, pool, score_metaphase, true_instances

SHAPE = (60, 120)


def _rect(r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def scene():
    """Karyotype: class 1 a bar of 6 x 30 = 180 px; classes 2 (horizontal) and 3 (vertical) crossing in a 6 x 6 overlap
    (255), each cut in two by it; class 4 (5 x 16 = 80 px) and 5 (5 x 20 = 100 px) lying end to end (touching, no
    overlap label); class 6 a bar nobody predicts."""
    karyo = np.zeros(SHAPE, np.uint8)
    one = _rect(5, 11, 5, 35)
    two, three = _rect(30, 36, 5, 45), _rect(15, 55, 22, 28)
    four, five = _rect(45, 50, 60, 76), _rect(45, 50, 76, 96)
    six = _rect(5, 11, 90, 115)
    for c, m in ((1, one), (2, two), (3, three), (4, four), (5, five), (6, six)):
        karyo[m] = c
    karyo[two & three] = 255
    return karyo, {"one": one, "two": two, "three": three, "four": four, "five": five, "six": six}


def test_true_instances_take_the_overlap_into_both_chromosomes():
    karyo, m = scene()
    found = true_instances(karyo)
    assert len(found) == 6  # the crossing chromosomes are each one instance although the overlap cuts them in two
    areas = sorted(int(f.sum()) for f in found)
    assert areas == sorted(int(v.sum()) for v in m.values())
    two = next(f for f in found if (f & m["two"] & ~m["three"]).any())
    np.testing.assert_array_equal(two, m["two"])  # its overlap pixels (255) included


def test_counts_correct_split_merge_split_and_missed():
    karyo, m = scene()
    thirds = [_rect(5, 11, 5 + 10 * k, 15 + 10 * k) for k in range(3)]  # class 1 cut in three pieces
    pred = [
        m["two"],
        m["three"],  # the crossing split correctly: each whole with the overlap
        *thirds,
        m["four"] | m["five"],
    ]  # 4 and 5 fused; class 6 missed
    r = match_instances(pred, true_instances(karyo))
    # matched: 2, 3 (IoU 1) and 5 (IoU 100 / 180 = 0.56); the thirds (IoU 1/3) and 4 (80 / 180 = 0.44) are not
    assert (r["tp"], r["fp"], r["fn"]) == (3, 3, 3)
    assert r["split"] == 1  # class 1
    assert r["merge"] == 1  # the fused 4 + 5 (the correct crossing split is no merge)
    assert sorted(round(i, 2) for _, _, i in r["matches"]) == [0.56, 1.0, 1.0]


def test_perfect_prediction_and_semantic_ious_pool():
    karyo, m = scene()
    semantic = (karyo > 0).astype(np.uint8)
    semantic[karyo == 255] = 2
    row = score_metaphase(true_instances(karyo), semantic, karyo)
    assert (row["precision"], row["recall"], row["f1"], row["split"], row["merge"]) == (1.0, 1.0, 1.0, 0, 0)
    assert row["overlap_iou"] == 1.0 and row["chromosome_iou"] == 1.0
    # a second metaphase: overlap half found, nothing predicted as instances
    half = semantic.copy()
    half[30:33, 22:28] = 1  # 18 of the 36 overlap pixels called plain chromosome
    empty = score_metaphase([], half, karyo)
    assert (empty["tp"], empty["fn"], empty["precision"], empty["recall"]) == (0, 6, 0.0, 0.0)
    assert empty["overlap_iou"] == 0.5
    pooled = pool([row, empty])
    assert (pooled["tp"], pooled["fn"], pooled["n_true"]) == (6, 6, 12)
    assert math.isclose(pooled["recall"], 0.5) and math.isclose(pooled["precision"], 1.0)
    assert math.isclose(pooled["overlap_iou"], (36 + 18) / (36 + 36))
    assert math.isclose(pooled["mean_f1_per_metaphase"], 0.5)


def test_no_overlap_gives_nan_overlap_iou_and_empty_is_perfect():
    karyo = np.zeros(SHAPE, np.uint8)
    row = score_metaphase([], np.zeros(SHAPE, np.uint8), karyo)
    assert math.isnan(row["overlap_iou"]) and row["f1"] == 1.0


def test_removed_objects_are_counted_per_rule_and_matched_to_true_chromosomes():
    """What each debris rule cost: objects it removed, and those that were a true chromosome (IoU >= 0.5)."""
    from types import SimpleNamespace

    from medseg.evaluation.instances import _removed_true

    true = np.zeros((20, 30), bool)
    true[2:8, 3:9] = True  # a true chromosome at rows 2-7, columns 3-8
    speck = np.ones((2, 2), bool)
    result = SimpleNamespace(
        removed=[
            ("small", (2, 3, 6, 6), np.ones((6, 6), bool)),  # exactly the chromosome
            ("specks", (15, 20, 2, 2), speck),
            ("specks", (15, 25, 2, 2), speck),
        ]
    )
    got = _removed_true(result, np.zeros((20, 30), np.uint8), [true])
    assert got == {"small": {"removed": 1, "true_chromosomes": 1}, "specks": {"removed": 2, "true_chromosomes": 0}}


def test_a_small_chromosome_crossing_a_long_one_split_correctly_is_no_merge():
    """The short one lies three quarters in the overlap (36 of its 48 px): its partner's
    correct half holds the overlap, hence over half of it — counted on whole masks that was a merge."""
    karyo = np.zeros(SHAPE, np.uint8)
    long_, short = _rect(20, 26, 10, 60), _rect(19, 27, 30, 36)
    karyo[long_] = 1
    karyo[short] = 2
    karyo[long_ & short] = 255
    truth = true_instances(karyo)
    shared = karyo == 255
    correct = match_instances([long_, short], truth, shared=shared)
    assert (correct["tp"], correct["merge"], correct["split"]) == (2, 0, 0)
    assert match_instances([long_, short], truth)["merge"] == 1  # whole masks: the miscount the rule avoids
    fused = match_instances([long_ | short], truth, shared=shared)
    assert fused["merge"] == 1 and fused["tp"] == 1  # kept whole: a merge under either rule
    halves = match_instances([_rect(20, 26, 10, 33), _rect(20, 26, 33, 60), short], truth, shared=shared)
    assert halves["split"] == 1  # the long one cut at the crossing: still a split


def test_score_metaphase_leaves_the_overlap_pixels_out_of_the_merge_rule():
    karyo = np.zeros(SHAPE, np.uint8)
    long_, short = _rect(20, 26, 10, 60), _rect(19, 27, 30, 36)
    karyo[long_] = 1
    karyo[short] = 2
    karyo[long_ & short] = 255
    semantic = (karyo > 0).astype(np.uint8)
    row = score_metaphase([long_, short], semantic, karyo)
    assert (row["f1"], row["merge"], row["split"]) == (1.0, 0, 0)
