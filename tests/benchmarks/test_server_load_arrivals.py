"""The load benchmark's arrivals (benchmarks/bench_server_load.py): spread users start over their first period,
repeatably; together they all start at once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_server_load import arrival_starts, parse_args  # noqa: E402


def test_spread_arrivals_cover_the_period_and_repeat():
    starts = arrival_starts(50, 18.0, spread=True)
    assert starts.shape == (50,) and starts.min() >= 0 and starts.max() < 18.0
    assert starts.max() - starts.min() > 12.0  # spread over the period, not bunched at its start
    np.testing.assert_array_equal(starts, arrival_starts(50, 18.0, spread=True))
    np.testing.assert_array_equal(arrival_starts(50, 18.0, spread=False), np.zeros(50))


def test_arrivals_are_an_option_spread_by_default():
    assert parse_args(["--model", "m"]).arrivals == "spread"
    assert parse_args(["--model", "m", "--arrivals", "together"]).arrivals == "together"
