"""Users, passwords and sessions.

Passwords are hashed with scrypt (memory-hard, in the standard library) and a random salt per user, and
compared in constant time; an unknown user name costs the same scrypt call, so response times do not say
which names exist, and failed sign-ins back off (:class:`SignInThrottle`: 429 with ``Retry-After``). A
session is a random token given to the browser as an HttpOnly, SameSite=Lax cookie (scripts send it as
``Authorization: Bearer <token>``); the database keeps only its sha256 and an expiry, so signing out, expiry,
a password change or the user's removal ends it on the server, and a copy of the database holds no usable
token.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import HTTPException, Request

from medseg.errors import MedsegError
from medseg.server.db import SCHEMA, Database

COOKIE = "medseg_session"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_DUMMY_HASH: str | None = None


class AuthError(MedsegError, ValueError):
    """A user that cannot be created or changed as asked; ``status`` is the API's answer (400: malformed
    name, password too short)."""

    status = 400


class UnknownUser(AuthError):
    status = 404


class AuthConflict(AuthError):
    """The name is taken, or the change would leave the server without an administrator."""

    status = 409


@contextmanager
def as_http() -> Iterator[None]:
    """For the API: an :class:`AuthError` raised within becomes the answer its ``status`` names."""
    try:
        yield
    except AuthError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_admin: bool

    @classmethod
    def from_row(cls, row: dict) -> User:
        return cls(int(row["id"]), row["username"], bool(row["is_admin"]))

    def public(self) -> dict:
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check against a ``hash_password`` string (its own n, r, p, so they can be raised later)."""
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), dklen=len(hash_hex) // 2
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


def _check_password(password: str) -> None:
    """The one rule for every new password (create, change, reset)."""
    if len(password or "") < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")


def create_user(db: Database, username: str, password: str, *, is_admin: bool = False) -> User:
    if not _USERNAME.match(username or ""):
        raise AuthError(
            f"user name {username!r} is not allowed: 1-64 letters, digits and _ . @ -, starting with a letter or digit"
        )
    _check_password(password)
    try:
        return User.from_row(db.add_user(username, hash_password(password), is_admin))
    except sqlite3.IntegrityError as exc:
        raise AuthConflict(f"user {username!r} already exists") from exc


def user_named(db: Database, username: str) -> dict:
    """The user's row, or :class:`UnknownUser`."""
    row = db.user_by_name(username or "")
    if row is None:
        raise UnknownUser(f"no user {username!r}")
    return row


def authenticate(db: Database, username: str, password: str) -> User | None:
    global _DUMMY_HASH
    row = db.user_by_name(username or "")
    if row is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password("not a password")
        verify_password(password or "", _DUMMY_HASH)  # same cost as a real check
        return None
    return User.from_row(row) if verify_password(password or "", row["password_hash"]) else None


def authenticate_throttled(
    db: Database, throttle: SignInThrottle, username: str, password: str, address: str | None
) -> User | None:
    """:func:`authenticate` behind ``throttle``: HTTP 429 with ``Retry-After`` while the account or the
    address is locked (asked first: no scrypt call, no answer about the password); a failure is counted,
    a success clears the account's failures."""
    wait = throttle.retry_after(username, address)
    if wait:
        raise HTTPException(
            status_code=429,
            headers={"Retry-After": str(wait)},
            detail=f"too many failed sign-ins for this account or from this address: try again in {wait} s",
        )
    user = authenticate(db, username, password)
    if user is None:
        throttle.failed(username, address)
    else:
        throttle.succeeded(username)
    return user


def set_password(db: Database, username: str, password: str, *, keep_token: str | None = None) -> User:
    """Give ``username`` a new password (the same rule as :func:`create_user`) and end all their sessions
    except ``keep_token``'s (the one that asked, when users change their own)."""
    _check_password(password)
    row = user_named(db, username)
    db.set_password_hash(row["id"], hash_password(password), _token_hash(keep_token) if keep_token else None)
    return User.from_row(row)


def remove_user(db: Database, username: str) -> tuple[User, list[str]]:
    """Delete the user's rows (sessions, studies, results); returns the user and the ids of their studies,
    whose folders the caller removes. The last administrator cannot be removed, so the server is never
    left without anyone who can manage it."""
    row = user_named(db, username)
    study_ids = db.delete_user(row["id"])
    if study_ids is None:
        raise AuthConflict(
            f"{row['username']!r} is the last administrator; make another one first (medseg users add NAME --admin)"
        )
    return User.from_row(row), study_ids


class SignInThrottle:
    """Back-off for failed sign-ins, per account name and per client address.

    Each key keeps the times of its failures within a sliding window. From the ``limit``-th failure on the
    key is locked: for ``backoff`` seconds, doubling with every further failure, capped at ``backoff_max``.
    The route asks :meth:`retry_after` *before* checking the password, so a locked account costs no scrypt
    call and answers 429 whatever the password: the lock cannot be used to test passwords. Unknown names
    count like real ones (nothing tells which exist). A success clears the account's failures, not the
    address's: an attacker with one valid account must not be able to reset the address counter with it.

    The failures and locks are rows of the server's database (``sign_in_keys``, ``sign_in_failures``), so
    every web worker of ``medseg serve --web-workers`` counts the same attempts and a restart forgets
    nothing: otherwise N workers would allow N times the attempts, and a restart would reset them. Recording
    a failure is one ``BEGIN IMMEDIATE`` transaction (count, lock), so two workers cannot both see the
    count below the limit. Times are wall-clock (``time.time``), the one clock all processes and restarts
    share. Without ``db`` (tests, a lone process) the rows live in a private in-memory database. Behind a
    reverse proxy every client has the proxy's address: raise the per-address limit there (0 switches it
    off) rather than trusting a forwarded header.
    """

    def __init__(
        self,
        per_user: int,
        per_address: int,
        window: float,
        backoff: float,
        backoff_max: float,
        clock: Callable[[], float] = time.time,
        max_keys: int = 100_000,
        *,
        db: Database | None = None,
    ):
        self.limits = {"user": per_user, "address": per_address}
        self.window, self.backoff, self.backoff_max = window, backoff, backoff_max
        self.clock, self.max_keys, self.db = clock, max_keys, db
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        if db is None:
            self._memory = sqlite3.connect(":memory:", check_same_thread=False)
            self._memory.executescript(SCHEMA)

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One unit of work on the rows, holding the write lock from its start when it ``write``s (the
        in-memory database is one connection of this process: the thread lock serialises it)."""
        if self.db is not None:
            with self.db.connect(immediate=write) as con:
                yield con
        else:
            with self._lock, self._memory:
                yield self._memory

    @staticmethod
    def _keys(username: str, address: str | None) -> dict[str, str]:
        """Kind → key; names are case-insensitive like the users table, and cut so a long one costs nothing."""
        return {"user": _user_key(username), "address": f"address:{address or '?'}"}

    def retry_after(self, username: str, address: str | None) -> int:
        """Whole seconds until a sign-in as ``username`` from ``address`` may be tried again (0: now)."""
        now = self.clock()
        keys = tuple(self._keys(username, address).values())
        with self._transaction(write=False) as con:
            until = con.execute("SELECT MAX(locked_until) FROM sign_in_keys WHERE key IN (?, ?)", keys).fetchone()[0]
        return math.ceil(until - now) if until is not None and until > now else 0

    def failed(self, username: str, address: str | None) -> None:
        now = self.clock()
        with self._transaction() as con:
            if self.key_count(con) >= self.max_keys:
                self._forget_old(con, now)
            for kind, key in self._keys(username, address).items():
                limit = self.limits[kind]
                if limit <= 0:
                    continue
                con.execute("DELETE FROM sign_in_failures WHERE key = ? AND at <= ?", (key, now - self.window))
                con.execute("INSERT INTO sign_in_failures (key, at) VALUES (?, ?)", (key, now))
                count = con.execute("SELECT COUNT(*) FROM sign_in_failures WHERE key = ?", (key,)).fetchone()[0]
                until = now + min(self.backoff * 2 ** (count - limit), self.backoff_max) if count >= limit else 0.0
                con.execute(
                    "INSERT INTO sign_in_keys (key, last_failure, locked_until) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET last_failure = excluded.last_failure, "
                    "locked_until = MAX(locked_until, excluded.locked_until)",
                    (key, now, until),
                )

    def succeeded(self, username: str) -> None:
        """The account's failures and lock are forgotten (an admin's password reset calls this too)."""
        with self._transaction() as con:
            _forget_key(con, _user_key(username))

    def key_count(self, con: sqlite3.Connection | None = None) -> int:
        """Keys (accounts and addresses) with failures on record: at most about ``max_keys``."""
        if con is not None:
            return con.execute("SELECT COUNT(*) FROM sign_in_keys").fetchone()[0]
        with self._transaction(write=False) as con:
            return self.key_count(con)

    def _forget_old(self, con: sqlite3.Connection, now: float) -> None:
        """Bound the rows a spray of made-up names can add: keys with no recent failure and no lock go first,
        then, if that is not enough, the keys whose last failure is oldest (their back-off is lost: a bounded
        server beats a full one)."""
        con.execute("DELETE FROM sign_in_keys WHERE last_failure <= ? AND locked_until <= ?", (now - self.window, now))
        excess = self.key_count(con) - self.max_keys // 2
        if excess > 0:
            con.execute(
                "DELETE FROM sign_in_keys WHERE key IN (SELECT key FROM sign_in_keys ORDER BY last_failure LIMIT ?)",
                (excess,),
            )
        con.execute(
            "DELETE FROM sign_in_failures WHERE at <= ? OR key NOT IN (SELECT key FROM sign_in_keys)",
            (now - self.window,),
        )


def _user_key(username: str) -> str:
    return "user:" + (username or "").lower()[:128]


def _forget_key(con: sqlite3.Connection, key: str) -> None:
    con.execute("DELETE FROM sign_in_failures WHERE key = ?", (key,))
    con.execute("DELETE FROM sign_in_keys WHERE key = ?", (key,))


def lift_sign_in_backoff(db: Database, username: str) -> None:
    """Forget the account's failed sign-ins and lock in ``db`` — for every web worker of a running server
    too (``medseg users passwd`` after a reset)."""
    with db.connect(immediate=True) as con:
        _forget_key(con, _user_key(username))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(db: Database, user: User, hours: float) -> tuple[str, int]:
    """(token, lifetime in seconds)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    lifetime = int(hours * 3600)
    db.add_session(_token_hash(token), user.id, now, now + lifetime)
    return token, lifetime


def end_session(db: Database, token: str) -> None:
    db.delete_session(_token_hash(token))


def request_token(request: Request) -> str | None:
    """The bearer token if one is sent, else the session cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE) or None


def user_for_token(db: Database, token: str | None) -> User | None:
    if not token:
        return None
    row = db.session_user(_token_hash(token), time.time())
    return User.from_row(row) if row else None


def current_user(request: Request) -> User:
    """FastAPI dependency: the signed-in user, or 401."""
    user = user_for_token(request.app.state.db, request_token(request))
    if user is None:
        raise HTTPException(
            status_code=401,
            detail="not signed in (or the session expired): sign in again",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


def admin_user(request: Request) -> User:
    user = current_user(request)
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="only an administrator may do this")
    return user
