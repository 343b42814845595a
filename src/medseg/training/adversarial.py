"""Adversarial training of a segmentation network against a conditional discriminator (AMFL, §II-B/C).

AMFL (Mei et al.) trains the generator G (NestedUNet) and the PatchGAN discriminator D(image, map) with the
least-squares GAN objectives of Mao et al. (LSGAN, a = 0, b = c = 1):

* D minimises ``½ E[(D(x, y) - 1)²] + ½ E[D(x, G(x))²]`` (Eq. 5), y the one-hot ground truth;
* G minimises ``½ E[(D(x, G(x)) - 1)²] + λ L_seg(G(x), y)`` (Eq. 6–7), λ = 10, L_seg = Lovász-Softmax.

AMFL's Eq. 5–6 print the expectations without Mao et al.'s ½; the ½ (also pix2pix's "divide the objective
by 2 while optimizing D") is kept here, so the adversarial term of G weighs half of what the literal Eq. 7
gives next to λ·L_seg. ``lambda_seg: 5`` would reproduce the literal ratio. G(x) is the softmax probability
map (sigmoid in multilabel tasks); D sees it concatenated with the image, and the mean over D's patch grid
is the expectation.

One training step alternates (pix2pix order): G forward; D step on the real pair and the detached fake
pair; G step through the just-updated D with D's parameters frozen. Both optimizers are Adam with
``adversarial.betas`` (0.5, 0.999); G's learning rate is ``train.lr``, D's ``adversarial.lr``
(null = ``train.lr``). :class:`AdversarialTrainer` only overrides ``build_optimizers``, ``extra_modules`` and
``train_step``: the epoch loop, validation (segmentation loss and metrics of G only), checkpoints (D and its
optimizer included), resume, early stopping and history are :class:`Trainer`'s. Besides ``loss`` (the
segmentation loss, comparable with ``val_loss``) a step reports ``g_loss`` (G's whole objective),
``g_adv`` (its LSGAN term), ``d_loss``, and ``d_real``/``d_fake`` (D's mean score on real and fake pairs).

Several processes (torchrun): G and D are each wrapped in DDP. D's step runs through its wrapper (its
gradients averaged over the ranks); G's step calls the bare D, whose parameters are frozen then — the
gradient flows through D into G's output only, and G's wrapper averages it.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.artifact import model_kwargs
from medseg.losses.segmentation import one_hot
from medseg.models import build_model
from medseg.training.trainer import Trainer


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """``½ mean((D(x, y) - 1)²) + ½ mean(D(x, G(x))²)`` (AMFL Eq. 5 with LSGAN's ½)."""
    return 0.5 * (d_real.float() - 1).pow(2).mean() + 0.5 * d_fake.float().pow(2).mean()


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """``½ mean((D(x, G(x)) - 1)²)`` (AMFL Eq. 6 with LSGAN's ½)."""
    return 0.5 * (d_fake.float() - 1).pow(2).mean()


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class AdversarialTrainer(Trainer):
    """:class:`Trainer` with a discriminator trained alongside (config section ``adversarial``)."""

    discriminator: nn.Module

    def build_discriminator(self) -> nn.Module:
        """The model named by ``adversarial.discriminator``, its input = image channels + classes."""
        spec = dict(self.cfg["adversarial"]["discriminator"])
        name = spec.pop("name")
        in_channels = int(model_kwargs(self.cfg)["in_channels"]) + len(self.class_names)
        return build_model(
            name, trust_code=True, in_channels=in_channels, spatial_dims=self.cfg["task"]["spatial_dims"], **spec
        )  # the user's own config

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # Called by Trainer.__init__ after the generator is built and seeded: D is built here, on the same seed.
        adv, tr = self.cfg["adversarial"], self.cfg["train"]
        self.lambda_seg = float(adv["lambda_seg"])
        self.discriminator = self.build_discriminator().to(self.device)
        if self.channels_last:
            self.discriminator = self.discriminator.to(memory_format=torch.channels_last)
        betas = tuple(float(b) for b in adv["betas"])
        d_lr = float(adv["lr"]) if adv.get("lr") is not None else float(tr["lr"])
        return {
            "model": torch.optim.Adam(
                self.model.parameters(), lr=float(tr["lr"]), betas=betas, weight_decay=float(tr["weight_decay"])
            ),
            "disc": torch.optim.Adam(self.discriminator.parameters(), lr=d_lr, betas=betas),
        }

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"disc": self.discriminator}

    def segmentation_map(self, logits: torch.Tensor) -> torch.Tensor:
        """G(x) as D sees it: softmax probabilities (sigmoid for multilabel tasks)."""
        return logits.float().softmax(1) if self.mode == "multiclass" else torch.sigmoid(logits.float())

    def real_map(self, label: torch.Tensor, num_classes: int) -> torch.Tensor:
        return one_hot(label, num_classes) if self.mode == "multiclass" else label.float()

    def train_step(self, batch: dict) -> dict[str, float]:
        image, label = self.to_device(batch)
        disc, opt_d, opt_g = self.discriminator, self.optimizers["disc"], self.optimizers["model"]
        disc_step = self.wrapped("disc")  # DDP's wrapper when several processes train, else D itself
        with self.autocast():
            # The model's own training loss (all refinement passes of a recurrent model); logits of the last pass.
            seg, logits = self.model_loss(self.loss_fn, image, label)
        fake = self.segmentation_map(logits)
        real = self.real_map(label, logits.shape[1])

        # D step: real pairs → 1, fake pairs → 0 (G's output detached).
        set_requires_grad(disc, True)
        opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            d_real = disc_step(image, real)
            d_fake = disc_step(image, fake.detach())
        d_loss = lsgan_d_loss(d_real, d_fake)
        stats = {
            "d_loss": float(d_loss.detach()),
            "d_real": float(d_real.detach().float().mean()),
            "d_fake": float(d_fake.detach().float().mean()),
        }  # read before D's step changes them
        self.scaler.scale(d_loss).backward()
        self.scaler.step(opt_d)

        # G step through the updated D (frozen): fake pairs → 1, plus λ · segmentation loss.
        set_requires_grad(disc, False)
        opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            d_fake_for_g = disc(image, fake)
        g_adv = lsgan_g_loss(d_fake_for_g)
        g_loss = g_adv + self.lambda_seg * seg
        self.scaler.scale(g_loss).backward()
        self.scaler.step(opt_g)
        self.scaler.update()
        set_requires_grad(disc, True)
        return {"loss": float(seg.detach()), "g_loss": float(g_loss.detach()), "g_adv": float(g_adv.detach()), **stats}
