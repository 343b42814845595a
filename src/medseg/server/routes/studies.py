"""Studies: upload one (which queues its segmentation), list, read and delete them, re-run one with a model."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from medseg.server import storage
from medseg.server.auth import User, current_user
from medseg.server.routes.deps import Db, Registry, Runner, Settings, model_or_400, own_study
from medseg.server.schemas import UPLOAD_BODY, RerunBody, ResultOut, StudyOut
from medseg.server.upload import UploadRefused, receive_upload
from medseg.server.views import result_json, study_json

router = APIRouter(tags=["studies"])


@router.post("/api/studies", response_model=StudyOut, status_code=201, openapi_extra=UPLOAD_BODY)
async def upload(
    request: Request, db: Db, settings: Settings, registry: Registry, runner: Runner, user: User = Depends(current_user)
):
    staging = settings.tmp_dir / f"upload-{storage.new_id()}"
    staging.mkdir(parents=True)
    try:
        received = await receive_upload(
            request, staging, max_bytes=settings.max_upload_bytes, max_files=settings.max_files
        )
        entry = model_or_400(registry, received.fields.get("model"))
        study_id = await run_in_threadpool(storage.store_upload, db, settings, user.id, entry, received, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # moved away on success; removed on any failure
    runner.notify()
    return study_json(db, own_study(db, study_id, user))


@router.get("/api/studies", response_model=list[StudyOut])
def list_studies(db: Db, user: User = Depends(current_user)):
    return [study_json(db, s) for s in db.studies(user.id)]


@router.get("/api/studies/{study_id}", response_model=StudyOut)
def get_study(study_id: str, db: Db, user: User = Depends(current_user)):
    return study_json(db, own_study(db, study_id, user))


@router.delete("/api/studies/{study_id}", status_code=204)
def delete_study(study_id: str, db: Db, settings: Settings, user: User = Depends(current_user)):
    own_study(db, study_id, user)
    db.delete_study(study_id, user.id)  # rows first: a running job then finds nothing to publish into
    storage.discard(settings, storage.study_paths(settings, study_id).root)
    return Response(status_code=204)


@router.post("/api/studies/{study_id}/rerun", response_model=ResultOut, status_code=201)
def rerun(
    study_id: str, body: RerunBody, db: Db, registry: Registry, runner: Runner, user: User = Depends(current_user)
):
    study = own_study(db, study_id, user)
    entry = model_or_400(registry, body.model)
    refusal = storage.model_refusal(entry, study["kind"], study["input_format"])
    if refusal:
        raise UploadRefused(
            422, f"{refusal}; this study is {'a 2D image' if study['kind'] == '2d' else 'a volume'}", study["name"]
        )
    storage.check_modality(entry, study["modality"], study["name"])
    row = storage.new_result(study_id, study["input_sha256"], entry)
    db.add_result(row)
    runner.notify()
    return result_json(db.result(row["id"], user.id), study)
