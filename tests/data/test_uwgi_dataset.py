"""The UW-Madison GI folder in the pipeline: loader, 2.5D context, stratified group split, competition score,
evaluate/cv reports, and a real-anatomy check (the TotalSegmentator MR volume converted to the layout)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.config import load_config, set_dotted, validate
from medseg.data.registry import load_any_data
from medseg.data.runs import splits_for
from medseg.data.synth_gi import write_synth_gi
from medseg.data.uwgi import CLASSES, read_train_csv
from medseg.data.uwgi_dataset import (
    context_indices,
    is_uwgi_data,
    original_masks,
    resize_stack,
    scan_groups,
    to_original_size,
)
from medseg.errors import ConfigError
from medseg.evaluation.competition import competition_score

ROOT = Path(__file__).resolve().parents[2]
GI_CONFIG = ROOT / "configs" / "gi" / "unet4.yaml"
SHARED_CT = ROOT.parent / "shared" / "data" / "ct" / "totalsegmentator"


@pytest.fixture(scope="module")
def gi_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gi") / "uw"
    write_synth_gi(out, n_cases=5, seed=3, slices=(12,), progress=False)
    return out


def gi_cfg(folder: Path, tmp_path: Path, **sets) -> dict:
    cfg = load_config(GI_CONFIG)
    base = {
        "data.path": str(folder),
        "data.size": "[32, 32]",
        "output.root": str(tmp_path / "runs"),
        "model.depth": "2",
        "model.channels": "[4, 8, 16]",
        "model.base_channels": "4",
        "train.iterations": "2",
        "train.batch_size": "8",
        "augment.elastic_prob": "0.0",
        "augment.noise_prob": "0.0",
        "evaluate.batch_size": "64",
        "name": "gi_test",
    }
    base.update({k: str(v) for k, v in sets.items()})
    for key, value in base.items():
        set_dotted(cfg, key, value)
    return validate(cfg)


def test_the_folder_loads_as_multilabel_slices_with_cases_strata_and_scans(gi_folder, tmp_path):
    data = load_any_data(gi_cfg(gi_folder, tmp_path), progress=False)
    rles = read_train_csv(gi_folder / "train.csv")
    assert is_uwgi_data(data) and data.synthesized  # the synth-gi manifest says so
    assert data.images.shape == (len(rles), 32, 32) and data.images.dtype == np.float32
    assert data.labels.shape == (len(rles), 3, 32, 32) and set(np.unique(data.labels)) <= {0, 1}
    assert data.names == sorted(
        rles,
        key=lambda i: tuple(int(x) for x in i.replace("case", "").replace("_day", " ").replace("_slice_", " ").split()),
    )
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0  # uint16 / 65535
    # strata: organs in the slice as train.csv says; groups: the case
    assert data.strata == [sum(bool(rles[i][c]) for c in CLASSES) for i in data.names]
    assert data.groups == [i.split("_")[0] for i in data.names]
    # masks are each organ's own channel, resized: an organ present in the CSV is present on the grid
    for k, i in enumerate(data.names):
        for c, organ in enumerate(CLASSES):
            if not rles[i][organ]:
                assert data.labels[k, c].sum() == 0, (i, organ)
    # original masks come back at the slice's own size and equal the CSV's
    first = next(k for k, s in enumerate(data.strata) if s >= 2)
    masks = original_masks(data, first, rles)
    h, w = data.volume_info["original_shapes"][first]
    assert masks.shape == (3, h, w) and masks.sum() > 0


def test_overlapping_organs_stay_in_both_channels(gi_folder, tmp_path):
    data = load_any_data(gi_cfg(gi_folder, tmp_path, **{"data.size": "null", "data.resize": "false"}), progress=False)
    both = (data.labels.sum(1) >= 2).any(axis=(1, 2))
    assert both.any(), "the synthesized set has slices where two organs share pixels"


def test_task_must_be_multilabel_organs(gi_folder, tmp_path):
    cfg = gi_cfg(gi_folder, tmp_path)
    bad = copy.deepcopy(cfg)
    bad["task"]["class_names"] = ["large_bowel", "liver", "stomach"]
    with pytest.raises(ConfigError, match="organs of the competition"):
        load_any_data(bad, progress=False)
    bad = copy.deepcopy(cfg)
    bad["task"]["mode"] = "multiclass"
    with pytest.raises(ConfigError, match="multilabel"):
        load_any_data(bad, progress=False)


def test_context_indices_stay_in_the_scan_and_clamp_at_its_ends():
    scans = ["a"] * 5 + ["b"] * 3
    slices = [1, 2, 3, 4, 5, 3, 1, 2]  # b's slices out of order in the item list
    ctx = context_indices(scans, slices, k=1, stride=2)
    assert ctx.shape == (8, 3)
    assert ctx[2].tolist() == [0, 2, 4]  # slice 3 of a: slices 1, 3, 5
    assert ctx[0].tolist() == [0, 0, 2]  # first slice: clamped
    assert ctx[6].tolist() == [6, 6, 5]  # b slice 1 → (1, 1, 3): item 5 is slice 3
    assert context_indices(scans, slices, k=0, stride=1) is None


def test_25d_inputs_feed_neighbouring_slices_as_channels(gi_folder, tmp_path):
    cfg = gi_cfg(gi_folder, tmp_path, **{"data.context_slices": 1, "data.context_stride": 1})
    data = load_any_data(cfg, progress=False)
    x = data.inputs([3, 4])
    assert x.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(x[0, 1], data.images[3])
    np.testing.assert_array_equal(x[0, 2], data.images[4])  # same scan, next slice


def test_stratified_group_split_keeps_cases_whole_and_strata_balanced(gi_folder, tmp_path):
    cfg = gi_cfg(gi_folder, tmp_path)
    data = load_any_data(cfg, progress=False)
    splits, path = splits_for(cfg, data)
    assert splits["protocol"] == "stratified_group" and splits["test"] == [] and len(splits["folds"]) == 5
    vals = [set(f["val"]) for f in splits["folds"]]
    assert sorted(i for v in vals for i in v) == list(range(len(data)))  # the folds partition the slices
    for f in splits["folds"]:
        assert set(f["train"]).isdisjoint(f["val"])
        assert {data.groups[i] for i in f["train"]}.isdisjoint({data.groups[i] for i in f["val"]})
    # saved once and reused
    again, path2 = splits_for(cfg, data)
    assert path2 == path and again["folds"] == splits["folds"] and json.loads(path.read_text())["folds"]


def test_stratified_split_balances_strata_within_tolerance():
    from medseg.data.splits import make_stratified_group_splits

    rng = np.random.default_rng(0)
    groups, strata = [], []
    for case in range(40):  # 40 cases of 30-80 slices with case-dependent organ mixes
        n = int(rng.integers(30, 80))
        p = rng.dirichlet(np.ones(4))
        groups += [f"case{case}"] * n
        strata += rng.choice(4, size=n, p=p).tolist()
    splits = make_stratified_group_splits(strata, groups, n_folds=5, seed=0)
    overall = np.bincount(strata, minlength=4) / len(strata)
    for f in splits["folds"]:
        share = np.bincount(np.asarray(strata)[f["val"]], minlength=4) / len(f["val"])
        assert np.abs(share - overall).max() < 0.08, (share, overall)  # stated tolerance: 8 points
        assert {groups[i] for i in f["val"]}.isdisjoint({groups[i] for i in f["train"]})


def test_stratify_needs_strata_and_cv_only(toy_data, tmp_path):
    cfg = load_config(ROOT / "configs" / "chromosomes" / "demo.yaml")
    with pytest.raises(ConfigError, match="test_fraction: 0"):
        set_dotted(cfg, "splits.stratify", "true")
        validate(cfg)
    set_dotted(cfg, "splits.test_fraction", "0")
    set_dotted(cfg, "output.root", str(tmp_path))
    with pytest.raises(ConfigError, match="stratum"):
        splits_for(validate(cfg), toy_data)


def test_probabilities_go_back_to_the_slice_size(gi_folder, tmp_path):
    for sets in (
        {"data.size": "[128, 128]"},
        {"data.resize": "false", "data.size": "[300, 300]"},
        {"data.resize": "false", "data.size": "null"},
    ):
        data = load_any_data(gi_cfg(gi_folder, tmp_path, **sets), progress=False)
        k = int(np.argmax(data.labels.reshape(len(data), -1).sum(1)))  # the slice with the most organ pixels
        back = to_original_size(data.labels[k].astype(np.float32), data, k) > 0.5
        truth = original_masks(data, k).astype(bool)
        assert back.shape == truth.shape
        inter, union = (back & truth).sum(), (back | truth).sum()
        # pad / canvas are exact; resize to 32x32 and back loses a little of each organ's outline
        assert inter / union > (0.8 if "data.resize" not in sets else 0.999), sets


def test_resize_stack_keeps_masks_binary():
    masks = np.zeros((2, 3, 50, 40), np.uint8)
    masks[:, 1, 10:30, 5:25] = 1
    out = resize_stack(masks, (20, 16), labels=True)
    assert out.shape == (2, 3, 20, 16) and set(np.unique(out)) == {0, 1} and out[:, 0].sum() == 0


def test_competition_score_of_the_truth_is_one_and_of_nothing_is_lower(gi_folder, tmp_path):
    data = load_any_data(gi_cfg(gi_folder, tmp_path, **{"data.resize": "false", "data.size": "null"}), progress=False)
    idx = np.arange(len(data))
    perfect = competition_score(data, idx, data.labels.astype(np.float32), list(CLASSES))
    assert perfect["uw_score"] == pytest.approx(1.0) and perfect["n_scans"] == len(scan_groups(data, idx))
    empty = competition_score(data, idx, np.zeros(data.labels.shape, np.float32), list(CLASSES))
    assert empty["uw_score"] < 0.6 and empty["hausdorff_score"] < perfect["hausdorff_score"]
    # the paper's rule (two empty masks: Dice 0) scores the perfect prediction lower on empty slices
    assert perfect["other_convention"]["dice"] < 1.0 and perfect["other_convention"]["empty_dice"] == "zero"
    assert set(perfect["per_scan"]) == set(scan_groups(data, idx))


def test_cv_and_evaluate_report_the_competition_score_per_fold(gi_folder, tmp_path):
    from medseg.evaluation.evaluate import evaluate_run
    from medseg.training.run import cross_validate

    cfg = gi_cfg(gi_folder, tmp_path, **{"splits.n_folds": 2, "data.context_slices": 1})
    cross_validate(cfg, folds=[0, 1], progress=False)
    history = json.loads((tmp_path / "runs" / "gi_test" / "fold_0" / "history.json").read_text())
    assert "val_dice_pooled/stomach" in history[-1]  # the paper's batch-pooled curve metric
    model_json = json.loads((tmp_path / "runs" / "gi_test" / "fold_0" / "model.json").read_text())
    assert model_json["preprocessing"]["resize"] is True and model_json["preprocessing"]["context_slices"] == 1
    assert model_json["model"]["kwargs"]["in_channels"] == 3
    report = evaluate_run(tmp_path / "runs" / "gi_test", progress=False)
    metrics = json.loads((report.parent / "metrics.json").read_text())["metrics"]
    comp = metrics["competition"]
    per_fold = [f["competition"]["uw_score"] for f in metrics["per_fold"]]
    assert len(per_fold) == 2 and comp["uw_score"] == pytest.approx(np.mean(per_fold))
    assert 0.0 <= comp["uw_score"] <= 1.0 and set(comp["per_organ"]) == set(CLASSES)
    # every scan scored once, by the fold that validated it
    assert len(comp["per_scan"]) == sum(f["competition"]["n_scans"] for f in metrics["per_fold"])
    text = report.read_text()
    assert "UW-Madison competition score" in text and "empty Dice 0" in text


@pytest.mark.skipif(
    not (SHARED_CT / "example_mr_sm.nii.gz").is_file(),
    reason="the real TotalSegmentator MR example is not beside the repository (../shared/data)",
)
def test_real_mr_anatomy_through_reader_model_and_metric(tmp_path):
    """Real anatomy (TotalSegmentator's MR example: stomach, small bowel, colon) converted to the layout, then
    read by the GI loader, fed to a model and scored: the truth scores 1, the model's untrained guess lower."""
    from medseg.data.uwgi_convert import totalsegmentator_mr_to_uwgi
    from medseg.inference.predictor import Predictor
    from medseg.training.run import train_fold

    root = tmp_path / "uw_real"
    for case in (1, 2):  # the same volume as two cases, so a validation fold exists
        totalsegmentator_mr_to_uwgi(
            SHARED_CT / "example_mr_sm.nii.gz",
            SHARED_CT / "example_seg_mr.nii.gz",
            SHARED_CT / "class_map.json",
            root,
            case=case,
            day=1,
        )
    cfg = gi_cfg(root, tmp_path, **{"splits.n_folds": 2, "name": "real", "data.size": "[96, 96]"})
    data = load_any_data(cfg, progress=False)
    assert not data.synthesized and len(data) == 40
    assert data.labels[:, CLASSES.index("stomach")].any() and data.labels[:, CLASSES.index("small_bowel")].any()
    train_fold(cfg, 0, data=data, progress=False)
    _, val_idx, _ = __import__("medseg.data.splits", fromlist=["fold_indices"]).fold_indices(
        splits_for(cfg, data)[0], 0
    )
    pred = Predictor.from_path(tmp_path / "runs" / "real", device="cpu")
    proba = pred.predict_proba(data.inputs(val_idx))
    assert proba.shape == (len(val_idx), 3, 96, 96) and np.isfinite(proba).all()
    model_score = competition_score(data, val_idx, proba, list(CLASSES))["uw_score"]
    truth_score = competition_score(data, val_idx, data.labels[val_idx].astype(np.float32), list(CLASSES))["uw_score"]
    # the truth resized to 96x96 and back to 117x91 scores close to 1; two training steps score far lower
    assert truth_score > 0.9 and 0.0 <= model_score < truth_score


def test_slice_settings_are_refused_for_other_2d_data(tmp_path):
    cfg = load_config(ROOT / "configs" / "chromosomes" / "demo.yaml")
    set_dotted(cfg, "data.synth_pairs", "40")
    for key, value in (("data.resize", "true"), ("data.context_slices", "1")):
        bad = copy.deepcopy(cfg)
        set_dotted(bad, key, value)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_any_data(validate(bad), progress=False)
