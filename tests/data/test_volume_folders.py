"""3D volume datasets: phantom folders, images/ + labels/ folders, HDF5 pairs, patient-level splits."""

import json

import numpy as np
import pytest

from medseg.config import load_config
from medseg.data.phantom import make_phantom, write_phantom
from medseg.data.registry import load_any_data
from medseg.data.runs import splits_for
from medseg.data.splits import expand_patient_splits, make_splits
from medseg.data.volume_folders import load_volume_data, patient_ids, volume_pairs
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.volume_files import write_hdf5_volume, write_nifti


def _cfg(path, tmp_path, **data):
    return load_config(
        None,
        {
            "name": "vol",
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "derived": {},
                "primary_metric": "ctv",
                "spatial_dims": 3,
            },
            "data": {"path": str(path), "size": None, **data},
            "preprocess": {"clip_min": -1024.0, "clip_max": 576.0, "depth": 8, "size_xy": [16, 16]},
            "splits": {"test_fraction": 0.0, "n_folds": 3},
            "output": {"root": str(tmp_path / "runs")},
            "model": {"name": "ctv_unet3d", "channels": [2, 2, 2, 2, 2]},
            "loss": [{"name": "bce"}],
        },
    )


def test_phantom_folder_is_read_and_preprocessed(tmp_path):
    write_phantom(tmp_path / "ph", n=3, formats=("nifti", "hdf5"), shape=(6, 24, 24), progress=False)
    data = load_volume_data(_cfg(tmp_path / "ph", tmp_path), progress=False)
    assert data.images.shape == (3, 8, 16, 16) and data.images.dtype == np.float32
    assert data.labels.shape == (3, 1, 8, 16, 16) and set(np.unique(data.labels)) <= {0, 1}
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert data.labels.sum() > 0  # the target survives the resampling
    assert data.synthesized and data.names == ["case_000", "case_001", "case_002"]
    assert data.volume_info["original_shapes"] == [[6, 24, 24]] * 3


def test_synth_phantom_is_made_once_under_medseg_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    cfg = _cfg("synth:phantom", tmp_path, phantom={"n": 3, "shape": [6, 20, 20], "spacing": [3.0, 1.0, 1.0], "seed": 1})
    data = load_any_data(cfg, progress=False)
    assert len(data) == 3 and data.synthesized
    made = list((tmp_path / "home" / "synth").glob("phantom_n3_6x20x20_seed1/hdf5/*.h5"))
    assert len(made) == 3


def test_images_labels_folder_and_multiclass_labels(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "labels").mkdir()
    for i in range(2):
        img, lab = make_phantom((6, 20, 20), seed=i)
        write_nifti(img, tmp_path / "d" / "images" / f"p{i}_0000.nii.gz")  # nnU-Net naming
        write_nifti(lab.with_array(lab.array * 2), tmp_path / "d" / "labels" / f"p{i}.nii.gz", label=True)
    cfg = _cfg(tmp_path / "d", tmp_path)
    cfg["task"].update(mode="multiclass", class_names=["background", "gtv", "ctv"], primary_metric="ctv")
    data = load_volume_data(cfg, progress=False)
    assert data.labels.shape == (2, 8, 16, 16) and set(np.unique(data.labels)) == {0, 2}
    assert data.names == ["p0", "p1"]


def test_label_values_outside_the_classes_are_refused(tmp_path):
    img, lab = make_phantom((6, 20, 20), seed=0)
    write_hdf5_volume(img, tmp_path / "d" / "a.h5", label=lab.with_array(lab.array * 3))
    with pytest.raises(DataValidationError, match=r"a\.h5.*label values \[3\]"):
        load_volume_data(_cfg(tmp_path / "d", tmp_path), progress=False)


def test_missing_label_and_empty_folder_errors_name_the_place(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "labels").mkdir()
    img, _ = make_phantom((6, 20, 20), seed=0)
    write_nifti(img, tmp_path / "d" / "images" / "x.nii.gz")
    with pytest.raises(DataValidationError, match="no label volume for 1 image"):
        volume_pairs(tmp_path / "d")
    (tmp_path / "e").mkdir()
    with pytest.raises(DataValidationError, match="no volumes found"):
        volume_pairs(tmp_path / "e")


def test_patient_pattern_groups_series():
    assert patient_ids(["pat01_ct1", "pat01_ct2", "pat02_ct1"], r"^(pat\d+)_") == ["pat01", "pat01", "pat02"]
    assert patient_ids(["a", "b"], None) == ["a", "b"]
    with pytest.raises(ConfigError, match="does not match"):
        patient_ids(["zzz"], r"^(pat\d+)")


def test_patient_splits_keep_a_patients_series_together():
    groups = ["p0", "p0", "p1", "p2", "p2", "p2", "p3", "p4", "p5"]
    patients = sorted(set(groups))
    splits = expand_patient_splits(make_splits(len(patients), test_fraction=0.0, n_folds=3, seed=0), patients, groups)
    seen = []
    for fold in splits["folds"]:
        val = fold["val"]
        assert not set(val) & set(fold["train"]) and sorted(val + fold["train"]) == list(range(len(groups)))
        val_patients = {groups[i] for i in val}
        train_patients = {groups[i] for i in fold["train"]}
        assert not val_patients & train_patients
        seen += val
    assert sorted(seen) == list(range(len(groups)))  # the folds' validation sets cover every case once


def test_splits_for_volume_data_are_by_patient(tmp_path):
    write_phantom(tmp_path / "ph", n=6, formats=("hdf5",), shape=(6, 20, 20), progress=False)
    cfg = _cfg(tmp_path / "ph", tmp_path)
    data = load_volume_data(cfg, progress=False)
    assert data.groups == data.names  # by default each case is its own patient
    data.groups = ["0", "1", "2", "0", "1", "2"]  # two series per patient
    splits, path = splits_for(cfg, data)
    assert "_p3_" in path.name and json.loads(path.read_text())["n"] == 3
    for fold in splits["folds"]:
        assert not {data.groups[i] for i in fold["val"]} & {data.groups[i] for i in fold["train"]}


def test_volume_set_larger_than_the_memory_limit_is_refused_after_the_first_case(tmp_path, monkeypatch):
    write_phantom(tmp_path / "ph", n=3, formats=("hdf5",), shape=(6, 24, 24), progress=False)
    monkeypatch.setenv("MEDSEG_MAX_DATASET_BYTES", "5000")  # 3 × (8·16·16 float32 + 8·16·16 uint8) = 15,360
    with pytest.raises(DataValidationError, match=r"ph: 3 preprocessed volumes of \(8, 16, 16\) would take"):
        load_volume_data(_cfg(tmp_path / "ph", tmp_path), progress=False)


def test_a_corrupt_volume_in_a_set_is_named(tmp_path):
    write_phantom(tmp_path / "ph", n=2, formats=("hdf5",), shape=(6, 24, 24), progress=False)
    victim = sorted((tmp_path / "ph").rglob("*.h5"))[1]
    victim.write_bytes(victim.read_bytes()[:600])
    with pytest.raises(DataValidationError) as e:
        load_volume_data(_cfg(tmp_path / "ph", tmp_path), progress=False)
    assert victim.name in str(e.value) and "\n" not in str(e.value)
