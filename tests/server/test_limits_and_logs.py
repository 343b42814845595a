"""Operating the server: the per-address sign-in limit (set for a department behind one address, off with 0,
from ``medseg serve``) and the access log (off / errors / all, into a rotated file, never a token)."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from medseg.cli import app as cli_app
from medseg.server import auth, logs
from medseg.server.settings import ServerSettings

ADDRESS = "203.0.113.9"  # the clinic's NAT


@pytest.fixture(autouse=True)
def _no_log_file_left(tmp_path):
    yield
    logs.configure(ServerSettings(home=tmp_path / "after"))  # later tests' servers write to no file of ours


def throttle_of(settings: ServerSettings) -> auth.SignInThrottle:
    return auth.SignInThrottle(
        settings.login_failures_per_user,
        settings.login_failures_per_address,
        settings.login_window_s,
        settings.login_backoff_s,
        settings.login_backoff_max_s,
    )


def test_the_default_address_limit_lets_a_department_mistype(tmp_path):
    throttle = throttle_of(ServerSettings(home=tmp_path))
    for person in range(49):  # 49 people behind one address mistype twice each: 98 failures
        for _ in range(2):
            throttle.failed(f"user{person}", ADDRESS)
    throttle.failed("user49", ADDRESS)
    assert throttle.retry_after("user50", ADDRESS) == 0  # 99 failures: everyone else still signs in
    throttle.failed("user49", ADDRESS)
    assert throttle.retry_after("user50", ADDRESS) == 15  # the 100th: the address backs off
    assert throttle.retry_after("user50", "198.51.100.1") == 0  # another address does not


def test_an_address_limit_of_0_leaves_only_the_account_limit(make_server):
    server = make_server(login_failures_per_address=0)
    throttle = server.app.state.throttle
    assert throttle.limits == {"user": 5, "address": 0}
    for k in range(300):
        throttle.failed(f"user{k}", ADDRESS)
    assert throttle.retry_after("alice", ADDRESS) == 0
    for _ in range(5):
        throttle.failed("alice", ADDRESS)
    assert throttle.retry_after("alice", ADDRESS) == 15


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"login_failures_per_address": -1}, "login_failures_per_address"),
        ({"access_log": "loud"}, "access_log is one of off, errors, all"),
        ({"log_max_bytes": 0}, "log_max_bytes must be more than 0"),
    ],
)
def test_bad_settings_are_named(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        ServerSettings(home=tmp_path, **changes)


def test_cli_serve_passes_the_limit_and_log_options(tmp_path, model_dirs, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    log_file = tmp_path / "log" / "medseg.log"
    r = CliRunner().invoke(
        cli_app,
        [
            "serve",
            "--model",
            str(model_dirs["ct_full"]),
            "--home",
            str(tmp_path / "h"),
            "--login-failures-per-address",
            "250",
            "--access-log",
            "all",
            "--log-file",
            str(log_file),
            "--log-max-mb",
            "2",
            "--log-backups",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    settings = seen["app"].state.settings
    assert seen["app"].state.throttle.limits["address"] == 250 and seen["access_log"] is False  # uvicorn's is off
    assert (settings.access_log, settings.log_file, settings.log_max_bytes, settings.log_backups) == (
        "all",
        log_file,
        2 * 2**20,
        3,
    )
    assert settings.job_process  # jobs in a worker process unless --job-thread
    r = CliRunner().invoke(cli_app, ["serve", "--home", str(tmp_path / "h2"), "--access-log", "loud"])
    assert r.exit_code == 2 and "access_log is one of off, errors, all" in r.output
    r = CliRunner().invoke(cli_app, ["serve", "--home", str(tmp_path / "h3"), "--login-failures-per-address", "-5"])
    assert r.exit_code == 2 and "login_failures_per_address must be 0 or more" in r.output


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


@pytest.mark.parametrize(
    "level, logged_ok, logged_error", [("off", False, False), ("errors", False, True), ("all", True, True)]
)
def test_access_log_levels(make_server, tmp_path, level, logged_ok, logged_error):
    log_file = tmp_path / "logs" / "medseg.log"
    server = make_server(access_log=level, log_file=log_file)
    h = server.user("alice")
    assert server.client.get("/api/studies", headers=h).status_code == 200
    assert server.client.get("/api/studies").status_code == 401
    lines = [line for line in _lines(log_file) if "medseg.server.access" in line]
    assert any("GET /api/studies 200" in line for line in lines) == logged_ok
    assert any("GET /api/studies 401" in line for line in lines) == logged_error
    token = h["Authorization"].split()[1]
    assert token not in log_file.read_text() if log_file.is_file() else True


def test_the_log_file_rotates_and_keeps_its_backups(make_server, tmp_path):
    log_file = tmp_path / "logs" / "medseg.log"
    server = make_server(access_log="errors", log_file=log_file, log_max_bytes=1000, log_backups=2)
    for k in range(60):  # about 80 bytes a line: several rotations
        assert server.client.get(f"/api/results/{k:016x}").status_code == 401
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["medseg.log", "medseg.log.1", "medseg.log.2"]
    assert all(p.stat().st_size <= 1000 for p in log_file.parent.iterdir())
    assert "GET /api/results/000000000000003b 401" in log_file.read_text()  # the latest line is in the live file


def test_server_messages_reach_the_log_file_too(make_server, tmp_path):
    log_file = tmp_path / "medseg.log"
    make_server(log_file=log_file)
    logging.getLogger("medseg.server").warning("a job went wrong")
    assert "a job went wrong" in log_file.read_text()
