"""Users, sessions and the sign-in flow: scrypt hashes, bearer tokens and cookies, expiry, admin-only routes,
the page's redirect to /login, and the ``medseg users`` / ``medseg serve`` commands."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from medseg.cli import app as cli_app
from medseg.server import auth
from medseg.server.db import Database

PASSWORD = "correct horse battery"  # as in conftest.py


def test_password_hash_is_salted_scrypt_and_verifies():
    a, b = auth.hash_password("s3cret-words"), auth.hash_password("s3cret-words")
    assert a != b and a.startswith("scrypt$")  # a salt per hash
    assert auth.verify_password("s3cret-words", a) and not auth.verify_password("s3cret-wordz", a)
    assert not auth.verify_password("anything", "not-a-hash")


def test_create_user_refuses_bad_names_short_passwords_and_duplicates(server):
    auth.create_user(server.db, "alice", PASSWORD)
    for name, password, words in [
        ("alice", PASSWORD, "already exists"),
        ("ALICE", PASSWORD, "already exists"),
        ("../x", PASSWORD, "not allowed"),
        ("bob", "short", "at least 8"),
    ]:
        with pytest.raises(auth.AuthError, match=words):
            auth.create_user(server.db, name, password)


def test_login_gives_token_and_cookie_and_logout_ends_the_session(server):
    auth.create_user(server.db, "alice", PASSWORD)
    c = server.client
    assert c.post("/api/login", json={"username": "alice", "password": "wrong password"}).status_code == 401
    assert c.post("/api/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    r = c.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == {"id": body["user"]["id"], "username": "alice", "is_admin": False}
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("samesite", "SameSite") and "Path=/" in cookie
    assert c.get("/api/me").json()["username"] == "alice"  # the cookie
    token = body["token"]
    c.cookies.clear()
    assert c.get("/api/me").status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/me", headers=bearer).status_code == 200  # the same token as a bearer token
    # the database holds only a hash of the token
    rows = server.db.all("SELECT token_hash FROM sessions")
    assert rows and all(token not in r["token_hash"] for r in rows)
    assert c.post("/api/logout", headers=bearer).status_code == 204
    assert c.get("/api/me", headers=bearer).status_code == 401


def test_expired_session_is_refused(server):
    headers = server.user("alice")
    server.db.execute("UPDATE sessions SET expires_at = ?", (time.time() - 1,))
    assert server.client.get("/api/me", headers=headers).status_code == 401


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/me"),
        ("get", "/api/models"),
        ("get", "/api/studies"),
        ("post", "/api/studies"),
        ("get", "/api/studies/abc"),
        ("delete", "/api/studies/abc"),
        ("post", "/api/studies/abc/rerun"),
        ("get", "/api/results/abc"),
        ("get", "/api/results/abc/slices/0/image.png"),
        ("get", "/api/results/abc/download/nifti"),
        ("get", "/api/users"),
        ("post", "/api/users"),
    ],
)
def test_every_api_route_needs_sign_in(server, method, path):
    assert getattr(server.client, method)(path).status_code == 401


def test_admin_creates_users_through_the_api(server):
    admin, plain = server.user("root", admin=True), server.user("alice")
    new = {"username": "carol", "password": PASSWORD}
    assert server.client.post("/api/users", json=new, headers=plain).status_code == 403
    assert server.client.get("/api/users", headers=plain).status_code == 403
    r = server.client.post("/api/users", json=new, headers=admin)
    assert r.status_code == 201 and r.json()["username"] == "carol" and not r.json()["is_admin"]
    assert server.client.post("/api/users", json=new, headers=admin).status_code == 409
    assert (
        server.client.post("/api/users", json={"username": "dave", "password": "x"}, headers=admin).status_code == 400
    )
    assert {u["username"] for u in server.client.get("/api/users", headers=admin).json()} == {"root", "alice", "carol"}
    assert server.client.post("/api/login", json=new).status_code == 200


def test_page_redirects_to_login_until_signed_in(server):
    auth.create_user(server.db, "alice", PASSWORD)
    c = server.client
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    login = c.get("/login")
    assert login.status_code == 200 and 'id="login-button"' in login.text
    c.post("/api/login", json={"username": "alice", "password": PASSWORD})
    page = c.get("/", follow_redirects=False)
    assert page.status_code == 200 and 'id="upload-file"' in page.text
    assert c.get("/login", follow_redirects=False).status_code == 303  # signed in: to the main page
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_cross_site_post_is_refused(server):
    headers = server.user("alice")
    r = server.client.post("/api/logout", headers={**headers, "Origin": "https://evil.example"})
    assert r.status_code == 403
    assert server.client.get("/api/me", headers=headers).status_code == 200


def test_cli_users_add_and_list(tmp_path):
    runner = CliRunner()
    home = tmp_path / "home"
    r = runner.invoke(
        cli_app, ["users", "add", "alice", "--admin", "--password-stdin", "--home", str(home)], input=PASSWORD + "\n"
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["users", "add", "bob", "--home", str(home)], input="longpassword\nlongpassword\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["users", "add", "bob", "--password-stdin", "--home", str(home)], input=PASSWORD + "\n")
    assert r.exit_code == 2 and "already exists" in r.output
    r = runner.invoke(cli_app, ["users", "list", "--home", str(home)])
    assert r.exit_code == 0 and "alice" in r.output and "bob" in r.output
    db = Database(home / "server" / "medseg.sqlite3")
    assert auth.authenticate(db, "alice", PASSWORD).is_admin
    assert auth.authenticate(db, "bob", "longpassword") is not None


def test_cli_serve_builds_the_app_and_runs_uvicorn(tmp_path, model_dirs, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: seen.update(app=app, host=host, port=port))
    r = CliRunner().invoke(
        cli_app,
        [
            "serve",
            "--model",
            str(model_dirs["ct_full"]),
            "--model",
            str(model_dirs["ct_empty"]),
            "--home",
            str(tmp_path / "h"),
            "--port",
            "8123",
        ],
    )
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert set(seen["app"].state.registry.entries) == {"ct_full", "phantom_ct_empty"}
    assert "not a clinical model" in r.output and (tmp_path / "h" / "server" / "medseg.sqlite3").is_file()
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path / "nothing"), "--home", str(tmp_path / "h")])
    assert r.exit_code == 2 and "no trained model here" in r.output


def test_one_server_per_home(tmp_path):
    from medseg.errors import MedsegError
    from medseg.server.app import lock_home
    from medseg.server.settings import ServerSettings

    settings = ServerSettings(home=tmp_path / "h")
    held = lock_home(settings)
    with pytest.raises(MedsegError, match="another medseg server"):
        lock_home(settings)
    held.close()
    lock_home(settings).close()
