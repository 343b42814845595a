"""Predictor: fold ensembles and test-time augmentation average probabilities as documented."""

import numpy as np
import torch
from torch import nn

from medseg.inference.predictor import Predictor

META = {"task": {"mode": "multiclass", "class_names": ["bg", "a", "b"], "spatial_dims": 2}}


class ShiftNet(nn.Module):
    """Not flip/rotation-equivariant: logits depend on the pixel's column through a fixed ramp."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        ramp = torch.linspace(-1, 1, x.shape[-1]).view(1, 1, 1, -1)
        return torch.cat([x, self.scale * ramp.expand_as(x), -x], dim=1)


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return logits.softmax(1).numpy()


def test_tta_averages_over_flips_and_rotations():
    images = np.random.default_rng(0).random((2, 6, 6)).astype(np.float32)
    net = ShiftNet(2.0)
    got = Predictor([net], META, device="cpu", tta=True).predict_proba(images)
    x = torch.from_numpy(images)[:, None]
    # identity, flip H, flip W, rot 90/180/270 — each mapped back before averaging (6 views)
    views = [x, x.flip(2), x.flip(3)] + [torch.rot90(x, k, (2, 3)) for k in (1, 2, 3)]
    inverses = [lambda t: t, lambda t: t.flip(2), lambda t: t.flip(3)] + [
        (lambda t, k=k: torch.rot90(t, -k, (2, 3))) for k in (1, 2, 3)
    ]
    expected = np.mean([_softmax(inv(net(v))) for v, inv in zip(views, inverses, strict=True)], axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    plain = Predictor([net], META, device="cpu").predict_proba(images)
    assert not np.allclose(got, plain)  # the ramp is not symmetric, so TTA changes the answer
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-5)


def test_flips_tta_keeps_an_upright_input_upright():
    images = np.random.default_rng(1).random((2, 8, 4)).astype(np.float32)  # taller than wide, as a cut-out
    net = ShiftNet(2.0)
    seen = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    meta = {**META, "evaluate": {"tta": "flips"}}
    got = Predictor([net], meta, device="cpu", tta=None).predict_proba(images)
    assert seen == [(8, 4)] * 3  # identity and the two flips, never turned on its side
    x = torch.from_numpy(images)[:, None]
    expected = np.mean([_softmax(net(x)), _softmax(net(x.flip(2)).flip(2)), _softmax(net(x.flip(3)).flip(3))], 0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    seen.clear()
    Predictor([net], meta, device="cpu", tta=True).predict_proba(images)  # --tta on such a model: its flips
    assert seen == [(8, 4)] * 3


def test_fold_ensemble_is_mean_of_probabilities():
    images = np.random.default_rng(1).random((3, 5, 7)).astype(np.float32)
    a, b = ShiftNet(1.0), ShiftNet(-3.0)
    got = Predictor([a, b], META, device="cpu").predict_proba(images)
    x = torch.from_numpy(images)[:, None]
    np.testing.assert_allclose(got, (_softmax(a(x)) + _softmax(b(x))) / 2, rtol=1e-5, atol=1e-6)
    labels = Predictor([a, b], META, device="cpu").predict(images)
    np.testing.assert_array_equal(labels, got.argmax(1))


def test_multilabel_thresholds_sigmoid_at_half():
    meta = {"task": {"mode": "multilabel", "class_names": ["x", "y"], "spatial_dims": 2}}

    class TwoMaps(nn.Module):
        def forward(self, x):
            return torch.cat([x - 0.5, 0.5 - x], dim=1)

    images = np.array([[[0.2, 0.7]]], dtype=np.float32)
    masks = Predictor([TwoMaps()], meta, device="cpu").predict(images)
    np.testing.assert_array_equal(masks, [[[[False, True]], [[True, False]]]])
