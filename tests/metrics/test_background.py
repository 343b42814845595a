"""Issue 12: any class may be the one that matters — ``task.background`` (an index or null) decides which class
the metrics leave out, for validation, evaluation and the server's summaries, and ``primary_metric`` is
checked against the scored classes when the config is loaded."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from medseg.config import load_config
from medseg.config_schema import scored_class_names
from medseg.errors import ConfigError
from medseg.metrics.segmentation import SegmentationMetrics

NAMES = ["sky", "road", "car"]


def _maps():
    """Two 4x4 label maps with every class present, and a prediction that gets part of each class wrong."""
    target = np.array(
        [
            [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 0, 0]],
            [[1, 1, 1, 1], [0, 0, 0, 0], [2, 2, 0, 0], [2, 2, 1, 1]],
        ]
    )
    pred = target.copy()
    pred[0, 0, 0] = 1  # a class-0 pixel called 1
    pred[1, 2, 0] = 0  # a class-2 pixel called 0
    pred[1, 3, 3] = 2  # a class-1 pixel called 2
    return pred, target


def _class0_iou(pred, target):
    """Per-image IoU of class 0, averaged, by hand."""
    ious = []
    for p, t in zip(pred, target, strict=True):
        inter = np.count_nonzero((p == 0) & (t == 0))
        union = np.count_nonzero((p == 0) | (t == 0))
        ious.append(inter / union)
    return float(np.mean(ious))


def test_default_leaves_class_0_out():
    pred, target = _maps()
    m = SegmentationMetrics(NAMES, hausdorff=False)
    m.update(pred, target)
    agg = m.aggregate()
    assert m.scored_classes == ["road", "car"] and agg["mean_over"] == ["road", "car"]
    assert "sky" not in agg["per_class"] and agg["background"] == "sky"


def test_background_null_scores_class_0():
    pred, target = _maps()
    m = SegmentationMetrics(NAMES, background=None, hausdorff=False)
    m.update(pred, target)
    agg = m.aggregate()
    assert m.scored_classes == NAMES and agg["mean_over"] == NAMES
    assert agg["per_class"]["sky"]["iou"] == pytest.approx(_class0_iou(pred, target))
    assert agg["background"] is None
    # "foreground vs background" means nothing without a background: not reported rather than made up
    assert "foreground_accuracy" not in agg and "foreground_accuracy" not in m.per_image()[0]


def test_background_2_scores_0_and_1_and_measures_foreground_against_class_2():
    pred, target = _maps()
    m = SegmentationMetrics(NAMES, background=2, hausdorff=False)
    m.update(pred, target)
    agg = m.aggregate()
    assert m.scored_classes == ["sky", "road"] and "car" not in agg["per_class"]
    assert agg["per_class"]["sky"]["iou"] == pytest.approx(_class0_iou(pred, target))
    # foreground = any class but 2: image 0 has no 2-vs-not-2 error, image 1 two of 16 pixels
    expected = np.mean([((p != 2) == (t != 2)).mean() for p, t in zip(pred, target, strict=True)])
    assert agg["foreground_accuracy"] == pytest.approx(expected) and expected == pytest.approx(1 - 2 / 32)


def test_derived_structures_may_not_hold_the_background_class():
    with pytest.raises(ValueError, match=r"includes the background class 2 \('car'\)"):
        SegmentationMetrics(NAMES, background=2, derived={"both": [1, 2]})
    # class 0 is an ordinary class once the background is another one
    m = SegmentationMetrics(NAMES, background=2, derived={"both": [0, 1]}, hausdorff=False)
    assert m.structure_names == ["sky", "road", "both"]


def test_bad_background_is_refused():
    with pytest.raises(ValueError, match=r"background must be a class index in 0\.\.2"):
        SegmentationMetrics(NAMES, background=3)
    with pytest.raises(ValueError, match="no class left to score"):
        SegmentationMetrics(["only"], mode="multilabel", background=0)


def test_multilabel_scores_every_channel_by_default_and_from_a_task():
    m = SegmentationMetrics.from_task(
        {"mode": "multilabel", "class_names": ["ctv", "ptv"], "background": 0, "derived": {}}, hausdorff=False
    )
    assert m.scored_classes == ["ctv", "ptv"]
    pred = np.zeros((1, 2, 4, 4), dtype=np.uint8)
    pred[0, 0, :2] = 1
    m.update(pred, pred)
    assert m.aggregate()["per_class"]["ctv"]["iou"] == 1.0 and "foreground_accuracy" in m.aggregate()


@pytest.mark.parametrize(
    "task",
    [
        {"mode": "multiclass", "class_names": NAMES, "background": 0},
        {"mode": "multiclass", "class_names": NAMES, "background": 2},
        {"mode": "multiclass", "class_names": NAMES, "background": None},
        {"mode": "multilabel", "class_names": NAMES, "background": 0},
    ],
)
def test_the_schema_and_the_metrics_agree_on_the_scored_classes(task):
    assert SegmentationMetrics.from_task(task, hausdorff=False).scored_classes == scored_class_names(task)


# ------------------------------------------------------------------------------------------ the config


def _task(**task):
    return {"task": {"class_names": NAMES, "derived": {}, **task}}


def test_primary_metric_on_the_background_is_refused_at_load_naming_the_key_and_the_allowed():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=_task(primary_metric="sky"))
    msg = str(info.value)
    assert "task.primary_metric 'sky'" in msg and "task.background" in msg
    assert "allowed: road, car" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"task\.primary_metric 'car' .*allowed: sky, road"):
        load_config(overrides=_task(primary_metric="car", background=2))


def test_primary_metric_on_class_0_is_fine_when_nothing_or_another_class_is_background():
    assert load_config(overrides=_task(primary_metric="sky", background=None))["task"]["background"] is None
    assert load_config(overrides=_task(primary_metric="sky", background=2))["task"]["background"] == 2


@pytest.mark.parametrize(
    "override,message",
    [
        (_task(primary_metric="road", background=3), r"task\.background is 3 but task\.class_names holds 3 classes"),
        (
            {
                "task": {
                    "mode": "multilabel",
                    "class_names": ["ctv"],
                    "primary_metric": "ctv",
                    "derived": {},
                    "background": 1,
                }
            },
            r"task\.background is 1, but in multilabel mode",
        ),
        ({"task": {"background": 1}}, r"task\.derived\.chromosome_alpha_whole includes class 1 \('chromosome_alpha'\)"),
    ],
)
def test_bad_background_settings_are_refused_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=override)


def test_the_default_keeps_class_0_as_background():
    cfg = load_config()
    assert cfg["task"]["background"] == 0
    assert scored_class_names(cfg["task"]) == ["chromosome_alpha", "chromosome_beta", "overlap"]
    ctv = load_config("configs/ctv/table2_1_unet.yaml")  # multilabel, one channel: still scored
    assert scored_class_names(ctv["task"]) == ["ctv"]


# --------------------------------------------------------------------------- validation, evaluation, server


def test_trainer_validation_scores_class_0_without_a_background(tiny_cfg, toy_data, tmp_path):
    from medseg.training.trainer import Trainer

    cfg = copy.deepcopy(tiny_cfg)
    before = Trainer(cfg, tmp_path / "a", toy_data, list(range(8)), list(range(8, 16)), progress=False).validate()
    assert "val_iou/background" not in before and "val_iou/overlap" in before
    cfg["task"]["background"] = None
    after = Trainer(cfg, tmp_path / "b", toy_data, list(range(8)), list(range(8, 16)), progress=False).validate()
    assert 0.0 <= after["val_iou/background"] <= 1.0


def test_evaluation_metrics_follow_task_background(tiny_cfg):
    from medseg.evaluation.evaluate import _new_metrics

    cfg = copy.deepcopy(tiny_cfg)
    names = cfg["task"]["class_names"]
    assert _new_metrics(cfg, names).scored_classes == names[1:]
    cfg["task"]["background"] = None
    assert _new_metrics(cfg, names).scored_classes == names


def test_server_summary_counts_the_scored_label_values():
    from medseg.server.exports import scored_values, summarize

    labels = np.array([[[0, 1, 2, 2]]], dtype=np.uint8)
    task = {"mode": "multiclass", "class_names": NAMES, "background": 2}
    values = scored_values(task, NAMES)
    assert values == [0, 1]
    rows = summarize(labels, NAMES, None, "2d", values=values)["classes"]
    assert [(r["name"], r["pixels"]) for r in rows] == [("sky", 1), ("road", 1)]
    # a multilabel model's label map: 0 = no channel, channel c = c + 1
    assert scored_values({"mode": "multilabel", "class_names": ["ctv"], "background": 0}, ["background", "ctv"]) == [1]
    # a model.json from before issue 12 has no task.background: class 0 stays the background
    assert scored_values({"mode": "multiclass", "class_names": NAMES}, NAMES) == [1, 2]
