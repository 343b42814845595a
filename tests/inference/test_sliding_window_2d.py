"""2D sliding-window validation and prediction (issue 12): windows equal whole-image inference where both
fit, model.json records the window and the input normalisation, the predictor and the trainer use them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from medseg.artifact import model_meta, sliding_window_settings
from medseg.data.transforms import normalize_input
from medseg.inference.predictor import Predictor
from medseg.inference.sliding_window import sliding_window_logits
from medseg.models import build_model
from medseg.training.trainer import Trainer

META = {"task": {"mode": "multiclass", "class_names": ["bg", "a", "b"], "spatial_dims": 2}}


class Pointwise(nn.Module):
    """1×1 convolutions only: each pixel's logits depend on that pixel alone, so any window sees the same."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 1), nn.Tanh(), nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.net(x)


class Recorder(nn.Module):
    """Pointwise logits; remembers the spatial shape of every input it is given."""

    def __init__(self):
        super().__init__()
        self.inner = Pointwise()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[2:]))
        return self.inner(x)


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_windows_equal_whole_image_for_a_pointwise_model(mode, overlap):
    x = torch.from_numpy(np.random.default_rng(0).random((2, 1, 45, 61)).astype(np.float32))
    model = Pointwise().eval()
    with torch.no_grad():
        whole = model(x)
        windows = sliding_window_logits(
            model, x, {"roi_size": [16, 20], "overlap": overlap, "sw_batch_size": 3, "mode": mode}
        )
    assert windows.shape == whole.shape
    torch.testing.assert_close(windows, whole, rtol=1e-5, atol=1e-5)


def test_one_window_over_the_whole_image_equals_a_unet():
    unet = build_model("unet", spatial_dims=2, in_channels=1, out_channels=3, depth=2, base_channels=4).eval()
    x = torch.from_numpy(np.random.default_rng(1).random((1, 1, 32, 40)).astype(np.float32))
    with torch.no_grad():
        whole = unet(x)
        windows = sliding_window_logits(
            unet, x, {"roi_size": [32, 40], "overlap": 0.5, "sw_batch_size": 1, "mode": "gaussian"}
        )
    torch.testing.assert_close(windows, whole, rtol=1e-5, atol=1e-5)


def test_predictor_uses_the_recorded_2d_window():
    images = np.random.default_rng(2).random((2, 50, 70)).astype(np.float32)
    meta = {**META, "evaluate": {"sliding_window": {"roi_size": [16, 16], "overlap": 0.25, "mode": "gaussian"}}}
    net = Recorder()
    windowed = Predictor([net], meta, device="cpu").predict_proba(images)
    assert net.shapes and set(net.shapes) == {(16, 16)}  # window by window, never the whole image
    whole_net = Recorder()
    whole = Predictor([whole_net], META, device="cpu").predict_proba(images)
    assert whole_net.shapes == [(50, 70)]  # without a recorded window: whole images, as before
    np.testing.assert_allclose(windowed, whole, rtol=1e-5, atol=1e-6)
    # an explicit window overrides the record, and images smaller than the window are padded and cropped back
    small = Predictor([Recorder()], meta, device="cpu", sliding_window={"roi_size": [64, 96]}).predict_proba(
        images[:, :20, :30]
    )
    assert small.shape == (2, 3, 20, 30)


def test_model_json_records_the_2d_window_and_normalisation(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    meta = model_meta(cfg)
    assert meta["evaluate"]["sliding_window"] is None and meta["preprocessing"]["normalize"] == "range"
    cfg["evaluate"]["sliding_window"]["roi_size"] = [24, 24]
    cfg["data"]["normalize"] = "zscore"
    meta = model_meta(cfg)
    assert meta["evaluate"]["sliding_window"] == sliding_window_settings({"roi_size": [24, 24]})
    assert meta["preprocessing"]["normalize"] == "zscore" and "mean" in meta["preprocessing"]["intensity"]


def test_predictor_applies_the_recorded_zscore():
    rng = np.random.default_rng(3)
    images = (rng.random((3, 20, 24)) * 0.3 + 0.5).astype(np.float32)
    net = Pointwise()
    zmeta = {**META, "preprocessing": {"normalize": "zscore"}}
    got = Predictor([net], zmeta, device="cpu", batch_size=2).predict_proba(images)
    by_hand = np.stack([normalize_input(im, "zscore") for im in images])
    expected = Predictor([net], META, device="cpu").predict_proba(by_hand)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    plain = Predictor([net], META, device="cpu").predict_proba(images)
    assert not np.allclose(got, plain, atol=1e-3)  # it matters: a model trained on z-scores sees other numbers


def test_predict_with_boxes_predicts_each_image_at_its_own_size():
    rng = np.random.default_rng(4)
    canvas = np.zeros((2, 30, 40), np.float32)
    a, b = rng.random((30, 20)).astype(np.float32), rng.random((12, 40)).astype(np.float32)
    canvas[0, :, 10:30] = a
    canvas[1, 9:21, :] = b
    boxes = [(0, 10, 30, 20), (9, 0, 12, 40)]
    pred = Predictor([Pointwise()], {**META, "preprocessing": {"normalize": "zscore"}}, device="cpu")
    out = pred.predict_proba(canvas, boxes=boxes)
    assert out.shape == (2, 3, 30, 40)
    np.testing.assert_allclose(out[0, :, :, 10:30], pred.predict_proba(a[None])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1, :, 9:21, :], pred.predict_proba(b[None])[0], rtol=1e-5, atol=1e-6)
    assert not out[0, :, :, :10].any() and not out[1, :, :9].any()  # nothing predicted on the padding
    with pytest.raises(ValueError, match="2 boxes for 1 images"):
        pred.predict_proba(canvas[:1], boxes=boxes)


def test_trainer_validates_2d_images_window_by_window(tiny_cfg, toy_data, tmp_path):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["evaluate"]["sliding_window"]["roi_size"] = [16, 16]
    trainer = Trainer(cfg, tmp_path / "fold_0", toy_data, list(range(8)), list(range(8, 12)), progress=False)
    seen: list[tuple[int, ...]] = []
    hook = trainer.model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[2:])))
    try:
        row = trainer.validate()
    finally:
        hook.remove()
    assert seen and set(seen) == {(16, 16)}  # the 32×32 toy images are validated in 16×16 windows
    assert np.isfinite(row["val_loss"])


def test_predictor_takes_tta_from_model_json_unless_told():
    """evaluate.tta recorded in model.json is the prediction default (planned models mirror, as nnU-Net)."""
    import torch

    from medseg.inference.predictor import Predictor

    model = torch.nn.Conv2d(1, 2, 1)
    meta = {"task": {"mode": "multiclass", "class_names": ["bg", "fg"], "spatial_dims": 2}, "evaluate": {"tta": True}}
    assert Predictor([model], meta, device="cpu", tta=None).tta is True
    assert Predictor([model], meta, device="cpu", tta=False).tta is False
    assert Predictor([model], {**meta, "evaluate": {}}, device="cpu", tta=None).tta is False  # older models
