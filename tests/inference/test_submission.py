"""The UW-Madison Kaggle submission (medseg.inference.submission): one row per slice and organ, RLEs at each
slice's own size, the grid and the 2.5D input of training, refusals that name the problem, atomic writing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.data.synth_gi import write_synth_gi
from medseg.data.uwgi import CLASSES, rle_decode, scan_index
from medseg.data.uwgi_dataset import place_on_grid, read_slice
from medseg.errors import ConfigError, DataValidationError
from medseg.inference import submission as submission_mod
from medseg.inference.predictor import Predictor
from medseg.inference.submission import (
    COLUMNS,
    SUBMISSION_CSV,
    SUBMISSION_JSON,
    resolve_scan_folder,
    write_submission,
)

GRID = (32, 32)


@pytest.fixture(scope="module")
def gi_root(tmp_path_factory) -> Path:
    """2 cases, 4 scans of 4 slices: 266×266 and the non-square 360 wide × 310 high."""
    root = tmp_path_factory.mktemp("gi") / "uwgi"
    write_synth_gi(root, n_cases=2, seed=2, slices=4, progress=False)
    return root


@pytest.fixture(scope="module")
def index(gi_root):
    records = scan_index(gi_root)
    assert {r.shape for r in records} == {(266, 266), (310, 360)}
    return records


@pytest.fixture(scope="module")
def models(tmp_path_factory, save_gi_model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gi_models")
    return {
        "unet": save_gi_model(root / "unet"),
        "unet25": save_gi_model(root / "unet25", context=1),
        "multiclass": save_gi_model(
            root / "multiclass", mode="multiclass", names=("background", "large_bowel", "stomach")
        ),
        "liver": save_gi_model(root / "liver", names=("liver", "stomach")),
    }


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def forced(monkeypatch, fill) -> list[tuple]:
    """Predictor.predict_proba replaced: ``fill(proba)`` sets (N, 3, h, w) probabilities; the input shapes of
    every call are returned (list filled as it is called)."""
    calls: list[tuple] = []

    def predict_proba(self, images, boxes=None):
        images = np.asarray(images)
        calls.append((images.shape, images.copy()))
        proba = np.zeros((len(images), len(self.class_names), *images.shape[-2:]), np.float32)
        fill(proba)
        return proba

    monkeypatch.setattr(Predictor, "predict_proba", predict_proba)
    return calls


def test_one_row_per_slice_and_organ_decoding_at_the_slice_size(gi_root, index, models, tmp_path):
    predictor = Predictor.from_path(models["unet"], device="cpu")
    out = tmp_path / "sub"
    s = write_submission(predictor, gi_root, out, progress=False, model=models["unet"])
    rows = read_rows(out / SUBMISSION_CSV)
    assert len(rows) == len(index) * 3 == s["n_rows"]
    assert [r["id"] for r in rows] == [rec.id for rec in index for _ in CLASSES]
    assert [r["class"] for r in rows] == list(CLASSES) * len(index)
    assert rows[0]["id"].startswith("case") and "_day" in rows[0]["id"] and "_slice_" in rows[0]["id"]
    for rec, k in zip(index, range(0, len(rows), 3), strict=True):
        for r in rows[k : k + 3]:
            assert rle_decode(r["predicted"], rec.shape).shape == rec.shape
    recorded = json.loads((out / SUBMISSION_JSON).read_text())
    assert recorded["n_slices"] == len(index) and recorded["n_scans"] == 4 and recorded["n_models"] == 1
    assert recorded["folder"] == str(gi_root / "train") and recorded["grid"] == "resize"
    for key in ("total_seconds", "predict_ms_per_slice", "rle_write_ms_per_slice", "read_ms_per_slice"):
        assert recorded[key] >= 0 and s[key] == recorded[key]
    assert not [p.name for p in out.iterdir() if p.name not in (SUBMISSION_CSV, SUBMISSION_JSON)]


def test_all_ones_and_all_zeros(gi_root, index, models, tmp_path, monkeypatch):
    predictor = Predictor.from_path(models["unet"], device="cpu")
    forced(monkeypatch, lambda p: p.fill(1.0))
    write_submission(predictor, gi_root, tmp_path / "ones", progress=False)
    rows = read_rows(tmp_path / "ones" / SUBMISSION_CSV)
    by_id = {rec.id: rec for rec in index}
    for r in rows:
        h, w = by_id[r["id"]].shape
        assert r["predicted"] == f"1 {h * w}"
        assert rle_decode(r["predicted"], (h, w)).all()
        with pytest.raises(DataValidationError, match="longer than the image"):
            rle_decode(r["predicted"], (h, w - 1))  # a mask longer than the image is refused
    forced(monkeypatch, lambda p: None)
    s = write_submission(predictor, gi_root, tmp_path / "zeros", progress=False)
    assert all(r["predicted"] == "" for r in read_rows(tmp_path / "zeros" / SUBMISSION_CSV))
    assert s["slices_with_organ"] == dict.fromkeys(CLASSES, 0)


def test_probabilities_are_scaled_back_to_each_slice(gi_root, index, models, tmp_path, monkeypatch):
    def left_half_top_quarter(p):
        p[:, 0, :, : GRID[1] // 2] = 1.0  # large bowel: the left half
        p[:, 2, : GRID[0] // 4, :] = 1.0  # stomach: the top quarter

    forced(monkeypatch, left_half_top_quarter)
    write_submission(Predictor.from_path(models["unet"], device="cpu"), gi_root, tmp_path / "s", progress=False)
    rows = read_rows(tmp_path / "s" / SUBMISSION_CSV)
    for rec, k in zip(index, range(0, len(rows), 3), strict=True):
        h, w = rec.shape
        left = rle_decode(rows[k]["predicted"], rec.shape).astype(bool)
        assert left[:, : w // 2 - 2].all() and not left[:, w // 2 + 2 :].any()
        assert abs(left.mean() - 0.5) < 0.02
        assert rows[k + 1]["predicted"] == ""
        top = rle_decode(rows[k + 2]["predicted"], rec.shape).astype(bool)
        assert top[: h // 4 - 2].all() and not top[h // 4 + 2 :].any()
        assert abs(top.mean() - 0.25) < 0.02


def test_slices_are_fed_on_the_training_grid(gi_root, index, models, tmp_path, monkeypatch):
    calls = forced(monkeypatch, lambda p: None)
    write_submission(Predictor.from_path(models["unet"], device="cpu"), gi_root, tmp_path / "s", progress=False)
    fed = np.concatenate([images for _, images in calls])
    assert fed.shape == (len(index), *GRID)  # (N, h, w): one channel
    expected = np.concatenate([place_on_grid(read_slice(r)[None], "resize", GRID)[0] for r in index])
    np.testing.assert_array_equal(fed, expected)


@pytest.mark.parametrize("size", [None, (400, 400), (256, 256)], ids=["canvas", "pad", "crop"])
def test_pad_and_canvas_grids_come_back_to_the_slice(gi_root, index, tmp_path, monkeypatch, size, save_gi_model):
    model = save_gi_model(tmp_path / "model", size=size, resize=False)
    calls = forced(monkeypatch, lambda p: p.fill(1.0))
    s = write_submission(Predictor.from_path(model, device="cpu"), gi_root, tmp_path / "s", progress=False)
    assert s["grid"] == ("canvas" if size is None else "pad")
    fed = [shape[-2:] for shape, _ in calls]
    if size is None:  # full resolution: each scan on its own size
        assert set(fed) == {r.shape for r in index}
    else:
        assert set(fed) == {tuple(size)}
    rows = read_rows(tmp_path / "s" / SUBMISSION_CSV)
    for rec, k in zip(index, range(0, len(rows), 3), strict=True):
        mask = rle_decode(rows[k]["predicted"], rec.shape)
        if size == (256, 256):  # centre-cropped in training: the pixels cut away are never an organ
            h, w = rec.shape
            top, left = (h - 256) // 2, (w - 256) // 2
            assert mask[top : top + 256, left : left + 256].all() and mask.sum() == 256 * 256
        else:
            assert mask.all()


def test_a_25d_model_gets_its_scan_neighbours(gi_root, index, models, tmp_path, monkeypatch):
    calls = forced(monkeypatch, lambda p: None)
    predictor = Predictor.from_path(models["unet25"], device="cpu")
    write_submission(predictor, gi_root, tmp_path / "s", progress=False)
    assert all(len(shape) == 4 and shape[1] == 3 for shape, _ in calls)
    fed = np.concatenate([images for _, images in calls])
    grid = {r.id: place_on_grid(read_slice(r)[None], "resize", GRID)[0][0] for r in index}
    for i, rec in enumerate(index):
        same_scan = [r for r in index if (r.case, r.day) == (rec.case, rec.day)]
        pos = same_scan.index(rec)
        before, after = same_scan[max(pos - 1, 0)], same_scan[min(pos + 1, len(same_scan) - 1)]  # clamped
        np.testing.assert_array_equal(fed[i, 0], grid[before.id])
        np.testing.assert_array_equal(fed[i, 1], grid[rec.id])
        np.testing.assert_array_equal(fed[i, 2], grid[after.id])


def test_a_25d_model_runs_for_real(gi_root, index, models, tmp_path):
    s = write_submission(Predictor.from_path(models["unet25"], device="cpu"), gi_root, tmp_path / "s", progress=False)
    assert s["context_slices"] == 1 and len(read_rows(tmp_path / "s" / SUBMISSION_CSV)) == 3 * len(index)


def test_fold_probabilities_are_averaged(gi_root, index, tmp_path, save_gi_model):
    run = tmp_path / "run"
    save_gi_model(run / "fold_0", bias=10.0)  # every organ everywhere
    save_gi_model(run / "fold_1", bias=-20.0)  # nothing: the mean (≈ 0.49998) is below 0.5
    both = write_submission(Predictor.from_path(run, device="cpu"), gi_root, tmp_path / "both", progress=False)
    assert both["n_models"] == 2
    assert all(r["predicted"] == "" for r in read_rows(tmp_path / "both" / SUBMISSION_CSV))
    one = write_submission(Predictor.from_path(run, folds=[0], device="cpu"), gi_root, tmp_path / "one", progress=False)
    assert one["n_models"] == 1
    assert all(r["predicted"].startswith("1 ") for r in read_rows(tmp_path / "one" / SUBMISSION_CSV))


@pytest.mark.parametrize("name,problem", [("multiclass", "multilabel"), ("liver", "organs of the competition")])
def test_refuses_a_model_that_is_not_for_the_competition(gi_root, models, tmp_path, name, problem):
    predictor = Predictor.from_path(models[name], device="cpu")
    with pytest.raises(DataValidationError, match=problem) as exc:
        write_submission(predictor, gi_root, tmp_path / "s", progress=False, model=models[name])
    assert str(models[name]) in str(exc.value)
    assert not (tmp_path / "s").exists()


def test_the_folder_may_be_the_root_train_or_test(gi_root, models, tmp_path):
    predictor = Predictor.from_path(models["unet"], device="cpu")
    assert resolve_scan_folder(gi_root) == (gi_root, "train")
    assert resolve_scan_folder(gi_root / "train") == (gi_root, "train")
    write_submission(predictor, gi_root, tmp_path / "root", progress=False)
    write_submission(predictor, gi_root / "train", tmp_path / "train", progress=False)
    expected = (tmp_path / "root" / SUBMISSION_CSV).read_bytes()
    assert (tmp_path / "train" / SUBMISSION_CSV).read_bytes() == expected
    kaggle = tmp_path / "kaggle"
    shutil.copytree(gi_root / "train", kaggle / "test")  # Kaggle's test/ layout: the same tree, no train.csv
    assert resolve_scan_folder(kaggle) == (kaggle, "test")
    s = write_submission(predictor, kaggle, tmp_path / "test", progress=False)
    assert s["folder"] == str(kaggle / "test")
    assert (tmp_path / "test" / SUBMISSION_CSV).read_bytes() == expected


def test_a_folder_without_scans_is_refused(gi_root, models, tmp_path):
    predictor = Predictor.from_path(models["unet"], device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="no scans found"):
        write_submission(predictor, tmp_path / "empty", tmp_path / "s", progress=False)
    with pytest.raises(DataValidationError, match="folder not found"):
        write_submission(predictor, tmp_path / "missing", tmp_path / "s", progress=False)
    kaggle = tmp_path / "kaggle"  # Kaggle at commit time: an empty test/ beside train/
    (kaggle / "test").mkdir(parents=True)
    shutil.copytree(gi_root / "train", kaggle / "train")
    with pytest.raises(DataValidationError, match="no scans found.*give .*train"):
        write_submission(predictor, kaggle, tmp_path / "s", progress=False)
    with pytest.raises(ConfigError, match="threshold"):
        write_submission(predictor, gi_root, tmp_path / "s", progress=False, threshold=1.5)
    assert not (tmp_path / "s").exists()


def test_nothing_half_written_on_failure(gi_root, models, tmp_path, monkeypatch):
    predictor = Predictor.from_path(models["unet"], device="cpu")
    calls = {"n": 0}
    real = submission_mod.rle_encode

    def failing(mask):
        calls["n"] += 1
        if calls["n"] > 10:
            raise RuntimeError("disk on fire")
        return real(mask)

    monkeypatch.setattr(submission_mod, "rle_encode", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_submission(predictor, gi_root, tmp_path / "s", progress=False)
    assert list((tmp_path / "s").iterdir()) == []  # neither the CSV nor its temporary sibling nor the JSON


def test_scan_index_reads_another_subfolder(gi_root, tmp_path):
    root = tmp_path / "kaggle"
    shutil.copytree(gi_root / "train", root / "test")
    assert scan_index(root, subdir="test") == [
        r.__class__(
            r.case, r.day, r.slice, root / "test" / r.path.relative_to(gi_root / "train"), r.width, r.height, r.spacing
        )
        for r in scan_index(gi_root)
    ]
    with pytest.raises(DataValidationError, match=r"folder not found: expected train/case"):
        scan_index(root)  # the default and its message are as before
    (tmp_path / "empty" / "test").mkdir(parents=True)
    with pytest.raises(DataValidationError, match=r"no scans found: expected test/case"):
        scan_index(tmp_path / "empty", subdir="test")
