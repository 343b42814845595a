"""Accounts after sign-in works: the sign-in back-off (429 + Retry-After, per account and per address),
what /api/health tells whom, password change and reset, and removing a user (API and ``medseg users``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medseg.cli import app as cli_app
from medseg.server import auth
from medseg.server.db import Database

PASSWORD = "correct horse battery"  # as in conftest.py
NEW_PASSWORD = "a new and longer one"


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def throttled(make_server):
    """A server that locks an account after 3 failures and an address after 6 (15 s, doubling, at most 60 s),
    on a clock the test moves."""
    server = make_server(
        login_failures_per_user=3,
        login_failures_per_address=6,
        login_backoff_s=15.0,
        login_backoff_max_s=60.0,
        login_window_s=900.0,
    )
    server.clock = server.app.state.throttle.clock = Clock()
    return server


def login(client: TestClient, name: str, password: str):
    return client.post("/api/login", json={"username": name, "password": password})


def count_scrypt(monkeypatch) -> list:
    calls = []
    original = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda *a: calls.append(1) or original(*a))
    return calls


def test_sign_in_backs_off_with_429_before_checking_the_password(throttled, monkeypatch):
    auth.create_user(throttled.db, "alice", PASSWORD)
    throttled.app.state.throttle.limits["address"] = 100  # this test is about the account
    c = throttled.client
    assert [login(c, "alice", "wrong password").status_code for _ in range(3)] == [401] * 3
    calls = count_scrypt(monkeypatch)
    r = login(c, "Alice", PASSWORD)  # the right password, any case of the name: still locked
    assert r.status_code == 429 and r.headers["retry-after"] == "15" and calls == []  # no scrypt while locked
    assert "too many failed sign-ins" in r.json()["detail"] and "\n" not in r.json()["detail"]
    throttled.clock.now += 16
    assert login(c, "alice", "wrong again").status_code == 401  # the 4th failure: twice as long
    assert login(c, "alice", PASSWORD).headers["retry-after"] == "30"
    throttled.clock.now += 31
    assert login(c, "alice", "wrong").status_code == 401
    throttled.clock.now += 61
    assert login(c, "alice", "wrong").status_code == 401
    assert login(c, "alice", PASSWORD).headers["retry-after"] == "60"  # 15 · 2^3 = 120, capped at 60
    throttled.clock.now += 61
    assert login(c, "alice", PASSWORD).status_code == 200  # a success resets the account's count...
    assert [login(c, "alice", "wrong").status_code for _ in range(3)] == [401] * 3  # ...so 3 failures again
    assert login(c, "alice", PASSWORD).status_code == 429


def test_an_unknown_name_counts_like_a_known_one(throttled, monkeypatch):
    auth.create_user(throttled.db, "alice", PASSWORD)
    calls = count_scrypt(monkeypatch)
    known = [login(throttled.client, "alice", "wrong password").status_code for _ in range(4)]
    unknown = [login(throttled.client, "nobody", "wrong password").status_code for _ in range(4)]
    assert known == unknown == [401, 401, 401, 429]
    assert len(calls) == 6  # three scrypt checks each: an unknown name is checked against a dummy hash


def test_sign_in_backs_off_per_address(throttled):
    auth.create_user(throttled.db, "alice", PASSWORD)
    for k in range(6):  # two failures each for three names: no account is locked, the address is
        assert login(throttled.client, f"user{k // 2}", "wrong password").status_code == 401
    r = login(throttled.client, "alice", PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "15"
    elsewhere = TestClient(throttled.app, client=("192.0.2.7", 40000))
    assert login(elsewhere, "alice", PASSWORD).status_code == 200


def test_throttle_window_and_what_a_success_resets():
    clock = Clock()
    t = auth.SignInThrottle(per_user=2, per_address=3, window=100, backoff=10, backoff_max=40, clock=clock)
    t.failed("bob", "a")
    clock.now += 101  # out of the window: forgotten
    t.failed("bob", "a")
    assert t.retry_after("bob", "b") == 0
    t.failed("bob", "a")
    assert t.retry_after("bob", "b") == 10 and t.retry_after("carol", "a") == 0
    t.succeeded("BOB")
    assert t.retry_after("bob", "b") == 0
    t.failed("carol", "a")  # the address's third failure: success of bob did not reset it
    assert t.retry_after("dave", "a") == 10
    off = auth.SignInThrottle(per_user=0, per_address=0, window=100, backoff=10, backoff_max=40, clock=clock)
    for _ in range(50):
        off.failed("bob", "a")
    assert off.retry_after("bob", "a") == 0


def test_throttle_memory_is_bounded():
    clock = Clock()
    t = auth.SignInThrottle(
        per_user=5, per_address=0, window=100, backoff=10, backoff_max=40, clock=clock, max_keys=100
    )
    for k in range(1000):
        t.failed(f"sprayed{k}", "a")
    assert t.key_count() <= 100
    assert t._memory.execute("SELECT COUNT(*) FROM sign_in_failures").fetchone()[0] <= 100  # rows bounded too
    t.failed("sprayed999", "a")  # the newest keys were kept
    assert t._memory.execute("SELECT COUNT(*) FROM sign_in_failures WHERE key = 'user:sprayed999'").fetchone()[0] == 2


def test_health_tells_counts_only_to_a_signed_in_caller(server):
    anonymous = server.client.get("/api/health")
    assert anonymous.status_code == 200 and set(anonymous.json()) == {"status", "version"}
    signed_in = server.client.get("/api/health", headers=server.user("alice")).json()
    assert signed_in["models"] == 3 and signed_in["jobs"] == {"queued": 0, "running": 0, "done": 0, "failed": 0}


def test_password_change_ends_the_other_sessions(server):
    here = server.user("alice")
    there = {"Authorization": f"Bearer {login(server.client, 'alice', PASSWORD).json()['token']}"}
    server.client.cookies.clear()
    change = server.client.post
    r = change("/api/me/password", headers=here, json={"current_password": "wrong one", "new_password": NEW_PASSWORD})
    assert r.status_code == 403 and "current password is wrong" in r.json()["detail"]
    r = change("/api/me/password", headers=here, json={"current_password": PASSWORD, "new_password": "short"})
    assert r.status_code == 400 and "at least 8" in r.json()["detail"]
    assert server.client.get("/api/me", headers=there).status_code == 200  # nothing changed yet
    r = change("/api/me/password", headers=here, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 204
    assert server.client.get("/api/me", headers=here).status_code == 200  # this session stays
    assert server.client.get("/api/me", headers=there).status_code == 401  # the other one ended
    assert login(server.client, "alice", PASSWORD).status_code == 401
    assert login(server.client, "alice", NEW_PASSWORD).status_code == 200
    server.client.cookies.clear()
    anonymous = server.client.post("/api/me/password", json={"current_password": "x", "new_password": "y"})
    assert anonymous.status_code == 401


def test_wrong_current_passwords_count_as_failed_sign_ins(make_server):
    server = make_server(login_failures_per_user=2)
    h = server.user("alice")
    body = {"current_password": "wrong one", "new_password": NEW_PASSWORD}
    statuses = [server.client.post("/api/me/password", headers=h, json=body).status_code for _ in range(3)]
    assert statuses == [403, 403, 429]


def test_admin_resets_a_password_and_lifts_the_lock(make_server):
    server = make_server(login_failures_per_user=2)
    admin, alice = server.user("root", admin=True), server.user("alice")
    assert [login(server.client, "alice", "wrong").status_code for _ in range(3)] == [401, 401, 429]
    reset = server.client.put
    assert reset("/api/users/alice/password", headers=alice, json={"password": NEW_PASSWORD}).status_code == 403
    assert reset("/api/users/nobody/password", headers=admin, json={"password": NEW_PASSWORD}).status_code == 404
    assert reset("/api/users/alice/password", headers=admin, json={"password": "short"}).status_code == 400
    assert reset("/api/users/alice/password", headers=admin, json={"password": NEW_PASSWORD}).status_code == 204
    assert server.client.get("/api/me", headers=alice).status_code == 401  # every session of alice ended
    assert server.client.get("/api/me", headers=admin).status_code == 200
    assert login(server.client, "alice", NEW_PASSWORD).status_code == 200  # and the lock is gone


def test_admin_removes_a_user_with_their_studies(server, phantom):
    admin, alice, bob = server.user("root", admin=True), server.user("alice"), server.user("bob")
    study = server.upload(alice, phantom["nifti"]).json()["id"]
    kept = server.upload(bob, phantom["nifti"]).json()["id"]
    server.run_jobs()
    assert (server.settings.studies_dir / study / "results").is_dir()
    assert server.client.delete("/api/users/alice", headers=bob).status_code == 403
    assert server.client.delete("/api/users/alice", headers=admin).status_code == 204
    assert not (server.settings.studies_dir / study).exists() and (server.settings.studies_dir / kept).is_dir()
    assert server.db.all("SELECT id FROM studies") == [{"id": kept}]
    assert len(server.db.all("SELECT id FROM results")) == 1
    assert server.client.get("/api/me", headers=alice).status_code == 401  # the sessions went with the user
    assert server.client.delete("/api/users/alice", headers=admin).status_code == 404
    assert list(server.settings.tmp_dir.iterdir()) == []


def test_the_last_administrator_cannot_be_removed(server):
    root = server.user("root", admin=True)
    r = server.client.delete("/api/users/root", headers=root)
    assert r.status_code == 409 and "last administrator" in r.json()["detail"]
    other = server.user("second", admin=True)
    assert server.client.delete("/api/users/root", headers=other).status_code == 204
    assert server.client.delete("/api/users/second", headers=other).status_code == 409


def run(home, *args: str, stdin: str | None = None):
    return CliRunner().invoke(cli_app, ["users", *args, "--home", str(home)], input=stdin)


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    return line


def test_cli_users_passwd(tmp_path):
    home = tmp_path / "home"
    assert run(home, "add", "alice", "--password-stdin", stdin=PASSWORD + "\n").exit_code == 0
    db = Database(home / "server" / "medseg.sqlite3")
    token, _ = auth.new_session(db, auth.authenticate(db, "alice", PASSWORD), 1)
    r = run(home, "passwd", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert r.exit_code == 0 and "password of alice changed" in r.output
    assert auth.authenticate(db, "alice", NEW_PASSWORD) and not auth.authenticate(db, "alice", PASSWORD)
    assert auth.user_for_token(db, token) is None  # the session ended
    r = run(home, "passwd", "alice", stdin=PASSWORD + "\n" + PASSWORD + "\n")  # prompted twice
    assert r.exit_code == 0 and auth.authenticate(db, "alice", PASSWORD)
    assert "no user 'bob'" in one_line_error(run(home, "passwd", "bob", "--password-stdin", stdin=PASSWORD + "\n"))
    assert "at least 8" in one_line_error(run(home, "passwd", "alice", "--password-stdin", stdin="short\n"))


def test_cli_users_remove_takes_the_studies_on_disk(server, phantom):
    home = server.settings.home
    server.user("root", admin=True)
    alice = server.user("alice")
    study = server.upload(alice, phantom["nifti"]).json()["id"]
    r = run(home, "remove", "alice", stdin="n\n")  # asked, and declined
    assert r.exit_code == 1 and (server.settings.studies_dir / study).is_dir()
    r = run(home, "remove", "alice", "--yes")
    assert r.exit_code == 0, r.output
    [line] = r.output.strip().splitlines()
    assert line.startswith("removed user alice and 1 study")
    assert not (server.settings.studies_dir / study).exists() and server.db.all("SELECT id FROM studies") == []
    assert "no user 'alice'" in one_line_error(run(home, "remove", "alice", "--yes"))
    assert "last administrator" in one_line_error(run(home, "remove", "root", "--yes"))
