"""The one-page viewer: ``/`` for a signed-in user, ``/login`` otherwise (the static files are mounted by
:func:`medseg.server.app.create_app`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from medseg.server.routes.deps import signed_in

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter()


def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
def index(request: Request):
    return page() if signed_in(request) else RedirectResponse("/login", status_code=303)


@router.get("/login", include_in_schema=False)
def login_page(request: Request):
    return RedirectResponse("/", status_code=303) if signed_in(request) else page()


@router.get("/favicon.ico", include_in_schema=False)
def favicon():
    return Response(status_code=204)  # no icon, and no 404 in the browser console
