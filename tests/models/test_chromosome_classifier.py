"""The chromosome classifier (karyotyping, issue 14 part 6): one class per cut-out, painted as a segmentation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medseg.metrics.karyotype import vote
from medseg.models import build_model, training_loss
from medseg.models.chromosome_classifier import ChromosomeClassifier


def _canvas(n: int, size: int = 32, lengths=(6, 20), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut-outs on a zero background: class 1 short bars, class 2 long bars (size is the class cue)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    y = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        cls = 1 + i % 2
        length = lengths[cls - 1]
        top = (size - length) // 2
        x[i, 0, top : top + length, 14:18] = 0.3 + 0.7 * torch.rand(length, 4, generator=g)
        y[i, top : top + length, 14:18] = cls
    return x, y


def test_output_is_a_segmentation_of_the_cutout():
    model = build_model(
        "chromosome_classifier", in_channels=1, out_channels=5, spatial_dims=2, depth=2, base_channels=4
    ).eval()
    x, y = _canvas(4, size=30)  # not a multiple of 2**depth: padded inside, output at the input's size
    with torch.no_grad():
        out = model(x)
        logits = model.class_logits(model.pad_input(x)[0])
    assert out.shape == (4, 5, 30, 30)
    proba = out.softmax(1).numpy()
    inside = (x[:, 0] > 0).numpy()
    # outside the cut-out: background, certain
    assert np.all(proba[:, 0][~inside] > 0.999)
    # inside: the classes' softmax, the same at every pixel; the evaluation's vote gives it back exactly
    for i in range(4):
        cls, conf, score = vote(proba[i], inside[i], "soft")
        expected = torch.softmax(logits[i], 0).numpy()
        assert cls == 1 + int(expected.argmax())
        np.testing.assert_allclose(score[1:], expected, atol=1e-6)


def test_loss_is_one_cross_entropy_per_chromosome_not_per_pixel():
    torch.manual_seed(0)
    model = ChromosomeClassifier(1, 3, depth=2, base_channels=4, dropout=0.0).eval()
    x, y = _canvas(2, lengths=(4, 24))  # a short and a long chromosome: per pixel the long one would weigh 6x
    loss, out = training_loss(model, lambda *_: torch.tensor(float("nan")), x, y)  # the config's loss is unused
    logits = model.class_logits(x)
    expected = F.cross_entropy(logits, torch.tensor([0, 1]))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert out.shape == (2, 3, 32, 32)
    empty_loss, _ = training_loss(model, None, torch.zeros(1, 1, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long))
    assert float(empty_loss.detach()) == 0.0


def _fit_and_predict(model: ChromosomeClassifier, make, steps: int, lr: float) -> tuple[list[int], list[int]]:
    """Train ``model`` on 16 cut-outs of ``make(n, seed)`` for ``steps`` steps; its classes of 8 new ones and
    their truth."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = make(16, seed=1)
    for _ in range(steps):
        loss, _ = training_loss(model, None, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = make(8, seed=2)
    with torch.no_grad():
        pred = model(xt).softmax(1)[:, 1:].mean(dim=(2, 3)).argmax(1) + 1  # as the evaluation's soft vote
    return pred.tolist(), yt.reshape(8, -1).amax(1).tolist()


def test_learns_a_size_cue():
    torch.manual_seed(0)
    model = ChromosomeClassifier(1, 3, depth=2, base_channels=4, dropout=0.0, norm="instance")
    pred, truth = _fit_and_predict(model, _canvas, steps=25, lr=3e-3)
    assert pred == truth


def _upright(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Upright cut-outs on a 32 x 16 canvas: class 1 long bars, class 2 short ones, grey values random."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.zeros(n, 1, 32, 16), torch.zeros(n, 32, 16, dtype=torch.long)
    for i in range(n):
        cls = 1 + i % 2
        length = (22 if cls == 1 else 8) + int(torch.randint(-2, 3, (1,), generator=g))
        top = (32 - length) // 2
        x[i, 0, top : top + length, 6:10] = 0.2 + 0.6 * torch.rand(length, 4, generator=g)
        y[i, top : top + length, 6:10] = cls
    return x, y


def test_upright_options_learn_a_size_cue_and_augment_only_inside_the_chromosome():
    torch.manual_seed(0)
    model = ChromosomeClassifier(
        1, 3, depth=2, base_channels=4, dropout=0.0, head_grid=[4, 2], side_features=True, augment=True, norm="instance"
    )  # batch norm's running stats lag in 30 steps
    x, y = _upright(16, seed=1)
    shape = model.shape_features(x, model.cutout_mask(x))
    inside = x[0, 0][x[0, 0] > 0]
    length = int(x[0, 0].gt(0).any(1).sum())
    assert torch.allclose(
        shape[0, :5],
        torch.tensor([len(inside) / 512, length / 32, 4 / 16, inside.mean(), inside.sum() / 512]),
        atol=1e-6,
    )
    top = int(x[0, 0].gt(0).any(1).nonzero()[0])
    first_part = x[0, 0, top : top + length // 12 + (length % 12 > 0)]  # rows of the first twelfth
    assert shape.shape == (16, 17) and torch.isclose(shape[0, 5], first_part[first_part > 0].mean(), atol=0.05)
    warped = model.augmented(x)
    assert warped.shape == x.shape and (warped[:, :, 0, :] == 0).all()  # background stays 0
    assert not torch.equal(warped, x)
    pred, truth = _fit_and_predict(model, _upright, steps=30, lr=1e-2)
    assert pred == truth
