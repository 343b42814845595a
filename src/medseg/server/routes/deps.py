"""What the routes share: the server's state (set on ``app.state`` by :func:`medseg.server.app.create_app`) as
FastAPI dependencies, and the look-ups every route of a study or a result makes.

A study or a result is always looked up together with the signed-in user's id, so another user's study
answers 404 exactly like one that does not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from medseg.server import auth
from medseg.server.auth import SignInThrottle, User
from medseg.server.db import Database
from medseg.server.registry import ModelRegistry
from medseg.server.settings import ServerSettings
from medseg.server.upload import UploadRefused


def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def _db(request: Request) -> Database:
    return request.app.state.db


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _throttle(request: Request) -> SignInThrottle:
    return request.app.state.throttle


def _runner(request: Request):
    """The job runner to wake after queueing a job: the worker process, or the worker thread (--job-thread)."""
    return request.app.state.runner


Settings = Annotated[ServerSettings, Depends(_settings)]
Db = Annotated[Database, Depends(_db)]
Registry = Annotated[ModelRegistry, Depends(_registry)]
Throttle = Annotated[SignInThrottle, Depends(_throttle)]
Runner = Annotated[object, Depends(_runner)]


def signed_in(request: Request) -> User | None:
    """The signed-in user, or None (for routes that answer anyone, differently)."""
    return auth.user_for_token(request.app.state.db, auth.request_token(request))


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def model_or_400(registry: ModelRegistry, model_id: str | None):
    """The registry entry ``model_id`` names; with no id, the server's only model (400 when it has several)."""
    if not model_id:
        if len(registry.entries) == 1:
            return next(iter(registry.entries.values()))
        raise UploadRefused(
            400,
            "choose a model (form field 'model'); GET /api/models lists them"
            if registry.entries
            else "this server offers no model: start it with medseg serve --model RUN_DIR",
        )
    entry = registry.get(model_id)
    if entry is None:
        raise UploadRefused(400, f"unknown model {model_id!r}; available: {', '.join(registry.entries) or 'none'}")
    return entry


def own_study(db: Database, study_id: str, user: User) -> dict:
    study = db.study(study_id, user.id)
    if study is None:
        raise HTTPException(404, "no such study")
    return study


def own_result(db: Database, result_id: str, user: User) -> dict:
    result = db.result(result_id, user.id)
    if result is None:
        raise HTTPException(404, "no such result")
    return result


def ready(result: dict) -> None:
    """409 unless the result's job is done (with the error of a failed one)."""
    if result["status"] != "done":
        raise HTTPException(
            409,
            f"the result is {result['status']}, not done"
            + (f": {result['error']}" if result["error"] and result["status"] == "failed" else ""),
        )
