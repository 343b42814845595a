"""Tests of the segmentation losses (medseg.losses.segmentation) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.losses import (
    BCELoss,
    CompositeLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    available_losses,
    build_loss,
)

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def _close(actual: torch.Tensor, expected: float, tol: float = 1e-6) -> None:
    assert actual.dtype == torch.float32
    assert actual.ndim == 0
    assert float(actual) == pytest.approx(expected, rel=tol, abs=tol)


# ------------------------------------------------------------------------------------------- fixtures
# Three classes, two pixels (B=1, H=1, W=2).
#   pixel 0: logits [2, 0, -1], target 0
#   pixel 1: logits [0, 1,  0], target 1
CE_LOGITS = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.0]]]])  # (1, 3, 1, 2)
CE_TARGET = torch.tensor([[[0, 1]]])  # (1, 1, 2)


def _manual_log_softmax(logits: list[float]) -> list[float]:
    m = max(logits)
    lse = m + math.log(sum(math.exp(v - m) for v in logits))
    return [v - lse for v in logits]


# ------------------------------------------------------------------------------------------------- CE


def test_ce_matches_manual_log_softmax():
    # pixel 0: logsumexp(2, 0, -1) = log(e^2 + 1 + e^-1) = log(7.389056 + 1 + 0.367879) = log(8.756935) = 2.169846
    #          nll = 2.169846 - 2 = 0.169846
    # pixel 1: logsumexp(0, 1, 0) = log(1 + e + 1) = log(4.718282) = 1.551445;  nll = 1.551445 - 1 = 0.551445
    # mean = (0.169846 + 0.551445) / 2 = 0.360645
    nll0 = -_manual_log_softmax([2.0, 0.0, -1.0])[0]
    nll1 = -_manual_log_softmax([0.0, 1.0, 0.0])[1]
    assert nll0 == pytest.approx(0.169846, abs=1e-6)
    assert nll1 == pytest.approx(0.551445, abs=1e-6)
    _close(CrossEntropyLoss()(CE_LOGITS, CE_TARGET), (nll0 + nll1) / 2)
    _close(CrossEntropyLoss()(CE_LOGITS, CE_TARGET), 0.360645, tol=1e-5)


def test_ce_class_weights_are_a_weighted_mean():
    # weights [1, 2, 3]; pixel 0 has class 0 (w=1), pixel 1 has class 1 (w=2)
    # (1 * 0.169846 + 2 * 0.551445) / (1 + 2) = (0.169846 + 1.102889) / 3 = 0.424245
    nll0 = -_manual_log_softmax([2.0, 0.0, -1.0])[0]
    nll1 = -_manual_log_softmax([0.0, 1.0, 0.0])[1]
    loss = CrossEntropyLoss(class_weights=[1.0, 2.0, 3.0])(CE_LOGITS, CE_TARGET)
    _close(loss, (1 * nll0 + 2 * nll1) / 3)
    _close(loss, 0.424245, tol=1e-5)


def test_ce_accepts_float_targets_holding_class_indices():
    _close(CrossEntropyLoss()(CE_LOGITS, CE_TARGET.float()), 0.360645, tol=1e-5)


# ------------------------------------------------------------------------------------------------ BCE
# Two classes, two pixels. sigmoid(0) = 0.5, sigmoid(ln 3) = 0.75.
#   class 0 logits [0, ln3], class 1 logits [ln3, 0]
BIN_LOGITS = torch.tensor([[[[0.0, LN3]], [[LN3, 0.0]]]])  # (1, 2, 1, 2)


def test_bce_multiclass_one_hot_target():
    # target indices [0, 1] -> one-hot: class 0 map [1, 0], class 1 map [0, 1]
    # c0p0: y=1, p=.5  -> -ln .5  = ln2
    # c0p1: y=0, p=.75 -> -ln .25 = ln4
    # c1p0: y=0, p=.75 -> ln4
    # c1p1: y=1, p=.5  -> ln2
    # mean = (2 ln2 + 2 ln4) / 4 = 3 ln2 / 2 = 1.039721
    loss = BCELoss("multiclass")(BIN_LOGITS, torch.tensor([[[0, 1]]]))
    _close(loss, 1.5 * LN2)
    _close(loss, 1.039721, tol=1e-5)


def test_bce_multilabel_overlapping_target():
    # target maps: class 0 [1, 1], class 1 [0, 1] (pixel 1 belongs to both classes)
    # c0p0: y=1, p=.5  -> ln2
    # c0p1: y=1, p=.75 -> -ln .75 = ln(4/3)
    # c1p0: y=0, p=.75 -> ln4
    # c1p1: y=1, p=.5  -> ln2
    # mean = (ln2 + ln(4/3) + ln4 + ln2) / 4 = ln2 + ln(4/3)/4 = 0.693147 + 0.071921 = 0.765068
    target = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]]])
    loss = BCELoss("multilabel")(BIN_LOGITS, target)
    _close(loss, (LN2 + math.log(4 / 3) + LN4 + LN2) / 4)
    _close(loss, 0.765068, tol=1e-5)


def test_bce_pos_weight_scales_positive_terms_of_its_class():
    # pos_weight [2, 1]: the two positive terms of class 0 double
    # (2 ln2 + 2 ln(4/3) + ln4 + ln2) / 4 = (5 ln2 + 2 ln(4/3)) / 4 = 1.010275
    target = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]]])
    loss = BCELoss("multilabel", pos_weight=[2.0, 1.0])(BIN_LOGITS, target)
    _close(loss, (5 * LN2 + 2 * math.log(4 / 3)) / 4)


def test_bce_multiclass_equals_multilabel_with_one_hot():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    one_hot = F.one_hot(target, 4).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(BCELoss("multiclass")(logits, target), BCELoss("multilabel")(logits, one_hot))


# ----------------------------------------------------------------------------------------------- Dice


def test_dice_perfect_prediction_is_about_zero():
    target = torch.tensor([[[0, 1, 1, 0]]])  # both classes present
    logits = 30.0 * F.one_hot(target, 2).permute(0, 3, 1, 2).float()
    loss = DiceLoss()(logits, target)
    assert 0.0 <= float(loss) < 1e-5


def test_dice_worst_prediction_is_about_one():
    target = torch.tensor([[[0, 1, 1, 0]]])
    logits = 30.0 * F.one_hot(1 - target, 2).permute(0, 3, 1, 2).float()
    assert float(DiceLoss()(logits, target)) == pytest.approx(1.0, abs=1e-5)


# Two classes, two pixels, softmax:
#   pixel 0 logits [0, 0]   -> p = [0.5, 0.5]
#   pixel 1 logits [ln3, 0] -> p = [0.75, 0.25]
#   target [0, 1]
DICE_LOGITS = torch.tensor([[[[0.0, LN3]], [[0.0, 0.0]]]])
DICE_TARGET = torch.tensor([[[0, 1]]])
S = 1e-5  # the default smooth term on numerator and denominator
# class 0: g = [1, 0], p = [.5, .75]: I = .5,  G = 1, P = 1.25 -> dice = (1 + s)/(2.25 + s) -> loss 0.555556
# class 1: g = [0, 1], p = [.5, .25]: I = .25, G = 1, P = .75  -> dice = (.5 + s)/(1.75 + s) -> loss 0.714286
DICE_C0 = 1 - (2 * 0.5 + S) / (1 + 1.25 + S)
DICE_C1 = 1 - (2 * 0.25 + S) / (1 + 0.75 + S)


def test_dice_two_pixel_case_by_hand():
    # mean over classes = (0.555556 + 0.714286) / 2 = 0.634921
    loss = DiceLoss()(DICE_LOGITS, DICE_TARGET)
    _close(loss, (DICE_C0 + DICE_C1) / 2)
    _close(loss, 0.634921, tol=1e-5)


def test_dice_without_background_uses_class_1_only():
    _close(DiceLoss(include_background=False)(DICE_LOGITS, DICE_TARGET), DICE_C1)


def test_dice_multilabel_uses_sigmoid():
    # logits 0 -> p = 0.5 everywhere; one class, target [1, 1]
    # I = 1, G = 2, P = 1 -> dice = (2 + s)/(3 + s), loss = 1 - 2/3 = 1/3
    loss = DiceLoss("multilabel")(torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    _close(loss, 1 - (2 + S) / (3 + S))


def test_dice_batch_pools_sums_over_images():
    # image 0: pixel target 0, p = [.5, .5]; image 1: pixel target 0, p = [.75, .25] (single pixel each)
    # batch=True, class 0: I = .5 + .75 = 1.25, G = 2, P = 1.25 -> dice = (2.5+s)/(3.25+s) -> loss 0.230769
    #             class 1: I = 0, G = 0, P = .75               -> dice = s/(.75+s)        -> loss ~1
    logits = torch.tensor([[[[0.0]], [[0.0]]], [[[LN3]], [[0.0]]]])  # (2, 2, 1, 1)
    target = torch.zeros(2, 1, 1, dtype=torch.long)
    expected = ((1 - (2.5 + S) / (3.25 + S)) + (1 - S / (0.75 + S))) / 2
    _close(DiceLoss(batch=True)(logits, target), expected, tol=1e-5)


# ---------------------------------------------------------------------------------------------- Focal
ALPHA, GAMMA = 0.25, 2.0  # RSE-UNet §2.6


def _fl(p_t: float, alpha_t: float | None, gamma: float) -> float:
    """FL = -alpha_t (1 - p_t)^gamma log p_t, written out."""
    a = 1.0 if alpha_t is None else alpha_t
    return -a * (1.0 - p_t) ** gamma * math.log(p_t)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _manual_sigmoid_focal(logits: torch.Tensor, target_maps: torch.Tensor, alpha, gamma) -> float:
    """Binary form on every class map: p_t = p if y = 1 else 1 - p; alpha_t = alpha if y = 1 else 1 - alpha."""
    terms = []
    for x, y in zip(logits.flatten().tolist(), target_maps.flatten().tolist(), strict=True):
        p = _sigmoid(x)
        p_t = p if y == 1 else 1 - p
        a_t = None if alpha is None else (alpha if y == 1 else 1 - alpha)
        terms.append(_fl(p_t, a_t, gamma))
    return sum(terms) / len(terms)


def _manual_softmax_focal(logits: torch.Tensor, target: torch.Tensor, alpha, gamma) -> float:
    """Softmax form, mean over pixels: p_t = softmax prob of the true class; alpha_t = 1 - alpha for the
    background (class 0), alpha for the foreground classes."""
    c = logits.shape[1]
    per_pixel = logits.movedim(1, -1).reshape(-1, c).tolist()
    terms = []
    for row, t in zip(per_pixel, target.flatten().tolist(), strict=True):
        p_t = math.exp(_manual_log_softmax(row)[t])
        a_t = None if alpha is None else ((1 - alpha) if t == 0 else alpha)
        terms.append(_fl(p_t, a_t, gamma))
    return sum(terms) / len(terms)


def test_sigmoid_focal_matches_formula():
    # One-hot maps of target [0, 1]: class 0 [1, 0], class 1 [0, 1]; logits as BIN_LOGITS.
    # c0p0: y=1, p=.5,  p_t=.5,  a=.25: -.25 * .5^2  * ln .5  = .0625 ln2    = 0.043322
    # c0p1: y=0, p=.75, p_t=.25, a=.75: -.75 * .75^2 * ln .25 = .421875 ln4  = 0.584843
    # c1p0: same as c0p1 = 0.584843;  c1p1: same as c0p0 = 0.043322
    # mean = (2 * 0.043322 + 2 * 0.584843) / 4 = 0.314082
    target = torch.tensor([[[0, 1]]])
    maps = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    loss = FocalLoss("multiclass", alpha=ALPHA, gamma=GAMMA, use_softmax=False)(BIN_LOGITS, target)
    _close(loss, _manual_sigmoid_focal(BIN_LOGITS, maps, ALPHA, GAMMA))
    _close(loss, (2 * 0.0625 * LN2 + 2 * 0.421875 * LN4) / 4)
    _close(loss, 0.314082, tol=1e-5)


def test_sigmoid_focal_multilabel_random_case_matches_formula():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 5) * 3
    maps = (torch.rand(2, 3, 4, 5) > 0.5).float()
    loss = FocalLoss("multilabel", alpha=ALPHA, gamma=GAMMA)(logits, maps)
    _close(loss, _manual_sigmoid_focal(logits, maps, ALPHA, GAMMA), tol=1e-5)


def test_sigmoid_focal_gamma0_alpha_none_is_bce():
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 6, 5) * 2
    target = torch.randint(0, 4, (2, 6, 5))
    focal = FocalLoss("multiclass", alpha=None, gamma=0.0, use_softmax=False)(logits, target)
    torch.testing.assert_close(focal, BCELoss("multiclass")(logits, target))
    maps = (torch.rand(2, 4, 6, 5) > 0.3).float()
    torch.testing.assert_close(
        FocalLoss("multilabel", alpha=None, gamma=0.0)(logits, maps), BCELoss("multilabel")(logits, maps)
    )


def test_softmax_focal_matches_formula():
    # pixel 0 (target 0, background, alpha_t = 1 - .25 = .75):
    #   p_t = e^2 / 8.756935 = 0.843795; (1 - p_t)^2 = 0.156205^2 = 0.024400; -ln p_t = 0.169846
    #   FL = .75 * 0.024400 * 0.169846 = 0.003108
    # pixel 1 (target 1, foreground, alpha_t = .25):
    #   p_t = e / 4.718282 = 0.576117; (1 - p_t)^2 = 0.423883^2 = 0.179677; -ln p_t = 0.551445
    #   FL = .25 * 0.179677 * 0.551445 = 0.024770
    # mean over pixels = (0.003108 + 0.024770) / 2 = 0.013939
    expected = _manual_softmax_focal(CE_LOGITS, CE_TARGET, ALPHA, GAMMA)
    assert expected == pytest.approx(0.013939, abs=2e-6)
    _close(FocalLoss("multiclass", alpha=ALPHA, gamma=GAMMA)(CE_LOGITS, CE_TARGET), expected)


def test_softmax_focal_gamma0_alpha_none_is_ce():
    # RSE-UNet §2.6: "when gamma = 0, focal loss is equivalent to the cross-entropy loss"
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 6, 5) * 2
    target = torch.randint(0, 4, (2, 6, 5))
    torch.testing.assert_close(
        FocalLoss("multiclass", alpha=None, gamma=0.0)(logits, target), CrossEntropyLoss()(logits, target)
    )


def test_softmax_focal_gamma_modulation_single_pixel():
    # One pixel: the ratio FL(gamma=2) / FL(gamma=0) is (1 - p_t)^2 whatever the normalisation.
    # pixel [0, 1, 0], target 1: p_t = 0.576117 -> (1 - p_t)^2 = 0.179677
    logits = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    target = torch.tensor([[[1]]])
    p_t = math.exp(_manual_log_softmax([0.0, 1.0, 0.0])[1])
    g2 = FocalLoss(alpha=None, gamma=2.0)(logits, target)
    g0 = FocalLoss(alpha=None, gamma=0.0)(logits, target)
    assert float(g2 / g0) == pytest.approx((1 - p_t) ** 2, rel=1e-5)
    assert float(g2 / g0) == pytest.approx(0.179677, rel=1e-4)


def test_softmax_focal_alpha_weights_background_by_one_minus_alpha():
    # The same p_t for a background pixel (alpha_t = .75) and a foreground pixel (alpha_t = .25): ratio 3.
    bg = FocalLoss(alpha=ALPHA)(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1), torch.tensor([[[0]]]))
    fg = FocalLoss(alpha=ALPHA)(torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), torch.tensor([[[2]]]))
    assert float(bg / fg) == pytest.approx(0.75 / 0.25, rel=1e-5)


def test_softmax_focal_downweights_easy_pixels_more_than_hard():
    easy = torch.tensor([5.0, 0.0]).view(1, 2, 1, 1)
    hard = torch.tensor([0.0, 0.5]).view(1, 2, 1, 1)
    t = torch.tensor([[[0]]])
    ce_ratio = CrossEntropyLoss()(easy, t) / CrossEntropyLoss()(hard, t)
    fl_ratio = FocalLoss(alpha=None)(easy, t) / FocalLoss(alpha=None)(hard, t)
    assert fl_ratio < ce_ratio / 100


def test_focal_softmax_in_multilabel_mode_is_config_error():
    with pytest.raises(ConfigError):
        FocalLoss("multilabel", use_softmax=True)


# ------------------------------------------------------------------------------------------ Composite


def test_composite_weights_and_parts():
    torch.manual_seed(4)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    loss = build_loss([{"name": "ce"}, {"name": "dice", "weight": 0.5}])
    assert isinstance(loss, CompositeLoss)
    ce = CrossEntropyLoss()(logits, target)
    dice = DiceLoss()(logits, target)
    total = loss(logits, target)
    torch.testing.assert_close(total, ce + 0.5 * dice)
    assert set(loss.parts) == {"ce", "dice"}
    assert loss.parts["ce"] == pytest.approx(float(ce), rel=1e-6)
    assert loss.parts["dice"] == pytest.approx(float(dice), rel=1e-6)  # unweighted term
    assert total.dtype == torch.float32


def test_composite_backward_and_duplicate_names():
    torch.manual_seed(5)
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (1, 4, 4))
    loss = build_loss([{"name": "ce"}, {"name": "ce", "class_weights": [1.0, 2.0, 3.0], "weight": 2}])
    total = loss(logits, target)
    total.backward()
    assert list(loss.parts) == ["ce", "ce_1"]
    expected = CrossEntropyLoss()(logits, target) + 2 * CrossEntropyLoss(class_weights=[1.0, 2.0, 3.0])(logits, target)
    torch.testing.assert_close(total, expected)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_build_loss_from_string_and_dict():
    assert isinstance(build_loss("dice").losses[0], DiceLoss)
    focal = build_loss({"name": "focal", "gamma": 3.0}).losses[0]
    assert isinstance(focal, FocalLoss) and focal.focal.gamma == 3.0
    assert build_loss({"name": "bce"}, mode="multilabel").losses[0].mode == "multilabel"


def test_build_loss_unknown_name_lists_available():
    with pytest.raises(ConfigError) as info:
        build_loss("tversky")
    msg = str(info.value)
    assert "tversky" in msg
    assert {"bce", "ce", "dice", "focal"} <= set(available_losses())
    for name in available_losses():
        assert name in msg


def test_build_loss_ce_in_multilabel_mode_is_config_error():
    with pytest.raises(ConfigError, match="bce"):
        build_loss("ce", mode="multilabel")


def test_build_loss_bad_setting_and_bad_mode_are_config_errors():
    with pytest.raises(ConfigError, match="dice"):
        build_loss({"name": "dice", "smoth": 1.0})
    with pytest.raises(ConfigError, match="multiclass"):
        build_loss("bce", mode="binary")
    with pytest.raises(ConfigError):
        build_loss({"weight": 1.0})  # no name


# ---------------------------------------------------------------------------------------------- autocast

AUTOCAST_SPECS = [
    ("ce", "multiclass", {}),
    ("bce", "multiclass", {}),
    ("dice", "multiclass", {}),
    ("focal", "multiclass", {}),
    ("focal", "multiclass", {"use_softmax": False}),
    ("bce", "multilabel", {}),
    ("dice", "multilabel", {}),
    ("focal", "multilabel", {}),
]


@pytest.mark.parametrize("name,mode,kwargs", AUTOCAST_SPECS, ids=[f"{n}-{m}-{k}" for n, m, k in AUTOCAST_SPECS])
def test_losses_float32_and_finite_under_bf16_autocast(name, mode, kwargs):
    torch.manual_seed(6)
    loss_fn = build_loss(
        [{"name": name, **kwargs}, {"name": "dice", "weight": 0.5}]
        if mode == "multiclass"
        else {"name": name, **kwargs},
        mode=mode,
    )
    big = (torch.randn(2, 4, 16, 16) * 3000).to(torch.bfloat16)  # |logits| up to ~1e4, beyond fp16's range
    logits = big.clone().requires_grad_()
    if mode == "multiclass":
        target = torch.randint(0, 4, (2, 16, 16))
    else:
        target = (torch.rand(2, 4, 16, 16) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss_fn(logits, target)
    assert value.dtype == torch.float32
    assert torch.isfinite(value)
    for part in loss_fn.parts.values():
        assert math.isfinite(part)
    value.backward()
    assert torch.isfinite(logits.grad.float()).all()
    # The same numbers as a plain float32 computation on the same (bf16-rounded) logits.
    reference = loss_fn(big.float(), target)
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-4)
