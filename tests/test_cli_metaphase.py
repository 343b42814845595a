"""`medseg predict RUN metaphase --pair-model PAIR_RUN` and `medseg evaluate-metaphases` end to end with tiny model
folders as training writes them (a bias-only U-Net: every weight 0, the head's bias picks the class everywhere)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mfish"


@pytest.fixture(scope="module")
def models(tmp_path_factory, constant_model):
    root = tmp_path_factory.mktemp("metaphase_models")
    semantic = constant_model(root / "semantic", ["background", "chromosome", "overlap"], 1)  # chromosome everywhere
    pair = constant_model(root / "pair", ["background", "chromosome_alpha", "chromosome_beta", "overlap"], 1)
    return semantic, pair


def _run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_predict_writes_instances_atomically(models, tmp_path):
    semantic, pair = models
    image = tmp_path / "meta1D.tif"
    grey = np.full((64, 80), 12, np.uint8)
    grey[20:30, 10:60] = 120
    Image.fromarray(grey).save(image)
    out = tmp_path / "out"
    for _ in range(2):  # the second run replaces the first result whole
        result = _run("predict", semantic, image, "--pair-model", pair, "-o", out, "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert "≈ 1 single" in result.output and "far from the 46" in " ".join(result.output.split())
    assert [p.name for p in out.iterdir()] == ["meta1D"]  # no temporary folder left
    folder = out / "meta1D"
    meta = json.loads((folder / "instances.json").read_text())
    assert meta["n_instances"] == 1 and meta["instances"][0]["area"] == 64 * 80
    assert meta["instances"][0]["bbox"] == {"top": 0, "left": 0, "height": 64, "width": 80}
    assert meta["instances"][0]["status"] == "single"
    rows = (folder / "chromosomes.csv").read_text().splitlines()
    assert rows[0].startswith("id,status,") and rows[1].startswith("1,single,1,5120,0,0,64,80,")
    labels = np.array(Image.open(folder / "meta1D_labels.png"))
    assert labels.shape == (64, 80) and set(np.unique(labels)) == {1}
    cutout = np.array(Image.open(folder / "instances" / "chromosome_001_cutout.png"))
    np.testing.assert_array_equal(cutout, grey)  # the whole image is the one chromosome here
    assert (np.array(Image.open(folder / "instances" / "chromosome_001_mask.png")) == 255).all()
    assert np.array(Image.open(folder / "meta1D_instance_labels.png")).max() == 1
    assert Image.open(folder / "meta1D_instances.png").size[0] > 300


def test_predict_errors_name_the_file(models, tmp_path):
    semantic, pair = models
    bad = tmp_path / "broken.tif"
    bad.write_text("not a TIFF")
    result = runner.invoke(
        app, ["predict", str(semantic), str(bad), "--pair-model", str(pair), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "broken.tif" in result.output and "error:" in result.output
    good = tmp_path / "m.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(good)
    result = runner.invoke(
        app, ["predict", str(semantic), str(good), "--pair-model", str(semantic), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "not a pair model" in result.output and str(semantic) in result.output
    result = runner.invoke(app, ["predict", str(pair), str(good), "--pair-model", str(pair), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "background / chromosome / overlap" in result.output
    tiny = tmp_path / "tiny.png"  # 7 columns, 5 rows: the size as width × height
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tiny)
    result = runner.invoke(
        app, ["predict", str(semantic), str(tiny), "-o", str(tmp_path / "o")], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2 and "image is 7 × 5 px (width × height)" in result.output, result.output


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the real M-FISH set is not here ({SHARED})")
def test_evaluate_metaphases_on_real_crops(models, tmp_path):
    from medseg.data.mfish import find_metaphases, read_metaphase

    semantic, pair = models
    root = tmp_path / "mfish"
    for m in find_metaphases(SHARED)[:2]:  # two crops of real metaphases, in the published layout
        dapi, karyo = read_metaphase(m)
        (root / m.folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(dapi[100:180, 100:200]).save(root / m.folder / f"{m.id}D.tif")
        Image.fromarray(karyo[100:180, 100:200]).save(root / m.folder / f"{m.id}K.tif")
    shutil.copyfile(SHARED / "README.TXT", root / "README.TXT")
    out = tmp_path / "report"
    result = _run(
        "evaluate-metaphases",
        semantic,
        "--data",
        root,
        "--pair-model",
        pair,
        "--slides",
        "all",
        "-o",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_metaphases"] == 2 and metrics["pooled"]["n_pred"] == 2  # the whole crop is one "chromosome"
    assert metrics["pooled"]["n_true"] >= 2 and metrics["data"].startswith("REAL")
    assert {"report.md", "per_metaphase.png", "instances_lowest_f1.png", "README.TXT"} <= {
        p.name for p in out.iterdir()
    }
    # each crop's one object is called single and holds every true chromosome of its crop: right only where one
    single = metrics["status_accuracy"]["single"]
    assert single["n"] == 2 and single["held"] == metrics["pooled"]["n_true"]
    assert single["right"] == sum(r["n_true"] == 1 for r in metrics["per_metaphase"])
    assert "## Statuses against the label maps" in (out / "report.md").read_text()
    assert f"single {single['right']}/2" in result.output
    result = runner.invoke(
        app, ["evaluate-metaphases", str(semantic), "--data", str(root), "--slides", "Z99", "-o", str(out)]
    )
    assert result.exit_code == 2 and "Z99" in result.output


def test_crossings_option_is_checked_and_recorded(models, tmp_path):
    semantic, _ = models
    image = tmp_path / "meta2D.tif"
    Image.fromarray(np.full((40, 40), 12, np.uint8)).save(image)
    bad = runner.invoke(app, ["predict", str(semantic), str(image), "--crossings", "guess", "-o", str(tmp_path / "o")])
    assert bad.exit_code != 0 and "--crossings takes auto, pair_model, geometry, whole" in " ".join(bad.output.split())
    assert not (tmp_path / "o" / "meta2D").exists()
    result = _run("predict", semantic, image, "--crossings", "whole", "-o", tmp_path / "o", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "meta2D" / "instances.json").read_text())["n_instances"] == 1


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the real M-FISH set is not here ({SHARED})")
def test_evaluate_metaphases_counts_a_metaphase_published_twice_once(tmp_path):
    from medseg.data.mfish import find_metaphases, read_metaphase

    root = tmp_path / "mfish"
    first, second = find_metaphases(SHARED)[:2]
    crops = []
    for m in (first, second):
        dapi, karyo = read_metaphase(m)
        crops.append((m.folder, m.id, dapi[100:200, 100:220], karyo[100:200, 100:220]))
    folder, ident, dapi, karyo = crops[0]
    crops.append(("Z01__XY", "Z0101XY", np.clip(dapi.astype(float) * 0.8 + 5, 0, 255).astype(np.uint8), karyo))
    for folder, ident, dapi, karyo in crops:  # the first crop again on another slide, with other contrast
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(dapi).save(root / folder / f"{ident}D.tif")
        Image.fromarray(karyo).save(root / folder / f"{ident}K.tif")
    out = tmp_path / "report"
    result = _run("evaluate-metaphases", "--baseline", "otsu", "--data", root, "--slides", "all", "-o", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(d["first"], d["second"]) for d in metrics["near_duplicates"]] == [(first.name, "Z01__XY__Z0101XY")]
    rows = {r["metaphase"]: r for r in metrics["per_metaphase"]}
    once = metrics["pooled_each_metaphase_once"]
    assert (
        once["n_metaphases"] == 2 and once["n_true"] == metrics["pooled"]["n_true"] - rows["Z01__XY__Z0101XY"]["n_true"]
    )
    assert once["tp"] == rows[first.name]["tp"] + rows[second.name]["tp"]
    assert (
        f"Published twice (one metaphase, two images: {first.name} ~ Z01__XY__Z0101XY"
        in (out / "report.md").read_text()
    )
