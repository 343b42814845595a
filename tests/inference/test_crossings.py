"""Crossings parted by geometry (medseg.inference.crossings): the arms around an overlap paired by direction."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.inference.crossings import split_crossing, split_crossings
from medseg.inference.instances import separate_instances


def _bar(shape, r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def _diagonal(shape, centre, angle_deg, length, width=6) -> np.ndarray:
    rr, cc = np.mgrid[: shape[0], : shape[1]].astype(float)
    a = np.radians(angle_deg)
    along = (rr - centre[0]) * np.sin(a) + (cc - centre[1]) * np.cos(a)
    across = -(rr - centre[0]) * np.cos(a) + (cc - centre[1]) * np.sin(a)
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


def _iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


def _matches(parts, truth) -> bool:
    return all(max(_iou(p, t) for t in truth) > 0.9 for p in parts)


@pytest.mark.parametrize("angles", [(0, 90), (30, 120), (10, 80)])
def test_an_x_crossing_is_parted_into_its_two_straight_chromosomes(angles):
    shape = (80, 80)
    a, b = (_diagonal(shape, (40, 40), t, 60) for t in angles)
    parts = split_crossing(a | b, a & b)
    assert parts is not None and _matches(parts, [a, b])
    assert all((p & a & b).sum() == (a & b).sum() for p in parts)  # the overlap belongs to both


def test_a_t_crossing_gives_the_through_chromosome_and_the_one_that_ends_on_it():
    shape = (70, 70)
    through = _bar(shape, 10, 60, 30, 38)  # vertical
    ending = _bar(shape, 31, 37, 34, 65)  # horizontal, ends inside the vertical one
    parts = split_crossing(through | ending, through & ending)
    assert parts is not None and _matches(parts, [through, ending])


def test_two_chromosomes_overlapping_end_to_end_are_one_arm_each():
    shape = (40, 90)
    left, right = _bar(shape, 15, 23, 5, 50), _bar(shape, 15, 23, 42, 85)
    parts = split_crossing(left | right, left & right)
    assert parts is not None and _matches(parts, [left, right])


def test_arms_that_touch_beside_the_overlap_are_found_through_the_contact_pixels():
    shape = (80, 80)
    a, b = _bar(shape, 5, 75, 36, 44), _bar(shape, 36, 44, 5, 75)  # an X: a vertical, b horizontal
    fillet = _bar(shape, 28, 36, 44, 52)  # beside the overlap a's upper arm touches b's right arm
    comp, overlap = a | b | fillet, a & b
    wrong = split_crossing(comp, overlap)  # without the contact the two arms are one: 3 arms, a wrong pairing
    assert wrong is None or not _matches(wrong, [a, b])
    parts = split_crossing(comp, overlap, fillet)
    assert parts is not None and all(max(_iou(p, t) for t in (a, b)) > 0.9 for p in parts)
    assert (parts[0] | parts[1]).sum() == comp.sum()  # the contact pixels go to the nearest arm


def test_unclear_arms_keep_the_crossing_whole():
    shape = (80, 80)
    star = np.logical_or.reduce([_diagonal(shape, (40, 40), t, 60) for t in (0, 60, 120)])  # six arms
    rr, cc = np.mgrid[:80, :80]
    centre = (rr - 40) ** 2 + (cc - 40) ** 2 <= 12**2
    assert split_crossing(star, centre & star) is None
    blob = _bar(shape, 20, 60, 20, 40)
    assert split_crossing(blob, _bar(shape, 20, 30, 20, 40)) is None  # one arm: nothing to pair
    bent = _bar(shape, 10, 40, 30, 38) | _bar(shape, 32, 40, 30, 70)  # an L: its two arms are 90° apart, but ...
    corner = _bar(shape, 32, 40, 30, 38)
    parts = split_crossing(bent, corner)
    assert parts is not None  # ... two arms are always one chromosome each (an end-to-end overlap)


def test_separate_instances_parts_a_crossing_by_geometry_without_a_pair_model_and_counts_it():
    shape = (90, 90)
    a, b = _diagonal(shape, (45, 45), 20, 60), _diagonal(shape, (45, 45), 110, 60)
    semantic = np.where(a | b, 1, 0).astype(np.uint8)
    semantic[a & b] = 2
    image = semantic / 2.0
    geometry = separate_instances(image, semantic)
    assert geometry.counts["geometry"] == 1 and len(geometry.instances) == 2
    assert {i.how for i in geometry.instances} == {"geometry"}
    assert _matches([m for m in geometry.masks()], [a, b])
    whole = separate_instances(image, semantic, crossings="whole")
    assert whole.counts["no_pair_model"] == 1 and len(whole.instances) == 1
    with pytest.raises(ValueError, match="crossings"):
        separate_instances(image, semantic, crossings="guess")


def _chain(shape=(70, 100)):
    """A horizontal chromosome crossed by two vertical ones: a cluster of three with two overlaps."""
    b = _bar(shape, 31, 39, 5, 95)
    a, c = _bar(shape, 5, 65, 21, 29), _bar(shape, 5, 65, 66, 74)
    return a, b, c


def test_a_chain_of_three_is_parted_at_both_overlaps():
    a, b, c = _chain()
    parts = split_crossings(a | b | c, [a & b, b & c])
    assert parts is not None and len(parts) == 3 and _matches(parts, [a, b, c])
    middle = next(p for p in parts if _iou(p, b) > 0.9)
    assert (middle & a & b).sum() == (a & b).sum() and (middle & b & c).sum() == (b & c).sum()  # both overlaps
    assert split_crossings(a | b, [a & b]) is not None  # one overlap: the single-crossing rule's answer
    assert _matches(split_crossings(a | b, [a & b]), split_crossing(a | b, a & b))


def test_several_overlaps_stay_whole_when_one_is_unclear_or_an_arm_leaves_none():
    a, b, c = _chain()
    stub = _bar(a.shape, 55, 65, 40, 50)  # a piece touching nothing: it leaves no overlap
    assert split_crossings(a | b | c | stub, [a & b, b & c]) is None
    # a third "overlap" at the tip of a: one arm leaves it, so it is no crossing and nothing says how to part
    tip = _bar(a.shape, 2, 8, 19, 31)
    assert split_crossings(a | b | c | tip, [a & b, b & c, tip]) is None


def test_separate_instances_parts_a_cluster_of_three_and_can_keep_it_whole():
    a, b, c = _chain()
    semantic = np.where(a | b | c, 1, 0).astype(np.uint8)
    semantic[(a & b) | (b & c)] = 2
    image = semantic / 2.0
    parted = separate_instances(image, semantic)
    assert parted.counts["geometry"] == 1 and parted.counts["several_overlaps"] == 0
    assert len(parted.instances) == 3 and _matches(parted.masks(), [a, b, c])
    whole = separate_instances(image, semantic, split_several=False)
    assert whole.counts["several_overlaps"] == 1 and len(whole.instances) == 1
