"""The models the server offers, and its health."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

import medseg
from medseg.server.auth import User, current_user
from medseg.server.routes.deps import Db, Registry, signed_in
from medseg.server.schemas import HealthOut, ModelOut

router = APIRouter()


@router.get("/api/models", response_model=list[ModelOut], tags=["models"])
def models(registry: Registry, _: User = Depends(current_user)):
    return registry.public()


@router.get("/api/health", response_model=HealthOut, response_model_exclude_none=True, tags=["health"])
def health(request: Request, db: Db, registry: Registry):
    """Anyone: ``{"status": "ok", "version"}``; a signed-in caller also gets the model and job counts,
    which say how busy the server is and are nobody else's business."""
    out = {"status": "ok", "version": medseg.__version__}
    if signed_in(request):
        out.update(models=len(registry.entries), jobs=db.queue_counts())
    return out
