"""Finished results: slice PNGs for the viewer, downloads in the input's own format and geometry, DICOM-SEG,
the summary's volumes, and that no other user can reach any of it."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medseg.server.app import STATIC


def _done(server, headers, path, **kw):
    """Upload ``path``, run the job; the study JSON and its (first) result."""
    r = server.upload(headers, path, **kw)
    assert r.status_code == 201, r.text
    assert server.run_jobs() == 1
    study = server.client.get(f"/api/studies/{r.json()['id']}", headers=headers).json()
    assert study["status"] == "done", study
    return study, study["results"][0]


def _png(response) -> Image.Image:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_slices_of_a_volume(server, phantom):
    h = server.user("alice")
    _, result = _done(server, h, phantom["nifti"], reference=phantom["nifti_label"])
    url = result["slice_url"]

    def get(k, kind):
        return server.client.get(url.format(k=k, kind=kind), headers=h)

    image = _png(get(0, "image"))
    assert image.size == (32, 32) and image.mode == "L"
    label = _png(get(7, "label"))
    assert label.size == (32, 32) and label.mode == "RGBA"
    assert np.all(np.asarray(label)[..., 3] == 255)  # the "everything" model: opaque everywhere
    assert tuple(np.asarray(label)[0, 0, :3]) == (230, 40, 40)  # class 1's colour
    ref = np.asarray(_png(get(4, "reference")))
    truth = phantom["label"].array[4] > 0
    assert np.array_equal(ref[..., 3] == 255, truth) and np.all(ref[~truth][..., 3] == 0)  # transparent background
    r = get(3, "image")
    assert "immutable" in r.headers["cache-control"] and r.headers.get("etag")
    for k, kind, status in [(8, "image", 404), (-1, "image", 404), (0, "other", 404)]:
        assert get(k, kind).status_code == status
    # the grey slice is the CT soft-tissue window of the stored HU
    hu = phantom["image"].array[0].astype(float)
    expected = np.clip((hu + 160) * 255 / 400, 0, 255).astype(np.uint8)
    assert np.abs(np.asarray(image).astype(int) - expected).max() <= 1


def test_slice_is_quick(server, phantom):
    h = server.user("alice")
    _, result = _done(server, h, phantom["nifti"])
    url = result["slice_url"].format(k=2, kind="label")
    server.client.get(url, headers=h)
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        assert server.client.get(url, headers=h).status_code == 200
        times.append(time.perf_counter() - t0)
    assert sorted(times)[len(times) // 2] < 0.05


def test_slices_before_done_and_without_reference(server, phantom):
    h = server.user("alice")
    study = server.upload(h, phantom["hdf5"]).json()
    result = study["results"][0]
    url = f"/api/results/{result['id']}/slices/0/image.png"
    assert server.client.get(url, headers=h).status_code == 409
    assert server.client.get(f"/api/results/{result['id']}/download/hdf5", headers=h).status_code == 409
    server.run_jobs()
    assert server.client.get(url, headers=h).status_code == 200
    assert server.client.get(url.replace("image.png", "reference.png"), headers=h).status_code == 404


def test_nifti_download_keeps_the_input_affine_and_summary_volumes(server, phantom, tmp_path):
    h = server.user("alice")
    study, result = _done(server, h, phantom["nifti"])
    r = server.client.get(result["downloads"]["nifti"], headers=h)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert "case_image_ct_full_label.nii.gz" in r.headers["content-disposition"]
    out = tmp_path / "label.nii.gz"
    out.write_bytes(r.content)
    label, source = nib.load(str(out)), nib.load(str(phantom["nifti"]))
    np.testing.assert_allclose(label.affine, source.affine, atol=1e-6)
    data = np.asarray(label.dataobj)
    assert data.shape == source.shape and data.dtype == np.uint8
    # summary: ml = voxel count × voxel volume / 1000
    summary = server.client.get(result["downloads"]["summary.json"], headers=h).json()
    [ctv] = summary["classes"]
    voxel_ml = float(np.prod(np.abs(np.diag(source.affine)[:3]))) / 1000
    assert ctv["voxels"] == int((data == 1).sum()) == 8 * 32 * 32
    assert ctv["volume_ml"] == pytest.approx(ctv["voxels"] * voxel_ml)
    assert summary["voxel_volume_ml"] == pytest.approx(voxel_ml)
    assert summary["input_sha256"] == study["input_sha256"] and summary["model_version"] == result["model"]["version"]
    rows = list(csv.DictReader(io.StringIO(server.client.get(result["downloads"]["summary.csv"], headers=h).text)))
    assert rows == [{"value": "1", "name": "ctv", "voxels": str(ctv["voxels"]), "volume_ml": str(ctv["volume_ml"])}]
    for fmt in ("hdf5", "png", "dicom-seg", "bogus"):
        assert server.client.get(f"/api/results/{result['id']}/download/{fmt}", headers=h).status_code == 404


def test_hdf5_download_in_the_input_geometry(server, phantom, tmp_path):
    h = server.user("alice")
    _, result = _done(server, h, phantom["hdf5"], model="phantom_ct_empty")
    assert set(result["downloads"]) == {"hdf5", "nifti", "summary.json", "summary.csv"}
    out = tmp_path / "label.h5"
    out.write_bytes(server.client.get(result["downloads"]["hdf5"], headers=h).content)
    with h5py.File(out) as f:
        d = f["label"]
        assert d.shape == (8, 32, 32) and d.dtype == np.uint8 and not d[()].any()  # the "nothing" model
        np.testing.assert_allclose(d.attrs["spacing"], phantom["image"].spacing)
        np.testing.assert_allclose(d.attrs["origin"], phantom["image"].origin)


def test_dicom_seg_for_dicom_input(server, phantom, tmp_path):
    import highdicom as hd

    h = server.user("alice")
    _, result = _done(server, h, phantom["dicom_zip"], reference=phantom["nifti_label"])
    assert set(result["downloads"]) == {"nifti", "dicom-seg", "summary.json", "summary.csv"}
    out = tmp_path / "seg.dcm"
    r = server.client.get(result["downloads"]["dicom-seg"], headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    out.write_bytes(r.content)
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert int(ds.NumberOfFrames) == 8 and len(ds.SegmentSequence) == 1  # one frame per slice and segment
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "ctv" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "medseg"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == result["model"]["version"]
    source = pydicom.dcmread(min(phantom["dicom_dir"].iterdir()))
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    seg = hd.seg.segread(out)
    assert seg.get_segment_numbers() == [1]
    # the NIfTI of DICOM input is on the series' grid, and the summary compares with the reference
    summary = result["summary"]
    assert summary["classes"][0]["reference_count"] == int(phantom["label"].array.sum())
    assert 0 < summary["classes"][0]["dice"] < 1


def test_dicom_seg_from_loose_dicom_files(server, phantom, tmp_path):
    h = server.user("alice")
    files = sorted(phantom["dicom_dir"].iterdir())
    r = server.upload(h, *files[::-1])
    assert r.status_code == 201
    server.run_jobs()
    result = server.client.get(f"/api/studies/{r.json()['id']}", headers=h).json()["results"][0]
    out = tmp_path / "seg.dcm"
    out.write_bytes(server.client.get(result["downloads"]["dicom-seg"], headers=h).content)
    ds = pydicom.dcmread(out)
    assert int(ds.NumberOfFrames) == 8
    # each frame sits where the source instance it references lies
    position = {
        pydicom.dcmread(f).SOPInstanceUID: [float(v) for v in pydicom.dcmread(f).ImagePositionPatient] for f in files
    }
    for frame in ds.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        at = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert at == pytest.approx(position[uid])


def test_dicom_seg_frames_match_the_slices(phantom, tmp_path):
    """Frame for the instance at slice k holds slice k of the label map (k + 1 pixels here)."""
    import highdicom as hd

    from medseg.formats.volume_files import read_dicom_series
    from medseg.server.exports import write_dicom_seg

    files = sorted(phantom["dicom_dir"].iterdir())
    volume = read_dicom_series(files[::-1])
    labels = np.zeros(volume.shape, np.uint8)
    for k in range(volume.shape[0]):
        labels[k, 0, : k + 1] = 1
        labels[k, 5, : 2 * k + 1] = 2
    out = write_dicom_seg(labels, volume, files, ["background", "a", "b"], "net", "net-0123", tmp_path / "s.dcm")
    seg = hd.seg.segread(out)
    assert seg.number_of_frames == 8 * 2 and seg.get_segment_numbers() == [1, 2]
    uids = volume.meta["sop_instance_uids"]
    for k, uid in enumerate(uids):
        mask = seg.get_pixels_by_source_instance([uid], segment_numbers=[1, 2])
        assert mask.shape == (1, 32, 32, 2)
        assert mask[0, ..., 0].sum() == k + 1 and mask[0, ..., 1].sum() == 2 * k + 1


def test_2d_result(server, phantom, tmp_path):
    h = server.user("alice")
    _, result = _done(server, h, phantom["png"], model="chromo2d", reference=phantom["png_ref"])
    assert result["n_slices"] == 1 and set(result["downloads"]) == {"png", "summary.json", "summary.csv"}
    label = _png(server.client.get(result["downloads"]["png"], headers=h))
    assert label.size == (48, 40) and label.mode == "L" and np.asarray(label).max() <= 3
    assert _png(server.client.get(result["slice_url"].format(k=0, kind="image"), headers=h)).size == (48, 40)
    assert _png(server.client.get(result["slice_url"].format(k=0, kind="reference"), headers=h)).mode == "RGBA"
    summary = result["summary"]
    assert [c["name"] for c in summary["classes"]] == ["chromosome_alpha", "chromosome_beta", "overlap"]
    assert all(c["area_mm2"] is None for c in summary["classes"])  # no pixel spacing in a PNG
    assert sum(c["pixels"] for c in summary["classes"]) == int((np.asarray(label) > 0).sum())
    assert summary["classes"][0]["reference_count"] == 200 and summary["classes"][2]["reference_count"] == 50
    assert [c["value"] for c in result["classes"]] == [1, 2, 3]


def test_other_users_see_nothing(server, phantom):
    alice, bob = server.user("alice"), server.user("bob")
    study, result = _done(server, alice, phantom["dicom_zip"], reference=phantom["nifti_label"])
    sid, rid = study["id"], result["id"]
    c = server.client
    assert c.get("/api/studies", headers=bob).json() == []
    for method, url in [
        ("get", f"/api/studies/{sid}"),
        ("delete", f"/api/studies/{sid}"),
        ("get", f"/api/results/{rid}"),
        ("get", f"/api/results/{rid}/slices/0/image.png"),
        ("get", f"/api/results/{rid}/slices/0/label.png"),
        ("get", f"/api/results/{rid}/slices/0/reference.png"),
        *[("get", f"/api/results/{rid}/download/{f}") for f in result["downloads"]],
    ]:
        r = getattr(c, method)(url, headers=bob)
        assert r.status_code == 404, (url, r.status_code)
        assert sid not in r.text and rid not in r.text
    # the same answer as for ids that do not exist
    missing = c.get("/api/studies/0000000000000000", headers=bob)
    assert missing.json() == c.get(f"/api/studies/{sid}", headers=bob).json()
    assert c.post(f"/api/studies/{sid}/rerun", headers=bob, json={"model": "ct_full"}).status_code == 404
    assert c.get(f"/api/studies/{sid}", headers=alice).status_code == 200  # untouched
    assert len(c.get(f"/api/studies/{sid}", headers=alice).json()["results"]) == 1
    assert c.get(f"/api/results/{rid}", headers=alice).json()["status"] == "done"


def test_models_health_and_openapi(server):
    h = server.user("alice")
    models = {m["id"]: m for m in server.client.get("/api/models", headers=h).json()}
    assert set(models) == {"ct_full", "phantom_ct_empty", "chromo2d"}
    assert models["phantom_ct_empty"]["demo"] and "not a clinical model" in models["phantom_ct_empty"]["demo_note"]
    assert not models["ct_full"]["demo"] and models["ct_full"]["demo_note"] is None
    assert models["ct_full"]["spatial_dims"] == 3 and models["chromo2d"]["spatial_dims"] == 2
    assert [c["name"] for c in models["ct_full"]["classes"]] == ["background", "ctv"]
    assert re.fullmatch(r"ctv_unet3d-[0-9a-f]{12}", models["ct_full"]["version"])
    assert "path" not in models["ct_full"]
    health = server.client.get("/api/health", headers=h).json()
    assert health["status"] == "ok" and health["models"] == 3
    assert models["ct_full"]["modality"] == "CT" and models["chromo2d"]["modality"] is None
    spec = server.client.get("/openapi.json").json()
    for path in [
        "/api/login",
        "/api/logout",
        "/api/me",
        "/api/models",
        "/api/studies",
        "/api/studies/{study_id}",
        "/api/studies/{study_id}/rerun",
        "/api/results/{result_id}/slices/{k}/{kind}.png",
        "/api/results/{result_id}/download/{fmt}",
        "/api/health",
        "/api/users",
    ]:
        assert path in spec["paths"], path
    assert "multipart/form-data" in spec["paths"]["/api/studies"]["post"]["requestBody"]["content"]
    assert server.client.get("/docs").status_code == 200


def test_demo_flag_from_model_json(tmp_path, model_dirs):
    import json
    import shutil

    plain = tmp_path / "ct_model"
    shutil.copytree(model_dirs["ct_full"], plain)
    meta = json.loads((plain / "model.json").read_text())
    meta["data"] = {"source": "/data/ct.h5", "synthesized": True}
    (plain / "model.json").write_text(json.dumps(meta))
    from medseg.server.registry import ModelRegistry

    entry = next(iter(ModelRegistry([plain]).entries.values()))
    assert entry.demo and "synthesized" in entry.demo_reason


CONTRACT_IDS = [
    "username",
    "password",
    "login-button",
    "login-error",
    "demo-banner",
    "upload-file",
    "reference-file",
    "model-select",
    "upload-button",
    "upload-error",
    "studies",
    "viewer",
    "slice-index",
    "slice-slider",
    "img-original",
    "img-overlay",
    "img-reference",
    "autoplay",
    "opacity",
    "legend",
    "download-label",
    "download-dicom-seg",
    "download-summary",
    "logout",
    "viewer-warnings",
]


def test_page_contract_and_nothing_external():
    html = (STATIC / "index.html").read_text()
    for element_id in CONTRACT_IDS:
        assert f'id="{element_id}"' in html, element_id
    assert re.search(r'id="upload-file"[^>]*multiple', html) and 'type="range" id="slice-slider"' in html
    assert 'id="opacity" min="0" max="100"' in html and 'aria-pressed="false"' in html
    js = (STATIC / "app.js").read_text()
    for cls in (".study", ".status", ".open", ".rerun", ".delete"):
        assert f'"{cls[1:]}"' in js or f"{cls}" in js, cls
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), name
        assert "@import" not in text and "url(http" not in text


def test_static_files_are_served(server):
    assert server.client.get("/static/app.js").status_code == 200
    assert server.client.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert server.client.get("/static/../db.py").status_code == 404
    assert Path(STATIC / "index.html").is_file()
