"""Issue 12: ``medseg data info`` for any masks — the distinct mask values a folder holds, whatever the classes,
and the ``data.mask_values`` / ``task.class_names`` that read them (medseg.data.folder's survey, the CLI)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.data.folder import (
    load_folder_dataset,
    read_mask,
    suggest_mask_settings,
    survey_masks,
)
from medseg.errors import DataValidationError

runner = CliRunner()


def _binary_folder(root, n=3):
    """n 8x8 PNG pairs with masks stored as 0/255; mask k has 4 * (k + 1) foreground pixels."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(root / "images" / f"cell_{k}.png")
        mask = np.zeros(64, np.uint8)
        mask[: 4 * (k + 1)] = 255
        Image.fromarray(mask.reshape(8, 8)).save(root / "masks" / f"cell_{k}.png")
    return root


def _info(*args):
    result = runner.invoke(app, ["data", "info", *map(str, args)], catch_exceptions=False, env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_survey_counts_each_value_in_pixels_and_files(tmp_path):
    root = _binary_folder(tmp_path / "d")
    survey = survey_masks(sorted((root / "masks").iterdir()), progress=False)
    assert survey.values.tolist() == [0, 255]
    assert survey.pixels.tolist() == [3 * 64 - 24, 24] and survey.files.tolist() == [3, 3]
    pixels, stray = survey.classes(2)  # two classes: a 0/255 mask is binary
    assert pixels.tolist() == [168, 24] and stray == {}
    pixels, stray = survey.classes(3)  # three classes: 255 is no class index
    assert pixels.tolist() == [168, 0, 0] and sorted(stray[255.0]) == ["cell_0.png", "cell_1.png", "cell_2.png"]


@pytest.mark.parametrize(
    "values,given,mask_values,names",
    [
        ([0, 255], {}, [0, 255], ["background", "foreground"]),
        ([0, 1, 2, 3], {}, None, ["background", "class_1", "class_2", "class_3"]),
        ([0, 85, 170, 255], {"class_names": ["bg", "a", "b", "c"]}, [0, 85, 170, 255], ["bg", "a", "b", "c"]),
        ([0, 1], {"num_classes": 4}, None, ["background", "class_1", "class_2", "class_3"]),  # class 2, 3 absent
    ],
)
def test_suggested_settings(values, given, mask_values, names):
    s = suggest_mask_settings(values, **given)
    assert s["mask_values"] == mask_values and s["class_names"] == names


def test_suggested_settings_read_the_masks(tmp_path):
    root = _binary_folder(tmp_path / "d")
    s = suggest_mask_settings(survey_masks(sorted((root / "masks").iterdir()), progress=False).values)
    _, labels, _ = load_folder_dataset(
        root / "images", root / "masks", num_classes=len(s["class_names"]), mask_values=s["mask_values"]
    )
    assert labels.sum() == 4 + 8 + 12


def test_suggestion_says_when_the_classes_do_not_fit():
    s = suggest_mask_settings([0, 128, 255], num_classes=2)
    assert s["mask_values"] is None and "3 distinct values but 2 classes" in s["note"]


def test_data_info_reports_a_0_255_folder_and_suggests_the_config(tmp_path):
    root = _binary_folder(tmp_path / "d")
    code, out = _info(root)
    assert code == 0, out
    assert "3 image/mask pairs" in out and "8x8: 3" in out
    assert "0: 168 px in 3 file(s); 255: 24 px in 3 file(s)" in out
    assert "data.mask_values: [0, 255]; task.class_names: [background, foreground]" in out
    assert "task.primary_metric: foreground" in out


def test_data_info_with_classes_that_do_not_fit_reports_instead_of_refusing(tmp_path):
    root = _binary_folder(tmp_path / "d")
    code, out = _info(root, "--classes", "bg,nucleus,membrane")
    assert code == 0, out
    assert "0 bg: 168 px; 1 nucleus: 0 px; 2 membrane: 0 px" in out
    assert "255 in 3 file(s)" in out and "training would refuse these masks" in out
    assert "2 distinct values but 3 classes were given" in out
    # reading the same folder for training refuses, naming the file and pointing to data info
    with pytest.raises(DataValidationError, match="medseg data info FOLDER"):
        read_mask(root / "masks" / "cell_0.png", 3)


def test_data_info_with_mask_values_and_n_classes(tmp_path):
    root = _binary_folder(tmp_path / "d")
    code, out = _info(root, "--mask-values", "0,255", "--classes", "background,cell")
    assert code == 0 and "as --mask-values: 0 background: 168 px; 1 cell: 24 px" in out
    code, out = _info(root, "--n-classes", "2")
    assert code == 0 and "1 foreground: 24 px" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--classes", "a,b", "--n-classes", "3"], "--classes gives 2, --n-classes gives 3"),
        (["--mask-values", "0,x"], "--mask-values takes comma-separated integers"),
        (["--classes", "a,a"], "--classes takes distinct comma-separated names"),
        (["--n-classes", "1"], "a task has 2 to 256 classes"),
    ],
)
def test_data_info_bad_options(tmp_path, args, message):
    root = _binary_folder(tmp_path / "d")
    code, out = _info(root, *args)
    assert code == 2 and message in out


def test_mixed_sizes_name_the_real_setting(tmp_path):
    root = _binary_folder(tmp_path / "d", n=2)
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(root / "images" / "odd.png")
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(root / "masks" / "odd.png")
    code, out = _info(root)
    assert code == 0 and "8x8: 2, 5x7: 1" in out and "data.size" in out
    with pytest.raises(DataValidationError) as info:
        load_folder_dataset(root / "images", root / "masks", num_classes=2)
    msg = str(info.value)
    assert "--set data.size=[H,W]" in msg and "data.size: null" in msg and "--size)" not in msg
