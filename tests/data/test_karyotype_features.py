"""Hand-made chromosome features and upright cut-outs relative to their metaphase
(medseg.data.karyotype_features): known shapes give known numbers."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.karyotype_features import (
    FEATURE_NAMES,
    INTENSITY_LEVEL,
    PROFILE_BINS,
    chromosome_features,
    per_metaphase,
    upright_cutout,
)


def _bar(length: int = 40, width: int = 10, bright: int = 200, dark: int = 100, vertical: bool = False):
    """A bar on a 60 x 60 window, its first half (along the length) bright, its second half dark."""
    grey = np.zeros((60, 60), np.uint8)
    mask = np.zeros((60, 60), bool)
    mask[5 : 5 + width, 8 : 8 + length] = True
    grey[5 : 5 + width, 8 : 8 + length // 2] = bright
    grey[5 : 5 + width, 8 + length // 2 : 8 + length] = dark
    return (grey.T.copy(), mask.T.copy()) if vertical else (grey, mask)


def test_a_bar_gives_its_area_length_width_intensities_and_profile():
    f = dict(zip(FEATURE_NAMES, chromosome_features(*_bar()), strict=True))
    assert (f["area"], f["length"], f["width"]) == (400, 40, 10)
    assert f["mean_intensity"] == pytest.approx(150) and f["summed_intensity"] == pytest.approx(60000)
    profile = [f[f"profile_{i}"] for i in range(PROFILE_BINS)]
    assert profile[:5] == pytest.approx([200] * 5) and profile[-5:] == pytest.approx([100] * 5)


def test_mirrored_and_turned_chromosomes_measure_the_same():
    grey, mask = _bar()
    reference = chromosome_features(grey, mask)
    np.testing.assert_allclose(chromosome_features(grey[:, ::-1], mask[:, ::-1]), reference, atol=1e-9)
    np.testing.assert_allclose(chromosome_features(*_bar(vertical=True)), reference, atol=1e-9)


def test_per_metaphase_divides_by_the_median_of_its_own_cell():
    cell_a = np.array([[100.0, 10], [200, 20], [300, 30]])
    features = np.concatenate([cell_a, 2 * cell_a])  # a second cell, less condensed: everything twice as large
    out = per_metaphase(features, ["a"] * 3 + ["b"] * 3)
    np.testing.assert_allclose(out[:3], [[0.5, 0.5], [1, 1], [1.5, 1.5]])
    np.testing.assert_allclose(out[3:], out[:3])
    with pytest.raises(ValueError, match="do not match"):
        per_metaphase(features, ["a"] * 5)


def test_upright_cutout_stands_the_chromosome_up_scaled_to_its_metaphase():
    grey, mask = _bar(length=40, width=8)  # lying horizontally, bright half on the left
    image, inside, shrunk = upright_cutout(grey, mask, scale=0.5, intensity=150, shape=(64, 32))
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    assert 19 <= len(rows) <= 21 and 3 <= len(cols) <= 5 and not shrunk  # 40 x 8 at half scale, upright
    assert not image[~inside].any() and image[inside].min() >= 1  # background 0, the chromosome never 0
    top, bottom = (
        image[rows[0] : rows[0] + 8][inside[rows[0] : rows[0] + 8]],
        image[rows[-1] - 7 : rows[-1] + 1][inside[rows[-1] - 7 : rows[-1] + 1]],
    )
    assert top.mean() == pytest.approx(200 * INTENSITY_LEVEL / 150, rel=0.05)  # brighter half on top
    assert bottom.mean() == pytest.approx(100 * INTENSITY_LEVEL / 150, rel=0.05)
    _, big, shrunk = upright_cutout(grey, mask, scale=3.0, intensity=150, shape=(64, 32))
    assert shrunk and np.flatnonzero(big.any(1)).size <= 62  # too long at that scale: shrunk to fit


def test_a_finer_canvas_gives_the_median_chromosome_the_same_share_of_its_height():
    from medseg.data.karyotype_features import UPRIGHT_MEDIAN_FRACTION, metaphase_cutouts, upright_median_length

    assert upright_median_length((64, 32)) == pytest.approx(24.0)
    assert upright_median_length((96, 48)) == pytest.approx(96 * UPRIGHT_MEDIAN_FRACTION)
    windows = [_bar(length=n, width=8, vertical=True) for n in (20, 30, 40)]  # the median is the 30-px one
    for shape in ((64, 32), (96, 48)):
        _, cuts = metaphase_cutouts(windows, shape)
        lengths = [np.flatnonzero(inside.any(1)).size for _, inside, _ in cuts]
        assert abs(lengths[1] - upright_median_length(shape)) <= 1.5, (shape, lengths)
        assert lengths[0] < lengths[1] < lengths[2]


def test_the_upright_set_refuses_a_canvas_that_is_not_taller_than_wide():
    from medseg.data.mfish_sets import _upright_canvas
    from medseg.errors import DataValidationError

    assert _upright_canvas(None) is None and _upright_canvas([96, 48]) == (96, 48)
    for bad in ([64, 64], [32, 64], 64, [96]):
        with pytest.raises(DataValidationError, match="taller than wide"):
            _upright_canvas(bad)
