"""`medseg predict RUN FOLDER --format submission` (the UW-Madison Kaggle submission) and `--folds`, as a user
runs them: the files written, the summary line, clean failures that leave no submission.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medseg.artifact import model_kwargs, model_meta, save_model
from medseg.cli import app
from medseg.config import load_config
from medseg.data.synth_gi import write_synth_gi
from medseg.data.uwgi import CLASSES, rle_decode, scan_index
from medseg.models import build_model

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def save_gi_model(directory: Path, *, mode: str = "multilabel", names=CLASSES, bias: float | None = None) -> Path:
    """A tiny untrained GI U-Net folder (32 × 32 grid, resize); ``bias``: that logit everywhere."""
    names = list(names)
    cfg = load_config(overrides={
        "name": directory.name,
        "task": {"mode": mode, "class_names": names, "spatial_dims": 2, "derived": None, "background": 0,
                 "primary_metric": names[-1]},
        "data": {"size": [32, 32], "resize": True, "normalize": "minmax"},
        "model": {"name": "unet", "depth": 2, "base_channels": 4},
    })
    torch.manual_seed(0)
    model = build_model("unet", **model_kwargs(cfg))
    if bias is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            model.head.bias.fill_(bias)
    return save_model(directory, model, model_meta(cfg))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_gi")


@pytest.fixture(scope="module")
def gi_root(workdir) -> Path:
    root = workdir / "uwgi"
    write_synth_gi(root, n_cases=2, seed=2, slices=4, progress=False)
    return root


@pytest.fixture(scope="module")
def run_dir(workdir) -> Path:
    """Two folds: fold 0 says every organ everywhere, fold 1 nothing; their mean (≈ 0.49998) is below 0.5."""
    run_dir = workdir / "runs" / "gi_tiny"
    save_gi_model(run_dir / "fold_0", bias=10.0)
    save_gi_model(run_dir / "fold_1", bias=-20.0)
    return run_dir


def rows_of(out: Path) -> list[dict]:
    with open(out / "submission.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_submission_of_all_folds_and_of_one(gi_root, run_dir, workdir):
    index = scan_index(gi_root)
    out = workdir / "sub_all"
    r = run("predict", run_dir, gi_root, "--format", "submission", "--out", out, "--device", "cpu")
    assert r.exit_code == 0, r.output
    line = [x for x in r.output.splitlines() if "submission.csv" in x]
    assert len(line) == 1 and f"{len(index)} slices of 4 scans (2 fold(s))" in line[0] and "ms/slice" in line[0]
    rows = rows_of(out)
    assert len(rows) == 3 * len(index) and all(row["predicted"] == "" for row in rows)  # mean of the folds
    recorded = json.loads((out / "submission.json").read_text())
    assert recorded["n_models"] == 2 and recorded["n_slices"] == len(index) and recorded["n_scans"] == 4

    r = run("predict", run_dir, gi_root / "train", "--format", "submission", "-o", workdir / "sub_0",
            "--folds", "0", "--device", "cpu")
    assert r.exit_code == 0, r.output
    rows = rows_of(workdir / "sub_0")
    shapes = {rec.id: rec.shape for rec in index}
    for row in rows:
        h, w = shapes[row["id"]]
        assert row["predicted"] == f"1 {h * w}" and rle_decode(row["predicted"], (h, w)).all()
    assert json.loads((workdir / "sub_0" / "submission.json").read_text())["n_models"] == 1

    r = run("predict", run_dir, gi_root, "--format", "submission", "-o", workdir / "sub_01", "--folds", "all",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (workdir / "sub_01" / "submission.csv").read_bytes() == (out / "submission.csv").read_bytes()


def _fails_cleanly(result, out: Path, *words: str) -> None:
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "error:" in text and all(w in text for w in words), text
    assert not (out / "submission.csv").exists() and not list(out.glob(".submission.csv.tmp-*"))


def test_a_folder_without_scans_fails_cleanly(run_dir, workdir):
    empty = workdir / "no_scans"
    empty.mkdir()
    out = workdir / "sub_empty"
    _fails_cleanly(run("predict", run_dir, empty, "--format", "submission", "-o", out), out, str(empty),
                   "no scans found")


def test_a_multiclass_model_fails_cleanly(gi_root, workdir):
    model = save_gi_model(workdir / "multiclass", mode="multiclass", names=("background", "stomach"))
    out = workdir / "sub_multiclass"
    _fails_cleanly(run("predict", model, gi_root, "--format", "submission", "-o", out), out, str(model),
                   "multilabel")


def test_folds_that_are_not_there_fail_cleanly(gi_root, run_dir, workdir):
    out = workdir / "sub_fold7"
    _fails_cleanly(run("predict", run_dir, gi_root, "--format", "submission", "-o", out, "--folds", "0,7"), out,
                   "no trained fold 7", "fold_0, fold_1")
    r = run("predict", run_dir / "fold_0", gi_root, "--format", "submission", "-o", out, "--folds", "0")
    _fails_cleanly(r, out, "run folder")


def test_usage_errors(gi_root, run_dir, workdir):
    r = runner.invoke(app, ["predict", str(run_dir), str(gi_root), "-o", str(workdir / "x"), "--format", "csv"])
    assert r.exit_code == 2 and "--format takes files or submission" in r.output
    r = runner.invoke(app, ["predict", str(run_dir), str(gi_root), str(gi_root), "-o", str(workdir / "x"),
                            "--format", "submission"])
    assert r.exit_code == 2 and "one competition folder" in r.output
    r = runner.invoke(app, ["predict", str(run_dir), str(gi_root), "-o", str(workdir / "x"), "--format",
                            "submission", "--folds", "a,b"])
    assert r.exit_code == 2 and "--folds" in r.output
