"""Results: a result's JSON, its viewer slices (PNG) and its whole arrays for drawing slices client-side."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from medseg.server import metaphase, storage, volumes
from medseg.server.auth import User, current_user
from medseg.server.caching import IMMUTABLE, etag_of, gzip_file, immutable_file, not_modified
from medseg.server.db import Database
from medseg.server.routes.deps import Db, Settings, own_result, own_study, ready
from medseg.server.schemas import ResultOut
from medseg.server.settings import ServerSettings
from medseg.server.slices import channel_folder, slice_file
from medseg.server.views import result_channels, result_json

router = APIRouter(tags=["results"])


@router.get("/api/results/{result_id}", response_model=ResultOut)
def get_result(result_id: str, db: Db, user: User = Depends(current_user)):
    result = own_result(db, result_id, user)
    return result_json(result, own_study(db, result["study_id"], user))


def slice_folder(settings: ServerSettings, result: dict, result_id: str, kind: str, channel: re.Match | None) -> Path:
    """Where the viewer slices of ``kind`` lie: the study's image or reference slices, or the result's."""
    paths = storage.study_paths(settings, result["study_id"])
    if channel is not None:
        return channel_folder(paths.result(result_id) / "slices", int(channel.group(1)))
    if kind == metaphase.LAYER:
        return paths.result(result_id) / "slices" / metaphase.LAYER
    return {
        "image": paths.image_slices,
        "reference": paths.reference_slices,
        "label": paths.result(result_id) / "slices",
    }[kind]


@router.get(
    "/api/results/{result_id}/slices/{k}/{kind}.png",
    responses={200: {"content": {"image/png": {}}}},
    response_class=FileResponse,
)
def slice_png(
    result_id: str, k: int, kind: str, request: Request, db: Db, settings: Settings, user: User = Depends(current_user)
):
    """Slice ``k`` (0-based): ``image`` grey, ``label`` the prediction layer (RGBA), ``reference`` (RGBA);
    ``label-<c>``: structure c's own layer of a multilabel result (its fill half transparent, its outline
    opaque, so overlapping structures show both); ``instances``: the chromosome instances of a metaphase
    result, each in its own colour (overlap pixels, in two chromosomes, white)."""
    result = own_result(db, result_id, user)
    channel = re.fullmatch(r"label-(\d{1,3})", kind)
    if kind not in ("image", "label", "reference", metaphase.LAYER) and channel is None:
        raise HTTPException(
            404,
            "kind is image, label, reference, label-<structure> (multilabel results) or instances (metaphase results)",
        )
    ready(result)
    if kind == metaphase.LAYER and not (result.get("summary") or {}).get("instances"):
        raise HTTPException(404, "this result has no chromosome instances")
    if channel is not None and int(channel.group(1)) >= len(result_channels(result.get("summary"))):
        raise HTTPException(404, f"this result has no structure {channel.group(1)}")
    if not 0 <= k < (result["n_slices"] or 0):
        raise HTTPException(404, f"slice {k} is out of range 0..{(result['n_slices'] or 1) - 1}")
    if kind == "reference" and not result["study_reference_file"]:
        raise HTTPException(404, "this study has no reference")
    path = slice_file(slice_folder(settings, result, result_id, kind, channel), k)
    if not path.is_file():
        raise HTTPException(404, "slice file missing")
    return immutable_file(request, path, "image/png")


def volume_folder(db: Database, settings: ServerSettings, result_id: str, user: User, version: int) -> Path:
    result = own_result(db, result_id, user)
    ready(result)
    if version != volumes.FORMAT_VERSION:
        raise HTTPException(
            404,
            f"volume format v{version} is not served; this server sends "
            f"v{volumes.FORMAT_VERSION} (see the result's volume_url)",
        )
    folder = storage.study_paths(settings, result["study_id"]).result(result_id) / "volume"
    if not (folder / volumes.MANIFEST).is_file():
        raise HTTPException(
            404, "this result was made before whole volumes were kept: use its slice_url, or re-run the study"
        )
    return folder


@router.get("/api/results/{result_id}/volume/v{version}")
def volume_manifest(
    result_id: str, version: int, request: Request, db: Db, settings: Settings, user: User = Depends(current_user)
):
    """The whole result for drawing it client-side: shape (D, H, W), and for ``image`` (dtype, offset,
    scale: value = offset + scale · stored; window), ``label`` and ``reference`` (dtype; ``lut`` RGBA per
    value, or the structures' ``channels`` colours of a bit-packed multilabel map) each with its ``url``: raw
    little-endian arrays in C order, sent gzip-encoded. All immutable, with ETags."""
    folder = volume_folder(db, settings, result_id, user, version)
    etag = etag_of(folder / volumes.MANIFEST)
    cached = not_modified(request, etag)
    if cached:
        return cached
    manifest = volumes.read_manifest(folder)
    for kind in volumes.KINDS:
        if manifest.get(kind):
            manifest[kind]["url"] = f"/api/results/{result_id}/volume/v{version}/{kind}"
    return JSONResponse(manifest, headers={"Cache-Control": IMMUTABLE, "ETag": etag})


@router.get(
    "/api/results/{result_id}/volume/v{version}/{kind}", responses={200: {"content": {"application/octet-stream": {}}}}
)
def volume_array(
    result_id: str,
    version: int,
    kind: str,
    request: Request,
    db: Db,
    settings: Settings,
    user: User = Depends(current_user),
):
    """One array of the manifest, gzip-encoded for clients that accept it (browsers), else plain."""
    if kind not in volumes.KINDS:
        raise HTTPException(404, f"kind is one of {', '.join(volumes.KINDS)}")
    path = volume_folder(db, settings, result_id, user, version) / volumes.file_name(kind)
    if not path.is_file():
        raise HTTPException(404, f"this result has no {kind} array")
    if "gzip" in request.headers.get("accept-encoding", ""):
        return gzip_file(request, path)
    etag = etag_of(path, "-identity")
    return not_modified(request, etag) or Response(
        gzip.decompress(path.read_bytes()),
        media_type="application/octet-stream",
        headers={"Cache-Control": IMMUTABLE, "ETag": etag},
    )
