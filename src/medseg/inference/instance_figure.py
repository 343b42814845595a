"""The picture of a metaphase's chromosome instances (``medseg predict``'s ``instances.png``): each instance in its
own colour and numbered, overlap pixels white, outlined in its status's colour when statuses are given
(:mod:`medseg.inference.instance_status`), optionally beside the true instances.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage


class InstancesToDraw(Protocol):
    """What a figure needs of :class:`medseg.inference.instances.InstanceResult` (which imports this module)."""

    instances: list

    def masks(self) -> list[np.ndarray]: ...


def instance_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours for n instances (the project palette's generated sequence, background left out)."""
    from medseg.palette import class_colours

    return class_colours(n + 1)[1:]


def instance_figure(
    image: np.ndarray,
    result: InstancesToDraw,
    path: str | Path,
    *,
    title: str = "",
    truth: list[np.ndarray] | None = None,
    statuses: list[dict] | None = None,
) -> Path:
    """:func:`draw_instance_figure` saved as a PNG at ``path``."""
    fig = draw_instance_figure(image, result, title=title, truth=truth, statuses=statuses)
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def draw_instance_figure(
    image: np.ndarray,
    result: InstancesToDraw,
    *,
    title: str = "",
    truth: list[np.ndarray] | None = None,
    statuses: list[dict] | None = None,
):
    """The metaphase with every instance in its own colour, numbered at its centre; shared (overlap) pixels white
    so that both chromosomes of a crossing stay visible. With ``statuses`` (one dict per instance, in order, with
    ``status`` and ``estimated_count``: :func:`medseg.inference.instance_status.instance_statuses`) each object's
    outline and number box take its status's colour and its number a letter
    (:data:`~medseg.inference.instance_status.STATUS_MARK`), and a legend names the statuses present with their
    counts. With ``truth`` (full-size masks), the true instances are drawn beside it the same way. Returns the
    matplotlib Figure (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from medseg.inference.instance_status import STATUS_COLOUR, STATUS_MARK

    grey = np.clip(np.asarray(image, np.float32), 0, 1)
    if statuses is not None and len(statuses) != len(result.instances):
        raise ValueError(f"{len(statuses)} statuses for {len(result.instances)} instances")

    def rgb_of(hex_colour: str) -> np.ndarray:
        return np.array([int(hex_colour[k : k + 2], 16) for k in (1, 3, 5)], np.float32)

    def paint(masks: list[np.ndarray], outlines: list[str] | None) -> np.ndarray:
        rgb = np.repeat(grey[..., None] * 255, 3, axis=-1)
        colours = instance_colours(len(masks)).astype(np.float32)
        count = np.zeros(grey.shape, np.int16)
        for m, c in zip(masks, colours, strict=True):
            rgb[m] = 0.35 * rgb[m] + 0.65 * c
            count += m
        for m, colour in zip(masks, outlines or [], strict=False):  # a 2 px rim in the status colour, inside the object
            rgb[m & ~ndimage.binary_erosion(m, iterations=2)] = rgb_of(colour)
        rgb[count >= 2] = 255.0  # shared pixels: white, over the rims too
        return rgb.clip(0, 255).astype(np.uint8)

    named = [s.get("status") for s in statuses] if statuses is not None else None
    panels = [("predicted instances", result.masks(), [i.id for i in result.instances], named)]
    if truth is not None:
        panels.insert(0, ("true instances (label map)", truth, list(range(1, len(truth) + 1)), None))
    h, w = grey.shape
    fig = Figure(figsize=(6.4 * len(panels), 6.4 * h / w + (1.4 if statuses is not None else 0.6)), dpi=110)
    FigureCanvasAgg(fig)
    for k, (name, masks, ids, marks) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(
            paint(masks, None if marks is None else [STATUS_COLOUR.get(m, "#ffffff") for m in marks]),
            interpolation="nearest",
        )
        for j, (m, i) in enumerate(zip(masks, ids, strict=True)):
            if m.any():
                r, c = ndimage.center_of_mass(m)
                status = marks[j] if marks is not None else None
                ax.text(
                    c,
                    r,
                    f"{i}{STATUS_MARK.get(status, '')}",
                    color="white",
                    fontsize=6,
                    ha="center",
                    va="center",
                    bbox={
                        "boxstyle": "round,pad=0.1",
                        "lw": 0,
                        "alpha": 0.8 if status else 0.5,
                        "fc": STATUS_COLOUR.get(status, "black"),
                    },
                )
        ax.set_title(
            f"{name}: {len(masks)}" + (" (white: overlap, in two chromosomes)" if k == len(panels) - 1 else ""),
            fontsize=9,
        )
        ax.set_axis_off()
        if marks is not None:
            _status_legend(ax, marks, statuses)
    if title:  # wrapped: the headline is longer than one panel is wide
        fig.suptitle("\n".join(textwrap.fill(line, 75 * len(panels)) for line in title.split("\n")), fontsize=10)
    fig.tight_layout()
    return fig


def _status_legend(ax, marks: list[str], statuses: list[dict]) -> None:
    """A legend under ``ax`` naming the statuses among ``marks`` with their counts (for the objects of several
    chromosomes also how many chromosomes they hold)."""
    from matplotlib.patches import Patch

    from medseg.inference.instance_status import STATUS_COLOUR, STATUS_MARK, STATUS_TEXT, STATUSES

    handles = []
    for s in STATUSES:
        n = marks.count(s)
        if not n:
            continue
        mark = f"{STATUS_MARK[s]}: " if STATUS_MARK[s] else ""
        label = f"{mark}{STATUS_TEXT[s]} ({n}"
        if s in ("clump", "crossing_whole"):  # objects of several chromosomes: how many they hold
            label += f", ≈ {sum(st.get('estimated_count', 0) for st in statuses if st.get('status') == s)}"
        handles.append(Patch(facecolor=STATUS_COLOUR[s], label=label + ")"))
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.01),
            ncol=min(3, len(handles)),
            fontsize=7,
            frameon=False,
            title="status (outline, number box; letter after the number)",
            title_fontsize=7,
        )
