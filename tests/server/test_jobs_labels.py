"""How the worker turns a 2D model's output into one label map: the most probable class (the argmax of the
probabilities, as medseg.inference.volume.label_map does for volumes), never simply the first class present."""

from __future__ import annotations

import numpy as np

from medseg.server import jobs


class _FakePredictor:
    """Returns fixed probabilities (C, H, W) for any (1, H', W') input, centred when the input was padded."""

    def __init__(self, proba: np.ndarray, mode: str, size=None):
        self.proba, self.mode = proba.astype(np.float32), mode
        self.meta = {"preprocessing": {"size": size, "image_pad_value": 0}}
        self.inputs = []

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        self.inputs.append(images.shape)
        c, h, w = self.proba.shape
        _, th, tw = images.shape
        out = np.full((1, c, th, tw), 0.01, np.float32)
        top, left = (th - h) // 2, (tw - w) // 2
        out[0, :, top : top + h, left : left + w] = self.proba
        return out

    def labels_from_proba(self, proba: np.ndarray) -> np.ndarray:  # what Predictor.predict would threshold with
        return proba.argmax(1).astype(np.uint8) if self.mode == "multiclass" else proba > 0.5


def _multilabel_proba() -> np.ndarray:
    proba = np.zeros((2, 3, 4), np.float32)  # classes alpha (value 1) and beta (value 2)
    proba[:, 0, :] = [[0.6], [0.9]]  # both above 0.5, beta more probable -> 2 (the first present would be 1)
    proba[:, 1, :] = [[0.9], [0.6]]  # both above 0.5, alpha more probable -> 1
    proba[:, 2, :] = [[0.2], [0.4]]  # none above 0.5 -> 0
    return proba


def test_multilabel_2d_labels_take_the_most_probable_class():
    pred = _FakePredictor(_multilabel_proba(), "multilabel")
    labels = jobs._label_values(pred, np.zeros((3, 4), np.float32))
    assert labels.dtype == np.uint8 and labels.shape == (3, 4)
    assert labels[0].tolist() == [2] * 4
    assert labels[1].tolist() == [1] * 4
    assert labels[2].tolist() == [0] * 4


def test_multilabel_2d_labels_after_padding_are_cropped_back():
    pred = _FakePredictor(_multilabel_proba(), "multilabel", size=[8, 9])
    labels = jobs._label_values(pred, np.zeros((3, 4), np.float32))
    assert pred.inputs == [(1, 8, 9)]  # padded to the model's input like in training
    assert labels.shape == (3, 4) and labels[:, 0].tolist() == [2, 1, 0]


def test_multiclass_2d_labels_are_the_argmax():
    proba = np.zeros((4, 2, 2), np.float32)
    proba[:, 0, 0] = [0.1, 0.2, 0.3, 0.4]
    proba[:, 0, 1] = [0.7, 0.1, 0.1, 0.1]
    proba[:, 1, 0] = [0.2, 0.5, 0.2, 0.1]
    proba[:, 1, 1] = [0.1, 0.1, 0.6, 0.2]
    labels = jobs._label_values(_FakePredictor(proba, "multiclass"), np.zeros((2, 2), np.float32))
    assert labels.tolist() == [[3, 0], [1, 2]]


def test_docstring_names_the_rule_the_code_uses():
    doc = " ".join((jobs._label_values.__doc__ or "").split())
    assert "most probable" in doc and "highest probability" in doc and "first class" not in doc
