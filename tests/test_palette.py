"""One palette everywhere: a label map drawn by each path (evaluation figure, data preview, ``predict``'s colour
label map and overlay, the viewer's label slices and legend colours) shows exactly medseg.palette's colours,
and every figure's legend names the task's classes in those colours."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config import CHROMOSOME_CLASSES
from medseg.palette import (
    CLASS_RGB,
    ERROR_RGB,
    channel_colours,
    class_colours,
    class_hex,
    class_rgb,
    colourize,
    legend_handles,
)

AMFL = {0: (0, 0, 0), 1: (230, 40, 40), 2: (40, 200, 40), 3: (40, 90, 255)}  # black, α red, β green, overlap blue
STATIC = Path(__file__).resolve().parents[1] / "src" / "medseg" / "server" / "static"


def _blocks(size: int = 48) -> np.ndarray:
    """A label map with one large block of each chromosome class (0 background, 1 α, 2 β, 3 overlap)."""
    lab = np.zeros((size, size), np.uint8)
    h = size // 2
    lab[:h, h:] = 1
    lab[h:, :h] = 2
    lab[h:, h:] = 3
    return lab


def _colours(png: Path) -> set[tuple[int, int, int]]:
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    return {tuple(int(v) for v in c) for c in np.unique(rgb, axis=0)}


def test_the_palette_is_amfls_convention():
    for k, rgb in AMFL.items():
        assert tuple(int(v) for v in CLASS_RGB[k]) == rgb
        assert class_hex(k) == "#{:02x}{:02x}{:02x}".format(*rgb)
    assert len({tuple(c) for c in CLASS_RGB.tolist()}) == len(CLASS_RGB)  # distinct
    assert tuple(ERROR_RGB) not in {tuple(c) for c in CLASS_RGB.tolist()}  # the error colour is no class's
    np.testing.assert_array_equal(colourize(_blocks())[-1, -1], AMFL[3])


def test_legend_names_the_task_classes_in_their_colours():
    handles = legend_handles(CHROMOSOME_CLASSES, error=True)
    assert [h.get_label() for h in handles] == [*CHROMOSOME_CLASSES, "error"]
    for k, h in enumerate(handles[:-1]):
        assert tuple(round(255 * v) for v in h.get_facecolor()[:3]) == AMFL[k]
    assert [h.get_label() for h in legend_handles(CHROMOSOME_CLASSES, background=False)] == CHROMOSOME_CLASSES[1:]


def test_evaluation_overlay_figure_uses_the_palette(tmp_path):
    from medseg.evaluation.figures import overlay_examples

    lab = _blocks()[None]
    image = np.full(lab.shape, 0.5, np.float32)
    png = tmp_path / "overlays.png"
    overlay_examples(image, lab, lab, CHROMOSOME_CLASSES, png, indices=[0])
    colours = _colours(png)
    for k, rgb in AMFL.items():
        assert rgb in colours, f"class {k} ({CHROMOSOME_CLASSES[k]}) is not drawn in {rgb}"


def test_data_preview_uses_the_palette(tmp_path):
    from medseg.data.synth import save_preview

    labels = np.stack([_blocks(), _blocks()])
    images = np.full(labels.shape, 200, np.uint8)
    png = save_preview(tmp_path / "preview.png", images, labels, n=2)
    colours = _colours(png)
    for k, rgb in AMFL.items():
        assert rgb in colours, f"class {k} is not drawn in {rgb} in the data preview"
    for old in [(230, 64, 51), (51, 140, 242), (255, 217, 38)]:  # the preview's former α/β/overlap colours
        assert old not in colours


class _StubPredictor:
    """What predict_image_file needs of a Predictor: a label map for any image."""

    class_names = CHROMOSOME_CLASSES
    meta = {"preprocessing": {}, "task": {"derived": {}}, "model": {"name": "stub"}}

    def predict(self, batch):
        return _blocks(batch.shape[-1])[None]


def test_predict_colour_label_map_and_overlay_use_the_palette(tmp_path):
    from medseg.inference.image import overlay, predict_image_file

    source = tmp_path / "cell.png"
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(source)
    predict_image_file(_StubPredictor(), source, tmp_path / "out")
    with Image.open(tmp_path / "out" / "cell_labels_color.png") as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), colourize(_blocks()))
    # the overlay blends the same colours over the image (full opacity: the colours themselves)
    np.testing.assert_array_equal(overlay(np.zeros((48, 48)), _blocks(), alpha=1.0), colourize(_blocks()))


def test_viewer_label_slices_and_legend_use_the_palette():
    from medseg.server.slices import label_rgba

    rgba = label_rgba(_blocks())
    np.testing.assert_array_equal(rgba[..., :3][_blocks() > 0], colourize(_blocks())[_blocks() > 0])
    assert np.all(rgba[..., 3][_blocks() == 0] == 0)  # background transparent over the image


def test_viewer_has_no_class_colours_of_its_own():
    """The page takes class colours from the API (``classes[].colour``), never from its own code."""
    text = "\n".join(p.read_text().lower() for p in STATIC.iterdir() if p.suffix in {".js", ".css", ".html"})
    for k in range(len(CLASS_RGB)):
        r, g, b = (int(v) for v in CLASS_RGB[k])
        if k == 0:
            continue  # black is also a plain UI colour
        assert class_hex(k) not in text
        assert not re.search(rf"rgba?\(\s*{r}\s*,\s*{g}\s*,\s*{b}\b", text)
    assert "c.colour" in text  # the legend swatches are painted with the API's colours


@pytest.mark.parametrize(
    "module",
    [
        "medseg.evaluation.figures",
        "medseg.data.synth",
        "medseg.inference.image",
        "medseg.server.slices",
        "medseg.server.registry",
    ],
)
def test_no_module_defines_class_colours_of_its_own(module):
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(module))
    assert "ListedColormap" not in source
    assert not re.search(r"^_?(CLASS|LABEL)_COLOU?RS\s*=", source, re.MULTILINE), f"{module} defines its own colours"


# ------------------------------------------------------------------ any number of classes (issue 12)
@pytest.mark.parametrize("n", [2, 3, 12, 25, 64])
def test_distinct_colours_for_any_number_of_classes(n):
    colours = class_colours(n)
    rgb = {tuple(c) for c in colours.tolist()}
    assert len(rgb) == n  # every class its own colour, no wrap-around
    assert tuple(colours[0].tolist()) == (0, 0, 0)  # background black
    assert tuple(ERROR_RGB) not in rgb  # the error colour stays no class's
    assert (0, 0, 0) not in {tuple(c) for c in colours[1:].tolist()}
    for k in range(n):  # one palette: every function gives class k the same colour
        assert class_rgb(k) == tuple(colours[k].tolist())
        assert class_hex(k) == "#{:02x}{:02x}{:02x}".format(*colours[k].tolist())


def test_twelve_classes_are_drawn_and_named_in_distinct_colours():
    labels = np.arange(12).reshape(3, 4)
    rgb = colourize(labels)
    assert len({tuple(c) for c in rgb.reshape(-1, 3).tolist()}) == 12
    assert tuple(rgb[2, 2].tolist()) != (0, 0, 0)  # class 10 is not black like the background (it was)
    names = [f"class_{k}" for k in range(12)]
    handles = legend_handles(names)
    assert [h.get_label() for h in handles] == names
    assert len({tuple(round(255 * v) for v in h.get_facecolor()[:3]) for h in handles}) == 12


def test_a_class_keeps_its_colour_whatever_the_number_of_classes():
    np.testing.assert_array_equal(class_colours(30)[:4], class_colours(4))
    np.testing.assert_array_equal(class_colours(4), [AMFL[k] for k in range(4)])  # the chromosome task


def test_background_elsewhere_or_none():
    no_bg = class_colours(3, background=None)
    assert (0, 0, 0) not in {tuple(c) for c in no_bg.tolist()}
    assert tuple(no_bg[0].tolist()) == AMFL[1]  # every class is a structure: class 0 takes the first colour
    bg2 = class_colours(4, background=2)
    assert tuple(bg2[2].tolist()) == (0, 0, 0) and [tuple(c) for c in bg2[[0, 1, 3]].tolist()] == [
        AMFL[1],
        AMFL[2],
        AMFL[3],
    ]
    np.testing.assert_array_equal(colourize(np.array([0, 1, 2, 3]), background=2), bg2)
    assert class_hex(0, background=None) == "#e62828"
    labels = [h.get_label() for h in legend_handles(["a", "b", "bg"], background=False, background_index=2)]
    assert labels == ["a", "b"]


def test_multilabel_channels_take_the_foreground_colours():
    np.testing.assert_array_equal(channel_colours(3), class_colours(4)[1:])  # channel c = class c + 1
    handles = legend_handles(["gtv", "ctv"], multilabel=True)
    assert [tuple(round(255 * v) for v in h.get_facecolor()[:3]) for h in handles] == [AMFL[1], AMFL[2]]


def test_bad_labels_and_background_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        colourize(np.array([[0, -1]]))
    with pytest.raises(ValueError, match="background"):
        class_colours(3, background=-1)
    with pytest.raises(ValueError, match="integer"):
        colourize(np.array([0.5]))
