"""The task's background class is the one drawn black / transparent — in the viewer's slices and legend, in
`predict`'s overlays — not always label 0 (``task.background``: another index, or null for none)."""

import numpy as np

from medseg.inference.image import overlay
from medseg.inference.volume import display_background
from medseg.palette import class_hex
from medseg.server.slices import label_rgba

LABELS = np.array([[0, 1], [2, 2]], np.uint8)


def test_display_background_follows_the_task():
    assert display_background({"task": {"mode": "multiclass", "class_names": ["a", "b"]}}) == 0
    assert display_background({"task": {"mode": "multiclass", "class_names": ["a", "b"], "background": None}}) is None
    assert display_background({"task": {"mode": "multiclass", "class_names": ["a", "b", "bg"], "background": 2}}) == 2
    # multilabel label maps: 0 is "no channel set" whatever the task says
    assert display_background({"task": {"mode": "multilabel", "class_names": ["x"], "background": None}}) == 0


def test_viewer_slices_are_transparent_on_the_tasks_background_only():
    assert label_rgba(LABELS)[..., 3].tolist() == [[0, 255], [255, 255]]
    assert label_rgba(LABELS, background=2)[..., 3].tolist() == [[255, 255], [0, 0]]
    assert label_rgba(LABELS, background=None)[..., 3].tolist() == [[255, 255], [255, 255]]
    # with no background class, class 0 is a coloured class like the others (not black)
    assert label_rgba(LABELS, background=None)[0, 0, :3].tolist() != [0, 0, 0]
    assert class_hex(0, None) != "#000000" and class_hex(2, 2) == "#000000"


def test_predict_overlay_colours_every_class_but_the_background():
    image = np.full((2, 2), 0.5, np.float32)
    grey = overlay(image, LABELS, background=2)
    assert grey[1, 0].tolist() == [127, 127, 127]  # background: the image unchanged
    assert len(set(map(tuple, grey[0, 0:1].tolist() + grey[1, 0:1].tolist()))) == 2  # class 0 tinted
    assert overlay(image, LABELS, background=None)[1, 1].tolist() != [127, 127, 127]
