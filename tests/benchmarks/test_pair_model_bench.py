"""The pair-model benchmark's scores (benchmarks/bench_mfish_pair_model.py): crossings and touching pairs apart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_mfish_pair_model import CROSSING_PX, scores  # noqa: E402


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
