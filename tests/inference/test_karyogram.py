"""The karyogram (medseg.inference.karyogram): a synthetic cell of 46 known chromosomes lands in its slots."""

from __future__ import annotations

import numpy as np
from PIL import Image

from medseg.inference.instances import Instance
from medseg.inference.karyogram import KARYOGRAM_ROWS, draw_karyogram, karyogram_slots


def test_a_normal_cell_fills_two_per_autosome_and_x_y_in_the_last_row():
    classes = [c for c in range(1, 23) for _ in range(2)] + [23, 24]
    order = np.random.default_rng(0).permutation(46)
    slots = karyogram_slots([classes[i] for i in order] + [None, 99])
    assert slots[(0, 0)] == sorted(np.flatnonzero(np.array([classes[i] for i in order]) == 1).tolist())
    for r, row in enumerate(KARYOGRAM_ROWS):
        for k, cls in enumerate(row):
            expected = 1 if cls in (23, 24) else 2
            assert len(slots[(r, k)]) == expected and all(classes[order[i]] == cls for i in slots[(r, k)])
    assert KARYOGRAM_ROWS[3][-2:] == (23, 24) and slots[(4, 0)] == [46, 47]  # X, Y last; unclassified apart


def test_draw_karyogram_writes_a_png_marking_low_confidence(tmp_path):
    grey = np.zeros((120, 400), np.uint8)
    instances, records = [], []
    for i in range(8):
        length = 10 + 4 * i
        mask = np.ones((length, 6), bool)
        grey[5 : 5 + length, 10 + 45 * i : 16 + 45 * i] = 120 + 10 * i
        instances.append(Instance(id=i + 1, bbox=(5, 10 + 45 * i, length, 6), mask=mask, how="whole", component=i))
        records.append({"class": 8 - i, "class_confidence": 0.9 if i % 2 else 0.3})
    path = draw_karyogram(grey, instances, records, tmp_path / "k.png", title="synthetic")
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    assert picture.shape[0] > 100 and red.sum() > 50  # the low-confidence ones framed in red


def test_cutout_karyogram_draws_a_cell_given_as_cutouts(tmp_path):
    from medseg.inference.karyogram import cutout_karyogram

    images = np.zeros((3, 32, 16), np.float32)
    images[:, 4:28, 6:10] = 0.5
    path = cutout_karyogram(images, images > 0, [1, 1, None], [0.9, 0.2, None], tmp_path / "cell.png", title="cell")
    assert np.asarray(Image.open(path)).shape[0] > 100
