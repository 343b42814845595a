"""Reports in the task's own language (issue 12): a membrane, binary or multi-label task gets a per-class table
(Dice, IoU, precision, recall, Hausdorff with its unit) for every scored class, its worst and best cases by
mean Dice with overlays coloured per class, and no chromosome words, α/β definitions, overlap selections or
chromosome-paper rows; the chromosome task keeps its papers' comparison; ``evaluate.references`` switches
published rows off."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medseg.config import ConfigError, load_config
from medseg.data.datasets import SegmentationData
from medseg.data.runs import run_dir_for
from medseg.evaluation import EvaluationResult, reference_rows, rows_from, write_report
from medseg.evaluation import evaluate as evaluate_module
from medseg.evaluation.evaluate import evaluate_run, references_for
from medseg.evaluation.figures import pick_slices, select_worst_best
from medseg.evaluation.report import case_scores, is_chromosome_task, scored_classes
from medseg.metrics import SegmentationMetrics
from medseg.palette import channel_colours, class_colours
from medseg.training.run import train_fold

CHROMOSOME_WORDS = re.compile(r"chromosom|α|β|overlap|alpha|beta|\b(RSE|ARMS|AMFL)\b", re.IGNORECASE)
MEMBRANE = ["background", "membrane", "nucleus"]


def _blobs(n: int, n_classes: int, size: int = 40, seed: int = 0) -> np.ndarray:
    """Smooth random label maps with every class present."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, n_classes, size, size))
    return np.stack([[ndimage.gaussian_filter(c, 3) for c in b] for b in noise]).argmax(axis=1)


def _result(class_names, labels, preds, *, metrics_kw=None, names=None, **kw) -> EvaluationResult:
    m = SegmentationMetrics(class_names, **(metrics_kw or {}))
    m.update(preds, labels)
    rows = m.per_image()
    for i, row in enumerate(rows):
        row["case"] = names[i] if names else f"cell_{i:02d}.tif"
    images = (40.0 * labels + np.random.default_rng(1).normal(0, 4, labels.shape)).astype(np.float32)
    fields = dict(
        run_name="neutral",
        class_names=list(class_names),
        metrics=m.aggregate(),
        per_image=rows,
        images=images,
        labels=labels,
        preds=preds,
        confusion=m.confusion(),
        fold_values={"fold_0": [r[f"iou/{m.scored_classes[-1]}"] for r in rows]},
        efficiency={"params": 1_000, "cpu_ms": 2.0},
        extra={"seed": 0},
        primary=m.scored_classes[-1],
    )
    fields.update(kw)
    return EvaluationResult(**fields)


def _cells(md: str, row_start: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {row_start} |"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _colours(png) -> set[tuple[int, int, int]]:
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    return {tuple(int(v) for v in c) for c in np.unique(rgb, axis=0)}


# ------------------------------------------------------------------ multi-class: membrane and nucleus
def test_membrane_report_speaks_its_own_language(tmp_path):
    labels = _blobs(7, 3)
    preds = labels.copy()
    preds[:, 4:12, 4:12] = 0  # every case misses a block
    preds[2][labels[2] == 2] = 1  # case 2 calls every nucleus pixel membrane: the worst case
    preds[5] = labels[5]  # case 5 is perfect: the best case
    # chromosome rows handed in by mistake are not shown for another task
    result = _result(MEMBRANE, labels, preds, references=reference_rows("unet"))
    md = write_report(tmp_path, result).read_text(encoding="utf-8")

    assert not CHROMOSOME_WORDS.search(md), CHROMOSOME_WORDS.search(md)
    assert "Ours vs the papers" not in md and "95.52" not in md and "Published numbers" not in md
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["references"] == [] and payload["headline_roles"] is None
    assert payload["task"] == {
        "chromosome": False,
        "mode": "multiclass",
        "background": "background",
        "scored_classes": ["membrane", "nucleus"],
    }

    # one row per scored class (not the background), Dice first, numbers computed here by hand
    header = _cells(md, "class")
    assert header[:6] == ["class", "Dice", "IoU", "precision", "recall", "Hausdorff (px)"]
    for k, name in ((1, "membrane"), (2, "nucleus")):
        t, p = labels == k, preds == k
        dice = np.mean([2 * (a & b).sum() / (a.sum() + b.sum()) for a, b in zip(t, p, strict=True)])
        row = _cells(md, name)
        assert float(row[1]) == pytest.approx(100 * dice, abs=0.005)
        assert float(row[5]) == pytest.approx(result.metrics["per_class"][name]["hausdorff"], abs=0.0005)
    assert not any(line.startswith("| background |") for line in md.splitlines())

    # worst and best cases by mean Dice over the scored classes: names and numbers
    assert "## Worst and best cases (test set)" in md
    worst, best = _cells(md, "worst 1"), _cells(md, "best 1")
    assert worst[1] == "cell_02.tif" and best[1] == "cell_05.tif"
    assert float(best[2]) == 100.0
    mean2 = np.mean([result.per_image[2]["dice/membrane"], result.per_image[2]["dice/nucleus"]])
    assert float(worst[2]) == pytest.approx(100 * mean2, abs=0.005) and float(worst[4]) == 0.0  # nucleus Dice 0
    assert payload["cases"]["worst"][0]["case"] == "cell_02.tif"
    assert len(payload["cases"]["worst"]) == 3 and len(payload["cases"]["best"]) == 3

    # overlays of those cases, coloured per class (membrane red, nucleus green, background black)
    png = tmp_path / "figures" / "overlays.png"
    colours = _colours(png)
    for rgb in class_colours(3).tolist():
        assert tuple(rgb) in colours
    assert "cell_02.tif" in md.split("## Figures")[0]
    assert "Per-fold nucleus IoU" in md


def test_binary_task_reports_its_one_class_and_cases(tmp_path):
    labels = _blobs(4, 2, seed=3)
    preds = labels.copy()
    preds[0] = 0  # case 0: nothing found → Dice 0, Hausdorff = image diagonal
    result = _result(["background", "cell"], labels, preds)
    md = write_report(tmp_path, result).read_text(encoding="utf-8")
    assert not CHROMOSOME_WORDS.search(md)
    cell = _cells(md, "cell")
    assert float(cell[1]) == pytest.approx(100 * np.mean([0.0, 1.0, 1.0, 1.0]), abs=0.005)
    assert float(cell[5]) == pytest.approx(np.hypot(39, 39) / 4, abs=0.0005)  # one diagonal, three zeros
    # four cases: two worst, two best, never the same case twice
    assert _cells(md, "worst 1")[1] == "cell_00.tif" and float(_cells(md, "worst 1")[2]) == 0.0
    shown = [_cells(md, f"{k} {i}")[1] for k in ("worst", "best") for i in (1, 2)]
    assert len(set(shown)) == 4
    assert "worst 3" not in md


def test_no_background_scores_every_class(tmp_path):
    labels = _blobs(3, 3, seed=5)
    preds = labels.copy()
    preds[1][labels[1] == 0] = 2
    result = _result(["stroma", "tumour", "necrosis"], labels, preds, metrics_kw={"background": None})
    md = write_report(tmp_path, result).read_text(encoding="utf-8")
    for name in ("stroma", "tumour", "necrosis"):
        assert float(_cells(md, name)[1]) == pytest.approx(100 * result.metrics["per_class"][name]["dice"], abs=0.005)
    assert "every class scored (no background class)" in md
    assert scored_classes(result) == ["stroma", "tumour", "necrosis"]
    # no class is black in the overlays: class 0 is a structure here
    assert [0, 0, 0] not in class_colours(3, None).tolist()
    assert tuple(class_colours(3, None)[0]) in _colours(tmp_path / "figures" / "overlays.png")


# ------------------------------------------------------------------ multi-label volumes
def test_multilabel_volumes_outline_each_channel_in_its_colour(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((4, 2, 6, 32, 32), np.uint8)
    labels[:, 0, 2:5, 5:20, 5:20] = 1
    labels[:, 1, 1:4, 12:28, 12:28] = 1  # overlaps channel 0
    preds = labels.copy()
    preds[1, 0] = 0  # case 1 misses channel 0 entirely
    images = rng.random(labels.shape[:1] + labels.shape[2:]).astype(np.float32) + labels.sum(axis=1)
    m = SegmentationMetrics(["gtv", "ctv"], mode="multilabel")
    m.update(preds, labels, spacing=(3.0, 1.0, 1.0))
    result = EvaluationResult(
        run_name="ct",
        class_names=["gtv", "ctv"],
        metrics=m.aggregate(),
        per_image=m.per_image(),
        images=images,
        labels=labels,
        preds=preds,
    )
    md = write_report(tmp_path, result).read_text(encoding="utf-8")
    assert not CHROMOSOME_WORDS.search(md)
    assert "Hausdorff (mm)" in md and "structures (multi-label channels" in md
    assert _cells(md, "worst 1")[1] == "#1" and float(_cells(md, "worst 1")[3]) == 0.0  # gtv Dice of case 1
    colours = _colours(tmp_path / "figures" / "overlays.png")
    for rgb in channel_colours(2).tolist():  # each channel's outline in its exact colour
        assert tuple(rgb) in colours
    assert "slice" in md.split("## Figures")[1]


def test_pick_slices_takes_the_slice_with_the_most_target():
    labels = np.zeros((2, 1, 5, 8, 8), np.uint8)
    labels[0, 0, 3, 1:7, 1:7] = 1
    labels[0, 0, 1, 2:3, 2:3] = 1
    preds = np.zeros_like(labels)
    preds[1, 0, 4, :2, :2] = 1  # no true target in case 1: its predicted slice
    images = np.arange(2 * 5 * 64, dtype=np.float32).reshape(2, 5, 8, 8)
    imgs, labs, prs, captions = pick_slices(images, labels, preds, multilabel=True)
    assert captions == ["slice 4/5", "slice 5/5"]
    assert labs.shape == (2, 1, 8, 8) and labs[0, 0].sum() == 36 and prs[1, 0].sum() == 4
    np.testing.assert_array_equal(imgs[1], images[1, 4])


def test_select_worst_best_never_repeats_a_case():
    scores = [0.5, 0.9, 0.1, float("nan"), 0.7, 0.95, 0.3]
    worst, best = select_worst_best(scores, 3)
    assert worst == [3, 2, 6]  # NaN (no score) counts as the worst
    assert best == [5, 1, 4]
    assert select_worst_best([0.2, 0.8, 0.5], 3) == ([0, 2], [1])
    assert select_worst_best([0.4], 3) == ([0], [])
    assert select_worst_best([], 3) == ([], [])


def test_case_scores_average_the_scored_classes_only():
    labels = _blobs(2, 3, seed=9)
    result = _result(MEMBRANE, labels, labels.copy())
    result.per_image[0]["dice/background"] = 0.0  # not a scored class: must not pull the mean down
    result.per_image[0]["dice/nucleus"] = 0.5
    assert case_scores(result) == [pytest.approx(0.75), pytest.approx(1.0)]


# ------------------------------------------------------------------ references: which task gets which rows
def _cfg(**task):
    return load_config(overrides={"task": task} if task else {})


def test_references_follow_the_task():
    chromosome = _cfg()
    assert is_chromosome_task(chromosome["task"]["class_names"])
    rows = references_for(chromosome)
    assert rows and {r["paper"] for r in rows} <= {"rse_unet", "arms_net", "amfl"}
    membrane = _cfg(class_names=MEMBRANE, derived={}, primary_metric="nucleus")
    assert references_for(membrane) == []  # a U-Net on membranes is not the papers' U-Net
    ctv = load_config(
        overrides={
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "spatial_dims": 3,
                "derived": {},
                "primary_metric": "ctv",
            },
            "data": {"size": None},
            "augment": {"volume": {"enabled": False}},
            "model": {"name": "ctv_unet3d", "depth": 2, "channels": [2, 2]},
            "loss": [{"name": "bce"}],
        }
    )
    assert [r["dice"] for r in references_for(ctv)] == [r["dice"] for r in rows_from("ctv_thesis", "2.1")]
    off = copy.deepcopy(chromosome)
    off["evaluate"]["references"] = "none"
    assert references_for(off) == []


def test_references_setting_is_checked():
    assert load_config(overrides={})["evaluate"]["references"] == "auto"  # today's behaviour by default
    with pytest.raises(ConfigError, match="evaluate.references"):
        load_config(overrides={"evaluate": {"references": "papers"}})


def test_ctv_thesis_rows_show_as_published_dice(tmp_path):
    labels = _blobs(3, 2, seed=2)
    refs = rows_from("ctv_thesis", "2.1") + reference_rows("unet")  # the chromosome rows are dropped
    result = _result(["background", "ctv"], labels, labels.copy(), references=refs)
    md = write_report(tmp_path, result).read_text(encoding="utf-8")
    assert "## Published numbers" in md
    assert _cells(md, "UNet")[1:3] == ["74.70", "CTV thesis, Table 2.1"]
    assert float(_cells(md, "**ours**")[1]) == 100.0
    assert not CHROMOSOME_WORDS.search(md)


def test_chromosome_report_keeps_its_papers(tmp_path):
    labels = _blobs(4, 4, seed=4)
    result = _result(
        ["background", "chromosome_alpha", "chromosome_beta", "overlap"],
        labels,
        labels.copy(),
        references=reference_rows("unet"),
    )
    md = write_report(tmp_path, result).read_text(encoding="utf-8")
    assert "## Ours vs the papers" in md and "| U-Net [13] | 95.52 |" in md
    assert "α red, β green, overlap blue" in md and "small, medium and large true overlap" in md
    assert "Worst and best cases" not in md
    assert json.loads((tmp_path / "metrics.json").read_text())["task"]["chromosome"] is True


# ------------------------------------------------------------------ end to end: medseg evaluate on a membrane task
def test_evaluate_run_on_a_membrane_task(tiny_cfg, toy_data, monkeypatch):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["name"] = "tiny_membrane"
    cfg["task"].update({"class_names": MEMBRANE, "derived": {}, "primary_metric": "nucleus"})
    cfg["splits"].update({"n_folds": 2})
    cfg["train"].update({"epochs": 1, "max_batches_per_epoch": 1, "val_max_batches": 1, "device": "cpu"})
    labels = toy_data.labels.copy()
    labels[(labels == 1) | (labels == 2)] = 1  # both bars: membrane
    labels[toy_data.labels == 3] = 2  # their crossing: nucleus
    data = SegmentationData(
        toy_data.images, labels, [f"cell_{i:02d}.tif" for i in range(len(labels))], "cells", synthesized=False
    )
    train_fold(cfg, 0, data=data, progress=False)
    monkeypatch.setattr(evaluate_module, "load_any_data", lambda c, progress=True: data)

    report = evaluate_run(run_dir_for(cfg), folds=[0], device="cpu", progress=False)
    md = report.read_text(encoding="utf-8")
    assert not CHROMOSOME_WORDS.search(md), CHROMOSOME_WORDS.search(md)
    payload = json.loads((report.parent / "metrics.json").read_text())
    assert payload["references"] == []
    names = {row["case"] for row in payload["per_image"]}
    assert names and names <= set(data.names)
    worst = payload["cases"]["worst"][0]
    assert worst["case"] in names and f"| worst 1 | {worst['case']} |" in md
    for name in ("membrane", "nucleus"):
        assert _cells(md, name)[1] != "—"
    assert (report.parent / "figures" / "overlays.png").is_file()
