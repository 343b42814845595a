"""Tests of medseg.evaluation: published numbers, figure helpers and the report writer."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medseg.evaluation import (
    EvaluationResult,
    figures,
    fold_summary,
    reference_rows,
    rows_from,
    select_by_overlap,
    training_curves,
    write_report,
)
from medseg.evaluation import report as report_module
from medseg.evaluation.paper_numbers import COMPLETE, NON_OVERLAP, PAPER_ROWS
from medseg.metrics import SegmentationMetrics

CLASSES = ["background", "chromosome_alpha", "chromosome_beta", "overlap"]
WHOLE = {"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]}


# ------------------------------------------------------------------------------ published numbers
# (read from configs/tables/published/*.yaml; the check against the papers' texts and of bad files is in
# test_paper_numbers.py)
def _one(rows, **match):
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


def test_headline_numbers_exact():
    arms = _one(rows_from("arms_net", "5"), method="ARMS Net")
    headline = ("overlap_iou", "alpha_iou", "beta_iou", "accuracy")
    assert tuple(arms[k] for k in headline) == (99.45, 99.77, 99.88, 99.9955)
    assert arms["alpha_beta_definition"] == COMPLETE and arms["accuracy_definition"] == "derived_accuracy"
    assert arms["time_ms"] == 4.5
    rse = _one(rows_from("rse_unet", "4"), method="RSE-UNet")
    assert (rse["overlap_iou"], rse["alpha_iou"], rse["beta_iou"], rse["accuracy"]) == (98.58, 98.79, 99.04, 99.41)
    assert rse["alpha_beta_definition"] == NON_OVERLAP and rse["accuracy_definition"] == "foreground_accuracy"
    nested = _one(rows_from("amfl", "II"), method="NestedUNet")
    assert (nested["accuracy"], nested["dice"], nested["mean_iou"], nested["recall"], nested["precision"]) == (
        99.9625,
        97.967,
        96.6473,
        98.0266,
        98.0809,
    )
    assert (nested["fnr"], nested["fpr"], nested["hausdorff"]) == (1.9734, 0.0341, 0.9518)
    nested4 = _one(rows_from("amfl", "IV"), method="NestedUNet")
    assert (nested4["params"], nested4["time_ms"], nested4["time_ms_cpu"]) == (36_630_000, 27, 568)
    amfl3 = _one(rows_from("amfl", "III"), method="AFML (Ours)")
    assert tuple(amfl3[k] for k in headline) == (94.37, 97.09, 98.93, 99.98)
    assert amfl3["alpha_beta_definition"] == NON_OVERLAP


def test_table_sizes():
    sizes = {(r["paper"], r["table"]) for r in PAPER_ROWS}
    counts = {k: sum(1 for r in PAPER_ROWS if (r["paper"], r["table"]) == k) for k in sizes}
    assert counts == {
        ("rse_unet", "3"): 3,
        ("rse_unet", "4"): 7,
        ("rse_unet", "5"): 7,
        ("arms_net", "3"): 3,
        ("arms_net", "4"): 12,
        ("arms_net", "5"): 9,
        ("arms_net", "6"): 6,
        ("amfl", "II"): 11,
        ("amfl", "III"): 3,
        ("amfl", "IV"): 11,
        ("amfl", "V"): 10,
        ("ctv_thesis", "2.1"): 5,
        ("ctv_thesis", "3.1"): 22,
        ("gi_tract", "6"): 4,
        ("gi_tract", "augmentation"): 2,
        ("gi_tract", "depth"): 2,
    }


def test_ctv_thesis_rows_exact():
    t21 = rows_from("ctv_thesis", "2.1")
    assert [r["dice"] for r in t21] == [74.7, 75.3, 75.5, 75.7, 76.3]  # Dice ratio 0.747 … 0.763, in %
    t31 = rows_from("ctv_thesis", "3.1")
    worst = _one(t31, method="qam (75 %, 5-13 px)")
    assert worst["dice"] == 63.6 and "clavicle 0.366" in worst["note"]


def test_reference_rows_unet_and_aliases():
    rows = reference_rows("unet")
    by_source = {r["source"]: r for r in rows}
    assert by_source["RSE-UNet, Table 4"]["overlap_iou"] == 95.52
    assert by_source["ARMS Net, Table 5"]["overlap_iou"] == 96.38
    assert by_source["AMFL, Table II"]["mean_iou"] == 96.3765
    assert by_source["AMFL, Table IV"]["params"] == 34_530_000
    assert len(rows) == 4
    assert [r["method"] for r in reference_rows("UNet++")] == ["NestedUNet", "NestedUNet"]
    assert reference_rows("NestedUNet") == reference_rows("nested_unet")
    assert len(reference_rows("rse_unet")) == 1 and len(reference_rows("rse_unet", include_variants=True)) == 4
    rows[0]["overlap_iou"] = 0.0  # copies: the module data stays intact
    assert reference_rows("unet")[0]["overlap_iou"] == 95.52
    with pytest.raises(ValueError, match="known"):
        reference_rows("no-such-net")


def test_rows_have_one_key_set_and_sane_units():
    keys = set(PAPER_ROWS[0])
    for r in PAPER_ROWS:
        assert set(r) == keys
        assert r["source"].startswith(
            ("RSE-UNet, Table", "ARMS Net, Table", "AMFL, Table", "CTV thesis, Table", "GI-tract U-Net, ")
        )
        for k in ("overlap_iou", "alpha_iou", "beta_iou", "accuracy", "mean_iou", "dice", "precision", "recall"):
            assert r[k] is None or 0 < r[k] <= 100, (r["source"], r["method"], k)
        if r["alpha_iou"] is not None:
            assert r["alpha_beta_definition"] in (NON_OVERLAP, COMPLETE)
        if r["accuracy"] is not None:
            assert r["accuracy_definition"] in (
                "foreground_accuracy",
                "derived_accuracy",
                "pixel_accuracy",
                "keras_accuracy",
            )


# ------------------------------------------------------------------------------ overlay selection
def _labels_with_overlap_areas(areas, size=48):
    labels = np.zeros((len(areas), size, size), dtype=np.int64)
    for i, a in enumerate(areas):
        labels[i, :20, :20] = 1
        labels[i, 25:, 25:] = 2
        flat = labels[i].reshape(-1)
        flat[size * 30 : size * 30 + a] = 3  # a overlap pixels
    return labels


def test_select_by_overlap_small_medium_large():
    # overlap areas 10, 20, ..., 100 in shuffled order, plus two images without overlap.
    rng = np.random.default_rng(0)
    areas = list(rng.permutation([10 * k for k in range(1, 11)])) + [0, 0]
    labels = _labels_with_overlap_areas(areas)
    picked = select_by_overlap(labels)
    # among images with overlap: 10th percentile = 10 + 0.1 * 90 = 19 -> nearest area 20;
    # median = 55 -> tie 50/60, the smaller wins -> 50; 90th percentile = 91 -> 90
    assert [areas[i] for i in picked] == [20, 50, 90]


def test_select_by_overlap_edge_cases():
    assert select_by_overlap(_labels_with_overlap_areas([0, 0, 0, 0])) == [0, 1, 2]
    picked = select_by_overlap(_labels_with_overlap_areas([0, 7, 0]))
    assert picked == [1]  # one candidate: chosen once, not repeated
    picked = select_by_overlap(_labels_with_overlap_areas([5, 5, 5]))
    assert sorted(picked) == [0, 1, 2]  # distinct images even when areas tie


# ------------------------------------------------------------------------------ report
def _synthetic(n=6, size=40, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, 4, size, size))
    labels = np.stack([[ndimage.gaussian_filter(c, 3) for c in b] for b in noise]).argmax(axis=1)
    preds = labels.copy()
    preds[:, 5:9, 5:9] = 0  # known error: a 4x4 block predicted as background in every image
    preds[1][labels[1] == 3] = 1  # image 1 misses the overlap entirely
    images = (255 - 60 * labels + rng.normal(0, 4, labels.shape)).astype(np.float32)
    return images, labels, preds


def _result(with_images=True, **kw):
    images, labels, preds = _synthetic()
    m = SegmentationMetrics(CLASSES, derived=WHOLE)
    m.update(preds, labels)
    histories = {
        f"fold {k}": [
            {
                "epoch": e,
                "train_loss": 1 / (e + 1),
                "val_loss": 1.1 / (e + 1),
                "lr": 1e-3 * 0.5 ** (e // 3),
                "val_iou/overlap": 1 - 0.4 / (e + 1),
                "val_dice/overlap": 1 - 0.3 / (e + 1),
                "val_iou/chromosome_alpha": 0.99,
            }
            for e in range(8)
        ]
        for k in range(3)
    }
    fields = dict(
        run_name="unet-test",
        class_names=CLASSES,
        metrics=m.aggregate(),
        per_image=m.per_image(),
        confusion=m.confusion(),
        fold_values={"fold 0": [0.9, 1.0], "fold 1": [0.8, 0.9, 1.0], "fold 2": [0.95]},
        histories=histories,
        references=reference_rows("unet"),
        efficiency={"params": 1_234_567, "cpu_ms": 12.5},
        data_note="synthesized Pommier-procedure data, not the real set",
        extra={"seed": 0},
    )
    if with_images:
        fields.update(images=images, labels=labels, preds=preds)
    fields.update(kw)
    return EvaluationResult(**fields), labels, preds


def _cells(md: str, row_start: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {row_start}"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _expected_overlap_iou(labels, preds):
    ious = []
    for t, p in zip(labels == 3, preds == 3, strict=True):
        union = np.count_nonzero(t | p)
        ious.append(1.0 if union == 0 else np.count_nonzero(t & p) / union)
    return float(np.mean(ious))


def test_write_report_numbers_json_and_figures(tmp_path):
    result, labels, preds = _result()
    out = tmp_path / "run"
    path = write_report(out, result)
    assert path == out / "report.md"
    md = path.read_text(encoding="utf-8")
    assert md.startswith("# Evaluation report: unet-test")
    assert "**synthesized Pommier-procedure data, not the real set**" in md

    # headline rows: ours in three definitions, numbers computed independently here
    pc = result.metrics["per_class"]
    exp_overlap = _expected_overlap_iou(labels, preds)
    exp_pixel_acc = float(np.mean([(t == p).mean() for t, p in zip(labels, preds, strict=True)]))
    exp_fg_acc = float(np.mean([((t > 0) == (p > 0)).mean() for t, p in zip(labels, preds, strict=True)]))
    rse = _cells(md, "**ours** (as RSE-UNet)")
    arms = _cells(md, "**ours** (as ARMS Net)")
    amfl = _cells(md, "**ours** (as AMFL)")
    assert float(rse[1]) == pytest.approx(100 * exp_overlap, abs=0.005)
    assert float(rse[2]) == pytest.approx(100 * pc["chromosome_alpha"]["iou"], abs=0.005)
    assert float(rse[3]) == pytest.approx(100 * pc["chromosome_beta"]["iou"], abs=0.005)
    assert float(rse[4]) == pytest.approx(100 * exp_fg_acc, abs=0.005)
    assert rse[6] == "non-overlap region"
    assert float(arms[2]) == pytest.approx(100 * pc["chromosome_alpha_whole"]["iou"], abs=0.005)
    assert float(arms[4]) == pytest.approx(100 * result.metrics["derived_accuracy"], abs=0.005)
    assert arms[6] == "complete chromosome"
    assert float(amfl[4]) == pytest.approx(100 * exp_pixel_acc, abs=0.005)
    assert re.fullmatch(r"\d+\.\d\d", rse[1])  # two decimals

    # the published rows beside ours, with their definitions and sources
    unet_rse = _cells(md, "U-Net [13]")
    assert unet_rse[1] == "95.52" and unet_rse[6] == "non-overlap region" and unet_rse[-1] == "RSE-UNet, Table 4"
    unet_arms = _cells(md, "UNet |")  # first "UNet" row: ARMS Table 5
    assert unet_arms[1] == "96.38" and unet_arms[6] == "complete chromosome" and float(unet_arms[4]) == 99.969

    # per-class table
    ov = _cells(md, "overlap |")  # the per-class row (headline rows start differently)
    assert float(ov[1]) == pytest.approx(100 * pc["overlap"]["iou"], abs=0.005)
    assert float(ov[2]) == pytest.approx(100 * pc["overlap"]["dice"], abs=0.005)
    assert float(ov[7]) == pytest.approx(pc["overlap"]["hausdorff"], abs=0.0005)
    assert "| chromosome_alpha_whole (= chromosome_alpha + overlap) |" in md

    # efficiency and folds
    assert "| **ours** | 1.23M | 12.50 | — | this run |" in md
    fold0 = _cells(md, "fold 0")
    assert fold0[1] == "2" and fold0[2] == "95.00 ± 7.07"  # mean 0.95, sample sd 0.0707
    assert _cells(md, "across folds")[2] == "93.33 ± 2.89"  # fold means 0.95, 0.9, 0.95: mean 2.8/3, sd 0.0289

    # metrics.json round-trips
    payload = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert payload["metrics"] == result.metrics
    assert payload["per_image"] == result.per_image
    assert payload["efficiency"] == result.efficiency and payload["references"] == result.references
    assert payload["data_note"] == result.data_note

    # figures: present, linked relatively, real images
    for name in ("overlays.png", "confusion_matrix.png", "folds.png", "training_curves.png"):
        f = out / "figures" / name
        assert f.is_file(), name
        assert f"](figures/{name})" in md
        with Image.open(f) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
            assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
    assert not [p for p in out.iterdir() if p.name.startswith(".report-tmp-")]


def test_report_without_optional_inputs(tmp_path):
    result, _, _ = _result(
        with_images=False, confusion=None, fold_values={}, histories={}, references=[], efficiency={}
    )
    md = write_report(tmp_path, result).read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["confusion_matrix.png"]  # from metrics
    assert "No reference rows" in md and "## Efficiency" not in md and "Per-fold" not in md


def test_broken_figure_is_reported_not_fatal(tmp_path):
    result, labels, _ = _result()
    result.preds = result.preds[:, :10]  # wrong shape: overlays cannot be drawn
    with pytest.warns(RuntimeWarning, match="overlays.png"):
        md = write_report(tmp_path, result).read_text(encoding="utf-8")
    assert "figure not drawn: overlays.png" in md
    assert (tmp_path / "figures" / "confusion_matrix.png").is_file()


def test_crash_leaves_previous_report_untouched(tmp_path, monkeypatch):
    result, _, _ = _result(with_images=False, histories={}, fold_values={})
    (tmp_path / "report.md").write_text("old report\n")

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(report_module, "markdown", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_report(tmp_path, result)
    assert (tmp_path / "report.md").read_text() == "old report\n"
    assert not (tmp_path / "metrics.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report-tmp-")]


def test_headline_roles_explicit_and_validated(tmp_path):
    result, _, _ = _result(with_images=False, histories={}, fold_values={})
    md = write_report(tmp_path, result, headline={"overlap": "chromosome_beta"}).read_text(encoding="utf-8")
    assert float(_cells(md, "**ours** (as RSE-UNet)")[1]) == pytest.approx(
        100 * result.metrics["per_class"]["chromosome_beta"]["iou"], abs=0.005
    )
    with pytest.raises(ValueError, match="not in the metrics"):
        write_report(tmp_path, result, headline={"overlap": "nope"})


def test_fold_summary_by_hand():
    s = fold_summary({"a": [0.9, 1.0], "b": [0.8], "c": []})
    assert s["a"]["mean"] == pytest.approx(0.95) and s["a"]["sd"] == pytest.approx(0.0707107, rel=1e-5)
    assert s["b"] == {"n": 1, "mean": 0.8, "sd": 0.0, "median": 0.8, "min": 0.8, "max": 0.8}
    assert s["c"]["n"] == 0 and s["c"]["mean"] is None
    assert s["across folds"]["mean"] == pytest.approx(0.875)


def test_training_curves_picks_the_overlap_iou():
    keys = ["val_dice/overlap", "val_iou/chromosome_alpha", "val_iou/overlap"]
    assert figures._pick_metric(keys) == "val_iou/overlap"
    assert figures._pick_metric(["val_dice/a", "val_iou/a"]) == "val_iou/a"
    assert figures._pick_metric(["val_score"]) == "val_score"
    assert figures._pick_metric([]) is None


def test_training_curves_tolerates_missing_keys(tmp_path):
    history = {"fold 0": [{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.5}]}
    path = training_curves(history, tmp_path / "c.png")
    with Image.open(path) as im:
        assert im.width > 300
