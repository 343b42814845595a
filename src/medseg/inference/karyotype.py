"""The karyotype class of every separated chromosome (``medseg predict RUN metaphase.tif
--pair-model PAIR_RUN --karyotype-model KARYO_RUN``).

The karyotyping model is a per-pixel classifier of a chromosome's DAPI cut-out (25 classes: background, 1–22,
X, Y; ``configs/mfish/karyotype_unet.yaml`` on ``mfish:karyotype``, :mod:`medseg.data.mfish_karyotype`). Each
instance of :mod:`medseg.inference.instances` is cut out exactly as the training set cuts its chromosomes — the
same :func:`~medseg.data.mfish_karyotype.chromosome_cutout` (grey values inside the mask, background zeroed, box
centred on the model's canvas, never rescaled) — the model gives per-pixel probabilities, and the vote over the
instance's mask (:func:`medseg.metrics.karyotype.vote`: ``soft`` mean probability by default, or ``majority``)
gives its class and confidence. An instance larger than the canvas (a cluster kept whole, say) gets no class
(``None``) and a ``class_note`` saying why.

A model trained on upright cut-outs (``mfish:karyotype-upright``: its canvas is not square, e.g. 64 × 32) gets
them the same way: each instance rotated to its long axis and scaled by the median length and DAPI intensity of
all instances of its metaphase (:func:`medseg.data.karyotype_features.upright_cutout`), none left out.

This module must not import :mod:`medseg.training` (layering: inference never imports the trainer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.data.karyotype_features import metaphase_cutouts
from medseg.data.mfish_karyotype import CANVAS, KARYOTYPE_CLASSES, MARGIN, chromosome_cutout, is_karyotype_task
from medseg.errors import DataValidationError
from medseg.metrics.karyotype import vote as vote_of

__all__ = ["check_karyotype_model", "classify_instances", "grey_uint8"]


def check_karyotype_model(meta: dict, where: str | Path) -> None:
    """Refuse (naming ``where``) a model that is not a 2D multiclass model of the karyotype's classes."""
    task = meta.get("task") or {}
    names = [str(n) for n in task.get("class_names") or []]
    if (
        not is_karyotype_task(names)
        or task.get("mode", "multiclass") != "multiclass"
        or int(task.get("spatial_dims", 2)) != 2
    ):
        raise DataValidationError(
            where,
            "not a karyotyping model: --karyotype-model takes a 2D model of the classes "
            f"{', '.join(KARYOTYPE_CLASSES)} (configs/mfish/karyotype_unet.yaml); this "
            f"one has {len(names)} ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})",
        )


def grey_uint8(image: np.ndarray) -> np.ndarray:
    """The metaphase as the 8-bit grey the training cut-outs hold: uint8 as it is, a float image in [0, 1]
    (:func:`medseg.data.folder.normalize_intensity` of an 8-bit file) × 255, rounded."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _canvas_size(meta: dict) -> int:
    size = (meta.get("preprocessing") or {}).get("size")
    if size and len(size) == 2 and int(size[0]) == int(size[1]):
        return int(size[0])
    return CANVAS


def _upright_shape(meta: dict) -> tuple[int, int] | None:
    """The canvas of a model trained on upright cut-outs (the only non-square karyotype canvas), else None."""
    size = (meta.get("preprocessing") or {}).get("size")
    if size and len(size) == 2 and int(size[0]) != int(size[1]):
        return int(size[0]), int(size[1])
    return None


def classify_instances(
    predictor, image: np.ndarray, instances: Sequence, *, vote: str = "soft", margin: int = MARGIN
) -> list[dict]:
    """One dict per instance (in order): ``class`` (1–24, or None), ``class_name`` (``"1"``..``"22"``, ``"X"``,
    ``"Y"``, or None), ``class_confidence`` (the vote's score in [0, 1], or None); ``class_note`` only when no
    class was given. ``predictor``: a :class:`~medseg.inference.predictor.Predictor` of a karyotyping model;
    ``image``: the metaphase (2-D, uint8 or float in [0, 1]); ``instances``: objects with ``bbox`` (top, left,
    height, width) and ``mask`` (bool, that box), as :class:`medseg.inference.instances.Instance`."""
    check_karyotype_model(predictor.meta, "the karyotyping model")
    grey = grey_uint8(image)
    if grey.ndim != 2:
        raise ValueError(f"image must be 2-D, got {grey.shape}")
    size = _canvas_size(predictor.meta)
    out: list[dict] = [{"class": None, "class_name": None, "class_confidence": None} for _ in instances]
    cuts, masks, where = [], [], []
    upright = _upright_shape(predictor.meta)
    if upright is not None and len(instances):
        windows = [
            (grey[t : t + h, left : left + w], np.asarray(inst.mask, bool))
            for inst in instances
            for t, left, h, w in [(int(v) for v in inst.bbox)]
        ]
        for k, (cut, mask, _) in enumerate(metaphase_cutouts(windows, upright)[1]):
            cuts.append(cut)
            masks.append(mask)
            where.append(k)
    for k, inst in enumerate(instances if upright is None else ()):
        t, left, h, w = (int(v) for v in inst.bbox)
        cut = chromosome_cutout(grey[t : t + h, left : left + w], inst.mask, size, margin)
        if cut is None:
            out[k]["class_note"] = (
                f"larger than the model's {size} x {size} canvas (bounding box {w} × {h} px, "
                "width × height): not classified (never rescaled: length is a class cue)"
            )
            continue
        cuts.append(cut[0])
        masks.append(cut[1])
        where.append(k)
    if not cuts:
        return out
    proba = predictor.predict_proba(np.stack(cuts).astype(np.float32) / 255.0)
    background = int((predictor.meta.get("task") or {}).get("background") or 0)
    for k, p, mask in zip(where, proba, masks, strict=True):
        cls, confidence, _ = vote_of(p, mask, vote, background=background)
        out[k].update({"class": cls, "class_name": KARYOTYPE_CLASSES[cls], "class_confidence": round(confidence, 4)})
    return out
