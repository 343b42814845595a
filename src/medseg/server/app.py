"""The web application: the JSON API under ``/api`` and the one-page viewer at ``/``.

The thesis' system (chapter 4) had one page for one user: an upload overwrote the previous study and its
result, and segmentation ran inside the request. This keeps its workflow — upload → automatic
segmentation → slice viewer → download — with accounts, studies that stay until deleted, any number of
results per study (each naming its input's hash and its model's version), a queue with a worker, and checks
that refuse a bad upload with the file and the problem named.

Every route that touches a study or a result looks it up together with the signed-in user's id
(:mod:`medseg.server.db`), so another user's study answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

import medseg
from medseg.errors import MedsegError
from medseg.palette import channel_hex, class_hex
from medseg.server import auth, exports, logs, metaphase, storage, volumes
from medseg.server.caching import IMMUTABLE, etag_of, gzip_file, immutable_file, not_modified
from medseg.server.auth import User, admin_user, current_user
from medseg.server.db import Database
from medseg.server.jobs import Worker
from medseg.server.registry import DEMO_NOTE, ModelRegistry
from medseg.server.settings import ServerSettings
from medseg.server.slices import channel_folder, slice_file
from medseg.server.upload import UploadRefused, receive_upload
from medseg.server.worker_process import WorkerProcess

log = logging.getLogger("medseg.server")
STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


# ------------------------------------------------------------------------------------------------ schemas


class LoginBody(BaseModel):
    username: str
    password: str


class UserOut(BaseModel):
    id: int
    username: str
    is_admin: bool


class LoginOut(BaseModel):
    token: str = Field(description="Also set as the HttpOnly cookie; send as 'Authorization: Bearer <token>'")
    user: UserOut
    expires_in: int = Field(description="Seconds until the session ends")


class NewUserBody(BaseModel):
    username: str
    password: str
    is_admin: bool = False


class PasswordChangeBody(BaseModel):
    current_password: str
    new_password: str = Field(description=f"At least {auth.MIN_PASSWORD} characters")


class PasswordBody(BaseModel):
    password: str = Field(description=f"At least {auth.MIN_PASSWORD} characters")


class RerunBody(BaseModel):
    model: str = Field(description="A model id from GET /api/models")


class ClassOut(BaseModel):
    value: int
    name: str
    colour: str


class ChannelOut(BaseModel):
    channel: int = Field(description="The model's output channel (bit c of the label files)")
    name: str
    value: int = Field(description="The structure's value in the label files: 2**channel (values add up where "
                                   "structures overlap)")
    colour: str


class ResultChannelOut(ChannelOut):
    layer: str = Field(description="The slice kind of this structure's own layer: put it for {kind} in slice_url")


class ModelOut(BaseModel):
    id: str
    name: str
    version: str
    spatial_dims: int
    mode: str
    folds: int
    classes: list[ClassOut]
    channels: list[ChannelOut] = Field([], description="A multilabel model's structures (they may overlap)")
    stacks: bool = Field(False, description="A 2D model that also segments a volume or a zip of slice images, slice "
                                            "by slice")
    demo: bool
    demo_note: str | None = None
    demo_reason: str | None = None
    modality: str | None = Field(None, description="The modality the model needs (an input recording another is "
                                                   "refused), or null when its model.json says nothing")
    instances: bool = Field(False, description="A metaphase model (background / chromosome / overlap): its results on "
                                               "an image also give every chromosome as its own instance")
    pair_model: dict | None = Field(None, description="{name, version} of the pair model that splits crossings of two "
                                                      "chromosomes (medseg serve --pair-model); null: kept whole")
    karyotype_model: dict | None = Field(None, description="{name, version, vote} of the karyotyping model that gives "
                                                           "every chromosome instance its class (medseg serve "
                                                           "--karyotype-model); null: none")


class ResultOut(BaseModel):
    id: str
    study_id: str
    model: dict
    input_sha256: str
    status: str = Field(description="queued | running | done | failed")
    progress: float
    error: str | None = None
    attempts: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    n_slices: int | None = None
    classes: list[ClassOut] = []
    multilabel: bool = Field(False, description="Structures may overlap: the label files are bit-packed "
                                                "(summary.label_encoding) and each structure has its own layer")
    channels: list[ResultChannelOut] = Field([], description="A multilabel result's structures, once done")
    summary: dict | None = None
    instances: dict | None = Field(None, description="A metaphase result's chromosome instances, once done: n, counts "
                                                     "(alone, split by the pair model, kept whole and why), pair_model, "
                                                     "note, karyotype_model (with one: class_counts, unclassified, "
                                                     "classes_text), statuses (counts per status, the estimate of "
                                                     "chromosomes, text: the headline, warning when far from 46), "
                                                     "karyogram (true: the karyogram download); the "
                                                     "per-chromosome records at table_url")
    warnings: list[str] = Field([], description="What to check about this result (e.g. an input that records no "
                                                "modality for a CT model); once done")
    slice_url: str = Field(description="Template: replace {k} (0-based) and {kind} (image | label | reference, or "
                                       "label-<c> for structure c of a multilabel result, or instances for a "
                                       "result with chromosome instances)")
    volume_url: str | None = Field(None, description="Once done: the manifest of the whole image and label arrays "
                                                     "(shape, encoding, colours, URLs), for drawing slices client-side")
    downloads: dict[str, str] = Field(description="Format → URL, once done")


class StudyOut(BaseModel):
    id: str
    name: str
    kind: str
    input_format: str
    input_files: list[str]
    input_sha256: str
    input_bytes: int
    shape: list[int]
    spacing: list[float | None] | None = Field(None, description="(z, y, x) mm; z null for a stack of slice images "
                                                                 "(thickness unknown)")
    modality: str | None = None
    window: dict
    created_at: str
    reference_file: str | None = None
    has_reference: bool
    status: str | None = Field(None, description="Status of the latest result")
    progress: float | None = None
    results: list[ResultOut]


class HealthOut(BaseModel):
    status: str
    version: str  # public anyway in /openapi.json
    models: int | None = Field(None, description="Signed-in callers only")
    jobs: dict[str, int] | None = Field(None, description="Results per status, all users; signed-in callers only")


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "One PNG/TIFF image, NIfTI or HDF5 volume or zipped DICOM series, or the files "
                                 "of one DICOM series; for a model that segments stacks of slices also a zip of "
                                 "the PNG/TIFF slices of one scan (slice_SSSS_W_H_pw_ph.png names: ordered by "
                                 "SSSS, spacing from the name; other names: natural order)"},
        "reference": {"type": "string", "format": "binary",
                      "description": "Optional reference label on the same grid (PNG/TIFF, NIfTI, HDF5)"},
        "model": {"type": "string", "description": "Model id (GET /api/models); optional with one model"},
    }}}}}}


# ------------------------------------------------------------------------------------------------ JSON views


def result_channels(summary: dict | None) -> list[dict]:
    """A multilabel result's structures (bit-packed: ``summary.label_encoding``), [] otherwise."""
    encoding = (summary or {}).get("label_encoding") or {}
    return [{"channel": s["channel"], "name": s["name"], "value": s["value"], "colour": channel_hex(s["channel"]),
             "layer": f"label-{s['channel']}"} for s in encoding.get("structures", [])]


def result_json(result: dict, study: dict) -> dict:
    done = result["status"] == "done"
    summary = result.get("summary") if done else None
    background = (summary or {}).get("background", 0)  # results from before it was recorded: 0
    channels = result_channels(summary)
    by_value = {c["value"]: c["colour"] for c in channels}  # a structure's colour is its channel's
    classes = [{"value": c["value"], "name": c["name"],
                "colour": by_value.get(c["value"]) if channels else class_hex(c["value"], background)}
               for c in (summary or {}).get("classes", [])]
    instances = (summary or {}).get("instances")
    formats = exports.formats_for(study["kind"], study["input_format"], len(channels), bool(instances),
                                  bool((instances or {}).get("karyogram"))) if done else []
    base = f"/api/results/{result['id']}"
    return {
        "id": result["id"], "study_id": result["study_id"],
        "model": {"id": result["model_id"], "name": result["model_name"], "version": result["model_version"],
                  "demo": bool(result["model_demo"]), "demo_note": DEMO_NOTE if result["model_demo"] else None},
        "input_sha256": result["input_sha256"], "status": result["status"], "progress": result["progress"],
        "error": result["error"] if result["status"] == "failed" else None, "attempts": result["attempts"],
        "created_at": result["created_at"], "started_at": result["started_at"],
        "finished_at": result["finished_at"], "n_slices": result["n_slices"], "classes": classes,
        "multilabel": bool(channels), "channels": channels, "summary": summary, "warnings": (summary or {}).get("warnings") or [],
        "instances": {**instances, "table_url": f"{base}/instances"} if instances else None,
        "slice_url": base + "/slices/{k}/{kind}.png",
        "volume_url": f"{base}/volume/v{volumes.FORMAT_VERSION}" if done else None,
        "downloads": {f: f"{base}/download/{f}" for f in formats},
    }


def study_json(db: Database, study: dict) -> dict:
    results = [result_json(r, study) for r in db.results_of(study["id"])]
    latest = results[-1] if results else None
    return {**storage.study_json_fields(study), "results": results,
            "status": latest["status"] if latest else None, "progress": latest["progress"] if latest else None}


# ------------------------------------------------------------------------------------------------ the app


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


def create_app(settings: ServerSettings | None = None, *, start_worker: bool = True) -> FastAPI:
    """The application over ``settings.home``. Start-up removes what a killed server left half-written and
    resumes (or fails) its interrupted jobs; the worker thread starts with the app's lifespan unless
    ``start_worker`` is False (tests run jobs with ``app.state.worker.run_pending()``)."""
    settings = settings or ServerSettings()
    settings.make_dirs()
    logs.configure(settings)
    db = Database(settings.db_path)
    registry = ModelRegistry(settings.models, settings.device, trust_code=settings.trust_code,
                             pair_model=settings.pair_model, karyotype_model=settings.karyotype_model,
                             karyotype_vote=settings.karyotype_vote)
    worker = Worker(db, settings, registry)
    # jobs run in a process of their own (a crash there ends only that job); the thread stays for --job-thread
    runner = WorkerProcess(settings, db) if settings.job_process else worker
    removed = storage.cleanup(settings, db)
    recovered = worker.recover()
    if any(removed.values()) or any(recovered.values()):
        log.warning("start-up: removed %s; interrupted jobs %s", removed, recovered)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_worker:
            runner.start()
        yield
        if start_worker:
            runner.stop()

    app = FastAPI(title="medseg", version=medseg.__version__, lifespan=lifespan,
                  description="Upload a CT volume or an image, get an automatic segmentation, view it slice by "
                              "slice and download it (label in the input's format, DICOM-SEG, summary). Sign in "
                              "with POST /api/login; send the token as 'Authorization: Bearer <token>'.")
    throttle = auth.SignInThrottle(settings.login_failures_per_user, settings.login_failures_per_address,
                                   settings.login_window_s, settings.login_backoff_s, settings.login_backoff_max_s)
    app.state.settings, app.state.db, app.state.registry, app.state.worker = settings, db, registry, worker
    app.state.runner = runner
    app.state.throttle = throttle
    app.add_middleware(logs.AccessLog, level=settings.access_log)

    @app.middleware("http")
    async def headers_and_origin(request: Request, call_next):
        # Defence in depth beside the SameSite cookie: a state-changing request from another site is refused.
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin and \
                urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
        response = await call_next(request)
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.exception_handler(UploadRefused)
    async def refused(request: Request, exc: UploadRefused):
        return JSONResponse({"detail": str(exc), "file": exc.file, "problem": exc.problem}, status_code=exc.status)

    # ------------------------------------------------------------------------------------- page

    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def signed_in(request: Request) -> User | None:
        return auth.user_for_token(db, auth.request_token(request))

    @app.get("/", include_in_schema=False)
    def index(request: Request):
        return page() if signed_in(request) else RedirectResponse("/login", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request):
        return RedirectResponse("/", status_code=303) if signed_in(request) else page()

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)  # no icon, and no 404 in the browser console

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------------------------- auth

    def client_address(request: Request) -> str | None:
        return request.client.host if request.client else None

    @app.post("/api/login", response_model=LoginOut, tags=["auth"],
              responses={429: {"description": "Too many failed sign-ins: wait the Retry-After seconds"}})
    def login(body: LoginBody, request: Request, response: Response):
        user = auth.authenticate_throttled(db, throttle, body.username, body.password, client_address(request))
        if user is None:
            raise HTTPException(401, "wrong user name or password")
        token, lifetime = auth.new_session(db, user, settings.session_hours)
        response.set_cookie(auth.COOKIE, token, max_age=lifetime, httponly=True, samesite="lax",
                            secure=settings.cookie_secure, path="/")
        return {"token": token, "user": user.public(), "expires_in": lifetime}

    @app.post("/api/logout", status_code=204, tags=["auth"])
    def logout(request: Request):
        token = auth.request_token(request)
        if token:
            auth.end_session(db, token)
        response = Response(status_code=204)
        response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="lax")
        return response

    @app.get("/api/me", response_model=UserOut, tags=["auth"])
    def me(user: User = Depends(current_user)):
        return user.public()

    @app.post("/api/me/password", status_code=204, tags=["auth"])
    def change_password(body: PasswordChangeBody, request: Request, user: User = Depends(current_user)):
        """Change your own password; your other sessions end (this one stays). A wrong current password is
        403 and counts as a failed sign-in."""
        if auth.authenticate_throttled(db, throttle, user.username, body.current_password,
                                       client_address(request)) is None:
            raise HTTPException(403, "the current password is wrong")
        set_password(user.username, body.new_password, request)
        return Response(status_code=204)

    def set_password(username: str, password: str, request: Request) -> None:
        with auth.as_http():
            auth.set_password(db, username, password, keep_token=auth.request_token(request))

    @app.get("/api/users", response_model=list[UserOut], tags=["auth"])
    def list_users(_: User = Depends(admin_user)):
        return [{"id": u["id"], "username": u["username"], "is_admin": bool(u["is_admin"])} for u in db.users()]

    @app.post("/api/users", response_model=UserOut, status_code=201, tags=["auth"])
    def add_user(body: NewUserBody, _: User = Depends(admin_user)):
        with auth.as_http():
            return auth.create_user(db, body.username, body.password, is_admin=body.is_admin).public()

    @app.put("/api/users/{username}/password", status_code=204, tags=["auth"])
    def reset_password(username: str, body: PasswordBody, request: Request, _: User = Depends(admin_user)):
        """Set a user's password (administrators): all of that user's sessions end, and a sign-in lock on the
        account is lifted."""
        set_password(username, body.password, request)
        throttle.succeeded(username)
        return Response(status_code=204)

    @app.delete("/api/users/{username}", status_code=204, tags=["auth"])
    def remove_user(username: str, _: User = Depends(admin_user)):
        """Remove a user with their sessions, studies and results, files included (administrators; 409 for
        the last administrator)."""
        with auth.as_http():
            storage.remove_user(db, settings, username)
        return Response(status_code=204)

    # ------------------------------------------------------------------------------------- models, health

    @app.get("/api/models", response_model=list[ModelOut], tags=["models"])
    def models(_: User = Depends(current_user)):
        return registry.public()

    @app.get("/api/health", response_model=HealthOut, response_model_exclude_none=True, tags=["health"])
    def health(request: Request):
        """Anyone: ``{"status": "ok", "version"}``; a signed-in caller also gets the model and job counts,
        which say how busy the server is and are nobody else's business."""
        out = {"status": "ok", "version": medseg.__version__}
        if signed_in(request):
            out.update(models=len(registry.entries), jobs=db.queue_counts())
        return out

    # ------------------------------------------------------------------------------------- studies

    def model_or_400(model_id: str | None):
        if not model_id:
            if len(registry.entries) == 1:
                return next(iter(registry.entries.values()))
            raise UploadRefused(400, "choose a model (form field 'model'); GET /api/models lists them"
                                if registry.entries else
                                "this server offers no model: start it with medseg serve --model RUN_DIR")
        entry = registry.get(model_id)
        if entry is None:
            raise UploadRefused(400, f"unknown model {model_id!r}; available: {', '.join(registry.entries) or 'none'}")
        return entry

    def own_study(study_id: str, user: User) -> dict:
        study = db.study(study_id, user.id)
        if study is None:
            raise HTTPException(404, "no such study")
        return study

    @app.post("/api/studies", response_model=StudyOut, status_code=201, tags=["studies"],
              openapi_extra=UPLOAD_BODY)
    async def upload(request: Request, user: User = Depends(current_user)):
        staging = settings.tmp_dir / f"upload-{storage.new_id()}"
        staging.mkdir(parents=True)
        try:
            received = await receive_upload(request, staging, max_bytes=settings.max_upload_bytes,
                                            max_files=settings.max_files)
            entry = model_or_400(received.fields.get("model"))
            study_id = await run_in_threadpool(storage.store_upload, db, settings, user.id, entry, received, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # moved away on success; removed on any failure
        runner.notify()
        return study_json(db, own_study(study_id, user))

    @app.get("/api/studies", response_model=list[StudyOut], tags=["studies"])
    def list_studies(user: User = Depends(current_user)):
        return [study_json(db, s) for s in db.studies(user.id)]

    @app.get("/api/studies/{study_id}", response_model=StudyOut, tags=["studies"])
    def get_study(study_id: str, user: User = Depends(current_user)):
        return study_json(db, own_study(study_id, user))

    @app.delete("/api/studies/{study_id}", status_code=204, tags=["studies"])
    def delete_study(study_id: str, user: User = Depends(current_user)):
        own_study(study_id, user)
        db.delete_study(study_id, user.id)  # rows first: a running job then finds nothing to publish into
        storage.discard(settings, storage.study_paths(settings, study_id).root)
        return Response(status_code=204)

    @app.post("/api/studies/{study_id}/rerun", response_model=ResultOut, status_code=201, tags=["studies"])
    def rerun(study_id: str, body: RerunBody, user: User = Depends(current_user)):
        study = own_study(study_id, user)
        entry = model_or_400(body.model)
        refusal = storage.model_refusal(entry, study["kind"], study["input_format"])
        if refusal:
            raise UploadRefused(422, f"{refusal}; this study is "
                                     f"{'a 2D image' if study['kind'] == '2d' else 'a volume'}", study["name"])
        storage.check_modality(entry, study["modality"], study["name"])
        row = storage.new_result(study_id, study["input_sha256"], entry)
        db.add_result(row)
        runner.notify()
        return result_json(db.result(row["id"], user.id), study)

    # ------------------------------------------------------------------------------------- results

    def own_result(result_id: str, user: User) -> dict:
        result = db.result(result_id, user.id)
        if result is None:
            raise HTTPException(404, "no such result")
        return result

    def ready(result: dict) -> None:
        if result["status"] != "done":
            raise HTTPException(409, f"the result is {result['status']}, not done"
                                     + (f": {result['error']}" if result["error"] and result["status"] == "failed" else ""))

    @app.get("/api/results/{result_id}", response_model=ResultOut, tags=["results"])
    def get_result(result_id: str, user: User = Depends(current_user)):
        result = own_result(result_id, user)
        return result_json(result, own_study(result["study_id"], user))

    @app.get("/api/results/{result_id}/slices/{k}/{kind}.png", tags=["results"],
             responses={200: {"content": {"image/png": {}}}}, response_class=FileResponse)
    def slice_png(result_id: str, k: int, kind: str, request: Request, user: User = Depends(current_user)):
        """Slice ``k`` (0-based): ``image`` grey, ``label`` the prediction layer (RGBA), ``reference`` (RGBA);
        ``label-<c>``: structure c's own layer of a multilabel result (its fill half transparent, its outline
        opaque, so overlapping structures show both); ``instances``: the chromosome instances of a metaphase
        result, each in its own colour (overlap pixels, in two chromosomes, white)."""
        result = own_result(result_id, user)
        channel = re.fullmatch(r"label-(\d{1,3})", kind)
        if kind not in ("image", "label", "reference", metaphase.LAYER) and channel is None:
            raise HTTPException(404, "kind is image, label, reference, label-<structure> (multilabel results) or "
                                     "instances (metaphase results)")
        ready(result)
        if kind == metaphase.LAYER and not (result.get("summary") or {}).get("instances"):
            raise HTTPException(404, "this result has no chromosome instances")
        if channel is not None and int(channel.group(1)) >= len(result_channels(result.get("summary"))):
            raise HTTPException(404, f"this result has no structure {channel.group(1)}")
        if not 0 <= k < (result["n_slices"] or 0):
            raise HTTPException(404, f"slice {k} is out of range 0..{(result['n_slices'] or 1) - 1}")
        paths = storage.study_paths(settings, result["study_id"])
        if kind == "reference" and not result["study_reference_file"]:
            raise HTTPException(404, "this study has no reference")
        if channel is not None:
            folder = channel_folder(paths.result(result_id) / "slices", int(channel.group(1)))
        elif kind == metaphase.LAYER:
            folder = paths.result(result_id) / "slices" / metaphase.LAYER
        else:
            folder = {"image": paths.image_slices, "reference": paths.reference_slices,
                      "label": paths.result(result_id) / "slices"}[kind]
        path = slice_file(folder, k)
        if not path.is_file():
            raise HTTPException(404, "slice file missing")
        return immutable_file(request, path, "image/png")

    def volume_folder(result_id: str, user: User, version: int) -> Path:
        result = own_result(result_id, user)
        ready(result)
        if version != volumes.FORMAT_VERSION:
            raise HTTPException(404, f"volume format v{version} is not served; this server sends "
                                     f"v{volumes.FORMAT_VERSION} (see the result's volume_url)")
        folder = storage.study_paths(settings, result["study_id"]).result(result_id) / "volume"
        if not (folder / volumes.MANIFEST).is_file():
            raise HTTPException(404, "this result was made before whole volumes were kept: use its slice_url, "
                                     "or re-run the study")
        return folder

    @app.get("/api/results/{result_id}/volume/v{version}", tags=["results"])
    def volume_manifest(result_id: str, version: int, request: Request, user: User = Depends(current_user)):
        """The whole result for drawing it client-side: shape (D, H, W), and for ``image`` (dtype, offset,
        scale: value = offset + scale · stored; window), ``label`` and ``reference`` (dtype; ``lut`` RGBA per
        value, or the structures' ``channels`` colours of a bit-packed multilabel map) each with its ``url``: raw
        little-endian arrays in C order, sent gzip-encoded. All immutable, with ETags."""
        folder = volume_folder(result_id, user, version)
        etag = etag_of(folder / volumes.MANIFEST)
        cached = not_modified(request, etag)
        if cached:
            return cached
        manifest = volumes.read_manifest(folder)
        for kind in volumes.KINDS:
            if manifest.get(kind):
                manifest[kind]["url"] = f"/api/results/{result_id}/volume/v{version}/{kind}"
        return JSONResponse(manifest, headers={"Cache-Control": IMMUTABLE, "ETag": etag})

    @app.get("/api/results/{result_id}/volume/v{version}/{kind}", tags=["results"],
             responses={200: {"content": {"application/octet-stream": {}}}})
    def volume_array(result_id: str, version: int, kind: str, request: Request, user: User = Depends(current_user)):
        """One array of the manifest, gzip-encoded for clients that accept it (browsers), else plain."""
        if kind not in volumes.KINDS:
            raise HTTPException(404, f"kind is one of {', '.join(volumes.KINDS)}")
        path = volume_folder(result_id, user, version) / volumes.file_name(kind)
        if not path.is_file():
            raise HTTPException(404, f"this result has no {kind} array")
        if "gzip" in request.headers.get("accept-encoding", ""):
            return gzip_file(request, path)
        etag = etag_of(path, "-identity")
        return not_modified(request, etag) or Response(
            gzip.decompress(path.read_bytes()), media_type="application/octet-stream",
            headers={"Cache-Control": IMMUTABLE, "ETag": etag})


    @app.get("/api/results/{result_id}/download/{fmt}", tags=["results"], response_class=FileResponse)
    def download(result_id: str, fmt: str, request: Request, user: User = Depends(current_user)):
        """``fmt``: nifti | hdf5 | png | png-slices | slicer-seg | dicom-seg | summary.json | summary.csv |
        instances | karyogram (404 where the result has no such output, 409 while the job is not done). Multilabel
        results are bit-packed (``summary.label_encoding``); ``slicer-seg`` is 3D Slicer's .seg.nrrd, one layer per
        structure; ``instances`` (metaphase results): a zip of every chromosome's mask and cut-out, the
        instance label map, the figure and instances.json, as ``medseg predict`` writes them; ``karyogram``: the
        karyogram PNG, where the server's karyotyping model classed the chromosomes."""
        result = own_result(result_id, user)
        n_channels = len(result_channels(result.get("summary")))
        found = (result.get("summary") or {}).get("instances")  # a metaphase result's chromosomes
        if fmt not in exports.formats_for(result["study_kind"], result["study_input_format"], n_channels,
                                          bool(found), bool((found or {}).get("karyogram"))):
            raise HTTPException(404, f"no {fmt!r} download for a {result['study_input_format']} study")
        ready(result)
        path = storage.study_paths(settings, result["study_id"]).result(result_id) / exports.DOWNLOADS[fmt]
        if not path.is_file():
            raise HTTPException(404, "file missing")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", result["study_name"]).split(".")[0][:60] or "study"
        saved_as = exports.SAVED_AS.get(fmt, exports.DOWNLOADS[fmt])
        return immutable_file(request, path, exports.MEDIA_TYPES[fmt],
                              filename=f"{stem}_{result['model_id']}_{saved_as}")

    @app.get("/api/results/{result_id}/instances", tags=["results"])
    def instances(result_id: str, user: User = Depends(current_user)):
        """A metaphase result's chromosome instances: ``instances.json`` as in the ``instances`` download (per
        chromosome: id, bbox, area, separated_by, overlaps_with, status, estimated_count, status_reason, and class,
        class_name, class_confidence — or class_note, why none — when the server's karyotyping model
        (--karyotype-model) gave them; the counts and the models' names and versions), each record with its ``colour`` in the ``instances`` layer."""
        result = own_result(result_id, user)
        ready(result)
        if not (result.get("summary") or {}).get("instances"):
            raise HTTPException(404, "this result has no chromosome instances")
        path = storage.study_paths(settings, result["study_id"]).result(result_id) / metaphase.FILES["json"]
        if not path.is_file():
            raise HTTPException(404, "file missing")
        return JSONResponse(metaphase.instance_table(path), headers={"Cache-Control": IMMUTABLE})

    return app
