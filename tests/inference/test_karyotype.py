"""The class of every separated chromosome (medseg.inference.karyotype): the cut-out is the training set's, the vote
names the class; and `medseg predict --karyotype-model` with a tiny model folder as training writes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.data.mfish_karyotype import CANVAS, KARYOTYPE_CLASSES, chromosome_cutout
from medseg.errors import DataValidationError
from medseg.inference.instances import Instance
from medseg.inference.karyotype import classify_instances


class LengthModel:
    """A karyotyping "model" that calls a chromosome 1 when its cut-out is taller than 30 px, else Y; it keeps what
    it was fed."""

    meta = {
        "preprocessing": {"size": [CANVAS, CANVAS]},
        "task": {"class_names": list(KARYOTYPE_CLASSES), "mode": "multiclass", "background": 0},
    }

    def __init__(self):
        self.fed = None

    def predict_proba(self, images):
        self.fed = np.asarray(images)
        out = np.zeros((len(images), len(KARYOTYPE_CLASSES), *self.fed.shape[1:]), np.float32)
        for k, image in enumerate(self.fed):
            rows = np.flatnonzero((image > 0).any(axis=1))
            cls = 1 if rows[-1] - rows[0] + 1 > 30 else 24
            out[k, 0], out[k, cls] = 0.2, 0.8
        return out


def _instance(i: int, top: int, left: int, mask: np.ndarray) -> Instance:
    return Instance(id=i, bbox=(top, left, *mask.shape), mask=mask, how="whole", component=i)


def test_an_upright_model_gets_the_upright_cutouts_of_the_training_set():
    from medseg.data.karyotype_features import UPRIGHT_SHAPE, metaphase_cutouts

    rng = np.random.default_rng(1)
    metaphase = rng.integers(10, 250, size=(200, 200)).astype(np.uint8)
    lying, standing = np.ones((8, 40), bool), np.ones((14, 6), bool)
    instances = [_instance(1, 10, 20, lying), _instance(2, 100, 150, standing), _instance(3, 60, 60, standing)]
    model = LengthModel()
    model.meta = dict(LengthModel.meta, preprocessing={"size": list(UPRIGHT_SHAPE)})
    out = classify_instances(model, metaphase, instances)
    assert [o["class"] for o in out] == [1, 24, 24]  # the lying one stood up: taller than 30 px on the canvas
    windows = [
        (metaphase[10:18, 20:60], lying),
        (metaphase[100:114, 150:156], standing),
        (metaphase[60:74, 60:66], standing),
    ]
    expected = np.stack([c[0] for c in metaphase_cutouts(windows)[1]])  # the training set's rule
    np.testing.assert_allclose(model.fed, expected / 255.0)


def test_classify_instances_feeds_the_training_cutout_and_votes():
    rng = np.random.default_rng(0)
    metaphase = rng.integers(10, 250, size=(300, 300)).astype(np.uint8)
    tall = np.ones((40, 8), bool)
    tall[0, 0] = False
    short = np.ones((12, 6), bool)
    huge = np.ones((CANVAS, 10), bool)  # a cluster kept whole: larger than the canvas
    instances = [_instance(1, 10, 20, tall), _instance(2, 100, 150, short), _instance(3, 150, 5, huge)]
    model = LengthModel()
    out = classify_instances(model, metaphase, instances)
    assert [o["class"] for o in out] == [1, 24, None]
    assert [o["class_name"] for o in out] == ["1", "Y", None]
    assert out[0]["class_confidence"] == pytest.approx(0.8) and out[2]["class_confidence"] is None
    assert (
        f"larger than the model's {CANVAS} x {CANVAS} canvas (bounding box 10 × {CANVAS} px, width × height)"
        in out[2]["class_note"]
    )
    expected = chromosome_cutout(metaphase[10:50, 20:28], tall)[0]  # the one cut-out rule of the training set
    np.testing.assert_allclose(model.fed[0], expected / 255.0)
    assert model.fed.shape == (2, CANVAS, CANVAS)
    # a float image in [0, 1] (what predict reads an 8-bit file as) gives the same cut-out
    classify_instances(model, metaphase / 255.0, instances[:1])
    np.testing.assert_allclose(model.fed[0], expected / 255.0)


def test_a_model_of_other_classes_is_refused():
    model = LengthModel()
    model.meta = {"task": {"class_names": ["background", "chromosome", "overlap"]}}
    with pytest.raises(DataValidationError, match="not a karyotyping model"):
        classify_instances(model, np.zeros((8, 8), np.uint8), [])


def test_predict_with_a_karyotype_model_adds_the_class_to_instances_json(tmp_path, constant_model):
    from medseg.cli import app

    semantic = constant_model(
        tmp_path / "semantic", ["background", "chromosome", "overlap"], 1
    )  # chromosome everywhere
    karyo = constant_model(tmp_path / "karyo", list(KARYOTYPE_CLASSES), 23, size=[CANVAS, CANVAS])  # X everywhere
    image = tmp_path / "meta1D.tif"
    Image.fromarray(np.full((48, 60), 90, np.uint8)).save(image)
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(semantic),
            str(image),
            "--karyotype-model",
            str(karyo),
            "-o",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "1 of 1 chromosomes classified" in result.output
    record = json.loads((tmp_path / "out" / "meta1D" / "instances.json").read_text())["instances"][0]
    assert record["class"] == 23 and record["class_name"] == "X" and 0.5 < record["class_confidence"] <= 1
    assert (tmp_path / "out" / "meta1D" / "meta1D_karyogram.png").is_file()  # classes given: the karyogram too
