"""Uploads: every accepted input format, and every refusal named with its file and problem — with nothing
left behind (no staging folder, no study folder, no row)."""

from __future__ import annotations

import hashlib
import io
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medseg.formats.volume import Volume
from medseg.formats.volume_files import write_nifti


def asgi_post(app, path: str, headers: dict, chunks: list[bytes]) -> int:
    """POST ``chunks`` as separate ASGI body messages (no Content-Length), as a server receives a large
    upload; returns the response status."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {**headers, "host": "testserver"}.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def assert_nothing_stored(server):
    server.assert_nothing_stored()


@pytest.mark.parametrize("key", ["nifti", "hdf5", "dicom_zip"])
def test_volume_upload_is_stored_and_queued(server, phantom, key):
    h = server.user("alice")
    r = server.upload(h, phantom[key])
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["kind"] == "3d" and study["shape"] == [8, 32, 32] and study["spacing"] == pytest.approx([3, 1, 1])
    assert study["input_format"] == ("dicom" if key == "dicom_zip" else key)
    assert study["input_sha256"] == hashlib.sha256(phantom[key].read_bytes()).hexdigest()
    assert study["window"]["low"] == -160 and study["window"]["high"] == 240  # CT: soft-tissue window
    [result] = study["results"]
    assert result["status"] == "queued" and result["progress"] == 0 and result["downloads"] == {}
    assert result["input_sha256"] == study["input_sha256"] and result["model"]["version"].startswith("ctv_unet3d-")
    stored = server.settings.studies_dir / study["id"] / "input"
    assert [p.name for p in stored.iterdir()] == [phantom[key].name]
    assert list(server.settings.tmp_dir.iterdir()) == []


def test_dicom_series_as_several_files(server, phantom):
    h = server.user("alice")
    files = sorted(phantom["dicom_dir"].iterdir())
    r = server.upload(h, *reversed(files))
    assert r.status_code == 201, r.text
    assert r.json()["input_format"] == "dicom" and len(r.json()["input_files"]) == len(files) == 8
    assert r.json()["name"] == "medseg volume (8 DICOM files)"  # the series' own description
    # the hash of several files does not depend on their order
    again = server.upload(h, *files).json()
    assert again["input_sha256"] == r.json()["input_sha256"]


def test_2d_image_with_reference(server, phantom):
    h = server.user("alice")
    r = server.upload(h, phantom["png"], model="chromo2d", reference=phantom["png_ref"])
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["kind"] == "2d" and s["shape"] == [1, 40, 48] and s["spacing"] is None and s["has_reference"]
    assert s["reference_file"] == "slice_ref.png"


def test_only_one_model_needs_no_choice(make_server, phantom):
    server = make_server(models=["ct_full"])
    h = server.user("alice")
    r = server.client.post("/api/studies", headers=h, files=[("files", ("case.nii.gz", phantom["nifti"].read_bytes()))])
    assert r.status_code == 201 and r.json()["results"][0]["model"]["id"] == "ct_full"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


BAD = {
    "corrupt NIfTI": (
        "scan.nii.gz",
        b"\x1f\x8b\x08\x00" + b"not really gzip" * 20,
        "ct_full",
        422,
        "not a readable NIfTI",
    ),
    "text named .png": ("photo.png", b"hello, I am text\n" * 10, "chromo2d", 422, "cannot be read as a PNG/TIFF"),
    "unsupported type": ("notes.txt", b"hello", "ct_full", 415, "unsupported file type"),
    "zip with ../ member": ("series.zip", _zip({"../evil.dcm": b"DICM" * 10}), "ct_full", 422, "path traversal"),
    "zip bomb": ("bomb.zip", _zip({"bomb.dcm": bytes(20 * 2**20)}), "ct_full", 422, "zip bomb"),
    "zip without DICOM": ("empty.zip", _zip({"readme.txt": b"nothing"}), "ct_full", 422, "no DICOM image files"),
    "not a zip": ("broken.zip", b"PK\x03\x04 truncated", "ct_full", 422, "not a readable zip"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_upload_is_refused_with_file_and_problem(server, case):
    name, content, model, status, words = BAD[case]
    h = server.user("alice")
    r = server.upload_bytes(h, name, content, model=model)
    assert r.status_code == status, r.text
    body = r.json()
    assert words in body["detail"] and body["detail"].startswith(f"{name}: ") and body["file"] == name
    assert str(server.settings.root) not in body["detail"]  # server paths never reach the page
    assert_nothing_stored(server)
    assert not any(p.name == "evil.dcm" for p in server.settings.home.rglob("*"))


def test_image_and_model_of_other_dimensions_are_refused(server, phantom):
    h = server.user("alice")
    r = server.upload(h, phantom["png"], model="ct_full")
    assert r.status_code == 422 and "a 2D image cannot be segmented by model 'ct_full'" in r.json()["detail"]
    r = server.upload(h, phantom["nifti"], model="chromo2d")
    assert r.status_code == 422 and "which segments 2D images" in r.json()["detail"]
    assert_nothing_stored(server)


def test_wrong_dimensions_and_missing_pixel_data(server, phantom, tmp_path):
    h = server.user("alice")
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.int16), np.eye(4)), str(flat))
    r = server.upload(h, flat)
    assert r.status_code == 422 and r.json()["detail"].startswith("flat.nii.gz: a 3D volume is needed")
    files = sorted(phantom["dicom_dir"].iterdir())
    broken = tmp_path / "IM0003.dcm"
    ds = pydicom.dcmread(files[2])
    del ds.PixelData
    ds.save_as(broken)
    r = server.upload(h, *files[:2], broken, *files[3:])
    assert r.status_code == 422 and "IM0003.dcm: no pixel data" in r.json()["detail"], r.text
    assert_nothing_stored(server)


def test_several_files_must_be_one_dicom_series(server, phantom):
    h = server.user("alice")
    r = server.upload(h, phantom["nifti"], phantom["hdf5"])
    assert r.status_code == 400 and "one DICOM series" in r.json()["detail"]
    assert_nothing_stored(server)


def test_reference_on_another_grid_is_refused(server, phantom, tmp_path):
    h = server.user("alice")
    other = write_nifti(Volume(np.zeros((8, 32, 16), np.uint8), (3, 1, 1)), tmp_path / "ref_small.nii.gz", label=True)
    r = server.upload(h, phantom["nifti"], reference=other)
    assert r.status_code == 422 and r.json()["file"] == "ref_small.nii.gz" and "not the same grid" in r.json()["detail"]
    r = server.upload(h, phantom["nifti"], reference=phantom["png_ref"])
    assert r.status_code == 415 and "reference of a volume" in r.json()["detail"]
    short = tmp_path / "ref_short.png"  # 30 rows of the image's 48 columns: sizes given as width × height
    Image.fromarray(np.zeros((30, 48), np.uint8)).save(short)
    r = server.upload(h, phantom["png"], model="chromo2d", reference=short)
    assert (
        r.status_code == 422
        and "the reference is 48 × 30 pixels (width × height), the image 48 × 40" in r.json()["detail"]
    )
    assert_nothing_stored(server)


def test_missing_or_unknown_model_and_no_file(server, phantom):
    h = server.user("alice")
    r = server.upload(h, phantom["nifti"], model="nope")
    assert r.status_code == 400 and "unknown model 'nope'" in r.json()["detail"]
    r = server.client.post("/api/studies", headers=h, files=[("files", ("a.nii.gz", phantom["nifti"].read_bytes()))])
    assert r.status_code == 400 and "choose a model" in r.json()["detail"]
    r = server.client.post("/api/studies", headers=h, data={"model": "ct_full"}, files=[("other", ("a.nii.gz", b"x"))])
    assert r.status_code == 400 and "unexpected form field 'other'" in r.json()["detail"]
    r = server.client.post("/api/studies", headers=h, json={"model": "ct_full"})
    assert r.status_code == 415
    assert_nothing_stored(server)


def test_too_large_upload_is_refused_and_removed(server, phantom, monkeypatch):
    server.settings.max_upload_bytes = 64 * 1024
    h = server.user("alice")
    big = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
    r = server.upload_bytes(h, "big.nii.gz", big)  # Content-Length tells: refused before reading
    assert r.status_code == 413 and "larger than the limit of 64.0 KiB" in r.json()["detail"]
    assert_nothing_stored(server)

    # no Content-Length (chunked): refused while streaming, the partial file removed
    from medseg.server import upload

    written = []
    original = upload._Receiver.on_part_data

    def spy(self, data, start, end):
        original(self, data, start, end)
        if self._file is not None:
            written.append((self._file.path, self._file.path.is_file(), end - start))

    monkeypatch.setattr(upload._Receiver, "on_part_data", spy)
    boundary = "medsegtestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nct_full\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.nii.gz"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    chunks = [head, *(big[i : i + 16384] for i in range(0, len(big), 16384)), tail]
    status = asgi_post(
        server.app, "/api/studies", {**h, "Content-Type": f"multipart/form-data; boundary={boundary}"}, chunks
    )  # the test client would send the body as one piece: this sends it in chunks
    assert status == 413
    assert written and all(on_disk for _, on_disk, _ in written)  # it was written to disk in chunks...
    assert 0 < sum(n for *_, n in written) <= 64 * 1024
    assert not written[0][0].exists()  # ...and is gone
    assert_nothing_stored(server)


def test_zip_size_and_member_limits(server, phantom):
    h = server.user("alice")
    server.settings.max_unzipped_bytes = 10_000
    r = server.upload(h, phantom["dicom_zip"])
    assert r.status_code == 422 and "unpacks to" in r.json()["detail"]
    server.settings.max_unzipped_bytes = 2**30
    server.settings.max_zip_members = 3
    r = server.upload(h, phantom["dicom_zip"])
    assert r.status_code == 422 and "members, more than the limit of 3" in r.json()["detail"]
    assert_nothing_stored(server)


def test_voxel_limit_is_checked_from_the_header(server, phantom):
    server.settings.max_voxels = 1000
    h = server.user("alice")
    r = server.upload(h, phantom["nifti"])
    assert r.status_code == 422 and "8,192 voxels" in r.json()["detail"]
    assert_nothing_stored(server)


def test_chunked_upload_is_stored_whole(server, phantom):
    h = server.user("alice")
    data = phantom["nifti"].read_bytes()
    boundary = "medsegtestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nct_full\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="../../up/case.nii.gz"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]  # boundaries split across chunks too
    status = asgi_post(
        server.app, "/api/studies", {**h, "Content-Type": f"multipart/form-data; boundary={boundary}"}, chunks
    )
    assert status == 201
    [study] = server.client.get("/api/studies", headers=h).json()
    assert study["name"] == "case.nii.gz"  # the client's path is dropped, never used on disk
    assert study["input_sha256"] == hashlib.sha256(data).hexdigest()
    stored = server.settings.studies_dir / study["id"] / "input" / "case.nii.gz"
    assert stored.read_bytes() == data


def test_an_hdf5_upload_is_read_in_a_child_process_with_a_time_limit(make_server, phantom, monkeypatch):
    """libhdf5 can loop forever on some damaged files: the upload is read first in a child process that is
    killed after ``hdf5_probe_seconds`` (here a limit no child can meet: Python alone takes longer to start)."""
    import subprocess

    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(k["timeout"]) or real_run(*a, **k))
    server = make_server(hdf5_probe_seconds=0.01)
    h = server.user("alice")
    r = server.upload(h, phantom["hdf5"])
    assert r.status_code == 422, r.text
    assert r.json()["file"] == phantom["hdf5"].name and "did not finish within 0.01 s" in r.json()["problem"]
    assert calls == [0.01]
    server.assert_nothing_stored()
