"""The pair model's part of the whole-metaphase chain: where its crop of a crossing lies, what it is fed, and how its
labels part the crossing's component into two chromosomes (:func:`pair_model_split`); the rules around it (when
it is asked, what happens when it declines) are :func:`medseg.inference.instances.separate_instances`'.

This module must not import :mod:`medseg.training` (layering: inference never imports the trainer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.data.mfish_pair_crops import bounding_box  # the boxes mfish-pairs places its crops by
from medseg.errors import DataValidationError
from medseg.inference.crossings import nearest_seed

__all__ = [
    "MIN_PAIR_CONFIDENCE",
    "MIN_PART_PX",
    "PAIR_CROP",
    "bounding_box",
    "check_pair_model",
    "crop_origin",
    "pair_labels",
    "pair_model_split",
    "split_component",
]

PAIR_CROP = (94, 93)  # rows x columns: the Pommier / mfish-pairs crop
MIN_PART_PX = 15  # px of A-only and of B-only the pair model must find for a split to stand
#: The pair model's mean top-class probability over the crossing's own pixels under which its cut is not trusted
#: (the crossing is kept whole: a karyotyper can cut a whole cluster, a wrong cut hands them two wrong chromosomes).
MIN_PAIR_CONFIDENCE = 0.8


def check_pair_model(meta: dict, where: str | Path) -> None:
    """Refuse (naming ``where``) a pair model that is not 2D, multiclass, four classes (Pommier's layout)."""
    task = meta.get("task") or {}
    names = list(task.get("class_names") or [])
    if len(names) != 4 or task.get("mode", "multiclass") != "multiclass" or int(task.get("spatial_dims", 2)) != 2:
        raise DataValidationError(
            where,
            f"not a pair model: --pair-model takes a 2D model of four classes "
            f"(background, chromosome A, chromosome B, overlap, as trained on `medseg "
            f"data mfish-pairs`), this one has {len(names)} ({', '.join(map(str, names))})",
        )


def crop_origin(
    component_box: tuple[int, int, int, int],
    overlap_box: tuple[int, int, int, int],
    shape: tuple[int, int],
    crop: tuple[int, int] = PAIR_CROP,
) -> tuple[int, int]:
    """(top, left) of the pair crop as ``mfish-pairs`` places it: per axis centred on the component's extent
    when it fits in the crop, else on the overlap's; shifted to stay inside the image. Boxes are
    (r0, r1, c0, c1) half-open."""
    from medseg.data.mfish_pair_crops import _crop_start  # the one placement rule for real pairs and for prediction

    top, _ = _crop_start(component_box[:2], overlap_box[:2], crop[0], shape[0])
    left, _ = _crop_start(component_box[2:], overlap_box[2:], crop[1], shape[1])
    return max(top, 0), max(left, 0)


def pair_labels(
    pair_predictor, image: np.ndarray, top: int, left: int, pair: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The pair model's 0/1/2/3 labels on the crop at (top, left) of ``image`` (float [0, 1]) and its top-class
    probability per pixel; an image smaller than the crop is padded with its median (the dark background) and
    both cropped back. A pair model trained on pairs shown alone (its ``preprocessing.pair_isolate_px``) gets the
    crop so: ``pair`` (the component, a boolean mask of ``image``'s shape) alone (``isolate_pair``)."""
    from medseg.data.mfish_pair_crops import isolate_pair
    from medseg.inference.image import predict_arrays

    ch, cw = PAIR_CROP
    window = image[top : top + ch, left : left + cw]
    h, w = window.shape
    isolate_px = ((getattr(pair_predictor, "meta", None) or {}).get("preprocessing") or {}).get("pair_isolate_px")
    if isolate_px is not None and pair is not None:
        window = isolate_pair(window, pair[top : top + ch, left : left + cw], int(isolate_px))
    if (h, w) != PAIR_CROP:
        window = np.pad(window, ((0, ch - h), (0, cw - w)), constant_values=float(np.median(image)))
    proba = np.asarray(predict_arrays(pair_predictor, window.astype(np.float32), probabilities=True))[:, :h, :w]
    return proba.argmax(0), proba.max(0)


def split_component(
    comp: np.ndarray, overlap: np.ndarray, pair: np.ndarray, min_part_px: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(A, B) boolean masks on the component's window, or None when the pair model finds no two chromosomes.
    ``comp``/``overlap`` are windows; ``pair`` the pair model's labels placed on the same window (-1 outside
    the crop)."""
    own = comp & ~overlap
    seed_a = own & (pair == 1)
    seed_b = own & (pair == 2)
    if seed_a.sum() < min_part_px or seed_b.sum() < min_part_px:
        return None
    seeds = np.zeros(comp.shape, np.int8)
    seeds[seed_a] = 1
    seeds[seed_b] = 2
    nearest = nearest_seed(seeds)
    a = (own & (nearest == 1)) | overlap
    b = (own & (nearest == 2)) | overlap
    return a, b


def pair_model_split(
    pair_predictor,
    image: np.ndarray,
    shape: tuple[int, int],
    comp: np.ndarray,
    box: tuple[int, int, int, int],
    overlap: np.ndarray,
    min_part_px: int,
    min_pair_confidence: float,
) -> tuple[str, tuple[np.ndarray, np.ndarray] | None]:
    """The pair model's parting of one component (``comp`` at ``box``) with one overlap region: ("pair_model",
    (A, B)), or why it is kept whole ("pair_model_unsure" or "pair_model_failed", None)."""
    top0, left0 = box[:2]
    r0, r1, c0, c1 = bounding_box(overlap)
    top, left = crop_origin(
        (top0, top0 + comp.shape[0], left0, left0 + comp.shape[1]),
        (top0 + r0, top0 + r1, left0 + c0, left0 + c1),
        shape,
    )
    whole = np.zeros(shape, bool)
    whole[top0 : top0 + comp.shape[0], left0 : left0 + comp.shape[1]] = comp
    labels, sure = pair_labels(pair_predictor, image, top, left, whole)
    pair = np.full(comp.shape, -1, np.int16)  # the crop's labels on the component's window
    confidence = np.full(comp.shape, np.nan, np.float32)
    rs, re_ = max(top, top0), min(top + labels.shape[0], top0 + comp.shape[0])
    cs, ce = max(left, left0), min(left + labels.shape[1], left0 + comp.shape[1])
    if rs < re_ and cs < ce:
        pair[rs - top0 : re_ - top0, cs - left0 : ce - left0] = labels[rs - top : re_ - top, cs - left : ce - left]
        confidence[rs - top0 : re_ - top0, cs - left0 : ce - left0] = sure[rs - top : re_ - top, cs - left : ce - left]
    own = confidence[comp & ~overlap]
    if own[np.isfinite(own)].size and float(np.nanmean(own)) < min_pair_confidence:
        return "pair_model_unsure", None
    split = split_component(comp, overlap, pair, min_part_px)
    return ("pair_model_failed", None) if split is None else ("pair_model", split)
