"""`medseg predict RUN FOLDER --format submission` (the UW-Madison Kaggle submission) and `--folds`, as a user
runs them: the files written, the summary line, clean failures that leave no submission.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.data.synth_gi import write_synth_gi
from medseg.data.uwgi import rle_decode, scan_index

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_gi")


@pytest.fixture(scope="module")
def gi_root(workdir) -> Path:
    root = workdir / "uwgi"
    write_synth_gi(root, n_cases=2, seed=2, slices=4, progress=False)
    return root


@pytest.fixture(scope="module")
def run_dir(workdir, save_gi_model) -> Path:
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

    r = run(
        "predict",
        run_dir,
        gi_root / "train",
        "--format",
        "submission",
        "-o",
        workdir / "sub_0",
        "--folds",
        "0",
        "--device",
        "cpu",
    )
    assert r.exit_code == 0, r.output
    rows = rows_of(workdir / "sub_0")
    shapes = {rec.id: rec.shape for rec in index}
    for row in rows:
        h, w = shapes[row["id"]]
        assert row["predicted"] == f"1 {h * w}" and rle_decode(row["predicted"], (h, w)).all()
    assert json.loads((workdir / "sub_0" / "submission.json").read_text())["n_models"] == 1

    r = run(
        "predict",
        run_dir,
        gi_root,
        "--format",
        "submission",
        "-o",
        workdir / "sub_01",
        "--folds",
        "all",
        "--device",
        "cpu",
    )
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
    _fails_cleanly(
        run("predict", run_dir, empty, "--format", "submission", "-o", out), out, str(empty), "no scans found"
    )


def test_a_multiclass_model_fails_cleanly(gi_root, workdir, save_gi_model):
    model = save_gi_model(workdir / "multiclass", mode="multiclass", names=("background", "stomach"))
    out = workdir / "sub_multiclass"
    _fails_cleanly(run("predict", model, gi_root, "--format", "submission", "-o", out), out, str(model), "multilabel")


def test_folds_that_are_not_there_fail_cleanly(gi_root, run_dir, workdir):
    out = workdir / "sub_fold7"
    _fails_cleanly(
        run("predict", run_dir, gi_root, "--format", "submission", "-o", out, "--folds", "0,7"),
        out,
        "no trained fold 7",
        "fold_0, fold_1",
    )
    r = run("predict", run_dir / "fold_0", gi_root, "--format", "submission", "-o", out, "--folds", "0")
    _fails_cleanly(r, out, "run folder")


def test_usage_errors(gi_root, run_dir, workdir):
    r = runner.invoke(app, ["predict", str(run_dir), str(gi_root), "-o", str(workdir / "x"), "--format", "csv"])
    assert r.exit_code == 2 and "--format takes files or submission" in r.output
    r = runner.invoke(
        app, ["predict", str(run_dir), str(gi_root), str(gi_root), "-o", str(workdir / "x"), "--format", "submission"]
    )
    assert r.exit_code == 2 and "one competition folder" in r.output
    r = runner.invoke(
        app,
        ["predict", str(run_dir), str(gi_root), "-o", str(workdir / "x"), "--format", "submission", "--folds", "a,b"],
    )
    assert r.exit_code == 2 and "--folds" in r.output


TS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct" / "totalsegmentator"


@pytest.mark.skipif(not (TS / "example_mr_sm.nii.gz").is_file(), reason="../shared/data (TotalSegmentator MR) absent")
def test_data_to_uwgi_writes_a_real_scan_and_refuses_absent_ids(tmp_path):
    mr, seg = TS / "example_mr_sm.nii.gz", TS / "example_seg_mr.nii.gz"
    out = tmp_path / "uw"
    ok = run("data", "to-uwgi", mr, seg, out, "--case", 7, "--class-map", TS / "class_map.json")
    assert ok.exit_code == 0, ok.output
    assert "20 slices of 117x91" in ok.output and "stomach 4,221 px" in ok.output
    records = scan_index(out)
    assert len(records) == 20 and {r.id.split("_slice")[0] for r in records} == {"case7_day1"}
    before = (out / "train.csv").read_bytes()
    bad = run("data", "to-uwgi", mr, seg, out, "--case", 8, "--organ", "stomach=6", "--organ", "large_bowel=15,99")
    assert bad.exit_code != 0 and "99" in bad.output and "absent" in bad.output
    assert (out / "train.csv").read_bytes() == before and not (out / "train" / "case8").exists()


def test_evaluate_prints_the_competition_score_per_fold_and_mean(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from medseg.cli import evaluate
    from medseg.cli.evaluate import print_competition

    buffer = io.StringIO()
    monkeypatch.setattr(evaluate, "console", Console(file=buffer, width=300))

    def comp(score, dice, haus):
        return {
            "uw_score": score,
            "dice": dice,
            "hausdorff_score": haus,
            "n_scans": 3,
            "other_convention": {"uw_score": score - 0.1},
        }

    metrics = {
        "competition": comp(0.7, 0.85, 0.6),
        "per_fold": [
            {"fold": "fold_0", "competition": comp(0.65, 0.8, 0.55)},
            {"fold": "fold_1", "competition": comp(0.75, 0.9, 0.65)},
        ],
    }
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    print_competition(tmp_path / "report.md")
    out = buffer.getvalue()
    assert "fold_0: uw_score 0.6500" in out and "fold_1: uw_score 0.7500" in out
    assert "uw_score 0.7000 = 0.4 × dice 0.8500 + 0.6 × hausdorff_score 0.6000; 0.6000 with the paper's" in out
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"per_class": {}}}))  # not a GI run: silent
    buffer.truncate(0)
    buffer.seek(0)
    print_competition(tmp_path / "report.md")
    assert buffer.getvalue() == ""


def test_data_info_on_a_uw_madison_folder(gi_root):
    from medseg.data.uwgi import read_train_csv

    out = run("data", "info", gi_root)
    assert out.exit_code == 0, out.output
    n = len(read_train_csv(gi_root / "train.csv"))
    assert f"{n:,} slices in" in out.output and "UW-Madison GI-tract layout" in out.output
    assert "configs/gi/unet4.yaml" in out.output
