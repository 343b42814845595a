"""The GI-tract paper's Table 6 losses (issue 13): paper_dice (its Dice, also exactly as printed), pixel_soft_dice
(its SD), and the BCEDICE mixtures as weighted loss lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses import available_losses, build_loss
from medseg.losses.gi_tract import PaperDiceLoss, PixelSoftDiceLoss

EPS = 1e-6


def _example(seed: int = 0, shape=(2, 3, 5, 4)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64).float() * 2
    target = (torch.rand(shape, generator=g) > 0.6).float()
    target[:, :, 0, 0] = 1.0  # every class present in the batch
    return logits, target


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _np_dice_coefficients(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    c = p.shape[1]
    out = np.zeros(c)
    for k in range(c):
        yk, pk = y[:, k].ravel(), p[:, k].ravel()
        out[k] = 2 * np.dot(yk, pk) / (yk.sum() + pk.sum() + EPS)
    return out


def _np_pixel_soft_dice(p: np.ndarray, y: np.ndarray) -> float:
    n = p.shape[0] * np.prod(p.shape[2:])  # pixels of the batch
    total = 0.0
    for b in range(p.shape[0]):
        for k in range(p.shape[1]):
            for yy, pp in zip(y[b, k].ravel(), p[b, k].ravel(), strict=True):
                total += 2 * yy * pp / (yy**2 + pp**2 + EPS)
    return -total / n


def test_registered_and_built_by_name():
    assert {"paper_dice", "pixel_soft_dice"} <= set(available_losses())
    sd = build_loss("pixel_soft_dice", "multilabel").losses[0]
    assert isinstance(sd, PixelSoftDiceLoss) and sd.mode == "multilabel"
    literal = build_loss({"name": "paper_dice", "as_written": True}, "multilabel").losses[0]
    assert isinstance(literal, PaperDiceLoss) and literal.as_written
    assert not build_loss("paper_dice", "multilabel").losses[0].as_written


# ---------------------------------------------------------------------------------- values vs numpy


def test_paper_dice_matches_numpy():
    logits, target = _example()
    p, y = _sigmoid(logits.double().numpy()), target.numpy().astype(np.float64)
    coef = _np_dice_coefficients(p, y)
    value = build_loss("paper_dice", "multilabel")(logits, target)
    assert float(value) == pytest.approx(1 - coef.mean(), rel=1e-5)
    literal = build_loss({"name": "paper_dice", "as_written": True}, "multilabel")(logits, target)
    assert float(literal) == pytest.approx(coef.sum(), rel=1e-5)  # Σ_c of the coefficient, no "1 -"


def test_pixel_soft_dice_matches_numpy():
    logits, target = _example(1)
    p, y = _sigmoid(logits.double().numpy()), target.numpy().astype(np.float64)
    value = build_loss("pixel_soft_dice", "multilabel")(logits, target)
    assert float(value) == pytest.approx(_np_pixel_soft_dice(p, y), rel=1e-5)


def test_pixel_soft_dice_by_hand():
    # one class, 4 pixels: y = 1, 1, 0, 0 and p = 0.5, 1, 0.3, 0 → terms 0.8, 1, 0, 0; N = 4
    p = torch.tensor([0.5, 1.0 - 1e-7, 0.3, 1e-7], dtype=torch.float64)
    logits = torch.log(p / (1 - p)).float().view(1, 1, 2, 2)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    value = build_loss("pixel_soft_dice", "multilabel")(logits, target)
    assert float(value) == pytest.approx(-(0.8 + 1.0) / 4, abs=1e-5)


def test_pixels_without_the_class_contribute_nothing_to_soft_dice():
    loss = build_loss("pixel_soft_dice", "multilabel")
    target = torch.zeros(1, 2, 4, 4)
    assert float(loss(torch.full((1, 2, 4, 4), 5.0), target)) == 0.0
    assert float(loss(torch.full((1, 2, 4, 4), -5.0), target)) == 0.0


def test_paper_dice_by_hand():
    # one class: y = 1, 1, 0, 0 and p = 0.5, 0.5, 0.5, 0.5 → D = 2·1 / (2 + 2) = 0.5
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert float(build_loss("paper_dice", "multilabel")(logits, target)) == pytest.approx(0.5, abs=1e-6)
    assert float(build_loss({"name": "paper_dice", "as_written": True}, "multilabel")(logits, target)) == pytest.approx(
        0.5, abs=1e-6
    )


def test_paper_dice_pools_the_whole_batch():
    logits, target = _example(2)
    loss = build_loss("paper_dice", "multilabel")
    per_image = torch.stack([loss(logits[i : i + 1], target[i : i + 1]) for i in range(2)])
    flat = (logits.transpose(0, 1).reshape(1, 3, -1, 1), target.transpose(0, 1).reshape(1, 3, -1, 1))
    torch.testing.assert_close(loss(*flat), loss(logits, target))  # one coefficient per class over the batch
    assert not torch.allclose(per_image.mean(), loss(logits, target))


# ------------------------------------------------------------------------------ optimum, ordering, grads


@pytest.mark.parametrize("name", ["paper_dice", "pixel_soft_dice"])
def test_perfect_prediction_is_the_minimum_and_wrong_is_worse(name):
    _, target = _example(3)
    loss = build_loss(name, "multilabel")
    perfect = loss(target * 40 - 20, target)
    wrong = loss(20 - target * 40, target)
    middle = loss(torch.zeros_like(target), target)
    floor = 0.0 if name == "paper_dice" else -float(target.sum(1).mean())  # -(positives over classes) / N
    assert float(perfect) == pytest.approx(floor, abs=1e-5)
    assert float(perfect) < float(middle) < float(wrong)
    for seed in range(5):  # no other prediction goes below the perfect one
        other = torch.randn(target.shape, generator=torch.Generator().manual_seed(seed)) * 3
        assert float(loss(other, target)) > float(perfect)


def test_as_written_rewards_the_wrong_prediction():
    # the printed formula is the Dice coefficient itself: descent lowers it by predicting the organs away
    _, target = _example(4)
    literal = build_loss({"name": "paper_dice", "as_written": True}, "multilabel")
    perfect = literal(target * 40 - 20, target)
    wrong = literal(20 - target * 40, target)
    assert float(perfect) == pytest.approx(3.0, abs=1e-5)  # Σ over 3 classes of D_c = 1
    assert float(wrong) == pytest.approx(0.0, abs=1e-5)
    logits = torch.zeros_like(target, requires_grad=True)
    literal(logits, target).backward()
    # a descent step moves the logits of the organ pixels *down*
    assert float(logits.grad[target == 1].mean()) > 0


@pytest.mark.parametrize(
    "spec",
    [
        "paper_dice",
        {"name": "paper_dice", "as_written": True},
        "pixel_soft_dice",
    ],
)
@pytest.mark.parametrize("mode", ["multilabel", "multiclass"])
def test_gradients_are_finite(spec, mode):
    logits, target = _example(5)
    if mode == "multiclass":
        target = target.argmax(1)
        target[0] = 0  # a class absent from an image, and saturated logits below
    logits = (logits * 10).requires_grad_(True)
    loss = build_loss(spec, mode)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_absent_class_gives_finite_values():
    target = torch.zeros(2, 3, 4, 4)
    target[:, 0, :2] = 1  # classes 1 and 2 absent from the batch
    logits = torch.full((2, 3, 4, 4), -30.0, requires_grad=True)
    value = build_loss("paper_dice", "multilabel")(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    # class 0 is missed entirely; the absent classes' coefficient is 0 (eps only in the denominator)
    assert float(value.detach()) == pytest.approx(1.0, abs=1e-5)


def test_multiclass_uses_softmax_and_one_hot():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 4, 5, 5, generator=g)
    target = torch.randint(0, 4, (2, 5, 5), generator=g)
    p = torch.softmax(logits.double(), 1).numpy()
    y = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).double().numpy()
    assert float(build_loss("paper_dice", "multiclass")(logits, target)) == pytest.approx(
        1 - _np_dice_coefficients(p, y).mean(), rel=1e-5
    )
    assert float(build_loss("pixel_soft_dice", "multiclass")(logits, target)) == pytest.approx(
        _np_pixel_soft_dice(p, y), rel=1e-5
    )


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        build_loss({"name": "paper_dice", "as_writen": True}, "multilabel")
    with pytest.raises(ConfigError, match="eps"):
        build_loss({"name": "pixel_soft_dice", "eps": 0}, "multilabel")
    with pytest.raises(ConfigError, match="as_written"):
        build_loss({"name": "paper_dice", "as_written": "yes"}, "multilabel")


def test_autocast_computes_in_float32():
    logits, target = _example(7)
    for spec in ("paper_dice", "pixel_soft_dice"):
        loss = build_loss(spec, "multilabel")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(logits.bfloat16(), target)
        assert value.dtype == torch.float32
        assert float(value) == pytest.approx(float(loss(logits.bfloat16().float(), target)), rel=1e-6)


# ------------------------------------------------------------------------------------- Table 6 mixtures


@pytest.mark.parametrize("dice_name", ["dice", "paper_dice"])
@pytest.mark.parametrize("dice_weight", [1.0, 0.5])  # BCEDICE and BCEDICE 2:1
def test_bce_dice_mixtures_are_the_hand_sum(dice_weight, dice_name):
    logits, target = _example(8)
    combined = build_loss([{"name": "bce"}, {"name": dice_name, "weight": dice_weight}], "multilabel")
    bce = build_loss("bce", "multilabel")(logits, target)
    dice = build_loss(dice_name, "multilabel")(logits, target)
    torch.testing.assert_close(combined(logits, target), bce + dice_weight * dice)
    assert combined.parts == pytest.approx({"bce": float(bce), dice_name: float(dice)})
