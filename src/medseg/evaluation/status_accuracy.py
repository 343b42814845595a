"""How often each chromosome status (:mod:`medseg.inference.instance_status`) is right against the M-FISH label
maps (``medseg evaluate-metaphases``): a user copies the headline's count into a report, so each status must be
checked against what the object really holds.

Against the label map (0 background, 1–24 class, 255 overlap) and its true chromosomes
(:func:`medseg.evaluation.instances.true_instances`), each predicted object has:

* ``held`` — the true chromosomes it holds at least half of (|p ∩ g| ≥ ½|g|, the merge rule's "holds");
* ``overlap_px`` — its pixels the label map calls overlap (255): a real crossing lies in it from
  :data:`MIN_OVERLAP_PX` (10, as ``mfish-pairs``' smallest overlap) on;
* ``labelled_share`` — the share of its pixels on labelled chromosome pixels (label > 0).

A status is **right** when (:data:`RULES`, :func:`status_right`):

* ``single`` — the object holds exactly one true chromosome;
* ``crossing_split`` — it holds exactly one true chromosome and a labelled overlap lies in it (one chromosome of a
  real crossing, whole with the shared part);
* ``crossing_whole`` — a labelled overlap lies in it and it holds two or more chromosomes (a real crossing, kept
  whole);
* ``clump`` — it holds two or more true chromosomes (touching, or crossing more than once);
* ``doubtful`` — it holds no true chromosome, or less than half of its pixels are labelled chromosome (debris, a
  piece of a chromosome, a nucleus: nothing a karyotyper would count).

Two copies of one class crossing each other are one true instance in the label map (it cannot tell them apart):
such a crossing, split right, scores its halves as holding less than one chromosome each — rare (2 % of the
overlaps). Beside right / wrong, the estimated counts of each status are summed against the chromosomes its
objects hold (``estimated`` vs ``held``): how far the headline's count is off, per status.
"""

from __future__ import annotations

import math

import numpy as np

from medseg.evaluation.instance_overlap import intersections
from medseg.inference.instance_status import STATUSES

__all__ = ["MIN_OVERLAP_PX", "RULES", "pool_statuses", "score_statuses", "status_right", "status_truth"]

MIN_OVERLAP_PX = 10
HOLD = 0.5  # the merge rule's share: an object holds g when it covers at least half of it
RULES = {
    "single": "holds exactly one true chromosome (>= 50 % of it)",
    "crossing_split": "holds exactly one true chromosome and a labelled overlap (>= 10 px of 255) lies in it",
    "crossing_whole": "a labelled overlap (>= 10 px of 255) lies in it and it holds >= 2 true chromosomes",
    "clump": "holds >= 2 true chromosomes",
    "doubtful": "holds no true chromosome, or < 50 % of its pixels are labelled chromosome",
}


def status_truth(pred: list[np.ndarray], true: list[np.ndarray], karyo: np.ndarray) -> list[dict]:
    """Per predicted object (sorted flat pixel indices, as :func:`medseg.evaluation.instances.match_flat` takes
    them) against the true chromosomes (likewise) and the label map: ``held``, ``overlap_px``,
    ``labelled_share`` (module docstring)."""
    from medseg.data.mfish import OVERLAP_VALUE

    flat = np.asarray(karyo).ravel()
    inter = intersections(pred, true)
    area_t = np.array([g.size for g in true], np.int64)
    holds = inter >= HOLD * np.maximum(area_t[None, :], 1) if inter.size else np.zeros((len(pred), 0), bool)
    out = []
    for i, p in enumerate(pred):
        values = flat[p]
        out.append(
            {
                "held": int(holds[i].sum()) if holds.size else 0,
                "overlap_px": int((values == OVERLAP_VALUE).sum()),
                "labelled_share": float((values > 0).mean()) if p.size else 0.0,
            }
        )
    return out


def status_right(status: str, truth: dict) -> bool:
    """Whether an object's ``status`` is right given its :func:`status_truth` (the rules of :data:`RULES`)."""
    held, crossing = truth["held"], truth["overlap_px"] >= MIN_OVERLAP_PX
    if status == "single":
        return held == 1
    if status == "crossing_split":
        return held == 1 and crossing
    if status == "crossing_whole":
        return crossing and held >= 2
    if status == "clump":
        return held >= 2
    if status == "doubtful":
        return held == 0 or truth["labelled_share"] < 0.5
    raise ValueError(f"no status {status!r}: one of {', '.join(STATUSES)}")


def score_statuses(statuses: list[dict], pred: list[np.ndarray], true: list[np.ndarray], karyo: np.ndarray) -> dict:
    """One metaphase: per status (``statuses``: one dict per predicted object, with ``status`` and
    ``estimated_count``) the objects ``n``, those ``right``, and the summed ``estimated`` count against the
    chromosomes they ``held``."""
    out = {s: {"n": 0, "right": 0, "estimated": 0, "held": 0} for s in STATUSES}
    for st, truth in zip(statuses, status_truth(pred, true, karyo), strict=True):
        row = out[st["status"]]
        row["n"] += 1
        row["right"] += status_right(st["status"], truth)
        row["estimated"] += int(st.get("estimated_count", 0))
        row["held"] += truth["held"]
    return out


def pool_statuses(rows: list[dict]) -> dict:
    """Summed over metaphases (each a :func:`score_statuses`), with ``accuracy`` (right / n; NaN for a status no
    object had) and the status's ``rule``."""
    out = {}
    for s in STATUSES:
        total = {k: int(sum(r[s][k] for r in rows)) for k in ("n", "right", "estimated", "held")}
        out[s] = {**total, "accuracy": total["right"] / total["n"] if total["n"] else math.nan, "rule": RULES[s]}
    return out
