"""The JSON a study and a result are sent as: a stored row turned into what the API and the page read."""

from __future__ import annotations

from medseg.palette import channel_hex, class_hex
from medseg.server import exports, storage, volumes
from medseg.server.db import Database
from medseg.server.registry import DEMO_NOTE


def result_channels(summary: dict | None) -> list[dict]:
    """A multilabel result's structures (bit-packed: ``summary.label_encoding``), [] otherwise."""
    encoding = (summary or {}).get("label_encoding") or {}
    return [
        {
            "channel": s["channel"],
            "name": s["name"],
            "value": s["value"],
            "colour": channel_hex(s["channel"]),
            "layer": f"label-{s['channel']}",
        }
        for s in encoding.get("structures", [])
    ]


def result_json(result: dict, study: dict) -> dict:
    done = result["status"] == "done"
    summary = result.get("summary") if done else None
    background = (summary or {}).get("background", 0)  # results from before it was recorded: 0
    channels = result_channels(summary)
    by_value = {c["value"]: c["colour"] for c in channels}  # a structure's colour is its channel's
    classes = [
        {
            "value": c["value"],
            "name": c["name"],
            "colour": by_value.get(c["value"]) if channels else class_hex(c["value"], background),
        }
        for c in (summary or {}).get("classes", [])
    ]
    instances = (summary or {}).get("instances")
    formats = (
        exports.formats_for(
            study["kind"],
            study["input_format"],
            len(channels),
            bool(instances),
            bool((instances or {}).get("karyogram")),
        )
        if done
        else []
    )
    base = f"/api/results/{result['id']}"
    return {
        "id": result["id"],
        "study_id": result["study_id"],
        "model": {
            "id": result["model_id"],
            "name": result["model_name"],
            "version": result["model_version"],
            "demo": bool(result["model_demo"]),
            "demo_note": DEMO_NOTE if result["model_demo"] else None,
        },
        "input_sha256": result["input_sha256"],
        "status": result["status"],
        "progress": result["progress"],
        "error": result["error"] if result["status"] == "failed" else None,
        "attempts": result["attempts"],
        "created_at": result["created_at"],
        "started_at": result["started_at"],
        "finished_at": result["finished_at"],
        "n_slices": result["n_slices"],
        "classes": classes,
        "multilabel": bool(channels),
        "channels": channels,
        "summary": summary,
        "warnings": (summary or {}).get("warnings") or [],
        "instances": {**instances, "table_url": f"{base}/instances"} if instances else None,
        "slice_url": base + "/slices/{k}/{kind}.png",
        "volume_url": f"{base}/volume/v{volumes.FORMAT_VERSION}" if done else None,
        "downloads": {f: f"{base}/download/{f}" for f in formats},
    }


def study_json(db: Database, study: dict) -> dict:
    results = [result_json(r, study) for r in db.results_of(study["id"])]
    latest = results[-1] if results else None
    return {
        **storage.study_json_fields(study),
        "results": results,
        "status": latest["status"] if latest else None,
        "progress": latest["progress"] if latest else None,
    }
