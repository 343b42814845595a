"""Signing in and out, one's own account, and the users (administrators)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from medseg.server import auth, storage
from medseg.server.auth import User, admin_user, current_user
from medseg.server.db import Database
from medseg.server.routes.deps import Db, Settings, Throttle, client_address
from medseg.server.schemas import LoginBody, LoginOut, NewUserBody, PasswordBody, PasswordChangeBody, UserOut

router = APIRouter(tags=["auth"])


def set_password(db: Database, username: str, password: str, request: Request) -> None:
    with auth.as_http():
        auth.set_password(db, username, password, keep_token=auth.request_token(request))


@router.post(
    "/api/login",
    response_model=LoginOut,
    responses={429: {"description": "Too many failed sign-ins: wait the Retry-After seconds"}},
)
def login(body: LoginBody, request: Request, response: Response, db: Db, settings: Settings, throttle: Throttle):
    user = auth.authenticate_throttled(db, throttle, body.username, body.password, client_address(request))
    if user is None:
        raise HTTPException(401, "wrong user name or password")
    token, lifetime = auth.new_session(db, user, settings.session_hours)
    response.set_cookie(
        auth.COOKIE, token, max_age=lifetime, httponly=True, samesite="lax", secure=settings.cookie_secure, path="/"
    )
    return {"token": token, "user": user.public(), "expires_in": lifetime}


@router.post("/api/logout", status_code=204)
def logout(request: Request, db: Db):
    token = auth.request_token(request)
    if token:
        auth.end_session(db, token)
    response = Response(status_code=204)
    response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get("/api/me", response_model=UserOut)
def me(user: User = Depends(current_user)):
    return user.public()


@router.post("/api/me/password", status_code=204)
def change_password(
    body: PasswordChangeBody, request: Request, db: Db, throttle: Throttle, user: User = Depends(current_user)
):
    """Change your own password; your other sessions end (this one stays). A wrong current password is
    403 and counts as a failed sign-in."""
    if auth.authenticate_throttled(db, throttle, user.username, body.current_password, client_address(request)) is None:
        raise HTTPException(403, "the current password is wrong")
    set_password(db, user.username, body.new_password, request)
    return Response(status_code=204)


@router.get("/api/users", response_model=list[UserOut])
def list_users(db: Db, _: User = Depends(admin_user)):
    return [{"id": u["id"], "username": u["username"], "is_admin": bool(u["is_admin"])} for u in db.users()]


@router.post("/api/users", response_model=UserOut, status_code=201)
def add_user(body: NewUserBody, db: Db, _: User = Depends(admin_user)):
    with auth.as_http():
        return auth.create_user(db, body.username, body.password, is_admin=body.is_admin).public()


@router.put("/api/users/{username}/password", status_code=204)
def reset_password(
    username: str, body: PasswordBody, request: Request, db: Db, throttle: Throttle, _: User = Depends(admin_user)
):
    """Set a user's password (administrators): all of that user's sessions end, and a sign-in lock on the
    account is lifted."""
    set_password(db, username, body.password, request)
    throttle.succeeded(username)
    return Response(status_code=204)


@router.delete("/api/users/{username}", status_code=204)
def remove_user(username: str, db: Db, settings: Settings, _: User = Depends(admin_user)):
    """Remove a user with their sessions, studies and results, files included (administrators; 409 for
    the last administrator)."""
    with auth.as_http():
        storage.remove_user(db, settings, username)
    return Response(status_code=204)
