"""Jobs in a worker process of their own: a killed worker ends only its job, which is resumed once and failed
the second time, and a new worker process takes the queue on."""

from __future__ import annotations

import os
import signal
import time

from fastapi.testclient import TestClient

from medseg.server.worker_process import GAVE_UP


def _wait(condition, timeout: float, what: str, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_killed_worker_process_resumes_its_job_and_a_new_one_runs_it(make_server, phantom):
    server = make_server(models=["ct_full"], start_worker=True, poll_seconds=0.2)
    h = server.user("alice")
    with TestClient(server.app) as client:
        runner = server.app.state.runner
        first_pid = runner.pid
        sid = client.post(
            "/api/studies",
            headers=h,
            data={"model": "ct_full"},
            files=[("files", ("case.nii.gz", phantom["nifti"].read_bytes()))],
        ).json()["id"]
        result_id = client.get(f"/api/studies/{sid}", headers=h).json()["results"][0]["id"]
        row = lambda: server.db.result_any_owner(result_id)  # noqa: E731
        _wait(lambda: row()["status"] == "running", 60, "the job to start")
        os.kill(first_pid, signal.SIGKILL)  # as the kernel's OOM killer would
        assert client.get("/api/health").status_code == 200  # the web side never noticed
        _wait(lambda: row()["status"] in ("done", "failed"), 90, "the resumed job", step=0.1)
        assert row()["status"] == "done" and row()["attempts"] == 2, row()
        assert runner.restarts == 1 and runner.pid != first_pid
    assert not runner._process.is_alive()


def test_a_job_that_kills_its_worker_twice_is_failed_with_a_reason(server, phantom):
    h = server.user("alice")
    assert server.upload(h, phantom["nifti"]).status_code == 201
    runner = server.app.state.runner
    job = server.db.claim_next()
    assert runner.after_crash(-9) == {"resumed": 1, "failed": 0}
    assert server.db.result_any_owner(job["id"])["status"] == "queued"
    assert server.db.claim_next()["attempts"] == 2
    assert runner.after_crash(-9) == {"resumed": 0, "failed": 1}
    failed = server.db.result_any_owner(job["id"])
    assert failed["status"] == "failed" and failed["error"] == GAVE_UP.format(code=-9)
