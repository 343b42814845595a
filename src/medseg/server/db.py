"""The server's SQLite database: users, sessions, studies and results (one result = one segmentation job).

Why SQLite: the server runs on one machine (the thesis' setting), and SQLite needs no administration,
survives a kill (WAL journal) and keeps job state across restarts, which a queue in memory would lose. Several
processes share the file safely — the web workers of ``medseg serve --web-workers``, the job worker and the
``medseg users`` commands: the WAL journal lets readers go on while one writes, each call opens its own
short-lived connection (no connection is shared between threads or processes), and a busy timeout
(:data:`BUSY_TIMEOUT_S`) lets a writer wait for another instead of failing. A read-then-write that must not
interleave with another process's starts with ``BEGIN IMMEDIATE`` (``connect(immediate=True)``).

Every query that reads a study or a result takes the owner's user id, so a route cannot forget the
ownership check: another user's study is simply not found (the API answers 404 and leaks nothing).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,          -- scrypt$n$r$p$salt_hex$hash_hex (salt per user)
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,          -- sha256 of the token: a stolen database holds no usable token
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('2d', '3d')),
    input_format TEXT NOT NULL,           -- png | tiff | nifti | hdf5 | dicom
    input_files TEXT NOT NULL,            -- JSON list of names under the study's input/
    input_sha256 TEXT NOT NULL,
    input_bytes INTEGER NOT NULL,
    reference_file TEXT,                  -- name under reference/, or NULL
    shape TEXT NOT NULL,                  -- JSON [D, H, W] (2D: [1, H, W])
    spacing TEXT,                         -- JSON [z, y, x] mm, or NULL when unknown (2D images)
    window TEXT NOT NULL,                 -- JSON {kind, low, high}: how the grey slices are drawn
    modality TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_user ON studies(user_id, created_at);
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    study_id TEXT NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,          -- architecture + short sha256 of the weights
    model_demo INTEGER NOT NULL DEFAULT 0,
    input_sha256 TEXT NOT NULL,           -- the study's, copied: a result names exactly what it was made from
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,  -- times a worker started it (restart recovery resumes only once)
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    n_slices INTEGER,
    summary TEXT                          -- JSON, once done
);
CREATE INDEX IF NOT EXISTS results_study ON results(study_id, created_at);
CREATE INDEX IF NOT EXISTS results_status ON results(status, created_at);
-- failed sign-ins (auth.SignInThrottle), shared by every web worker and kept across restarts
CREATE TABLE IF NOT EXISTS sign_in_keys (
    key TEXT PRIMARY KEY,                 -- 'user:<lower-case name>' or 'address:<client address>'
    last_failure REAL NOT NULL,           -- wall clock (time.time), the same in every process
    locked_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sign_in_keys_last ON sign_in_keys(last_failure);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    key TEXT NOT NULL,                    -- a sign_in_keys key; its rows go with it
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_failures_key ON sign_in_failures(key, at);
"""
BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's write to end before failing

_JSON_COLUMNS = {"input_files", "shape", "spacing", "window", "summary"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    out = dict(row)
    for key in _JSON_COLUMNS & out.keys():
        if out[key] is not None:
            out[key] = json.loads(out[key])
    return out


class Database:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)

    @contextmanager
    def connect(self, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one unit of work: committed on success, rolled back on an exception.
        ``immediate``: the unit takes the write lock first (``BEGIN IMMEDIATE``), so what it reads cannot be
        changed by another process before it writes."""
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        try:
            with con:
                if immediate:
                    con.execute("BEGIN IMMEDIATE")
                yield con
        finally:
            con.close()

    def one(self, sql: str, params: tuple = ()) -> dict | None:
        with self.connect() as con:
            return _row(con.execute(sql, params).fetchone())

    def all(self, sql: str, params: tuple = ()) -> list[dict]:
        with self.connect() as con:
            return [_row(r) for r in con.execute(sql, params).fetchall()]

    def execute(self, sql: str, params: tuple = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self.connect() as con:
            return con.execute(sql, params).rowcount

    # ------------------------------------------------------------------------------------- users

    def add_user(self, username: str, password_hash: str, is_admin: bool) -> dict:
        with self.connect() as con:
            cur = con.execute(
                "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?)",
                (username, password_hash, int(is_admin), now_iso()),
            )
            return _row(con.execute("SELECT * FROM users WHERE id = ?", (cur.lastrowid,)).fetchone())

    def user_by_name(self, username: str) -> dict | None:
        return self.one("SELECT * FROM users WHERE username = ?", (username,))

    def users(self) -> list[dict]:
        return self.all(
            "SELECT u.*, (SELECT COUNT(*) FROM studies s WHERE s.user_id = u.id) AS n_studies "
            "FROM users u ORDER BY u.username"
        )

    def set_password_hash(self, user_id: int, password_hash: str, keep_session: str | None = None) -> None:
        """New hash and, in the same transaction, the end of every session of the user but ``keep_session``
        (a token hash): whoever knew the old password is signed out everywhere."""
        with self.connect() as con:
            con.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            con.execute("DELETE FROM sessions WHERE user_id = ? AND token_hash IS NOT ?", (user_id, keep_session))

    def delete_user(self, user_id: int) -> list[str] | None:
        """Remove the user with their sessions, studies and results (the rows; the caller removes the study
        folders, whose ids this returns). None, and nothing removed, when the user is the last administrator:
        the check and the delete are one statement, so two removals at once cannot leave none."""
        with self.connect(immediate=True) as con:  # no study added between the listing and the delete
            ids = [r["id"] for r in con.execute("SELECT id FROM studies WHERE user_id = ?", (user_id,))]
            removed = con.execute(
                "DELETE FROM users WHERE id = ? AND (is_admin = 0 OR "
                "(SELECT COUNT(*) FROM users WHERE is_admin = 1) > 1)",
                (user_id,),
            ).rowcount
            return ids if removed else None

    # ------------------------------------------------------------------------------------- sessions

    def add_session(self, token_hash: str, user_id: int, created: float, expires: float) -> None:
        with self.connect() as con:
            con.execute("DELETE FROM sessions WHERE expires_at < ?", (created,))
            con.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, created, expires),
            )

    def session_user(self, token_hash: str, now: float) -> dict | None:
        return self.one(
            "SELECT u.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?",
            (token_hash, now),
        )

    def delete_session(self, token_hash: str) -> None:
        self.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    # ------------------------------------------------------------------------------------- studies

    def add_study(self, study: dict[str, Any], result: dict[str, Any]) -> None:
        """The study and its first (queued) result in one transaction: both or neither."""
        with self.connect() as con:
            _insert(con, "studies", study)
            _insert(con, "results", result)

    def study(self, study_id: str, user_id: int) -> dict | None:
        return self.one("SELECT * FROM studies WHERE id = ? AND user_id = ?", (study_id, user_id))

    def study_any_owner(self, study_id: str) -> dict | None:
        """For the worker only, which acts for whoever queued the job."""
        return self.one("SELECT * FROM studies WHERE id = ?", (study_id,))

    def studies(self, user_id: int) -> list[dict]:
        return self.all("SELECT * FROM studies WHERE user_id = ? ORDER BY created_at DESC, id", (user_id,))

    def study_ids(self) -> set[str]:
        return {r["id"] for r in self.all("SELECT id FROM studies")}

    def delete_study(self, study_id: str, user_id: int) -> bool:
        return self.execute("DELETE FROM studies WHERE id = ? AND user_id = ?", (study_id, user_id)) > 0

    # ------------------------------------------------------------------------------------- results

    def add_result(self, result: dict[str, Any]) -> None:
        with self.connect() as con:
            _insert(con, "results", result)

    def results_of(self, study_id: str) -> list[dict]:
        return self.all("SELECT * FROM results WHERE study_id = ? ORDER BY created_at, id", (study_id,))

    def result(self, result_id: str, user_id: int) -> dict | None:
        """The result with its study's columns (prefixed ``study_``), only if ``user_id`` owns the study."""
        return self.one(
            "SELECT r.*, s.kind AS study_kind, s.input_format AS study_input_format, s.name AS study_name, "
            "s.reference_file AS study_reference_file, s.user_id AS study_user_id "
            "FROM results r JOIN studies s ON s.id = r.study_id WHERE r.id = ? AND s.user_id = ?",
            (result_id, user_id),
        )

    def result_any_owner(self, result_id: str) -> dict | None:
        return self.one("SELECT * FROM results WHERE id = ?", (result_id,))

    def claim_next(self) -> dict | None:
        """Atomically take the oldest queued job: it becomes ``running`` with one more attempt."""
        with self.connect() as con:
            row = con.execute(
                "UPDATE results SET status = 'running', attempts = attempts + 1, started_at = ?, progress = 0, "
                "error = NULL WHERE id = (SELECT id FROM results WHERE status = 'queued' "
                "ORDER BY created_at, id LIMIT 1) RETURNING *",
                (now_iso(),),
            ).fetchone()
            return _row(row)

    def set_progress(self, result_id: str, progress: float) -> None:
        self.execute(
            "UPDATE results SET progress = ? WHERE id = ? AND status = 'running'", (float(progress), result_id)
        )

    def finish(self, result_id: str, n_slices: int, summary: dict) -> bool:
        return (
            self.execute(
                "UPDATE results SET status = 'done', progress = 1, finished_at = ?, n_slices = ?, summary = ?, "
                "error = NULL WHERE id = ?",
                (now_iso(), n_slices, json.dumps(summary), result_id),
            )
            > 0
        )

    def fail(self, result_id: str, message: str) -> None:
        self.execute(
            "UPDATE results SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
            (now_iso(), message, result_id),
        )

    def requeue(self, result_id: str, note: str | None = None) -> None:
        self.execute("UPDATE results SET status = 'queued', progress = 0, error = ? WHERE id = ?", (note, result_id))

    def running(self) -> list[dict]:
        return self.all("SELECT * FROM results WHERE status = 'running'")

    def queue_counts(self) -> dict[str, int]:
        rows = self.all("SELECT status, COUNT(*) AS n FROM results GROUP BY status")
        counts = {"queued": 0, "running": 0, "done": 0, "failed": 0}
        counts.update({r["status"]: r["n"] for r in rows})
        return counts


def _insert(con: sqlite3.Connection, table: str, values: dict[str, Any]) -> None:
    cols = list(values)
    data = [json.dumps(values[c]) if c in _JSON_COLUMNS and values[c] is not None else values[c] for c in cols]
    con.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", data)
