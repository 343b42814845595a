"""Every trainer asks the model for its own training loss (the ``training_loss`` hook), never its type.

A recurrent CTV model is trained on every refinement pass whatever the trainer: the plain one, the noisy-label
one with QAM (which used to call ``model(image)`` and so trained the last pass only) and the adversarial one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from medseg.config import load_config
from medseg.losses import build_loss
from medseg.losses.segmentation import per_sample_loss
from medseg.models import build_model, training_loss
from medseg.models.ctv_unet3d import CTVUNet3D
from medseg.training.run import trainer_class


def recurrent_cfg(**sections):
    base = {
        "name": "ctv_toy",
        "task": {
            "mode": "multilabel",
            "class_names": ["ctv"],
            "derived": {},
            "primary_metric": "ctv",
            "spatial_dims": 3,
        },
        "data": {"size": None},
        "model": {"name": "ctv_unet3d", "channels": [2, 4], "recurrent": True, "recurrent_steps": 3},
        "loss": [{"name": "bce"}, {"name": "dice"}],
        "augment": {"volume": {"enabled": False}},
        "train": {"epochs": 1, "batch_size": 2, "lr": 1e-3, "device": "cpu"},
        "evaluate": {"batch_size": 2},
    }
    base.update(sections)
    return load_config(None, base)


VARIANTS = {
    "plain": {},
    "noisy_labels_qam": {
        "noisy_labels": {"qam": {"enabled": True, "channels": [4, 4], "convs": [1, 1]}, "ocm": {"enabled": True}}
    },
    "adversarial": {
        "adversarial": {
            "enabled": True,
            "discriminator": {"name": "patchgan", "channels": [4, 8], "strides": [2, 1, 1]},
        }
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_trainer_trains_every_refinement_pass(variant, tmp_path, monkeypatch, toy_volumes):
    cfg = recurrent_cfg(**VARIANTS[variant])
    trainer = trainer_class(cfg)(cfg, tmp_path / "fold_0", toy_volumes, [0, 1, 2], [3], progress=False)
    calls = []
    original = CTVUNet3D.training_loss

    def spy(self, loss_fn, image, target):
        loss, logits = original(self, loss_fn, image, target)
        calls.append(tuple(loss.shape))
        return loss, logits

    monkeypatch.setattr(CTVUNet3D, "training_loss", spy)
    batch = next(iter(trainer.loader(trainer.train_set, shuffle=True)))
    with warnings.catch_warnings():
        # model(x) in training mode on a recurrent model warns that only the last pass is trained
        warnings.simplefilter("error")
        out = trainer.train_step(batch)
    assert np.isfinite(out["loss"])
    # the noisy-label trainer weighs per-sample losses: the hook returns one per sample (each over all passes)
    assert calls == ([(2,)] if variant == "noisy_labels_qam" else [()])


def test_hook_weights_the_passes_per_sample():
    torch.manual_seed(0)
    model = build_model(
        "ctv_unet3d", in_channels=1, out_channels=1, channels=[2, 3], recurrent=True, recurrent_steps=3
    ).train()
    loss_fn = build_loss([{"name": "bce"}], "multilabel")
    x = torch.randn(2, 1, 8, 8, 8)
    y = (torch.rand(2, 1, 8, 8, 8) > 0.5).long()
    torch.manual_seed(1)
    per_sample, last = training_loss(model, lambda lg, t: per_sample_loss(loss_fn, lg, t), x, y)
    torch.manual_seed(1)
    steps = model(x, return_steps=True)
    expected = sum(w * per_sample_loss(loss_fn, s, y) for w, s in zip(model.step_weights(), steps, strict=True))
    assert per_sample.shape == (2,)
    torch.testing.assert_close(per_sample, expected)
    torch.testing.assert_close(last, steps[-1])


def test_plain_module_without_hook():
    model = torch.nn.Conv3d(1, 2, 1)
    loss_fn = build_loss([{"name": "ce"}], "multiclass")
    x, y = torch.randn(1, 1, 4, 4, 4), torch.randint(0, 2, (1, 4, 4, 4))
    loss, logits = training_loss(model, loss_fn, x, y)
    torch.testing.assert_close(loss, loss_fn(model(x), y))
