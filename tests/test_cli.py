"""The command line end to end, as a user runs it: synth → train → resume → evaluate → export → predict."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app

runner = CliRunner()

TINY = [
    "--set",
    "model.base_channels=4",
    "--set",
    "model.depth=2",
    "--set",
    "train.batch_size=8",
    "--set",
    "data.size=[96,96]",
    "--set",
    "evaluate.batch_size=32",
]


def run(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def pairs(workdir):
    out = workdir / "pairs.h5"
    r = run("data", "synth", out, "--n-pairs", 60, "--n-chromosomes", 12, "--seed", 1)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def trained(workdir, pairs, monkeypatch_module):
    monkeypatch_module.setenv("MEDSEG_HOME", str(workdir / "home"))
    runs = workdir / "runs"
    r = run(
        "train",
        "configs/chromosomes/demo.yaml",
        "--data",
        pairs,
        "--epochs",
        2,
        "--name",
        "cli_run",
        "--set",
        f"output.root={runs}",
        *TINY,
    )
    assert r.exit_code == 0, r.output
    return runs / "cli_run"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_synth_writes_published_layout(pairs):
    import h5py

    with h5py.File(pairs) as f:
        ds = f["dataset_1"]
        assert ds.shape == (60, 94, 93, 2) and ds.dtype == np.uint8
        assert ds.compression == "gzip" and ds.compression_opts == 9
        assert set(np.unique(ds[..., 1])) <= {0, 1, 2, 3}
    assert json.loads(pairs.with_suffix(".json").read_text())["synthesized"] is True


def test_data_info_reports_counts(pairs):
    r = run("data", "info", pairs)
    assert r.exit_code == 0 and "60" in r.output


def test_train_writes_run_and_resume_continues(trained, pairs, workdir):
    fold = trained / "fold_0"
    history = json.loads((fold / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert {p.suffix for p in fold.iterdir() if p.is_file()} <= {".json", ".safetensors", ".csv", ".yaml"}
    data = json.loads((trained / "data.json").read_text())
    assert data["n_test"] == 12 and data["synthesized"] is True  # 20 % of 60 held out
    # a third epoch continues the run instead of starting again
    r = run(
        "train",
        "configs/chromosomes/demo.yaml",
        "--data",
        pairs,
        "--epochs",
        3,
        "--name",
        "cli_run",
        "--set",
        f"output.root={workdir / 'runs'}",
        *TINY,
    )
    assert r.exit_code == 0, r.output
    assert "resuming after epoch 2" in r.output
    assert len(json.loads((fold / "history.json").read_text())) == 3


def test_evaluate_writes_report(trained):
    r = run("evaluate", trained)
    assert r.exit_code == 0, r.output
    report = (trained / "evaluation" / "report.md").read_text()
    # depth 2 is Hu et al.'s sim-UNet: its published row (RSE-UNet Table 4, overlap IoU 94.70) stands beside ours
    assert "Synthesized" in report and "94.7" in report
    metrics = json.loads((trained / "evaluation" / "metrics.json").read_text())
    iou = metrics["metrics"]["per_class"]["overlap"]["iou"]
    assert 0.0 <= iou <= 1.0
    for fig in ("overlays.png", "confusion_matrix.png", "training_curves.png", "folds.png"):
        assert Image.open(trained / "evaluation" / "figures" / fig).size[0] > 200


def test_export_and_predict_whole_chromosomes(trained, pairs, workdir):
    exported = workdir / "exported"
    r = run("data", "export", pairs, exported, "--count", 2, "--start", 5)
    assert r.exit_code == 0, r.output
    image_path = exported / "images" / "pair_00005.png"
    assert Image.open(image_path).size == (93, 94)
    out = workdir / "pred"
    r = run("predict", trained, image_path, "-o", out)
    assert r.exit_code == 0, r.output
    labels = np.array(Image.open(out / "pair_00005_labels.png"))
    assert labels.shape == (94, 93) and labels.max() <= 3
    alpha = np.array(Image.open(out / "pair_00005_chromosome_alpha_whole_mask.png")) > 0
    np.testing.assert_array_equal(alpha, np.isin(labels, [1, 3]))
    cutout = np.array(Image.open(out / "pair_00005_chromosome_alpha_whole_cutout.png"))
    assert cutout.shape == (94, 93, 2)
    np.testing.assert_array_equal(cutout[..., 1] > 0, alpha)
    summary = json.loads((out / "pair_00005_summary.json").read_text())
    assert sum(summary["classes"].values()) == 94 * 93
    assert not list(out.glob(".predict-*"))  # no half-written leftovers


def test_bad_data_gives_clear_error(workdir):
    bad = workdir / "broken.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    r = run("train", "configs/chromosomes/demo.yaml", "--data", bad, "--set", f"output.root={workdir / 'runs'}")
    assert r.exit_code == 2
    assert "broken.h5" in r.output and "HDF5" in r.output


def test_unknown_config_key_is_an_error(workdir):
    r = run("train", "configs/chromosomes/demo.yaml", "--set", "train.batchsize=4")
    assert r.exit_code == 2 and "train.batchsize" in r.output


def test_models_lists_unet():
    r = run("models")
    assert r.exit_code == 0 and "unet" in r.output.split()


def test_a_volume_given_to_a_2d_model_says_so(trained, workdir):
    """Used to say the file "may be corrupt"; the dimensionality is named before anything is read."""
    volume = workdir / "ct.nii.gz"
    volume.write_bytes(b"whatever: not read")
    r = run("predict", trained, volume, "-o", workdir / "pred_vol")
    assert r.exit_code == 2
    assert "ct.nii.gz: this is a NIfTI volume (3D)" in r.output and "segments 2D images" in r.output
    assert not (workdir / "pred_vol").exists()


def test_train_prints_one_summary_line(trained, pairs, workdir):
    r = run(
        "train",
        "configs/chromosomes/demo.yaml",
        "--data",
        pairs,
        "--epochs",
        3,
        "--name",
        "cli_run",
        "--set",
        f"output.root={workdir / 'runs'}",
        *TINY,
    )
    assert r.exit_code == 0, r.output
    [line] = [line for line in r.output.splitlines() if line.startswith("fold 0: best epoch ")]
    assert "IoU[overlap]" in line and str(trained) in line
    assert "{" not in r.output  # no JSON dump


def test_training_another_model_into_the_run_is_refused_and_evaluate_rewrites_no_fold(trained, pairs, workdir):
    before = {p: p.stat().st_mtime_ns for p in trained.rglob("*") if p.is_file() and "evaluation" not in p.parts}
    r = run(
        "train",
        "configs/chromosomes/demo.yaml",
        "--data",
        pairs,
        "--name",
        "cli_run",
        "--set",
        f"output.root={workdir / 'runs'}",
        *TINY,
        "--set",
        "model.base_channels=8",
    )
    assert r.exit_code == 2
    [line] = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert "model.base_channels 4 → 8" in line and "--name NEW" in line and "--restart" in line
    assert run("evaluate", trained).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before
