"""The one class palette: every figure, overlay, label PNG and the web viewer take their class colours here.

AMFL's convention (Section III-A, describing its label maps): background black, the first chromosome (α)
red, the second (β) green, the overlap blue. A task's class *k* always has colour *k*, so a one-class CT
task's target is red like α. Further classes take distinct colours that avoid yellow, which marks wrongly
labelled pixels in the evaluation's error maps (:data:`ERROR_RGB`, not a class).

Legends name the classes with the task's own names (``task.class_names``), the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "CLASS_RGB",
    "ERROR_RGB",
    "class_hex",
    "class_rgb",
    "class_rgb_float",
    "colourize",
    "legend_handles",
]

#: class index → RGB (uint8); class k takes row k (modulo the length)
CLASS_RGB = np.array(
    [
        [0, 0, 0],  # background: black
        [230, 40, 40],  # α (chromosome 1) / a one-class task's target: red
        [40, 200, 40],  # β (chromosome 2): green
        [40, 90, 255],  # overlap: blue
        [255, 140, 0],  # further classes: orange, purple, cyan, magenta, brown, grey-blue
        [150, 70, 220],
        [0, 200, 200],
        [230, 0, 160],
        [140, 90, 40],
        [110, 130, 160],
    ],
    dtype=np.uint8,
)
CLASS_RGB.setflags(write=False)

#: wrongly labelled pixel in an error map (yellow): no class has this colour
ERROR_RGB = (255, 216, 0)


def class_rgb(value: int) -> tuple[int, int, int]:
    """RGB (0-255) of class ``value``."""
    r, g, b = (int(c) for c in CLASS_RGB[int(value) % len(CLASS_RGB)])
    return r, g, b


def class_hex(value: int) -> str:
    """``#rrggbb`` of class ``value`` (the web viewer's legend)."""
    return "#{:02x}{:02x}{:02x}".format(*class_rgb(value))


def class_rgb_float(value: int) -> tuple[float, float, float]:
    """RGB in [0, 1] of class ``value`` (matplotlib)."""
    r, g, b = class_rgb(value)
    return r / 255, g / 255, b / 255


def colourize(labels: np.ndarray) -> np.ndarray:
    """``(...)`` integer label map → ``(..., 3)`` uint8 RGB in the class colours (background black)."""
    labels = np.asarray(labels).astype(np.int64, copy=False)
    return CLASS_RGB[labels % len(CLASS_RGB)]


def legend_handles(class_names: Sequence[str], *, background: bool = True, error: bool = False) -> list:
    """matplotlib legend patches, one per class named with the task's class names (``class_names[k]`` is
    class k); ``background=False`` leaves class 0 out (where it is not drawn), ``error=True`` adds the
    error-map colour."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=class_rgb_float(k), edgecolor="0.5", label=name)
               for k, name in enumerate(class_names) if background or k != 0]
    if error:
        handles.append(Patch(facecolor=tuple(c / 255 for c in ERROR_RGB), edgecolor="0.5", label="error"))
    return handles
