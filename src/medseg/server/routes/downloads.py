"""A done result's files: the downloads in every format it has, and a metaphase result's instance table."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from medseg.server import exports, metaphase, storage
from medseg.server.auth import User, current_user
from medseg.server.caching import IMMUTABLE, immutable_file
from medseg.server.routes.deps import Db, Settings, own_result, ready
from medseg.server.views import result_channels

router = APIRouter(tags=["results"])


@router.get("/api/results/{result_id}/download/{fmt}", response_class=FileResponse)
def download(
    result_id: str, fmt: str, request: Request, db: Db, settings: Settings, user: User = Depends(current_user)
):
    """``fmt``: nifti | hdf5 | png | png-slices | slicer-seg | dicom-seg | summary.json | summary.csv |
    instances | karyogram (404 where the result has no such output, 409 while the job is not done). Multilabel
    results are bit-packed (``summary.label_encoding``); ``slicer-seg`` is 3D Slicer's .seg.nrrd, one layer per
    structure; ``instances`` (metaphase results): a zip of every chromosome's mask and cut-out, the
    instance label map, the figure and instances.json, as ``medseg predict`` writes them; ``karyogram``: the
    karyogram PNG, where the server's karyotyping model classed the chromosomes."""
    result = own_result(db, result_id, user)
    n_channels = len(result_channels(result.get("summary")))
    found = (result.get("summary") or {}).get("instances")  # a metaphase result's chromosomes
    if fmt not in exports.formats_for(
        result["study_kind"],
        result["study_input_format"],
        n_channels,
        bool(found),
        bool((found or {}).get("karyogram")),
    ):
        raise HTTPException(404, f"no {fmt!r} download for a {result['study_input_format']} study")
    ready(result)
    path = storage.study_paths(settings, result["study_id"]).result(result_id) / exports.DOWNLOADS[fmt]
    if not path.is_file():
        raise HTTPException(404, "file missing")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", result["study_name"]).split(".")[0][:60] or "study"
    saved_as = exports.SAVED_AS.get(fmt, exports.DOWNLOADS[fmt])
    return immutable_file(request, path, exports.MEDIA_TYPES[fmt], filename=f"{stem}_{result['model_id']}_{saved_as}")


@router.get("/api/results/{result_id}/instances")
def instances(result_id: str, db: Db, settings: Settings, user: User = Depends(current_user)):
    """A metaphase result's chromosome instances: ``instances.json`` as in the ``instances`` download (per
    chromosome: id, bbox, area, separated_by, overlaps_with, status, estimated_count, status_reason, and class,
    class_name, class_confidence — or class_note, why none — when the server's karyotyping model
    (--karyotype-model) gave them; the counts and the models' names and versions), each record with its ``colour`` in the ``instances`` layer."""  # noqa: E501 -- the OpenAPI description, kept as served
    result = own_result(db, result_id, user)
    ready(result)
    if not (result.get("summary") or {}).get("instances"):
        raise HTTPException(404, "this result has no chromosome instances")
    path = storage.study_paths(settings, result["study_id"]).result(result_id) / metaphase.FILES["json"]
    if not path.is_file():
        raise HTTPException(404, "file missing")
    return JSONResponse(metaphase.instance_table(path), headers={"Cache-Control": IMMUTABLE})
