"""train.sampling: class_balanced draws each foreground class about equally often (an image stands for the
rarest class it holds); uniform keeps every image equally likely."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest

from medseg.config import validate
from medseg.errors import ConfigError
from medseg.training.sampling import class_balanced_weights, image_classes
from medseg.training.trainer import Trainer


def _maps(classes_per_image, size=4):
    """Label maps (N, size, size) holding the given classes (0 elsewhere)."""
    out = np.zeros((len(classes_per_image), size, size), np.uint8)
    for i, classes in enumerate(classes_per_image):
        for j, c in enumerate(classes):
            out[i, 0, j] = c
    return out


def test_each_image_stands_for_its_rarest_class():
    classes = image_classes(_maps([[1], [1], [1], [1, 2], [2], [3]]), "multiclass", background=0)
    assert [c.tolist() for c in classes] == [[1], [1], [1], [1, 2], [2], [3]]
    w = class_balanced_weights(classes)
    # groups: class 1 -> images 0-2, class 2 (2 images, rarer than 1's 4) -> images 3-4, class 3 -> image 5
    assert w == pytest.approx(np.array([1 / 3, 1 / 3, 1 / 3, 1 / 2, 1 / 2, 1.0]) / 3)
    per_class = Counter()
    for g, wi in zip([1, 1, 1, 2, 2, 3], w, strict=True):
        per_class[g] += wi
    assert all(v == pytest.approx(1 / 3) for v in per_class.values())


def test_background_only_images_form_their_own_group_and_multilabel_reads_channels():
    w = class_balanced_weights(image_classes(_maps([[], [], [1]]), "multiclass", background=0))
    assert w == pytest.approx([0.25, 0.25, 0.5])
    multi = np.zeros((2, 3, 4, 4), np.uint8)
    multi[0, 2, 1, 1] = 1
    multi[1, 0, 0, 0] = multi[1, 2, 0, 0] = 1
    assert [c.tolist() for c in image_classes(multi, "multilabel", None)] == [[2], [0, 2]]


def test_a_class_balanced_training_draws_the_rare_class_as_often(tiny_cfg, toy_data, tmp_path, monkeypatch):
    data = copy.deepcopy(toy_data)
    train = list(range(12))
    # image 11 alone holds class 2 (put there by hand); the others hold only class 1 besides background
    fg = data.labels[train] > 0
    data.labels[train] = np.where(fg, 1, 0)
    data.labels[11, :2, :2] = 2
    drawn = []
    real = Trainer.train_step

    def recording(self, batch):
        drawn.extend(int(i) for i in batch["index"])
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", recording)
    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"].update(epochs=1, batch_size=4, steps_per_epoch=40, sampling="class_balanced")
    trainer = Trainer(validate(cfg), tmp_path / "f", data, train, [32, 33], progress=False)
    trainer.fit()
    share = Counter(drawn)[11] / len(drawn)
    assert 0.35 < share < 0.65  # half the draws (uniform: 1 in 12)


def test_an_unknown_sampling_is_refused(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"]["sampling"] = "by_size"
    with pytest.raises(ConfigError, match="sampling"):
        validate(cfg)
