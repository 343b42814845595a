"""How the server stores the result of a multi-label model: one bit per structure, so overlaps are kept.

A multi-label model (``task.mode: multilabel``: one sigmoid channel per structure, e.g. the UW-Madison
GI-tract organs large_bowel, small_bowel, stomach) may put a pixel in two structures at once. Its result is
stored as one **bit-packed label map**: value = Σ 2**c over the channels c whose probability is > 0.5 at
that pixel (0: none). For the GI model: 1 large bowel, 2 small bowel, 4 stomach, 3 large + small bowel,
5 large bowel + stomach, 6 small bowel + stomach, 7 all three. One uint8 value holds up to
:data:`MAX_CHANNELS` structures; the map is written to the result folder in the input's own format
(PNG for an image, NIfTI on the input's grid for a volume or a stack of slices, a zip of label PNGs for a
zip of slice PNGs), so the stored result needs no other reader than an image or NIfTI reader, never
pickle. A one-channel model's map is the same as before this coding existed (1 where the structure is).

Why bits and not one value per structure: a single-label map (the most probable channel) loses the
overlap, while one map per channel multiplies the files; bits keep every channel in one map that every
tool opens, and every per-structure mask is one shift away (``(labels >> c) & 1``, :func:`channel_mask`).
``summary.json`` records the coding (``label_encoding``) with each structure's value, so a download says
how to read it. The viewer's slice layers, the summary (every structure counted on its own: an overlap
pixel counts for both), the DICOM-SEG (one segment per structure; DICOM-SEG allows overlapping segments)
and the 3D Slicer segmentation (``.seg.nrrd``, one layer per structure) are all made from these bits.
"""

from __future__ import annotations

import numpy as np

MAX_CHANNELS = 8  # bits of one uint8 label value

ENCODING_TEXT = (
    "label value = sum of 2**c over the structures c present at the pixel (0: none); structure c's mask "
    "is (value >> c) & 1, so a pixel in two structures keeps both"
)


def check_channels(n: int, model: str = "the model") -> None:
    if n > MAX_CHANNELS:
        raise RuntimeError(
            f"{model} has {n} structures; the server stores at most {MAX_CHANNELS} overlapping "
            "structures per result (one bit each in a uint8 label map)"
        )


def pack(masks: np.ndarray) -> np.ndarray:
    """Binary masks (C, ...) → the bit-packed label map (...) uint8 (bit c = channel c)."""
    masks = np.asarray(masks)
    check_channels(masks.shape[0])
    out = np.zeros(masks.shape[1:], np.uint8)
    for c in range(masks.shape[0]):
        out |= (masks[c] > 0).astype(np.uint8) << c
    return out


def pack_probabilities(proba: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sigmoid probabilities with channels on ``axis`` → bit-packed labels: bit c where channel c > 0.5."""
    return pack(np.moveaxis(np.asarray(proba), axis, 0) > 0.5)


def channel_mask(labels: np.ndarray, c: int) -> np.ndarray:
    """Structure ``c``'s mask (bool) of a bit-packed label map."""
    return ((np.asarray(labels).astype(np.int64, copy=False) >> int(c)) & 1).astype(bool)


def unpack(labels: np.ndarray, n: int) -> np.ndarray:
    """Bit-packed labels (...) → masks (n, ...) bool."""
    return np.stack([channel_mask(labels, c) for c in range(n)]) if n else np.zeros((0, *np.shape(labels)), bool)


def structure_mask(labels: np.ndarray, value: int, multilabel: bool) -> np.ndarray:
    """The mask of the structure named ``label_names[value]`` (:func:`medseg.inference.volume.label_names`):
    ``labels == value`` for a multiclass map; channel ``value - 1`` (names[0] is "background") of a bit-packed
    multi-label map."""
    return channel_mask(labels, value - 1) if multilabel else np.asarray(labels) == value


def file_value(value: int, multilabel: bool) -> int:
    """The value structure ``label_names[value]`` has in the label files: itself, or its bit 2**(value - 1)."""
    return 1 << (value - 1) if multilabel else int(value)


def encoding(names: list[str]) -> dict:
    """``summary.label_encoding`` of a multi-label result whose channels are ``names``."""
    return {
        "kind": "bits",
        "text": ENCODING_TEXT,
        "structures": [{"channel": c, "name": n, "value": 1 << c} for c, n in enumerate(names)],
    }


def overlap_count(labels: np.ndarray) -> int:
    """How many pixels/voxels lie in two structures or more."""
    labels = np.asarray(labels)
    return int(np.count_nonzero(labels & (labels - 1)))  # more than one bit set


__all__ = [
    "ENCODING_TEXT",
    "MAX_CHANNELS",
    "channel_mask",
    "check_channels",
    "encoding",
    "file_value",
    "overlap_count",
    "pack",
    "pack_probabilities",
    "structure_mask",
    "unpack",
]
