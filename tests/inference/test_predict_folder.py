"""`medseg predict RUN FOLDER`: a folder of 2D images is predicted image by image (natural name order, a
progress bar, ms per image); DICOM files are told by their bytes, not by their names or by being in a folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.errors import DataValidationError
from medseg.formats.dicom import write_dicom_series
from medseg.formats.volume import Volume
from medseg.inference.inputs import check_input_kind, folder_contents, prediction_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def model_2d(tmp_path_factory, constant_model):
    """Says "cell" everywhere: an untrained bias-only U-Net, as training would write it."""
    return constant_model(tmp_path_factory.mktemp("model") / "cells", ["background", "cell"], winner=1)


def _images(folder, names, size=(20, 28)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / name)
    return folder


def _dicom_without_suffixes(folder):
    """A 3-slice CT series named as PACS exports name slices (IM1, IM2, IM3: no .dcm); the last one written
    without the 128-byte preamble and 'DICM' marker, as some old exports are."""
    written = write_dicom_series(Volume(np.zeros((3, 16, 16), np.int16), modality="CT"), folder)
    files = sorted(written.glob("*.dcm"))
    for k, f in enumerate(files, 1):
        f.rename(folder / f"IM{k}")
    bare = folder / f"IM{len(files)}"
    bare.write_bytes(bare.read_bytes()[132:])
    return folder


def test_a_folder_of_images_is_predicted_image_by_image_in_natural_order(model_2d, tmp_path):
    folder = _images(tmp_path / "test", ["img10.png", "img2.png", "img1.png"])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "pred"
    r = runner.invoke(app, ["predict", str(model_2d), str(folder), "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for stem in ("img1", "img2", "img10"):
        labels = np.array(Image.open(out / f"{stem}_labels.png"))
        assert labels.shape == (20, 28) and (labels == 1).all()
    lines = [line for line in r.output.splitlines() if " px" in line]
    assert [line.split(" → ")[0].rsplit("/", 1)[-1] for line in lines] == ["img1.png", "img2.png", "img10.png"]
    assert "first image" in r.output and "for the other 2" in r.output
    assert "3 image(s) → " in r.output and "ms per image" in r.output
    assert "1 other file (notes.txt) not predicted" in r.output


def test_dicom_files_without_a_suffix_are_told_by_their_bytes(model_2d, tmp_path):
    folder = _dicom_without_suffixes(tmp_path / "series")
    found = folder_contents(folder)
    assert [p.name for p in found.dicom] == ["IM1", "IM2", "IM3"] and not found.images and not found.other
    assert prediction_inputs([folder], 3) == ([folder], [])  # one series for a 3D model
    with pytest.raises(DataValidationError, match="IM1: this is a DICOM series"):
        check_input_kind(folder / "IM1", 2)
    png_named_like_a_slice = _images(tmp_path / "pngs", ["IM9.png"]) / "IM9.png"
    check_input_kind(png_named_like_a_slice.rename(png_named_like_a_slice.with_suffix("")), 2)  # left to the reader
    r = runner.invoke(app, ["predict", str(model_2d), str(folder), "-o", str(tmp_path / "pred"), "--device", "cpu"])
    assert r.exit_code == 2
    assert "series: this is a DICOM series (3D; 3 DICOM files (IM1, IM2, IM3)" in " ".join(r.output.split())
    assert "segments 2D images" in r.output and not (tmp_path / "pred").exists()


def test_a_folder_mixing_dicom_and_images_or_holding_neither_is_refused(model_2d, tmp_path):
    mixed = _images(_dicom_without_suffixes(tmp_path / "mixed"), ["a.png", "b.jpeg"])
    r = runner.invoke(app, ["predict", str(model_2d), str(mixed), "-o", str(tmp_path / "pred"), "--device", "cpu"])
    assert r.exit_code == 2
    said = " ".join(r.output.split())
    assert "mixed: this folder mixes 2D images and DICOM files: 2 images (a.png, b.jpeg) and 3 DICOM files" in said
    neither = tmp_path / "neither"
    (neither / "sub").mkdir(parents=True)
    (neither / "notes.txt").write_text("x")
    with pytest.raises(
        DataValidationError,
        match=r"neither: this folder holds no PNG/TIFF/JPEG image and no DICOM "
        r"file \(found 1 other file \(notes.txt\) and 1 folder \(sub\)\)",
    ):
        prediction_inputs([neither], 2)
    with pytest.raises(DataValidationError, match="this is a folder of 2D images .* segments 3D volumes"):
        prediction_inputs([_images(tmp_path / "pngs", ["x.png"])], 3)
