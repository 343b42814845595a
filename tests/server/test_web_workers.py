"""Several web workers (``medseg serve --web-workers N``): the sign-in limits are counted in SQLite by every
process, the settings reach the workers unchanged, queued jobs wake the one job worker, the log file rotates
correctly with several writers, and a real ``medseg serve --web-workers 2`` serves with exactly one job worker."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from medseg.cli import app as cli_app
from medseg.server import auth, logs, web_workers
from medseg.server.db import Database
from medseg.server.logs import FORMAT, SharedRotatingFileHandler
from medseg.server.settings import ServerSettings

PASSWORD = "correct horse battery"  # as in conftest.py
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def throttle(db_path: Path, clock: Clock) -> auth.SignInThrottle:
    """What one web worker holds: its own Database object over the shared file."""
    return auth.SignInThrottle(
        per_user=3, per_address=5, window=900, backoff=15, backoff_max=60, clock=clock, db=Database(db_path)
    )


def test_two_throttles_on_one_database_share_the_count(tmp_path):
    path, clock = tmp_path / "medseg.sqlite3", Clock()
    first, second = throttle(path, clock), throttle(path, clock)
    for _ in range(3):
        first.failed("alice", "10.0.0.1")
    assert second.retry_after("Alice", "10.0.0.9") == 15  # the account, from anywhere, in the other worker
    second.failed("bob", "10.0.0.1")
    second.failed("carol", "10.0.0.1")  # the address's 5th failure, split over both workers
    assert first.retry_after("dave", "10.0.0.1") == 15
    first.succeeded("alice")
    assert second.retry_after("alice", "10.0.0.2") == 0
    restarted = throttle(path, clock)  # a server restart forgets nothing
    assert restarted.retry_after("dave", "10.0.0.1") == 15
    clock.now += 901
    assert restarted.retry_after("dave", "10.0.0.1") == 0


def test_concurrent_failures_are_all_counted(tmp_path):
    path, clock = tmp_path / "medseg.sqlite3", Clock()
    Database(path)
    workers = [throttle(path, clock) for _ in range(4)]
    for t in workers:
        t.limits = {"user": 1000, "address": 0}

    def spray(t):
        for _ in range(10):
            t.failed("alice", "10.0.0.1")

    threads = [threading.Thread(target=spray, args=(t,)) for t in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Database(path).one("SELECT COUNT(*) AS n FROM sign_in_failures WHERE key = 'user:alice'")["n"] == 40


def test_settings_survive_the_trip_to_a_web_worker(tmp_path, model_dirs, monkeypatch):
    settings = ServerSettings(
        home=tmp_path / "home",
        models=[model_dirs["ct_full"], model_dirs["chromo"]],
        karyotype_vote="majority",
        max_upload_bytes=12345,
        max_zip_ratio=33.3,
        torch_threads=3,
        device="cpu",
        job_process=False,
        login_failures_per_address=7,
        login_window_s=60.5,
        access_log="all",
        log_file=tmp_path / "logs" / "m.log",
    )
    text = web_workers.settings_to_json(settings)
    assert web_workers.settings_from_json(text) == settings
    monkeypatch.setenv(web_workers.SETTINGS_ENV, "")
    with pytest.raises(RuntimeError, match="medseg serve --web-workers"):
        web_workers.settings_from_env()
    monkeypatch.setenv(web_workers.SETTINGS_ENV, text)
    settings.make_dirs()
    left = settings.tmp_dir / "upload-of-another-worker"
    left.mkdir()
    from medseg.server.app import app_from_environment

    app = app_from_environment()
    assert app.state.settings == settings and app.state.throttle.limits == {"user": 5, "address": 7}
    assert isinstance(app.state.runner, web_workers.WakeSender) and app.state.start_worker is False
    assert left.is_dir()  # a web worker leaves tmp alone: only the serve process cleans up, once
    logs.configure(ServerSettings(home=tmp_path / "after"))  # later tests' servers write to no file of ours


def test_a_queued_job_wakes_the_job_worker_through_the_fifo(tmp_path):
    settings = ServerSettings(home=tmp_path / "home")
    settings.make_dirs()
    sender = web_workers.WakeSender(settings)
    sender.notify()  # nobody listening: no error (the job worker's poll finds the job)
    woken = threading.Event()
    listener = web_workers.WakeListener(settings, woken.set)
    listener.start()
    try:
        assert not woken.wait(0.2)
        sender.notify()
        assert woken.wait(5)
    finally:
        listener.stop()
    assert not web_workers.wake_path(settings).exists()
    sender.notify()


def test_the_log_file_rotates_right_with_several_writers(tmp_path):
    log_file = tmp_path / "logs" / "m.log"
    log_file.parent.mkdir()
    handlers = [  # two processes' handlers on one file (each opens its own file)
        SharedRotatingFileHandler(log_file, maxBytes=400, backupCount=3, lock_path=tmp_path / "log.lock")
        for _ in range(2)
    ]
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
    for k in range(60):
        handlers[k % 2].emit(logging.LogRecord("medseg.server", logging.INFO, "", 0, f"line {k:03d}", None, None))
    for h in handlers:
        h.close()
    files = [log_file.with_name(f"m.log.{n}") for n in (3, 2, 1)] + [log_file]
    kept = [int(k) for p in files for k in re.findall(r"line (\d{3})", p.read_text())]
    # oldest backup to live file: the latest lines in order (plain handlers would each rotate and write into
    # the other's rotated file, mixing the lines of both up across the files)
    assert kept == list(range(60 - len(kept), 60)) and len(kept) >= 15
    assert sorted(p.name for p in log_file.parent.iterdir()) == ["m.log", "m.log.1", "m.log.2", "m.log.3"]
    assert all(p.stat().st_size <= 400 for p in files)


def test_cli_serve_web_workers_runs_uvicorn_with_the_factory(tmp_path, model_dirs, monkeypatch):
    import uvicorn

    seen = {}

    def run(app, **kw):
        seen.update(app=app, env=os.environ.get(web_workers.SETTINGS_ENV), **kw)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv(web_workers.SETTINGS_ENV, "")  # restored after the test, whatever serve sets
    home = tmp_path / "h"
    args = ["serve", "--model", str(model_dirs["ct_full"]), "--home", str(home), "--job-thread"]
    r = CliRunner().invoke(cli_app, [*args, "--web-workers", "3", "--port", "8124"])
    assert r.exit_code == 0, r.output
    assert seen["app"] == web_workers.APP_FACTORY and seen["factory"] is True and seen["workers"] == 3
    assert seen["port"] == 8124 and seen["access_log"] is False
    sent = web_workers.settings_from_json(seen["env"])
    assert sent.home == home and sent.models == [model_dirs["ct_full"]] and sent.job_process is False
    assert "3 web workers; jobs run one at a time in a job thread" in r.output
    r = CliRunner().invoke(cli_app, [*args, "--web-workers", "0"])
    assert r.exit_code == 2 and "--web-workers" in r.output


# ------------------------------------------------------------------------- a real server, two web workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> dict[int, str]:
    """pid → command line of ``pid``'s descendants (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(condition, timeout: float, what: str, process, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"medseg serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{log.read_text()}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc")
def test_serve_with_two_web_workers(tmp_path):
    home, log, port = tmp_path / "home", tmp_path / "serve.log", _free_port()
    auth.create_user(Database(home / "server" / "medseg.sqlite3"), "alice", PASSWORD, is_admin=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    args = ["serve", "--home", str(home), "--port", str(port), "--device", "cpu", "--web-workers", "2"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "medseg", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url, spawned = f"http://127.0.0.1:{port}", set()
    try:
        started = lambda: len(re.findall(r"Application startup complete", log.read_text())) == 2  # noqa: E731
        _wait(started, 60, "two web workers", process, log)
        r = httpx.post(f"{url}/api/login", json={"username": "alice", "password": PASSWORD})
        assert r.status_code == 200, r.text
        bearer = {"Authorization": f"Bearer {r.json()['token']}"}
        for _ in range(8):  # a new connection each: either worker may answer, each knows the session
            assert httpx.get(f"{url}/api/me", headers=bearer).json()["username"] == "alice"
        assert httpx.get(f"{url}/api/health", headers=bearer).json()["jobs"]["queued"] == 0
        wrong = [
            httpx.post(f"{url}/api/login", json={"username": "alice", "password": "wrong"}).status_code
            for _ in range(6)
        ]
        assert wrong == [401] * 5 + [429]  # 5 per account, whichever workers counted them

        text = log.read_text()
        web = {int(p) for p in re.findall(r"Started server process \[(\d+)\]", text)}
        job = {int(p) for p in re.findall(r"job worker process (\d+)", text)}
        spawned = {pid for pid, cmd in _children(process.pid).items() if "spawn_main" in cmd}
        assert len(web) == 2 and len(job) == 1 and spawned == web | job  # one job worker, none per web worker
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise
    assert code == 0, log.read_text()
    assert not [pid for pid in spawned if _alive(pid)]  # the web workers and the job worker ended with it


def test_users_passwd_lifts_the_back_off_of_a_running_server(tmp_path):
    home = tmp_path / "h"
    db = Database(home / "server" / "medseg.sqlite3")
    auth.create_user(db, "alice", PASSWORD)
    running = throttle(db.path, Clock(now=time.time()))  # the server's, in another process
    for _ in range(3):
        running.failed("alice", "10.0.0.1")
    assert running.retry_after("alice", "10.0.0.2") == 15
    r = CliRunner().invoke(
        cli_app, ["users", "passwd", "alice", "--password-stdin", "--home", str(home)], input="a new password\n"
    )
    assert r.exit_code == 0, r.output
    assert running.retry_after("alice", "10.0.0.2") == 0


def test_web_workers_take_the_niceness_they_are_given():
    # in a child process: renicing pytest itself would slow the rest of the suite
    code = (
        "import os; from medseg.server.web_workers import lower_priority; "
        "before = os.nice(0); print(lower_priority() - before)"
    )
    for wanted, expected in (("3", "3"), ("0", "0"), ("", "0")):
        env = {**os.environ, "MEDSEG_WEB_NICE": wanted}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected, (wanted, out.stdout, out.stderr)
