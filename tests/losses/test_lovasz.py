import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses import build_loss
from medseg.losses.lovasz import LovaszSoftmaxLoss, lovasz_grad, lovasz_softmax


# --- the oracle: Berman's public reference (bermanmaxim/LovaszSoftmax, pytorch/lovasz_losses.py, MIT
# licence), multiclass part, transcribed with its loops and its `classes` argument ('present', 'all' or a
# list); only the removed `Variable` wrappers, the N-d flatten and the dtype of the
# ground-truth indicator (the probabilities' dtype instead of float32, so float64 inputs work) differ.
def ref_lovasz_grad(gt_sorted):
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def ref_mean(values, empty=0):
    values = list(values)
    if not values:
        return empty
    acc = values[0]
    for v in values[1:]:
        acc = acc + v
    return acc / len(values)


def ref_flatten_probas(probas, labels, ignore=None):
    C = probas.size(1)
    probas = probas.movedim(1, -1).reshape(-1, C)
    labels = labels.reshape(-1)
    if ignore is None:
        return probas, labels
    valid = labels != ignore
    return probas[valid], labels[valid]


def ref_lovasz_softmax_flat(probas, labels, classes="present"):
    if probas.numel() == 0:
        return probas.sum() * 0.0
    C = probas.size(1)
    losses = []
    class_to_sum = list(range(C)) if classes in ["all", "present"] else classes
    for c in class_to_sum:
        fg = (labels == c).to(probas.dtype)
        if classes == "present" and fg.sum() == 0:
            continue
        class_pred = probas[:, c]
        errors = (fg - class_pred).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        fg_sorted = fg[perm]
        losses.append(torch.dot(errors_sorted, ref_lovasz_grad(fg_sorted)))
    return ref_mean(losses)


def ref_lovasz_softmax(probas, labels, classes="present", per_image=False, ignore=None):
    if per_image:
        return ref_mean(
            ref_lovasz_softmax_flat(*ref_flatten_probas(p.unsqueeze(0), lab.unsqueeze(0), ignore), classes=classes)
            for p, lab in zip(probas, labels, strict=True)
        )
    return ref_lovasz_softmax_flat(*ref_flatten_probas(probas, labels, ignore), classes=classes)


# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("classes", ["present", "all", [1, 3]])
def test_matches_the_reference_on_random_inputs_value_and_gradient(per_image, classes):
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 4, 16, 12, generator=gen, dtype=torch.float64) * 3
    target = torch.randint(0, 4, (3, 16, 12), generator=gen)
    target[0][target[0] == 2] = 0  # image 0 lacks class 2: "present" must skip it there
    target[1][target[1] == 3] = 1  # image 1 lacks class 3
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ours = lovasz_softmax(a.softmax(1), target, classes=classes, per_image=per_image)
    ref = ref_lovasz_softmax(b.softmax(1), target, classes=classes, per_image=per_image)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("per_image", [False, True])
def test_matches_the_reference_with_ignored_pixels(per_image):
    gen = torch.Generator().manual_seed(3)
    probs = torch.randn(2, 4, 10, 10, generator=gen, dtype=torch.float64).softmax(1)
    target = torch.randint(0, 4, (2, 10, 10), generator=gen)
    target[:, :3] = 255
    ours = lovasz_softmax(probs, target, per_image=per_image, ignore_index=255)
    ref = ref_lovasz_softmax(probs, target, per_image=per_image, ignore=255)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_loss_module_equals_the_reference_in_float32():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 4, 32, 32, generator=gen)
    target = torch.randint(0, 4, (4, 32, 32), generator=gen)
    loss = build_loss([{"name": "lovasz", "per_image": True}])
    torch.testing.assert_close(
        loss(logits, target), ref_lovasz_softmax(logits.softmax(1), target, per_image=True), rtol=1e-5, atol=1e-6
    )


def test_hand_computed_soft_case():
    # One image, 3 pixels, 2 classes, labels y = (1, 1, 0), p(class 1) = (0.9, 0.4, 0.3), p(class 0) = 1 - that.
    # Class 1: errors |[y=1] - p1| = (0.1, 0.6, 0.3); sorted 0.6 (gt 1), 0.3 (gt 0), 0.1 (gt 1), G = 2:
    #   J = 1 - (2-1)/(2+0) = 1/2, 1 - (2-1)/(2+1) = 2/3, 1 - (2-2)/(2+1) = 1 → weights (1/2, 1/6, 1/3)
    #   loss₁ = 0.6/2 + 0.3/6 + 0.1/3 = 0.3 + 0.05 + 0.0333… = 23/60
    # Class 0: errors (0.1, 0.6, 0.3); sorted 0.6 (gt 0), 0.3 (gt 1), 0.1 (gt 0), G = 1:
    #   J = 1 - 1/2 = 1/2, 1 - 0/2 = 1, 1 - 0/3 = 1 → weights (1/2, 1/2, 0); loss₀ = 0.3 + 0.15 = 27/60
    # Mean over the two present classes: (23 + 27) / 120 = 5/12.
    p1 = torch.tensor([0.9, 0.4, 0.3], dtype=torch.float64)
    probs = torch.stack([1 - p1, p1]).view(1, 2, 1, 3)
    target = torch.tensor([[[1, 1, 0]]])
    torch.testing.assert_close(lovasz_softmax(probs, target), torch.tensor(5 / 12, dtype=torch.float64))
    torch.testing.assert_close(lovasz_grad(torch.tensor([1.0, 0.0, 1.0])), torch.tensor([1 / 2, 1 / 6, 1 / 3]))


def test_hard_predictions_give_one_minus_iou():
    # On 0/1 probabilities the Lovász extension equals the set function: 1 - IoU per class.
    # y = (1, 1, 1, 0), prediction = (1, 0, 0, 0): class 1 IoU = 1/3, class 0 IoU = 1/3 (pred {1,2,3} vs gt {3})
    # → loss = ((1 - 1/3) + (1 - 1/3)) / 2 = 2/3. With a third, absent class whose probability is 0 and
    # classes="all": its errors are all 0 → adds 0 to a mean over 3 classes: (2/3 + 2/3 + 0) / 3 = 4/9.
    pred = torch.tensor([1, 0, 0, 0])
    probs = torch.nn.functional.one_hot(pred, 3).T.double().view(1, 3, 1, 4)
    target = torch.tensor([[[1, 1, 1, 0]]])
    torch.testing.assert_close(lovasz_softmax(probs, target), torch.tensor(2 / 3, dtype=torch.float64))
    torch.testing.assert_close(lovasz_softmax(probs, target, classes="all"), torch.tensor(4 / 9, dtype=torch.float64))


def test_absent_class_with_classes_all_costs_its_largest_probability():
    # G = 0: J_k = 1 - 0/k = 1 for every k → weights (1, 0, 0, …): the loss is the largest error = max p.
    probs = torch.tensor([[0.5, 0.7], [0.3, 0.2], [0.2, 0.1]], dtype=torch.float64).view(1, 3, 1, 2)
    target = torch.tensor([[[0, 1]]])
    only_2 = lovasz_softmax(probs, target, classes=[2])
    torch.testing.assert_close(only_2, torch.tensor(0.2, dtype=torch.float64))


def test_perfect_prediction_costs_nothing_and_registry_and_modes():
    target = torch.randint(0, 4, (2, 8, 8))
    logits = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float() * 50
    assert float(LovaszSoftmaxLoss()(logits, target)) < 1e-6
    assert "lovasz" in build_loss("lovasz").names
    with pytest.raises(ConfigError):
        LovaszSoftmaxLoss(mode="multilabel")
    with pytest.raises(ConfigError):
        build_loss([{"name": "lovasz", "classes": "some"}])
