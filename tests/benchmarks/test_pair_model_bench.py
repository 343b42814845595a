"""The pair-model benchmark's scores (benchmarks/bench_mfish_pair_model.py): crossings and touching pairs apart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import numpy as np  # noqa: E402
from bench_mfish_pair_model import CROSSING_PX, one_pixel_off, scores  # noqa: E402


def _metrics(per_image: list[tuple[int, float]]) -> dict:
    names = ("overlap", "chromosome_alpha", "chromosome_beta", "chromosome_alpha_whole", "chromosome_beta_whole")
    per_class = {name: {"iou": 0.5, "iou_pooled": 0.6} for name in names}
    return {
        "metrics": {"per_class": per_class, "order_free": {"per_class": per_class, "n_swapped": 2}},
        "per_image": [{"n_true/overlap": n, "iou/overlap": iou} for n, iou in per_image],
    }


def test_crossings_and_touching_pairs_are_scored_apart_and_bound_the_mean():
    rows = [(CROSSING_PX, 0.8), (400, 0.6), (CROSSING_PX - 1, 0.1), (10, 0.0)]
    s = scores(_metrics(rows))
    assert (s["n_pairs"], s["n_crossings"], s["n_touching"]) == (4, 2, 2)
    assert s["overlap_iou_crossings"] == pytest.approx(70.0) and s["overlap_iou_touching"] == pytest.approx(5.0)
    # every crossing perfect, the touching pairs as they are: (2 x 100 + 2 x 5) / 4
    assert s["overlap_iou_if_crossings_perfect"] == pytest.approx(52.5)
    assert s["overlap_iou"] == 50.0 and s["overlap_iou_pooled"] == 60.0 and s["swapped"] == 2
    only_crossings = scores(_metrics([(200, 0.9)]))
    assert only_crossings["overlap_iou_touching"] is None
    assert only_crossings["overlap_iou_if_crossings_perfect"] == 100.0


def test_one_pixel_off_scores_the_drawing_against_itself():
    lab = np.zeros((1, 30, 30), np.uint8)
    lab[0, 5:25, 12:18] = 1  # two rods crossing in a 6 x 6 overlap
    lab[0, 12:18, 5:25] = 2
    lab[0, 12:18, 12:18] = 3
    s = one_pixel_off(lab)
    assert s["n_pairs"] == 1 and s["eroded_crossings"] is None  # 36 px: a touching-sized overlap
    assert s["eroded_all"] == pytest.approx(100 * 16 / 36, abs=0.1)  # the 4 x 4 inside of 6 x 6
    assert s["dilated_all"] == pytest.approx(100 * 36 / 60, abs=0.1)  # grows only along the two rods: +4 x 6
    assert s["shifted_all"] == pytest.approx(100 * 30 / 42, abs=0.1)
    big = np.zeros((1, 40, 40), np.uint8)
    big[0, 10:30, 10:30] = 3
    assert one_pixel_off(big)["shifted_crossings"] == pytest.approx(100 * 380 / 420, abs=0.1)
