"""Each chromosome status against the label map (medseg.evaluation.status_accuracy): a hand-made label map and
objects whose statuses are right or wrong by the rule, one case each."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.evaluation.instances import true_instances
from medseg.evaluation.status_accuracy import RULES, pool_statuses, score_statuses, status_right, status_truth

SHAPE = (60, 120)


def _rect(r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def _flat(masks):
    return [np.flatnonzero(m.ravel()) for m in masks]


def scene():
    """Class 1 a bar alone; classes 2 and 3 crossing in a 6 x 6 overlap (255); classes 4 and 5 end to end (touching,
    no overlap label); the rest background."""
    karyo = np.zeros(SHAPE, np.uint8)
    m = {
        "one": _rect(5, 11, 5, 35),
        "two": _rect(30, 36, 5, 45),
        "three": _rect(15, 55, 22, 28),
        "four": _rect(45, 50, 60, 76),
        "five": _rect(45, 50, 76, 96),
    }
    for c, name in enumerate(("one", "two", "three", "four", "five"), start=1):
        karyo[m[name]] = c
    karyo[m["two"] & m["three"]] = 255
    return karyo, m


CASES = [  # (status given, the object, right by the rule?)
    ("single", lambda m: m["one"], True),
    ("single", lambda m: m["four"] | m["five"], False),  # two touching chromosomes called one
    ("single", lambda m: _rect(5, 11, 5, 12), False),  # a piece of chromosome 1: holds none of it
    ("crossing_split", lambda m: m["two"], True),  # one of a real crossing, whole with the overlap
    ("crossing_split", lambda m: m["one"], False),  # one chromosome, but no crossing in it
    ("crossing_whole", lambda m: m["two"] | m["three"], True),
    ("crossing_whole", lambda m: m["four"] | m["five"], False),  # two chromosomes touching, not crossing
    ("clump", lambda m: m["four"] | m["five"], True),
    ("clump", lambda m: m["two"] | m["three"] | m["one"], True),  # crossing and more: a clump too
    ("clump", lambda m: m["one"], False),  # one chromosome called a clump
    ("doubtful", lambda m: _rect(20, 28, 60, 70), True),  # on the background
    ("doubtful", lambda m: _rect(5, 11, 5, 12), True),  # a piece of a chromosome: nothing to count
    ("doubtful", lambda m: m["one"], False),  # a whole chromosome left out of the count
]


@pytest.mark.parametrize("status, make, right", CASES, ids=[f"{s}-{k}" for k, (s, _, _) in enumerate(CASES)])
def test_each_status_right_or_wrong_by_its_rule(status, make, right):
    karyo, m = scene()
    (truth,) = status_truth(_flat([make(m)]), _flat(true_instances(karyo)), karyo)
    assert status_right(status, truth) is right


def test_truth_counts_held_chromosomes_overlap_and_labelled_share():
    karyo, m = scene()
    pred = [m["two"] | m["three"], _rect(20, 28, 60, 70), m["one"] | _rect(5, 11, 35, 65)]  # the last: half background
    truth = status_truth(_flat(pred), _flat(true_instances(karyo)), karyo)
    assert truth[0] == {"held": 2, "overlap_px": 36, "labelled_share": 1.0}
    assert truth[1] == {"held": 0, "overlap_px": 0, "labelled_share": 0.0}
    assert truth[2]["held"] == 1 and truth[2]["labelled_share"] == pytest.approx(180 / 360)
    assert status_truth([], _flat(true_instances(karyo)), karyo) == []
    assert status_truth(_flat(pred[:1]), [], karyo)[0]["held"] == 0  # a label map without chromosomes
    with pytest.raises(ValueError, match="no status 'crossing'"):
        status_right("crossing", truth[0])


def test_per_metaphase_scores_pool_into_accuracy_per_status():
    karyo, m = scene()
    true = _flat(true_instances(karyo))
    pred = [m["one"], m["four"] | m["five"], m["two"] | m["three"], _rect(20, 28, 60, 70)]
    statuses = [
        {"status": "single", "estimated_count": 1},
        {"status": "single", "estimated_count": 1},
        {"status": "crossing_whole", "estimated_count": 2},
        {"status": "doubtful", "estimated_count": 0},
    ]
    row = score_statuses(statuses, _flat(pred), true, karyo)
    assert row["single"] == {"n": 2, "right": 1, "estimated": 2, "held": 3}  # the touching pair counted as one
    assert row["crossing_whole"] == {"n": 1, "right": 1, "estimated": 2, "held": 2}
    assert row["doubtful"] == {"n": 1, "right": 1, "estimated": 0, "held": 0}
    pooled = pool_statuses([row, row])
    assert pooled["single"]["n"] == 4 and pooled["single"]["accuracy"] == 0.5
    assert pooled["single"]["rule"] == RULES["single"]
    assert math.isnan(pooled["clump"]["accuracy"]) and pooled["clump"]["n"] == 0  # no clump: no accuracy
