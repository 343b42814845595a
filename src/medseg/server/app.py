"""The web application: the JSON API under ``/api`` and the one-page viewer at ``/``.

The thesis' system (chapter 4) had one page for one user: an upload overwrote the previous study and its
result, and segmentation ran inside the request. This keeps its workflow — upload → automatic
segmentation → slice viewer → download — with accounts, studies that stay until deleted, any number of
results per study (each naming its input's hash and its model's version), a queue with a worker, and checks
that refuse a bad upload with the file and the problem named.

This module builds the application (state, start-up, security headers); the routes are one ``APIRouter`` per
resource in :mod:`medseg.server.routes`. Every route that touches a study or a result looks it up together
with the signed-in user's id (:mod:`medseg.server.db`), so another user's study answers 404 exactly like one
that does not exist.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

import medseg
from medseg.errors import MedsegError
from medseg.server import auth, logs, routes, storage, web_workers
from medseg.server.db import Database
from medseg.server.jobs import Worker
from medseg.server.registry import ModelRegistry
from medseg.server.routes.pages import STATIC
from medseg.server.settings import ServerSettings
from medseg.server.upload import UploadRefused
from medseg.server.worker_process import WorkerProcess

__all__ = ["STATIC", "app_from_environment", "create_app", "lock_home"]

log = logging.getLogger("medseg.server")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
DESCRIPTION = (
    "Upload a CT volume or an image, get an automatic segmentation, view it slice by slice and download "
    "it (label in the input's format, DICOM-SEG, summary). Sign in with POST /api/login; send the token "
    "as 'Authorization: Bearer <token>'."
)


def lock_home(settings: ServerSettings):
    """Hold an exclusive lock on ``server/server.lock`` for as long as the returned file stays open.

    One server per home: start-up empties ``tmp`` and re-queues ``running`` jobs, which would break a second
    server working on the same folder. Returns None where file locks are not available (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return None
    settings.make_dirs()
    handle = open(settings.root / "server.lock", "a+")  # noqa: SIM115 - held open for the server's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise MedsegError(f"another medseg server is using {settings.root}; stop it or give another --home") from None
    return handle


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The job runner runs while the app does (unless ``create_app(start_worker=False)``)."""
    if app.state.start_worker:
        app.state.runner.start()
    yield
    if app.state.start_worker:
        app.state.runner.stop()


async def headers_and_origin(request: Request, call_next):
    """Security headers on every response; a state-changing request from another site is refused (defence
    in depth beside the SameSite cookie)."""
    origin = request.headers.get("origin")
    if (
        request.method not in ("GET", "HEAD", "OPTIONS")
        and origin
        and urlsplit(origin).netloc != request.headers.get("host")
    ):
        return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
    response = await call_next(request)
    if not request.url.path.startswith(("/docs", "/redoc")):
        response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def refused(request: Request, exc: UploadRefused):
    """A refused upload (or re-run) names the file and the problem beside the message."""
    return JSONResponse({"detail": str(exc), "file": exc.file, "problem": exc.problem}, status_code=exc.status)


def create_app(
    settings: ServerSettings | None = None, *, start_worker: bool = True, web_worker: bool = False
) -> FastAPI:
    """The application over ``settings.home``. Start-up removes what a killed server left half-written and
    resumes (or fails) its interrupted jobs; the worker thread starts with the app's lifespan unless
    ``start_worker`` is False (tests run jobs with ``app.state.worker.run_pending()``).

    ``web_worker``: one of the web processes of ``medseg serve --web-workers N``
    (:mod:`medseg.server.web_workers`). It does no start-up clean-up — the serve process did, once, and a
    web worker that uvicorn restarts must not empty ``tmp`` under another worker's upload or re-queue the
    job worker's running job — and runs no jobs: its ``runner`` only wakes the serve process's one job worker.

    The routes (:mod:`medseg.server.routes`) reach the server's state through ``app.state``: ``settings``,
    ``db``, ``registry``, ``worker``, ``runner`` (what runs the jobs) and ``throttle`` (sign-in limits)."""
    settings = settings or ServerSettings()
    settings.make_dirs()
    logs.configure(settings)
    db = Database(settings.db_path)
    registry = ModelRegistry(
        settings.models,
        settings.device,
        trust_code=settings.trust_code,
        pair_model=settings.pair_model,
        karyotype_model=settings.karyotype_model,
        karyotype_vote=settings.karyotype_vote,
    )
    worker = Worker(db, settings, registry)
    if web_worker:
        runner, start_worker = web_workers.WakeSender(settings), False
    else:
        # jobs run in a process of their own (a crash there ends only that job); the thread stays for --job-thread
        runner = WorkerProcess(settings, db) if settings.job_process else worker
        removed = storage.cleanup(settings, db)
        recovered = worker.recover()
        if any(removed.values()) or any(recovered.values()):
            log.warning("start-up: removed %s; interrupted jobs %s", removed, recovered)

    app = FastAPI(title="medseg", version=medseg.__version__, lifespan=lifespan, description=DESCRIPTION)
    throttle = auth.SignInThrottle(
        settings.login_failures_per_user,
        settings.login_failures_per_address,
        settings.login_window_s,
        settings.login_backoff_s,
        settings.login_backoff_max_s,
        db=db,
    )
    app.state.settings, app.state.db, app.state.registry, app.state.worker = settings, db, registry, worker
    app.state.runner = runner
    app.state.throttle = throttle
    app.state.start_worker = start_worker
    app.add_middleware(logs.AccessLog, level=settings.access_log)
    app.middleware("http")(headers_and_origin)
    app.add_exception_handler(UploadRefused, refused)
    app.include_router(routes.PAGES)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in routes.API:
        app.include_router(router)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each web worker of ``medseg serve --web-workers N``: the app over the settings the
    serve process validated and put in the environment (:func:`medseg.server.web_workers.settings_from_env`)."""
    web_workers.lower_priority()  # the job worker, a sibling, keeps its priority
    return create_app(web_workers.settings_from_env(), web_worker=True)
