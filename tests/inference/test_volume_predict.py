"""3D prediction: preprocessing recorded with the model, labels back on the input grid, volumes in ml."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.artifact import model_kwargs, model_meta, save_model
from medseg.config import load_config
from medseg.data.phantom import make_phantom, write_phantom
from medseg.formats.volume_files import read_volume
from medseg.inference.predictor import Predictor
from medseg.inference.volume import class_volumes_ml, label_map, predict_volume, predict_volume_file
from medseg.models import build_model


def _cfg():
    return load_config(
        None,
        {
            "name": "v",
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "derived": {},
                "primary_metric": "ctv",
                "spatial_dims": 3,
            },
            "data": {"path": "synth:phantom", "size": None},
            "preprocess": {"clip_min": -1024.0, "clip_max": 576.0, "depth": 8, "size_xy": [32, 32]},
            "model": {"name": "ctv_unet3d", "channels": [2, 2, 2], "depth": 3},
            "loss": [{"name": "bce"}],
            "evaluate": {"sliding_window": {"roi_size": [8, 16, 16], "overlap": 0.25}},
        },
    )


@pytest.fixture
def model_dir(tmp_path):
    cfg = _cfg()
    torch.manual_seed(0)
    model = build_model("ctv_unet3d", **model_kwargs(cfg))
    save_model(tmp_path / "m", model, model_meta(cfg))
    return tmp_path / "m"


def test_model_json_records_3d_preprocessing_and_sliding_window(model_dir):
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["preprocessing"]["volume"]["depth"] == 8 and meta["preprocessing"]["volume"]["size_xy"] == [32, 32]
    assert meta["preprocessing"]["volume"]["clip_min"] == -1024.0
    assert meta["evaluate"]["sliding_window"]["roi_size"] == [8, 16, 16]
    pred = Predictor.from_path(model_dir, device="cpu")
    assert pred.sliding_window["roi_size"] == [8, 16, 16]  # recorded window used without being told


def test_predict_volume_returns_labels_on_the_input_grid(model_dir):
    img, _ = make_phantom((5, 40, 36), spacing=(2.5, 0.8, 0.8), seed=0)
    pred = Predictor.from_path(model_dir, device="cpu")
    steps = []
    labels, proba = predict_volume(pred, img, progress=steps.append)
    assert labels.shape == img.shape and labels.array.dtype == np.uint8 and proba.shape == (1, 5, 40, 36)
    assert labels.spacing == img.spacing and labels.origin == img.origin
    assert np.array_equal(labels.array, (proba[0] > 0.5).astype(np.uint8))
    assert steps[-1] == 1.0 and steps == sorted(steps)


def test_predict_volume_file_writes_the_inputs_format_and_geometry(model_dir, tmp_path):
    write_phantom(tmp_path / "ph", n=1, formats=("nifti", "hdf5"), shape=(5, 24, 24), progress=False)
    pred = Predictor.from_path(model_dir, device="cpu")
    nii = tmp_path / "ph" / "nifti" / "case_000_image.nii.gz"
    summary = predict_volume_file(pred, nii, tmp_path / "out")
    out = nib.load(summary["label_file"])
    assert np.allclose(out.affine, nib.load(nii).affine) and out.shape == nib.load(nii).shape
    voxels = int(np.asarray(out.dataobj).sum())
    assert summary["volume_ml"]["ctv"] == pytest.approx(round(voxels * 3.0 * 1.0 * 1.0 / 1000, 3))
    h5 = predict_volume_file(pred, tmp_path / "ph" / "hdf5" / "case_000.h5", tmp_path / "out")
    assert h5["label_file"].endswith("case_000_label.h5")
    assert read_volume(h5["label_file"], key="label").shape == (5, 24, 24)


def test_label_map_and_volumes():
    class P:
        mode = "multilabel"

    proba = np.zeros((2, 1, 2, 2), np.float32)
    proba[0, 0, 0, 0] = 0.9
    proba[1, 0, 0, 0] = 0.95  # both above 0.5: the more probable class wins
    proba[1, 0, 1, 1] = 0.7
    assert label_map(P(), proba).tolist() == [[[2, 0], [0, 2]]]
    P.mode = "multiclass"
    assert label_map(P(), np.stack([1 - proba[0], proba[0]])).tolist() == [[[1, 0], [0, 0]]]
    assert class_volumes_ml(np.array([[[0, 1], [1, 2]]]), (2.0, 1.0, 0.5), ["bg", "a", "b"]) == {"a": 0.002, "b": 0.001}
