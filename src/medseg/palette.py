"""The one class palette: every figure, overlay, label PNG and the web viewer take their class colours here.

One palette for any number of classes. The background class is black; the other classes take the
foreground colours in order. The first three are AMFL's convention (Section III-A, describing its label
maps): red, green, blue — so the chromosome task keeps background black, α red, β green, overlap blue, and a
one-class CT task's target is red like α. Further classes take distinct colours (today's orange, purple,
cyan, magenta, brown, grey-blue, then matplotlib's ``tab20`` light tints, then generated hues), for any N.
No class is ever yellow: yellow marks wrongly labelled pixels in the evaluation's error maps
(:data:`ERROR_RGB`, not a class).

Background: class 0 by default (``task.background: 0``). ``background=k`` makes class k black and gives the
others the foreground colours in their order; ``background=None`` (no background class, every class scored)
gives every class a foreground colour, class 0 red. Multi-label tasks have no background class: channel c is
drawn in foreground colour c (:func:`channel_colours`), the colour of class c + 1 of a label map whose 0 is
"no channel set" — the same colour the viewer shows.

Legends name the classes with the task's own names (``task.class_names``), the same everywhere.

Nothing of medseg is imported here (palette is a leaf of the import graph).
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CLASS_RGB",
    "ERROR_RGB",
    "FOREGROUND_RGB",
    "channel_colours",
    "channel_hex",
    "class_colours",
    "class_hex",
    "class_rgb",
    "class_rgb_float",
    "colourize",
    "legend_handles",
]

#: wrongly labelled pixel in an error map (yellow): no class has this colour
ERROR_RGB = (255, 216, 0)

#: the hand-picked foreground colours, in order (class k of a task whose background is 0 takes row k - 1)
FOREGROUND_RGB = np.array(
    [
        [230, 40, 40],  # α (chromosome 1) / a one-class task's target: red
        [40, 200, 40],  # β (chromosome 2): green
        [40, 90, 255],  # overlap: blue
        [255, 140, 0],  # orange
        [150, 70, 220],  # purple
        [0, 200, 200],  # cyan
        [230, 0, 160],  # magenta
        [140, 90, 40],  # brown
        [110, 130, 160],  # grey-blue
        # matplotlib tab20's light tints (its olive tints left out: too near the error yellow)
        [174, 199, 232],
        [255, 187, 120],
        [152, 223, 138],
        [255, 152, 150],
        [197, 176, 213],
        [196, 156, 148],
        [247, 182, 210],
        [199, 199, 199],
        [158, 218, 229],
    ],
    dtype=np.uint8,
)
FOREGROUND_RGB.setflags(write=False)

#: class index → RGB (uint8) of a task whose background is class 0: black, then :data:`FOREGROUND_RGB`.
#: Classes beyond its length take generated colours (:func:`class_colours`), never a repeat.
CLASS_RGB = np.concatenate([np.zeros((1, 3), np.uint8), FOREGROUND_RGB])
CLASS_RGB.setflags(write=False)

_MIN_GENERATED_DISTANCE = 40.0  # RGB distance a generated colour keeps from every earlier one (while it can)


def _too_close(rgb: np.ndarray, taken: np.ndarray, limit: float) -> bool:
    return bool(taken.size) and float(np.min(np.linalg.norm(taken.astype(np.float64) - rgb, axis=1))) < limit


def _foreground(n: int) -> np.ndarray:
    """The first ``n`` foreground colours (read-only): a prefix of one fixed sequence, so a class's colour
    does not depend on how many classes the task has."""
    size = len(FOREGROUND_RGB)
    while size < n:
        size *= 2
    return _sequence(size)[:n]


@functools.lru_cache(maxsize=16)
def _sequence(n: int) -> np.ndarray:
    """The first ``n`` foreground colours: :data:`FOREGROUND_RGB`, then generated ones (read-only).

    Generated colours step the hue by the golden angle at a few saturation/brightness levels, skip yellow
    hues (the error colour), near-black and near-white, and keep a distance from every earlier colour while
    there is room; a colour equal to an earlier one is never taken, so any number of classes stays distinct.
    """
    colours = [tuple(int(v) for v in c) for c in FOREGROUND_RGB[: max(n, 0)]]
    taken = np.array(colours, dtype=np.float64).reshape(-1, 3)
    error = np.array(ERROR_RGB, dtype=np.float64)
    seen = set(colours)
    k = 0
    limit = _MIN_GENERATED_DISTANCE
    while len(colours) < n:
        k += 1
        hue = (k * 0.61803398875) % 1.0
        sat = (0.9, 0.6, 0.75)[k % 3]
        val = (0.85, 0.65, 0.95, 0.5)[(k // 3) % 4]
        rgb = np.round(np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255)
        if 0.11 <= hue <= 0.19 or np.linalg.norm(rgb - error) < 60 or rgb.max() < 60 or rgb.min() > 225:
            continue
        key = tuple(int(v) for v in rgb)
        if key in seen:
            continue
        if _too_close(rgb, taken, limit):
            if k % 997 == 0:  # crowded: ask for less distance, never for a repeat
                limit *= 0.8
            continue
        colours.append(key)
        seen.add(key)
        taken = np.vstack([taken, rgb])
    out = np.array(colours, dtype=np.uint8).reshape(-1, 3)
    out.setflags(write=False)
    return out


def _check_background(background: int | None) -> None:
    if background is not None and (
        isinstance(background, bool) or not isinstance(background, (int, np.integer)) or background < 0
    ):
        raise ValueError(f"background must be a class index >= 0 or None, got {background!r}")


def class_colours(n_classes: int, background: int | None = 0) -> np.ndarray:
    """``(n_classes, 3)`` uint8: the colour of every class, all distinct; class ``background`` black.

    ``background=None``: no class is black (every class is a structure). A background index at or beyond
    ``n_classes`` leaves every class in colour too (class indices below it keep their order).
    """
    _check_background(background)
    if n_classes < 0:
        raise ValueError(f"the number of classes must be >= 0, got {n_classes}")
    n_fg = n_classes - (1 if background is not None and background < n_classes else 0)
    fg = _foreground(n_fg)
    out = np.zeros((n_classes, 3), np.uint8)
    rank = 0
    for k in range(n_classes):
        if k == background:
            continue
        out[k] = fg[rank]
        rank += 1
    return out


def channel_colours(n_channels: int) -> np.ndarray:
    """``(n_channels, 3)`` uint8 colours of a multi-label task's channels: channel c = foreground colour c
    (= class c + 1 of the label map whose 0 means "no channel set")."""
    return np.array(_foreground(n_channels), copy=True)


def _rank(value: int, background: int | None) -> int:
    """The foreground rank of class ``value`` (not the background)."""
    return value - (1 if background is not None and value > background else 0)


def class_rgb(value: int, background: int | None = 0) -> tuple[int, int, int]:
    """RGB (0-255) of class ``value`` (black when it is the background class)."""
    value = int(value)
    if value < 0:
        raise ValueError(f"class values are >= 0, got {value}")
    _check_background(background)
    if value == background:
        return 0, 0, 0
    r, g, b = (int(c) for c in _foreground(_rank(value, background) + 1)[-1])
    return r, g, b


def class_hex(value: int, background: int | None = 0) -> str:
    """``#rrggbb`` of class ``value`` (the web viewer's legend)."""
    return "#{:02x}{:02x}{:02x}".format(*class_rgb(value, background))


def class_rgb_float(value: int, background: int | None = 0) -> tuple[float, float, float]:
    """RGB in [0, 1] of class ``value`` (matplotlib)."""
    r, g, b = class_rgb(value, background)
    return r / 255, g / 255, b / 255


def colourize(labels: np.ndarray, background: int | None = 0) -> np.ndarray:
    """``(...)`` integer label map → ``(..., 3)`` uint8 RGB in the class colours (class ``background`` black).

    Any label value gets its own colour (no wrap-around onto another class's colour); negative values are
    refused.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        if labels.size and not np.all(np.mod(labels, 1) == 0):
            raise ValueError("colourize expects an integer label map, got non-integer values")
        labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"label values must be >= 0, got {int(labels.min())}")
    n = int(labels.max()) + 1 if labels.size else 1
    return class_colours(max(n, 1), background)[labels.astype(np.intp, copy=False)]


def legend_handles(
    class_names: Sequence[str],
    *,
    background: bool = True,
    error: bool = False,
    background_index: int | None = 0,
    multilabel: bool = False,
) -> list:
    """matplotlib legend patches, one per class named with the task's class names (``class_names[k]`` is
    class k, in :func:`class_colours` for ``background_index``); ``background=False`` leaves the background
    class out (where it is not drawn); ``multilabel=True`` names channels in :func:`channel_colours` (there
    is no background class); ``error=True`` adds the error-map colour."""
    from matplotlib.patches import Patch

    names = [str(n) for n in class_names]
    if multilabel:
        colours, skip = channel_colours(len(names)), None
    else:
        colours, skip = class_colours(len(names), background_index), background_index
    handles = [
        Patch(facecolor=tuple(int(c) / 255 for c in colours[k]), edgecolor="0.5", label=name)
        for k, name in enumerate(names)
        if background or k != skip
    ]
    if error:
        handles.append(Patch(facecolor=tuple(c / 255 for c in ERROR_RGB), edgecolor="0.5", label="error"))
    return handles


def channel_hex(channel: int) -> str:
    """``#rrggbb`` of a multi-label task's channel ``channel`` (:func:`channel_colours`; = :func:`class_hex`
    of class ``channel + 1`` with background 0): the web viewer's colour of that structure."""
    if int(channel) < 0:
        raise ValueError(f"channels are >= 0, got {channel}")
    return class_hex(int(channel) + 1, 0)
