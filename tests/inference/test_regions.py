"""Touching chromosomes apart, debris out, and the Otsu baseline — on made-up scenes (no real data)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.mfish_metaphase import touching_labels
from medseg.evaluation.instances import match_instances, true_instances
from medseg.inference.instances import separate_instances
from medseg.inference.otsu_baseline import otsu_instances
from medseg.inference.regions import DebrisRules, debris_rule, distance_regions, touching_regions


def _touching_karyotype() -> np.ndarray:
    """Two rectangles of classes 3 and 7 side by side, touching along a column: one blob in chromosome ∪ overlap."""
    karyo = np.zeros((40, 40), np.uint8)
    karyo[5:35, 8:18] = 3
    karyo[5:35, 18:28] = 7
    return karyo


def test_touching_target_marks_the_contact_of_two_touching_rectangles():
    labels = touching_labels(_touching_karyotype(), 2)
    contact = labels == 3
    assert contact.any()
    assert set(np.unique(np.nonzero(contact)[1])) == {16, 17, 18, 19}  # 2 px on each side of the contact line
    assert touching_labels(_touching_karyotype(), 0).max() == 1  # px 0: the three classes only
    overlap = _touching_karyotype()
    overlap[10:14, 17:19] = 255
    assert (touching_labels(overlap, 2)[10:14, 17:19] == 2).all()  # overlap stays overlap


def test_target_separates_two_touching_rectangles_into_two_instances():
    karyo = _touching_karyotype()
    truth = true_instances(karyo)
    assert len(truth) == 2
    semantic = touching_labels(karyo, 2)
    result = separate_instances(semantic.astype(np.float32) / 3, semantic)
    assert len(result.instances) == 2 and result.counts["parted_at_contacts"] == 1
    assert match_instances(result.masks(), truth)["tp"] == 2
    # without the contact class the same foreground is one (merged) chromosome
    assert len(separate_instances(semantic.astype(np.float32), np.minimum(semantic, 1)).instances) == 1


def test_touching_regions_keep_a_crossing_one_region():
    semantic = np.zeros((40, 40), np.uint8)
    semantic[18:22, 2:38] = 1
    semantic[2:38, 18:22] = 1
    semantic[18:22, 18:22] = 2  # the crossing's overlap joins the two arms
    semantic[2:38, 30:33] = 1
    semantic[2:38, 29] = 3  # a third chromosome touching the horizontal one's end: parted
    regions, n = touching_regions(semantic)
    assert n == 2
    assert regions[20, 5] == regions[5, 20] == regions[20, 20] != regions[30, 31]


def test_distance_watershed_separates_two_touching_blobs():
    yy, xx = np.mgrid[:60, :80]
    blobs = ((yy - 30) ** 2 + (xx - 22) ** 2 < 15**2) | ((yy - 30) ** 2 + (xx - 54) ** 2 < 15**2)
    regions, n = distance_regions(blobs, min_distance=10)
    assert n == 2
    assert regions[30, 22] != regions[30, 54] and regions[30, 22] > 0 and regions[30, 54] > 0
    assert (regions > 0).sum() == blobs.sum()  # every foreground pixel in one region


def _scene() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Ten chromosome-like bars (12 x 40 px) on a 200 x 260 field; the boxes are (top, left, height, width)."""
    semantic = np.zeros((200, 260), np.uint8)
    boxes = [(20 + 50 * (k // 5), 20 + 45 * (k % 5), 40, 12) for k in range(10)]
    for t, left, h, w in boxes:
        semantic[t : t + h, left : left + w] = 1
    return semantic, boxes


@pytest.mark.parametrize("rule", ["specks", "small", "nuclei", "border_fragments"])
def test_each_debris_rule_removes_its_object_and_no_chromosome(rule):
    semantic, _ = _scene()
    yy, xx = np.mgrid[:200, :260]
    if rule == "specks":
        semantic[150:154, 150:154] = 1  # 16 px
    elif rule == "small":
        semantic[150:156, 150:157] = 1  # 42 px: over min_area 30, under 0.1 x the median 480
    elif rule == "nuclei":
        semantic[(yy - 160) ** 2 + (xx - 200) ** 2 < 28**2] = 1  # a disc of ~2,460 px, round
    else:
        semantic[190:200, 100:112] = 1  # 120 px at the bottom edge, 0.25 x median
    result = separate_instances(semantic.astype(np.float32), semantic)
    assert result.counts[rule] == 1
    assert len(result.instances) == 10 and [r for r, _, _ in result.removed] == [rule]
    kept_off = separate_instances(semantic.astype(np.float32), semantic, debris=DebrisRules(enabled=False))
    assert len(kept_off.instances) == 10 + (rule != "specks")  # rules off: only specks still go


def test_a_long_chromosome_is_no_nucleus_and_a_cut_one_at_the_edge_stays():
    rules = DebrisRules()
    bar = np.ones((120, 20), bool)  # 2,400 px, 5 x a median of 480, but elongated
    assert debris_rule(bar, (50, 50, 120, 20), (300, 300), 480.0, rules) is None
    half = np.ones((30, 12), bool)  # 360 px at the edge: most of a chromosome
    assert debris_rule(half, (0, 50, 30, 12), (300, 300), 480.0, rules) is None
    assert debris_rule(half, (0, 50, 30, 12), (300, 300), None, rules) is None  # too few objects to judge


def test_otsu_baseline_finds_bright_blobs_and_parts_two_touching_ones():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :260]
    blobs = [(yy - 30) ** 2 + (xx - c) ** 2 < 10**2 for c in range(30, 250, 28)]  # eight apart
    blobs += [(yy - 140) ** 2 + (xx - c) ** 2 < 14**2 for c in (60, 86)]  # two touching at a narrow neck
    image = 0.1 + 0.6 * np.any(blobs, axis=0) + rng.normal(0, 0.05, (200, 260))
    result = otsu_instances(image.astype(np.float32), min_distance=10)
    assert match_instances(result.masks(), blobs)["tp"] == 10
    assert result.semantic.max() == 1
    assert len(otsu_instances(np.full((50, 50), 0.3, np.float32)).instances) == 0  # a flat field: nothing
