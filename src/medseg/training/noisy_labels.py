"""Training on noisy labels (CTV thesis ch. 3): the trainer that weighs each sample's loss by QAM (+ OCM).

The pieces live where their kind lives: the noise simulation in :mod:`medseg.data.label_noise`, the QAM
network and the OCM weighting in :mod:`medseg.models.quality_awareness`, the per-sample loss in
:mod:`medseg.losses.segmentation`. This module holds the joint training of both networks.

Joint training: the thesis (line 344) back-propagates this one loss into both networks. The segmentation
network gets Σ Θ_i ∂L_i; QAM gets ∂Loss/∂AbS_i = Θ_i (L_i − Loss), i.e. it raises the scores of samples
whose loss is below the batch's weighted mean. The trivial way to lower a weighted loss — shrinking every
weight — is ruled out by the softmax's Σ Θ = 1; QAM sees only (image, label), never the prediction, so it
must judge the label. What remains is the degenerate optimum the thesis describes in §3.2.3: all weight on
the few easiest samples (over-fitting, and saturated softmax gradients that freeze early choices).

QAM ranks the samples *of a batch*, so it needs batches of several samples: the thesis trained with
batch 32 and notes (line 559) that its 3D system's batch size 1 left the method unusable. In 3D train on
batches of patches (``train.batch_size`` >= 2 is enforced). QAM is used only in training; validation,
checkpoints' ``model.safetensors`` and inference involve the segmentation network alone, while the
resumable state (``last.safetensors``) includes QAM and its optimizer.

:class:`NoisyLabelTrainer` overrides ``build_optimizers`` (adds QAM's Adam, lr ``noisy_labels.qam.lr``,
thesis 1e-4), ``extra_modules`` and ``train_step``; ``train_epoch`` only adds the epoch's weight statistics
to the loop's row: ``train_qam_w_mean/min/max`` (weights Θ), ``train_qam_ratio_max`` (largest max/min
ratio within a batch) and, when the fold's noise records are known, ``train_qam_rel_clean`` /
``train_qam_rel_noisy`` — the mean relative weight N·Θ_i (1 = uniform) of clean and corrupted samples,
the quantity of Fig. 3.4.

The segmentation loss of a step is the model's own (:func:`medseg.models.training_loss`): a recurrent CTV
model trained with QAM trains every refinement pass, each pass's per-sample losses weighted by Θ.

Several processes (torchrun): Θ is a softmax over the *global* batch, as in one process — each rank's
scores are gathered autograd-aware (:func:`medseg.training.distributed.gather_with_grad`, what
``torch.distributed.nn.all_gather`` does: its backward sums the gradient of every rank's loss into each
rank's scores), the softmax runs over all of them and each rank
weighs its own samples' losses with its slice. Each rank's loss is scaled by the number of ranks, since
DDP averages the gradients while the global loss is the sum of the ranks' terms: the step then equals the
one-process step on the global batch (tested). The logged weights are the global batch's.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.artifact import model_kwargs
from medseg.losses.segmentation import one_hot, per_sample_loss
from medseg.models.quality_awareness import QualityAwarenessModule, quality_weights
from medseg.training import distributed
from medseg.training.trainer import Trainer


class NoisyLabelTrainer(Trainer):
    """:class:`Trainer` with QAM (and optionally OCM) weighting each sample's loss (config ``noisy_labels``)."""

    qam: QualityAwarenessModule
    #: the fold's noise report (set by ``run.train_fold`` when noise is simulated): logs clean vs noisy weights
    label_noise: dict | None = None

    def build_qam(self) -> QualityAwarenessModule:
        q = self.cfg["noisy_labels"]["qam"]
        in_channels = int(model_kwargs(self.cfg)["in_channels"]) + len(self.class_names)
        return QualityAwarenessModule(
            in_channels,
            spatial_dims=int(self.cfg["task"]["spatial_dims"]),
            channels=[int(c) for c in q["channels"]],
            convs=[int(c) for c in q["convs"]],
            norm=q["norm"],
        )

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # Called by Trainer.__init__ after the segmentation network is built and seeded: QAM is built here.
        # The section (and QAM's batch of >= 2) was checked when the config was loaded (medseg.config_schema).
        nl = self.cfg["noisy_labels"]
        self.ocm_lambda = float(nl["ocm"]["lambda"]) if nl["ocm"]["enabled"] else None
        self.qam = self.build_qam().to(self.device)
        if self.channels_last:
            self.qam = self.qam.to(memory_format=torch.channels_last)
        optimizers = super().build_optimizers()
        optimizers["qam"] = torch.optim.Adam(self.qam.parameters(), lr=float(nl["qam"]["lr"]))
        self._weight_log: list[tuple[torch.Tensor, torch.Tensor]] = []
        return optimizers

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"qam": self.qam}

    def label_map(self, label: torch.Tensor) -> torch.Tensor:
        """The training label as QAM sees it: one-hot (multiclass) or the binary maps (multilabel)."""
        return one_hot(label, len(self.class_names)) if self.mode == "multiclass" else label.float()

    def train_step(self, batch: dict) -> dict[str, float]:
        image, label = self.to_device(batch)
        opt_seg, opt_qam = self.optimizers["model"], self.optimizers["qam"]
        opt_seg.zero_grad(set_to_none=True)
        opt_qam.zero_grad(set_to_none=True)
        with self.autocast():
            # L_i: the model's own training loss per sample (every pass of a recurrent model, weighted by pass)
            losses, _ = self.model_loss(lambda lg, y: per_sample_loss(self.loss_fn, lg, y), image, label)
            scores = self.wrapped("qam")(image, self.label_map(label))  # AbS, Eq. 3-1
        index = batch.get("index")
        index = torch.as_tensor(index) if index is not None else torch.full((len(losses),), -1)
        if self.dist.active:  # Θ over the global batch: every rank's scores, gradients kept
            world, rank, b = self.dist.world_size, self.dist.rank, len(losses)
            all_weights = quality_weights(distributed.gather_with_grad(scores.float().flatten()), self.ocm_lambda)
            weights = all_weights[rank * b : (rank + 1) * b]
            loss = world * (weights * losses).sum()  # DDP averages over ranks: × world gives the global sum
            log_w = all_weights.detach()
            log_i = torch.tensor(sum(distributed.all_gather_objects(index.tolist()), []), dtype=torch.long)
        else:
            weights = quality_weights(scores, self.ocm_lambda)  # Θ, Eq. 3-2/3-3
            loss = (weights * losses).sum()  # Eq. 3-2: one loss for both networks
            log_w, log_i = weights.detach(), index
        self.scaler.scale(loss).backward()
        self.scaler.step(opt_seg)
        self.scaler.step(opt_qam)
        self.scaler.update()
        self._weight_log.append((log_w.cpu(), log_i.cpu()))
        return {"loss": float(losses.detach().mean()), "weighted_loss": float(loss.detach())}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self._weight_log = []
        row = super().train_epoch(epoch)
        row.update(self.weight_stats())
        self._weight_log = []
        return row

    def weight_stats(self) -> dict[str, float]:
        """The epoch's QAM weights: mean/min/max of Θ, largest in-batch max/min ratio, clean vs noisy N·Θ."""
        if not self._weight_log:
            return {}
        w = torch.cat([b for b, _ in self._weight_log])
        rel = torch.cat([b * len(b) for b, _ in self._weight_log])
        idx = torch.cat([i for _, i in self._weight_log])
        ratio = max(float(b.max() / b.min()) if float(b.min()) > 0 else float("inf") for b, _ in self._weight_log)
        out = {
            "train_qam_w_mean": float(w.mean()),
            "train_qam_w_min": float(w.min()),
            "train_qam_w_max": float(w.max()),
            "train_qam_ratio_max": ratio,
        }
        if self.label_noise is not None:
            noisy = torch.tensor(sorted(r["index"] for r in self.label_noise["records"]), dtype=idx.dtype)
            is_noisy = torch.isin(idx, noisy)
            out["train_qam_rel_clean"] = float(rel[~is_noisy].mean()) if (~is_noisy).any() else float("nan")
            out["train_qam_rel_noisy"] = float(rel[is_noisy].mean()) if is_noisy.any() else float("nan")
        return out


__all__ = ["NoisyLabelTrainer"]
