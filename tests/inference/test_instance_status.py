"""Each chromosome instance's status from its record, against the cell's median single chromosome: made-up
records of a 200 × 300 image whose single chromosomes have 400 px."""

from __future__ import annotations

import csv
import io

import numpy as np

from medseg.inference.instance_status import (
    chromosome_status,
    chromosomes_csv,
    instance_statuses,
    single_median,
    spread_of,
    status_summary,
)
from medseg.inference.instances import Instance

SHAPE = (200, 300)
MEDIAN = 400.0


def record(id_, area, how="whole", top=50, left=50, height=20, width=20, **more):
    return {
        "id": id_,
        "area": area,
        "separated_by": how,
        "overlaps_with": [],
        "bbox": {"top": top, "left": left, "height": height, "width": width},
        **more,
    }


def status(r):
    return chromosome_status(r, MEDIAN, SHAPE)


def test_a_clump_of_three_medians_is_a_clump_of_about_three():
    s = status(record(1, 1200))
    assert (s["status"], s["estimated_count"]) == ("clump", 3) and "3.0 × median" in s["status_reason"]
    large = status(record(2, 900))  # 2.25 × median: chromosome 1 reaches this alone
    assert large["status"] == "single" and "large" in large["status_reason"]
    assert status(record(3, 900, how="pair_model_unsure"))["status"] == "crossing_whole"
    assert status(record(4, 1100, how="no_pair_model"))["estimated_count"] == 3  # 2.75 × median: more than a crossing


def test_a_small_piece_at_the_border_is_doubtful_and_not_counted():
    s = status(record(1, 150, top=0))
    assert (s["status"], s["estimated_count"]) == ("doubtful", 0) and "border" in s["status_reason"]
    assert status(record(2, 150, top=80))["status"] == "single"  # the same piece inside the image is a small chromosome
    assert status(record(3, 40))["status"] == "doubtful"  # tiny anywhere


def test_a_small_piece_far_off_the_spread_is_doubtful():
    spread = [record(i, 400, top=80 + 5 * (i % 4), left=130 + 6 * (i // 4)) for i in range(1, 11)]
    centre = spread_of(spread, MEDIAN)
    far = record(11, 150, top=10, left=270, height=10, width=15)
    s = chromosome_status(far, MEDIAN, SHAPE, centre)
    assert s["status"] == "doubtful" and "off the metaphase's spread" in s["status_reason"]
    assert chromosome_status({**far, "area": 400}, MEDIAN, SHAPE, centre)["status"] == "single"  # whole-sized: kept
    assert chromosome_status(far, MEDIAN, SHAPE, None)["status"] == "single"


def test_crossings_and_compact_blobs():
    assert status(record(1, 420, how="pair_model"))["status"] == "crossing_split"
    kept = status(record(2, 760, how="no_pair_model"))
    assert (kept["status"], kept["estimated_count"]) == ("crossing_whole", 2)
    several = status(record(3, 1650, how="several_overlaps"))
    assert (several["status"], several["estimated_count"]) == ("clump", 4)
    nucleus = status(record(4, 2400, solidity=0.95, axis_ratio=0.9))
    assert nucleus["status"] == "doubtful" and "nucleus" in nucleus["status_reason"]
    assert status(record(5, 2400, solidity=0.6, axis_ratio=0.9))["status"] == "clump"  # arms stick out


def test_many_debris_pieces_do_not_pull_the_median_single_chromosome_down():
    # 40 chromosomes of 350-550 px and 60 debris pieces of 30-150 px: a plain median would be ~140 px
    chromosomes = [record(i, 350 + 5 * i) for i in range(1, 41)]
    debris = [record(100 + i, 30 + 2 * i) for i in range(60)]
    median = single_median(chromosomes + debris)
    assert 400 <= median <= 500
    assert chromosome_status(record(200, 450), median, SHAPE)["status"] == "single"


def test_median_leaves_out_crossings_kept_whole():
    records = [record(i, a) for i, a in enumerate((380, 400, 410, 420, 5000), 1)]
    records.append(record(6, 800, how="several_overlaps"))
    assert single_median(records) == 410.0


def test_headline_counts_and_warns_far_from_46():
    records = [{**record(i, 400), **status(record(i, 400))} for i in range(1, 21)]
    records += [{**record(21, 1200), **status(record(21, 1200))}, {**record(22, 40), **status(record(22, 40))}]
    summary = status_summary(records)
    assert summary["estimate"] == 23 and summary["counts"]["clump"] == 1 and summary["doubtful"] == 1
    assert summary["text"].startswith("≈ 20 single · 1 clump (≈ 3) · 1 doubtful")
    assert "far from the 46" in summary["warning"]
    many = records[:20] * 2 + records[20:21] * 2  # 40 single, 2 clumps of ≈ 3: 46
    assert status_summary(many)["warning"] is None


def test_statuses_from_instances_measure_the_shape_of_large_ones():
    blob = np.ones((60, 60), bool)  # a compact square of 3600 px among bars of 400
    bars = [Instance(i, (10 * i, 0, 4, 100), np.ones((4, 100), bool), "whole", i) for i in range(1, 7)]
    statuses = instance_statuses([*bars, Instance(7, (100, 100, 60, 60), blob, "whole", 7)], SHAPE)
    assert [s["status"] for s in statuses[:6]] == ["single"] * 6 and "solidity" not in statuses[0]
    assert statuses[6]["status"] == "doubtful" and statuses[6]["solidity"] == 1.0


def test_an_object_on_a_bright_nucleus_is_doubtful():
    image = np.full(SHAPE, 0.05, np.float32)
    image[100:180, 150:290] = 0.5  # an interphase nucleus, 60 % as bright as the chromosomes above the background
    bars = [Instance(i, (10 * i, 10, 4, 100), np.ones((4, 100), bool), "whole", i) for i in range(1, 8)]
    on_nucleus = Instance(8, (130, 200, 4, 60), np.ones((4, 60), bool), "whole", 8)
    for inst in (*bars, on_nucleus):
        t, left, h, w = inst.bbox
        image[t : t + h, left : left + w] = 0.8
    statuses = instance_statuses([*bars, on_nucleus], SHAPE, image)
    assert [s["status"] for s in statuses] == ["single"] * 7 + ["doubtful"]
    assert statuses[0]["surround"] == 0.0 and statuses[7]["surround"] == 0.6  # (0.5 - 0.05) / (0.8 - 0.05)
    assert "bright background" in statuses[7]["status_reason"]


def test_csv_has_one_row_per_record_with_class_when_known():
    records = [
        {**record(1, 400, class_name="X", class_confidence=0.91, **{"class": 22}), **status(record(1, 400))},
        {**record(2, 1200), "overlaps_with": [3, 4], **status(record(2, 1200))},
    ]
    rows = list(csv.DictReader(io.StringIO(chromosomes_csv(records))))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert (rows[0]["status"], rows[0]["class_name"], rows[0]["class_confidence"]) == ("single", "X", "0.910")
    assert (rows[1]["status"], rows[1]["estimated_count"], rows[1]["overlaps_with"], rows[1]["class"]) == (
        "clump",
        "3",
        "3 4",
        "",
    )
