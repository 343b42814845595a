import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from medseg.config import load_config
from medseg.models import build_model
from medseg.models.patchgan import PatchGANDiscriminator
from medseg.training.adversarial import AdversarialTrainer, lsgan_d_loss, lsgan_g_loss
from medseg.training.run import trainer_class
from medseg.training.trainer import Trainer

TRAIN, VAL = list(range(0, 32)), list(range(32, 40))


def adv_cfg(tiny_cfg, **train):
    """tiny_cfg with a narrow NestedUNet generator, Lovász loss and a narrow PatchGAN."""
    cfg = copy.deepcopy(tiny_cfg)
    cfg["model"] = {"name": "nested_unet", "depth": 2, "base_channels": 4}
    cfg["loss"] = [{"name": "lovasz"}]
    cfg["adversarial"].update(enabled=True)
    cfg["adversarial"]["discriminator"].update(channels=[8, 16, 16, 16])
    cfg["train"].update(lr=2e-4, **train)
    return cfg


# --- discriminator ---------------------------------------------------------------------------------------
def test_patchgan_layers_are_the_papers():
    d = build_model("patchgan")  # 1 image + 4 class channels
    convs = d.convolutions()
    assert [c.in_channels for c in convs] == [5, 64, 128, 256, 512]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    assert all(c.padding == (2, 2) for c in convs)
    acts = [m for m in d.net if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.2 for a in acts)
    assert isinstance(d.net[-1], nn.Sigmoid) and isinstance(d.net[-2], nn.Conv2d)  # no LeakyReLU after the last conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.net)


def test_patchgan_output_for_128x128():
    # out = floor((n + 2·2 - 4) / s) + 1 = floor(n / s) + 1: 128 →(s2) 65 →(s2) 33 →(s2) 17 →(s1) 18 →(s1) 19.
    d = PatchGANDiscriminator(5).eval()
    image, seg = torch.randn(2, 1, 128, 128), torch.rand(2, 4, 128, 128)
    with torch.no_grad():
        out = d(image, seg)
    assert out.shape == (2, 1, 19, 19)
    assert float(out.min()) > 0 and float(out.max()) < 1  # sigmoid
    with torch.no_grad():
        torch.testing.assert_close(d(torch.cat([image, seg], 1)), out)  # one concatenated tensor is the same
    # The literal "first four layers stride 2": 128 → 65 → 33 → 17 → 9 →(s1) 10.
    literal = PatchGANDiscriminator(5, strides=(2, 2, 2, 2, 1)).eval()
    with torch.no_grad():
        assert literal(image, seg).shape == (2, 1, 10, 10)


# --- objectives ------------------------------------------------------------------------------------------
def test_lsgan_objectives_hand_computed():
    # D(real) = D(fake) = 0.25 everywhere: ½(0.25 - 1)² + ½·0.25² = 0.28125 + 0.03125 = 0.3125; G: ½(0.75)² = 0.28125.
    c = torch.full((2, 1, 5, 5), 0.25)
    assert float(lsgan_d_loss(c, c)) == pytest.approx(0.3125)
    assert float(lsgan_g_loss(c)) == pytest.approx(0.28125)
    # A perfect discriminator (real → 1, fake → 0) has zero loss; it costs G ½(0 - 1)² = 0.5.
    assert float(lsgan_d_loss(torch.ones(3), torch.zeros(3))) == 0.0
    assert float(lsgan_g_loss(torch.zeros(3))) == 0.5
    # Patch scores are averaged: real (1, 0) → ½·mean(0, 1) = 0.25; fake (1, 0) → ½·mean(1, 0) = 0.25.
    assert float(lsgan_d_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))) == pytest.approx(0.5)


class ConstantD(nn.Module):
    """A constant discriminator per pair kind: ``real`` on one-hot maps (all 0/1), ``fake`` on soft maps.

    Two different constants make the LSGAN targets visible: with real → 1 and fake → 0 the loss is small,
    with the targets swapped it is large (a single constant would give the same value both ways).
    """

    def __init__(self, real: float, fake: float):
        super().__init__()
        self.real = nn.Parameter(torch.tensor(real))
        self.fake = nn.Parameter(torch.tensor(fake))

    def forward(self, image, segmentation):
        hard = bool(((segmentation == 0) | (segmentation == 1)).all())
        return (self.real if hard else self.fake).expand(image.shape[0], 1, 4, 4)


class ConstantDTrainer(AdversarialTrainer):
    def build_discriminator(self):
        return ConstantD(real=0.75, fake=0.25)


def test_step_uses_lsgan_targets_and_updates_d_before_g(tiny_cfg, toy_data, tmp_path):
    trainer = ConstantDTrainer(adv_cfg(tiny_cfg), tmp_path / "c", toy_data, TRAIN, VAL, progress=False)
    batch = next(iter(trainer.loader(trainer.train_set, shuffle=True)))
    out = trainer.train_step(batch)
    assert out["d_real"] == pytest.approx(0.75) and out["d_fake"] == pytest.approx(0.25)
    # D loss, real → 1 and fake → 0: ½(0.75 - 1)² + ½(0.25)² = 0.03125 + 0.03125 = 0.0625
    # (swapped targets would give ½(0.75)² + ½(0.25 - 1)² = 0.5625).
    assert out["d_loss"] == pytest.approx(0.0625, abs=1e-7)
    # dL_D/d real = real - 1 = -0.25, dL_D/d fake = fake = 0.25; Adam's first step moves each by lr = 2e-4
    # against its gradient's sign: real → 0.7502, fake → 0.2498.
    assert float(trainer.discriminator.real.detach()) == pytest.approx(0.7502, abs=1e-7)
    assert float(trainer.discriminator.fake.detach()) == pytest.approx(0.2498, abs=1e-7)
    # G's step sees the updated D on its soft map: ½(0.2498 - 1)² = ½ · 0.56280004 = 0.28140002
    # (the D of before its step would give ½(0.75)² = 0.28125).
    assert out["g_adv"] == pytest.approx(0.28140002, abs=1e-7)
    assert out["g_loss"] == pytest.approx(out["g_adv"] + 10 * out["loss"], rel=1e-6)


def test_one_step_updates_both_networks(tiny_cfg, toy_data, tmp_path):
    cfg = adv_cfg(tiny_cfg)
    cfg["adversarial"]["lambda_seg"] = 0.0  # G learns from D alone: the adversarial gradient must reach G
    trainer = AdversarialTrainer(cfg, tmp_path / "a", toy_data, TRAIN, VAL, progress=False)
    assert isinstance(trainer.discriminator, PatchGANDiscriminator)
    assert trainer.discriminator.convolutions()[0].in_channels == 1 + 4
    g0 = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    d0 = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    out = trainer.train_step(next(iter(trainer.loader(trainer.train_set, shuffle=True))))
    assert set(out) == {"loss", "g_loss", "g_adv", "d_loss", "d_real", "d_fake"}
    assert all(math.isfinite(v) for v in out.values())
    assert out["g_loss"] == pytest.approx(out["g_adv"])  # λ = 0
    assert 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1
    g_changed = [k for k, v in trainer.model.state_dict().items() if k in g0 and not torch.equal(v, g0[k])]
    d_changed = [k for k, v in trainer.discriminator.state_dict().items() if not torch.equal(v, d0[k])]
    assert any(k.endswith("weight") and "heads" in k for k in g_changed)  # G's head moved by the GAN term
    assert len(d_changed) == len(d0)  # every D weight and bias moved
    assert all(p.requires_grad for p in trainer.discriminator.parameters())  # unfrozen after G's step
    betas = {name: opt.param_groups[0]["betas"] for name, opt in trainer.optimizers.items()}
    assert betas == {"model": (0.5, 0.999), "disc": (0.5, 0.999)}
    assert trainer.optimizers["disc"].param_groups[0]["lr"] == pytest.approx(2e-4)


# --- the trainer -----------------------------------------------------------------------------------------
def test_config_selects_the_adversarial_trainer():
    assert trainer_class(load_config()) is Trainer
    cfg = load_config("configs/chromosomes/amfl.yaml")
    assert trainer_class(cfg) is AdversarialTrainer
    adv = cfg["adversarial"]
    assert adv["lambda_seg"] == 10 and adv["lr"] == 2e-4 and adv["betas"] == [0.5, 0.999]
    assert cfg["loss"][0]["name"] == "lovasz" and cfg["model"]["name"] == "nested_unet"
    assert cfg["train"]["batch_size"] == 64 and cfg["train"]["seed"] == 123 and cfg["train"]["lr"] == 2e-4
    assert cfg["train"]["early_stopping"]["patience"] == 15


def test_two_epochs_write_gan_losses_and_resume_restores_the_discriminator(tiny_cfg, toy_data, tmp_path):
    cfg = adv_cfg(tiny_cfg, epochs=2)
    first = trainer_class(cfg)(cfg, tmp_path / "fold_0", toy_data, TRAIN, VAL, progress=False)
    first.fit()
    history = json.loads((tmp_path / "fold_0" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    for row in history:
        for key in ("train_loss", "train_g_loss", "train_d_loss", "train_g_adv", "val_loss"):
            assert math.isfinite(row[key]), key
        assert row["train_g_loss"] == pytest.approx(row["train_g_adv"] + 10 * row["train_loss"], rel=1e-5)
    assert "train_d_loss" in (tmp_path / "fold_0" / "history.csv").read_text().splitlines()[0]
    saved = load_file(str(tmp_path / "fold_0" / "last.safetensors"))
    assert any(k.startswith("disc/") for k in saved) and any(k.startswith("optim/disc/") for k in saved)

    cfg3 = adv_cfg(tiny_cfg, epochs=3)
    again = AdversarialTrainer(cfg3, tmp_path / "fold_0", toy_data, TRAIN, VAL, progress=False)
    fresh = {k: v.clone() for k, v in again.discriminator.state_dict().items()}
    assert again.resume()
    for k, v in again.discriminator.state_dict().items():
        torch.testing.assert_close(v, first.discriminator.state_dict()[k], rtol=0, atol=0)
    assert any(not torch.equal(v, fresh[k]) for k, v in again.discriminator.state_dict().items())
    steps = again.optimizers["disc"].state_dict()["state"][0]["step"]
    assert float(steps) == 2 * 4  # 2 epochs × 4 batches (32 images / 8)
    again.fit()
    assert [r["epoch"] for r in json.loads((tmp_path / "fold_0" / "history.json").read_text())] == [1, 2, 3]


def test_early_stopping_monitors_the_configured_column(tiny_cfg, toy_data, tmp_path):
    cfg = adv_cfg(tiny_cfg, epochs=3)
    cfg["train"]["early_stopping"]["monitor"] = "train_g_loss"
    trainer = AdversarialTrainer(cfg, tmp_path / "m", toy_data, TRAIN, VAL, progress=False)
    trainer.fit()
    g = [r["train_g_loss"] for r in trainer.history]
    assert trainer.early.best == pytest.approx(min(g))
    assert trainer.early.best_epoch == 1 + g.index(min(g))


TABLE_V = {"dice": "dice", "weighted_dice": "weighted_dice", "ce": "ce", "weighted_ce": "ce", "lovasz": "lovasz"}


@pytest.mark.parametrize("gan", [False, True])
@pytest.mark.parametrize("row", sorted(TABLE_V))
def test_table_v_configs(gan, row):
    from medseg.losses import available_losses, build_loss

    cfg = load_config(f"configs/chromosomes/amfl_table5_{'amfl' if gan else 'nested_unet'}_{row}.yaml")
    assert trainer_class(cfg) is (AdversarialTrainer if gan else Trainer)
    assert cfg["model"]["name"] == "nested_unet" and [s["name"] for s in cfg["loss"]] == [TABLE_V[row]]
    if row == "weighted_ce":
        assert cfg["loss"][0]["class_weights"] == [0.011, 0.79, 1.4, 4.0]
    if TABLE_V[row] not in available_losses():
        pytest.skip(f"loss {TABLE_V[row]!r} is not registered in this checkout")
    build_loss(cfg["loss"], cfg["task"]["mode"])
