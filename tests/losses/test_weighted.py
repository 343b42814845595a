"""Tests of the class-imbalance losses (medseg.losses.weighted) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import DiceLoss as MonaiDiceLoss

from medseg.errors import ConfigError
from medseg.losses import BCELoss, CrossEntropyLoss, available_losses, build_loss
from medseg.losses.weighted import AdaptiveSmoothWeightedBCE, WeightedBCE, WeightedDiceLoss

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)
LN1000 = math.log(1000)

# One 2×2 image, 4 classes, target (row-major) [0, 0, 1, 3]:
#   class 0: Pos 2, Neg 2;  class 1: Pos 1, Neg 3;  class 2: Pos 0, Neg 4 (absent);  class 3: Pos 1, Neg 3.
TARGET = torch.tensor([[[0, 0], [1, 3]]])  # (1, 2, 2)
# Eq. 2: w = (1 + |log_1000(Neg/Pos)|)^-1, counts floored at 1 pixel.
W0 = 1.0  # log(2/2) = 0
W1 = 1 / (1 + LN3 / LN1000)  # classes 1 and 3: Neg/Pos = 3
W2 = 1 / (1 + LN4 / LN1000)  # class 2: Pos 0 -> 1, Neg/Pos = 4


def _close(actual: torch.Tensor, expected: float, tol: float = 1e-6) -> None:
    assert actual.ndim == 0
    assert torch.isfinite(actual)
    assert float(actual) == pytest.approx(expected, rel=tol, abs=tol)


def test_registered():
    assert {"as_wbce", "wbce", "weighted_dice"} <= set(available_losses())
    loss = build_loss([{"name": "as_wbce", "weight_on": "positive"}, {"name": "weighted_dice", "weight": 0.5}])
    assert isinstance(loss.losses[0], AdaptiveSmoothWeightedBCE) and loss.losses[0].weight_on == "positive"
    assert isinstance(loss.losses[1], WeightedDiceLoss) and loss.weights == [1.0, 0.5]


# ------------------------------------------------------------------------------------------- AS_wBCE


def test_as_wbce_class_weights_follow_eq2():
    y = torch.nn.functional.one_hot(TARGET, 4).movedim(-1, 1).float()
    w = AdaptiveSmoothWeightedBCE().class_weights(y)
    assert w.tolist() == pytest.approx([W0, W1, W2, W1], rel=1e-6)
    # the smoothing keeps the weights in (0, 1] and the rarer class lower: 1 > w(3:1) > w(4:1)
    assert 1.0 == W0 > W1 > W2 > 0


def test_as_wbce_at_p_half_negative_placement():
    # logits 0 -> p = 0.5: every term is ln 2 times its weight; 16 terms (4 maps × 4 pixels).
    # negative placement: positives weigh 1, negatives w_t:
    #   class 0: 2·1 + 2·1 = 4; class 1: 1 + 3·W1; class 2: 0 + 4·W2; class 3: 1 + 3·W1  -> 6 + 6·W1 + 4·W2
    logits = torch.zeros(1, 4, 2, 2)
    _close(AdaptiveSmoothWeightedBCE()(logits, TARGET), LN2 / 16 * (6 + 6 * W1 + 4 * W2))


def test_as_wbce_at_p_half_positive_placement():
    # positive placement (Eq. 1 as typeset): class 0: 2 + 2 = 4; class 1: W1 + 3; class 2: 4; class 3: W1 + 3
    logits = torch.zeros(1, 4, 2, 2)
    _close(AdaptiveSmoothWeightedBCE(weight_on="positive")(logits, TARGET), LN2 / 16 * (14 + 2 * W1))


def test_as_wbce_separates_positive_and_negative_terms():
    # logits ln 3 -> p = 0.75: -log p = ln(4/3) on the 4 positive pixels (2 of class 0, 1 of class 1, 1 of class 3);
    # -log(1-p) = ln 4 on the negatives, weighted 2·1 + 3·W1 + 4·W2 + 3·W1.
    logits = torch.full((1, 4, 2, 2), LN3)
    expected = (4 * math.log(4 / 3) + LN4 * (2 + 6 * W1 + 4 * W2)) / 16
    _close(AdaptiveSmoothWeightedBCE()(logits, TARGET), expected)


def test_as_wbce_softmax_probabilities():
    # logits 0 with softmax -> p = 0.25: -log p = ln 4 on the 4 positives, -log(0.75) = ln(4/3) on the negatives.
    logits = torch.zeros(1, 4, 2, 2)
    expected = (4 * LN4 + math.log(4 / 3) * (2 + 6 * W1 + 4 * W2)) / 16
    _close(AdaptiveSmoothWeightedBCE(probabilities="softmax")(logits, TARGET), expected)


def test_as_wbce_fixed_dataset_counts():
    # Neg/Pos = 1000 for every class -> w = 1/(1 + 1) = 0.5; at p = 0.5: ln2/16 · (4 positives + 12 negatives · 0.5)
    loss = AdaptiveSmoothWeightedBCE(pos_counts=[1, 1, 1, 1], neg_counts=[1000, 1000, 1000, 1000])
    _close(loss(torch.zeros(1, 4, 2, 2), TARGET), LN2 / 16 * 10)
    with pytest.raises(ConfigError):
        AdaptiveSmoothWeightedBCE(pos_counts=[1, 1, 1, 1])


def test_as_wbce_counts_pool_the_batch():
    # Two images: [0,0,1,3] and all background. Class 1: Pos 1, Neg 7 -> w = 1/(1 + log_1000 7).
    target = torch.cat([TARGET, torch.zeros_like(TARGET)])
    y = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float()
    w = AdaptiveSmoothWeightedBCE().class_weights(y)
    assert float(w[1]) == pytest.approx(1 / (1 + math.log(7) / LN1000), rel=1e-6)
    assert float(w[0]) == pytest.approx(1 / (1 + math.log(6 / 2) / LN1000), rel=1e-6)  # Pos 6, Neg 2: |log| symmetric


def test_as_wbce_absent_and_full_classes_stay_finite():
    torch.manual_seed(0)
    logits = torch.randn(4, 4, 16, 16, requires_grad=True)
    # class 0 covers everything (Neg = 0), classes 1-3 are absent (Pos = 0)
    target = torch.zeros(4, 16, 16, dtype=torch.long)
    loss = AdaptiveSmoothWeightedBCE()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    y = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float()
    # counts floored at 1: every class has ratio 1024 (or 1/1024) -> w = 1/(1 + log_1000 1024) ≈ 0.4990
    expected = 1 / (1 + math.log(1024) / LN1000)
    assert AdaptiveSmoothWeightedBCE().class_weights(y).tolist() == pytest.approx([expected] * 4, rel=1e-6)


def test_as_wbce_equals_bce_when_balanced():
    # Multi-label maps with Pos = Neg in every class -> w = 1 -> Eq. 1 is plain BCE (both placements).
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 4, 4)
    target = torch.zeros(2, 4, 4, 4)
    target[:, :, :2] = 1  # half of every map
    bce = BCELoss(mode="multilabel")(logits, target)
    for placement in ("negative", "positive"):
        _close(AdaptiveSmoothWeightedBCE(mode="multilabel", weight_on=placement)(logits, target), float(bce), 1e-5)


def test_as_wbce_rejects_bad_options():
    with pytest.raises(ConfigError):
        AdaptiveSmoothWeightedBCE(weight_on="both")
    with pytest.raises(ConfigError):
        AdaptiveSmoothWeightedBCE(mode="multilabel", probabilities="softmax")


# ------------------------------------------------------------------------------------------------ wBCE


def test_wbce_hand_values():
    logits = torch.zeros(1, 4, 2, 2)  # p = 0.5, each term ln 2; 4 positive and 12 negative terms
    _close(WeightedBCE(w=2.0)(logits, TARGET), LN2 / 16 * (4 + 12 * 2))  # negatives × 2
    _close(WeightedBCE(w=2.0, weight_on="positive")(logits, TARGET), LN2 / 16 * (4 * 2 + 12))
    # per-class weights 1..4 on the negatives: 2·1 + 3·2 + 4·3 + 3·4 = 32
    _close(WeightedBCE(w=[1, 2, 3, 4])(logits, TARGET), LN2 / 16 * (4 + 32))


@pytest.mark.parametrize("placement", ["negative", "positive"])
def test_wbce_with_weight_one_is_bce(placement):
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    _close(WeightedBCE(w=1.0, weight_on=placement)(logits, target), float(BCELoss()(logits, target)), 1e-5)


def test_wbce_positive_placement_is_pos_weight_bce():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    expected = BCELoss(pos_weight=[1.5] * 4)(logits, target)
    _close(WeightedBCE(w=1.5, weight_on="positive")(logits, target), float(expected), 1e-5)


def test_wbce_checks_weights():
    with pytest.raises(ConfigError):
        WeightedBCE(w=-1.0)
    with pytest.raises(ConfigError):
        WeightedBCE(w=[1.0, 2.0])(torch.zeros(1, 4, 2, 2), TARGET)


# ---------------------------------------------------------------------------------------- Weight-Dice
# Softmax probabilities chosen per pixel (logits = log p), target [0, 0, 1, 3]:
PROBS = [[0.7, 0.1, 0.1, 0.1], [0.4, 0.2, 0.2, 0.2], [0.1, 0.6, 0.1, 0.2], [0.25, 0.25, 0.25, 0.25]]
P_LOGITS = torch.tensor(PROBS).log().T.reshape(1, 4, 2, 2)
# smooth 0, sums over pixels:
#   class 0: I = 0.7 + 0.4 = 1.1, Σp = 1.45, Σy = 2 -> D = 2.2 / 3.45
#   class 1: I = 0.6, Σp = 1.15, Σy = 1 -> D = 1.2 / 2.15
#   class 2: I = 0, Σp = 0.65, Σy = 0 -> D = 0
#   class 3: I = 0.25, Σp = 0.75, Σy = 1 -> D = 0.5 / 1.75
D = [2.2 / 3.45, 1.2 / 2.15, 0.0, 0.5 / 1.75]


def test_weighted_dice_inverse_frequency():
    # counts [2, 1, 0, 1] -> w = [1/2, 1, (absent: max) 1, 1]
    expected = (0.5 * (1 - D[0]) + (1 - D[1]) + (1 - D[2]) + (1 - D[3])) / 3.5
    _close(WeightedDiceLoss(smooth=0.0)(P_LOGITS, TARGET), expected, 1e-5)


def test_weighted_dice_other_weightings():
    uniform = sum(1 - d for d in D) / 4
    _close(WeightedDiceLoss(weight_type="uniform", smooth=0.0)(P_LOGITS, TARGET), uniform, 1e-5)
    square = (0.25 * (1 - D[0]) + (1 - D[1]) + (1 - D[2]) + (1 - D[3])) / 3.25  # counts² [4, 1, -, 1]
    _close(WeightedDiceLoss(weight_type="inverse_square", smooth=0.0)(P_LOGITS, TARGET), square, 1e-5)
    fixed = sum(w * (1 - d) for w, d in zip([1, 2, 3, 4], D, strict=True)) / 10
    _close(WeightedDiceLoss(weights=[1, 2, 3, 4], smooth=0.0)(P_LOGITS, TARGET), fixed, 1e-5)
    # without background: classes 1..3, counts [1, 0, 1] -> weights [1, 1, 1]
    no_bg = ((1 - D[1]) + (1 - D[2]) + (1 - D[3])) / 3
    _close(WeightedDiceLoss(include_background=False, smooth=0.0)(P_LOGITS, TARGET), no_bg, 1e-5)
    fixed_no_bg = (2 * (1 - D[1]) + 3 * (1 - D[2]) + 4 * (1 - D[3])) / 9
    _close(
        WeightedDiceLoss(weights=[1, 2, 3, 4], include_background=False, smooth=0.0)(P_LOGITS, TARGET),
        fixed_no_bg,
        1e-5,
    )


def test_weighted_dice_uniform_matches_monai_batch_dice():
    torch.manual_seed(4)
    logits = torch.randn(3, 4, 8, 8)
    target = torch.randint(0, 4, (3, 8, 8))
    y = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float()
    expected = MonaiDiceLoss(softmax=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)(logits, y)
    _close(WeightedDiceLoss(weight_type="uniform")(logits, target), float(expected), 1e-5)


def test_weighted_dice_gradient_is_finite_with_absent_classes():
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    loss = WeightedDiceLoss()(logits, torch.zeros(2, 8, 8, dtype=torch.long))  # only class 0 present
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------------------- Weight-CE


def test_weight_ce_is_ce_with_class_weights():
    # PyTorch's weighted mean: Σ w_{t_i} (-log p_i[t_i]) / Σ w_{t_i}; pixel weights for targets [0, 0, 1, 3] and
    # class weights [1, 2, 3, 4] are 1, 1, 2, 4.
    expected = (-math.log(0.7) - math.log(0.4) - 2 * math.log(0.6) - 4 * math.log(0.25)) / 8
    _close(CrossEntropyLoss(class_weights=[1, 2, 3, 4])(P_LOGITS, TARGET), expected, 1e-5)
    _close(build_loss({"name": "ce", "class_weights": [1, 2, 3, 4]})(P_LOGITS, TARGET), expected, 1e-5)


def test_wbce_w_in_config_is_not_the_term_weight():
    # In a loss list, `weight` scales the term; wBCE's own weight is `w` (ARMS Table 4's wBCE(1.1)…(3.0)).
    logits = torch.zeros(1, 4, 2, 2)
    composite = build_loss([{"name": "wbce", "w": 2.0}])
    assert composite.weights == [1.0]
    _close(composite(logits, TARGET), float(WeightedBCE(w=2.0)(logits, TARGET)))
