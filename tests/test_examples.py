"""The own-data examples (examples/own_data_2d.yaml, own_data_3d.yaml) load, train a few steps on data shaped
like what they describe, and predict at the input's full size — as README's "Your own data" walks through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import load_config
from medseg.formats.nifti import write_nifti
from medseg.formats.volume import Volume
from medseg.formats.volume_files import read_volume

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()
TINY = [
    "--set",
    "train.iterations=2",
    "--set",
    "train.max_batches_per_epoch=1",
    "--set",
    "model.depth=2",
    "--set",
    "model.base_channels=4",
    "--set",
    "train.batch_size=2",
    "--device",
    "cpu",
]


def _membrane_folder(root: Path, n: int = 8, size=(96, 80)) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        mask[:, 20 + i : 24 + i] = 255  # a vertical membrane
        image = rng.integers(0, 60, size).astype(np.uint8)
        image[mask > 0] = 200
        Image.fromarray(image).save(root / "images" / f"cell_{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"cell_{i}.png")
    return root


def test_2d_example_trains_and_predicts_full_size(tmp_path):
    cfg = load_config(EXAMPLES / "own_data_2d.yaml")
    assert cfg["data"]["size"] is None and cfg["data"]["mask_values"] == [0, 255]
    data = _membrane_folder(tmp_path / "cells")
    runs = tmp_path / "runs"
    result = runner.invoke(
        app,
        [
            "train",
            str(EXAMPLES / "own_data_2d.yaml"),
            "--data",
            str(data),
            *TINY,
            "--set",
            f"output.root={runs}",
            "--set",
            "data.patch_size=[64, 64]",
            "--set",
            "evaluate.sliding_window.roi_size=[64, 64]",
            "--set",
            "model.deep_supervision=1",
        ],  # the U-Net's nnU-Net option, end to end
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred"
    result = runner.invoke(
        app,
        ["predict", str(runs / "own_data_2d"), str(data / "images" / "cell_3.png"), "-o", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(out / "cell_3_labels.png"))
    assert labels.shape == (96, 80) and set(np.unique(labels)) <= {0, 1}


def test_3d_example_trains_and_predicts_full_size(tmp_path):
    cfg = load_config(EXAMPLES / "own_data_3d.yaml")
    assert cfg["preprocess"]["normalize"] == "zscore" and len(cfg["data"]["patch_size"]) == 3
    root = tmp_path / "ct"
    rng = np.random.default_rng(1)
    for i in range(5):
        image = rng.normal(-900, 30, (12, 32, 28)).astype(np.int16)
        label = np.zeros(image.shape, np.uint8)
        label[3:8, 6:16, 5:12] = 1
        label[4:9, 18:26, 15:22] = 2
        image[label == 1] = 60
        image[label == 2] = 120
        write_nifti(Volume(image, (3.0, 0.8, 0.8), modality="CT"), root / f"case_{i}_image.nii.gz")
        write_nifti(Volume(label, (3.0, 0.8, 0.8)), root / f"case_{i}_label.nii.gz", label=True)
    runs = tmp_path / "runs"
    result = runner.invoke(
        app,
        [
            "train",
            str(EXAMPLES / "own_data_3d.yaml"),
            "--data",
            str(root),
            *TINY,
            "--set",
            f"output.root={runs}",
            "--set",
            "splits.n_folds=2",
            "--set",
            "preprocess.depth=12",
            "--set",
            "preprocess.size_xy=[32, 28]",
            "--set",
            "data.patch_size=[8, 16, 16]",
            "--set",
            "evaluate.sliding_window.roi_size=[8, 16, 16]",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred"
    result = runner.invoke(
        app,
        ["predict", str(runs / "own_data_3d"), str(root / "case_0_image.nii.gz"), "-o", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    label = read_volume(next(out.glob("*_label.nii.gz")))
    assert label.shape == (12, 32, 28) and set(np.unique(label.array)) <= {0, 1, 2}
