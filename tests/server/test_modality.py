"""Modality: a model that needs CT refuses an MR series (422 naming the file and both modalities, at upload and
at re-run) and warns in the result about an input that records no modality; a 3D model that records nothing
warns when the input does not look like CT."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest

from medseg.formats.volume_files import write_dicom_series, write_nifti
from medseg.server.registry import needed_modality


def model_variant(model_dirs, tmp_path, name: str, edit) -> object:
    """A copy of the ct_full model whose model.json ``edit`` changes."""
    target = tmp_path / name
    shutil.copytree(model_dirs["ct_full"], target)
    meta = json.loads((target / "model.json").read_text())
    edit(meta)
    (target / "model.json").write_text(json.dumps(meta))
    return target


@pytest.fixture
def mr_series(phantom, tmp_path) -> dict:
    """The phantom as an MR series: loose files and a zip."""
    series = write_dicom_series(phantom["image"].with_array(phantom["image"].array, modality="MR"), tmp_path / "mr")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(series.iterdir()):
            zf.write(f, f.name)
    (tmp_path / "mr.zip").write_bytes(buf.getvalue())
    return {"files": sorted(series.iterdir()), "zip": tmp_path / "mr.zip"}


def warnings_of(server, headers, study_id: str) -> list[str]:
    server.run_jobs()
    [result] = server.client.get(f"/api/studies/{study_id}", headers=headers).json()["results"]
    assert result["status"] == "done", result["error"]
    assert result["summary"]["warnings"] == result["warnings"]
    return result["warnings"]


def test_needed_modality_from_model_json():
    ct_window = {"normalize": "range", "clip_min": -1024.0, "clip_max": 576.0}
    assert needed_modality({"task": {"modality": "mr"}, "preprocessing": {"volume": ct_window}}) == (
        "MR",
        "model.json: task.modality",
    )
    modality, why = needed_modality({"preprocessing": {"volume": ct_window}})
    assert modality == "CT" and "[-1024.0, 576.0]" in why
    assert needed_modality({"preprocessing": {"volume": {**ct_window, "normalize": "minmax"}}})[0] is None
    assert needed_modality({"preprocessing": {"size": [32, 32]}})[0] is None  # a 2D model
    assert needed_modality({})[0] is None


def test_a_ct_model_refuses_an_mr_series(server, mr_series):
    h = server.user("alice")
    r = server.upload(h, mr_series["zip"])
    body = r.json()
    assert r.status_code == 422 and body["file"] == "mr.zip"
    assert "modality is MR, but model 'ct_full' needs CT" in body["problem"] and "\n" not in body["detail"]
    r = server.upload(h, *mr_series["files"])
    assert r.status_code == 422 and r.json()["file"] == "DICOM series (8 files)" and "MR" in r.json()["problem"]
    server.assert_nothing_stored()


def test_an_input_without_modality_is_accepted_with_a_warning(server, phantom, tmp_path):
    h = server.user("alice")
    unknown = write_nifti(phantom["image"].with_array(phantom["image"].array, modality=None), tmp_path / "hu.nii.gz")
    study = server.upload(h, unknown)
    assert study.status_code == 201 and study.json()["modality"] is None
    [warning] = warnings_of(server, h, study.json()["id"])
    assert "records no modality" in warning and "needs CT" in warning and "Hounsfield" not in warning

    scaled = phantom["image"].with_array(
        np.linspace(0, 1, phantom["image"].array.size, dtype=np.float32).reshape(phantom["image"].shape), modality=None
    )
    study = server.upload(h, write_nifti(scaled, tmp_path / "scaled.nii.gz")).json()
    [warning] = warnings_of(server, h, study["id"])
    assert "(0 to 1) do not look like CT Hounsfield units" in warning
    result = server.client.get(f"/api/studies/{study['id']}", headers=h).json()["results"][0]
    on_disk = json.loads(
        (server.settings.studies_dir / study["id"] / "results" / result["id"] / "summary.json").read_text()
    )
    assert on_disk["warnings"] == [warning]

    ct = server.upload(h, phantom["nifti"]).json()  # records CT: nothing to say
    assert ct["modality"] == "CT" and warnings_of(server, h, ct["id"]) == []


def test_a_model_that_records_no_modality_warns_instead(make_server, model_dirs, mr_series, tmp_path):
    free = model_variant(
        model_dirs, tmp_path, "free_3d", lambda meta: meta["preprocessing"]["volume"].update(normalize="minmax")
    )
    server = make_server(models=[free, "ct_full"])
    h = server.user("alice")
    study = server.upload(h, mr_series["zip"], model="free_3d")
    assert study.status_code == 201, study.text
    [warning] = warnings_of(server, h, study.json()["id"])
    assert "'free_3d' does not record which modality" in warning and "the input is MR, not CT" in warning
    r = server.client.post(f"/api/studies/{study.json()['id']}/rerun", headers=h, json={"model": "ct_full"})
    assert r.status_code == 422 and "modality is MR, but model 'ct_full' needs CT" in r.json()["detail"]


def test_an_explicit_modality_in_model_json(make_server, model_dirs, phantom, mr_series, tmp_path):
    mr_model = model_variant(model_dirs, tmp_path, "mr_3d", lambda meta: meta["task"].update(modality="MR"))
    server = make_server(models=[mr_model])
    h = server.user("alice")
    assert server.client.get("/api/models", headers=h).json()[0]["modality"] == "MR"
    r = server.upload(h, phantom["nifti"], model="mr_3d")
    assert (
        r.status_code == 422
        and "modality is CT, but model 'mr_3d' needs MR (model.json: task.modality)" in r.json()["detail"]
    )
    assert server.upload(h, mr_series["zip"], model="mr_3d").status_code == 201
