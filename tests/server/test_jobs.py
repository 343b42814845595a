"""The worker: jobs run outside the request, record their input hash and model version, survive a restart
(resumed once, failed after), can be re-run with another model without losing earlier results, and a
deleted study leaves no file behind."""

from __future__ import annotations

import time

from medseg.server.jobs import GAVE_UP


def _study(server, headers, study_id):
    r = server.client.get(f"/api/studies/{study_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_job_runs_in_the_worker_not_in_the_request(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["nifti"]).json()["id"]
    assert _study(server, h, sid)["status"] == "queued"  # the upload returned before any segmentation
    assert server.run_jobs() == 1
    study = _study(server, h, sid)
    [result] = study["results"]
    assert study["status"] == "done" and result["status"] == "done" and result["progress"] == 1
    assert result["attempts"] == 1 and result["error"] is None and result["n_slices"] == 8
    assert (
        result["input_sha256"] == study["input_sha256"] and result["summary"]["input_sha256"] == study["input_sha256"]
    )
    assert result["summary"]["model_version"] == result["model"]["version"]
    assert result["classes"] == [{"value": 1, "name": "ctv", "colour": "#e62828"}]
    assert set(result["downloads"]) == {"nifti", "summary.json", "summary.csv"}
    assert list(server.settings.tmp_dir.iterdir()) == []  # the job's working folder is gone


def test_several_uploads_queue_and_run_in_order(server, phantom):
    h = server.user("alice")
    ids = [server.upload(h, phantom[k]).json()["id"] for k in ("nifti", "hdf5", "dicom_zip")]
    counts = server.client.get("/api/health", headers=h).json()["jobs"]
    assert counts["queued"] == 3 and counts["running"] == 0
    assert server.run_jobs() == 3
    assert [_study(server, h, i)["status"] for i in ids] == ["done"] * 3
    assert server.client.get("/api/health", headers=h).json()["jobs"]["done"] == 3


def test_rerun_with_another_model_keeps_the_first_result(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["nifti"], model="ct_full").json()["id"]
    server.run_jobs()
    first = _study(server, h, sid)["results"][0]
    r = server.client.post(f"/api/studies/{sid}/rerun", headers=h, json={"model": "phantom_ct_empty"})
    assert r.status_code == 201 and r.json()["status"] == "queued" and r.json()["model"]["demo"]
    server.run_jobs()
    study = _study(server, h, sid)
    assert [x["model"]["id"] for x in study["results"]] == ["ct_full", "phantom_ct_empty"]
    assert study["results"][0] == first  # untouched
    assert study["results"][0]["summary"]["classes"][0]["voxels"] == 8 * 32 * 32
    assert study["results"][1]["summary"]["classes"][0]["voxels"] == 0
    assert study["results"][0]["model"]["version"] != study["results"][1]["model"]["version"]
    for res in study["results"]:  # both results' files stay downloadable
        assert server.client.get(res["downloads"]["nifti"], headers=h).status_code == 200
    # a 2D model cannot re-run a volume; an unknown model is named
    r = server.client.post(f"/api/studies/{sid}/rerun", headers=h, json={"model": "chromo2d"})
    assert r.status_code == 422 and "segments 2D images" in r.json()["detail"]
    r = server.client.post(f"/api/studies/{sid}/rerun", headers=h, json={"model": "nope"})
    assert r.status_code == 400


def test_restart_resumes_an_interrupted_job_once_then_fails_it(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["nifti"]).json()["id"]
    job = server.db.claim_next()  # a worker took it ... and the server was killed
    assert job["status"] == "running" and job["attempts"] == 1
    (server.settings.tmp_dir / f"job-{job['id']}-partial").mkdir()  # what the killed job had written
    server = server.restart()
    result = _study(server, h, sid)["results"][0]
    assert result["status"] == "queued" and result["attempts"] == 1  # resumed
    assert list(server.settings.tmp_dir.iterdir()) == []  # half-written files removed at start-up

    server.db.claim_next()  # started again ... and killed again
    server = server.restart()
    result = _study(server, h, sid)["results"][0]
    assert result["status"] == "failed" and result["attempts"] == 2 and result["error"] == GAVE_UP
    assert server.run_jobs() == 0

    # a failed study can be re-run: a new result, the failed one kept
    r = server.client.post(f"/api/studies/{sid}/rerun", headers=h, json={"model": "ct_full"})
    assert r.status_code == 201
    server.run_jobs()
    assert [x["status"] for x in _study(server, h, sid)["results"]] == ["failed", "done"]


def test_resumed_job_finishes(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["dicom_zip"]).json()["id"]
    server.db.claim_next()
    server = server.restart()
    assert server.run_jobs() == 1
    result = _study(server, h, sid)["results"][0]
    assert result["status"] == "done" and result["attempts"] == 2


def test_job_that_cannot_run_fails_with_a_message(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["nifti"]).json()["id"]
    # the input was damaged on disk after the upload was checked
    stored = server.settings.studies_dir / sid / "input" / phantom["nifti"].name
    stored.write_bytes(b"garbage")
    server.run_jobs()
    result = _study(server, h, sid)["results"][0]
    assert result["status"] == "failed" and "case_image.nii.gz: not a readable NIfTI file" in result["error"]
    assert str(server.settings.root) not in result["error"]
    assert server.client.get(f"/api/results/{result['id']}/download/nifti", headers=h).status_code == 409


def test_model_no_longer_offered_fails_the_job(server, phantom, settings, model_dirs):
    h = server.user("alice")
    sid = server.upload(h, phantom["nifti"], model="ct_full").json()["id"]
    settings.models = [model_dirs["ct_empty"]]  # restarted without that model
    server = server.restart()
    server.run_jobs()
    result = _study(server, h, sid)["results"][0]
    assert result["status"] == "failed" and "'ct_full'" in result["error"] and "re-run" in result["error"]


def test_delete_removes_files_and_rows(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["dicom_zip"], reference=phantom["nifti_label"]).json()["id"]
    server.run_jobs()
    rid = _study(server, h, sid)["results"][0]["id"]
    folder = server.settings.studies_dir / sid
    assert (folder / "results" / rid / "seg.dcm").is_file() and (folder / "slices" / "reference").is_dir()
    assert server.client.delete(f"/api/studies/{sid}", headers=h).status_code == 204
    assert not folder.exists() and list(server.settings.tmp_dir.iterdir()) == []
    assert server.db.all("SELECT id FROM results") == []
    assert server.client.get(f"/api/studies/{sid}", headers=h).status_code == 404
    assert server.client.get(f"/api/results/{rid}/slices/0/image.png", headers=h).status_code == 404
    assert server.client.delete(f"/api/studies/{sid}", headers=h).status_code == 404


def test_study_deleted_while_queued_leaves_nothing(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["nifti"]).json()["id"]
    job = server.db.claim_next()
    server.client.delete(f"/api/studies/{sid}", headers=h)
    server.app.state.worker.run_job(job)  # the worker had already taken it
    assert list(server.settings.studies_dir.iterdir()) == [] and list(server.settings.tmp_dir.iterdir()) == []


def test_orphans_of_a_crash_are_removed_at_start(server, phantom):
    h = server.user("alice")
    sid = server.upload(h, phantom["nifti"]).json()["id"]
    (server.settings.studies_dir / "deadbeefdeadbeef").mkdir()  # renamed into place, row never written
    (server.settings.studies_dir / sid / "results" / "0123456789abcdef").mkdir(parents=True)
    (server.settings.tmp_dir / "upload-1234").mkdir()
    server = server.restart()
    assert [p.name for p in server.settings.studies_dir.iterdir()] == [sid]
    assert list((server.settings.studies_dir / sid / "results").iterdir()) == []
    assert list(server.settings.tmp_dir.iterdir()) == []


def test_worker_thread_runs_jobs_started_with_the_app(make_server, phantom):
    """job_process=False: the thread in the web process (the worker process: test_worker_process.py)."""
    from fastapi.testclient import TestClient

    server = make_server(models=["ct_full"], start_worker=True, poll_seconds=0.2, job_process=False)
    h = server.user("alice")
    with TestClient(server.app) as client:  # the lifespan starts the worker thread
        sid = client.post(
            "/api/studies",
            headers=h,
            data={"model": "ct_full"},
            files=[("files", ("case.nii.gz", phantom["nifti"].read_bytes()))],
        ).json()["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = client.get(f"/api/studies/{sid}", headers=h).json()["status"]
            if status in ("done", "failed"):
                break
            time.sleep(0.05)
        assert status == "done"
    assert not server.app.state.runner._thread.is_alive()  # stopped with the app
