"""Users, passwords and sessions.

Passwords are hashed with scrypt (memory-hard, in the standard library) and a random salt per user, and
compared in constant time; an unknown user name costs the same scrypt call, so response times do not say
which names exist. A session is a random token given to the browser as an HttpOnly, SameSite=Lax cookie
(scripts send it as ``Authorization: Bearer <token>``); the database keeps only its sha256 and an expiry, so
signing out or expiry ends it on the server, and a copy of the database holds no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request

from medseg.server.db import Database

COOKIE = "medseg_session"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_DUMMY_HASH: str | None = None


class AuthError(ValueError):
    """A user that cannot be created as asked (name taken or malformed, password too short)."""


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
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p),
                                dklen=len(hash_hex) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


def create_user(db: Database, username: str, password: str, *, is_admin: bool = False) -> User:
    if not _USERNAME.match(username or ""):
        raise AuthError(f"user name {username!r} is not allowed: 1-64 letters, digits and _ . @ -, "
                        "starting with a letter or digit")
    if len(password or "") < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
    try:
        return User.from_row(db.add_user(username, hash_password(password), is_admin))
    except sqlite3.IntegrityError as exc:
        raise AuthError(f"user {username!r} already exists") from exc


def authenticate(db: Database, username: str, password: str) -> User | None:
    global _DUMMY_HASH
    row = db.user_by_name(username or "")
    if row is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password("not a password")
        verify_password(password or "", _DUMMY_HASH)  # same cost as a real check
        return None
    return User.from_row(row) if verify_password(password or "", row["password_hash"]) else None


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
        raise HTTPException(status_code=401, detail="not signed in (or the session expired): sign in again",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


def admin_user(request: Request) -> User:
    user = current_user(request)
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="only an administrator may do this")
    return user
