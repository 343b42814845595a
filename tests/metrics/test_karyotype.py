"""The per-chromosome vote and the chromosome class accuracy (medseg.metrics.karyotype) on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.metrics.karyotype import ChromosomeClassAccuracy, vote

NAMES = ["background", "1", "2", "X"]


def _proba(pixels: list[list[float]], shape=(1, 3)) -> np.ndarray:
    """(C, H, W) from one probability vector per pixel, in raster order."""
    return np.asarray(pixels, np.float64).T.reshape(len(pixels[0]), *shape)


def test_soft_and_majority_votes_differ_where_they_should():
    # two pixels lean to class 1 (0.5 vs 0.45), one is sure of class 2: mean probability picks 2, the majority 1
    proba = _proba([[0.0, 0.5, 0.45, 0.05], [0.0, 0.5, 0.45, 0.05], [0.0, 0.0, 1.0, 0.0]])
    mask = np.ones((1, 3), bool)
    cls, conf, score = vote(proba, mask, "soft")
    assert cls == 2 and conf == pytest.approx((0.45 + 0.45 + 1.0) / 3)
    assert score[0] == 0 and score[1] == pytest.approx(1 / 3)
    cls, conf, _ = vote(proba, mask, "majority")
    assert cls == 1 and conf == pytest.approx(2 / 3)


def test_vote_reads_only_the_mask_and_never_answers_background():
    proba = _proba([[0.9, 0.02, 0.08, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    mask = np.array([[True, False, False]])
    cls, conf, _ = vote(proba, mask, "soft")  # the background is likeliest, yet a chromosome gets a chromosome class
    assert cls == 2 and conf == pytest.approx(0.08)  # confidence: that class's mean probability, full softmax
    cls, conf, _ = vote(proba, mask, "majority")
    assert cls == 2 and conf == 1.0  # argmax over 1..C-1 only
    tie = _proba([[0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0]])
    assert vote(tie, np.ones((1, 3), bool), "soft")[0] == 1  # ties to the lower class
    with pytest.raises(ValueError, match="empty mask"):
        vote(proba, np.zeros((1, 3), bool))
    with pytest.raises(ValueError, match="unknown vote"):
        vote(proba, mask, "mean")


def test_accuracy_and_confusion_counts():
    m = ChromosomeClassAccuracy(NAMES)
    for true, pred in [(1, 1), (1, 1), (1, 2), (2, 2), (3, 1)]:
        m.add(true, pred, 0.9 if true == pred else 0.4)
    agg = m.aggregate()
    assert agg["confusion_matrix"] == [[2, 1, 0], [0, 1, 0], [1, 0, 0]]  # rows true 1, 2, X; columns predicted
    assert agg["n"] == 5 and agg["correct"] == 3 and agg["accuracy"] == pytest.approx(0.6)
    pc = agg["per_class"]
    assert pc["1"] == {
        "n": 3,
        "correct": 2,
        "accuracy": pytest.approx(2 / 3),
        "n_predicted": 3,
        "precision": pytest.approx(2 / 3),
        "most_confused_with": "2",
        "n_most_confused": 1,
    }
    assert pc["X"]["accuracy"] == 0.0 and pc["X"]["precision"] is None  # never predicted: no precision
    assert agg["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert agg["mean_confidence_correct"] == pytest.approx(0.9) and agg["mean_confidence_wrong"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="not a chromosome class"):
        m.add(0, 1)


def test_absent_class_has_no_accuracy_and_stays_out_of_the_balance():
    m = ChromosomeClassAccuracy(NAMES)
    m.add(1, 1)
    m.add(2, 1)
    agg = m.aggregate()
    assert agg["per_class"]["X"]["n"] == 0 and agg["per_class"]["X"]["accuracy"] is None
    assert agg["balanced_accuracy"] == pytest.approx(0.5) and agg["n_classes_present"] == 2


def test_update_from_label_maps_one_chromosome_per_image_and_merge():
    labels = np.zeros((3, 4, 4), np.uint8)
    labels[0, 1:3, 1:3] = 3  # an X
    labels[1, 0, :] = 1  # a 1
    proba = np.zeros((3, 4, 4, 4))
    proba[:, 0] = 1.0  # background everywhere but
    proba[0, :, 1:3, 1:3] = np.array([0.1, 0.0, 0.2, 0.7])[:, None, None]  # X right
    proba[1, :, 0, :] = np.array([0.0, 0.3, 0.6, 0.1])[:, None]  # 1 taken for 2
    m = ChromosomeClassAccuracy(NAMES, vote="soft")
    found = m.update(proba, labels)
    assert [(t, p) for t, p, _ in found] == [(3, 3), (1, 2)]  # the empty third image is skipped
    other = ChromosomeClassAccuracy(NAMES)
    other.add(2, 2)
    m.merge(other)
    assert m.aggregate()["confusion_matrix"] == [[0, 1, 0], [0, 1, 0], [0, 0, 1]]
