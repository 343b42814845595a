"""An exponential moving average of the network's weights (``train.ema_decay``), the model that is validated,
selected and saved.

Why: on small sets the weights of the last steps wander around a minimum; their average generalises better
than any one of them (Polyak averaging; timm's ``ModelEma`` and nnU-Net-style recipes of the field use it), at
no training cost — one ``lerp`` of the weights after each optimizer step. The average is torch's own
:class:`torch.optim.swa_utils.AveragedModel` with :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`,
buffers (BatchNorm statistics) averaged too. The network keeps training on its raw weights; validation and the
saved model see the average (:meth:`WeightAverage.applied`), and the resumable state keeps both.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["WeightAverage"]


class WeightAverage(nn.Module):
    """The running average of ``model``'s parameters and buffers: ``avg = decay · avg + (1 − decay) · w`` after
    every :meth:`update`; the first update copies the weights. An :class:`nn.Module` so that the training
    state saves and restores it like any extra network."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"train.ema_decay must lie between 0 and 1 (got {decay})")
        self.decay = float(decay)
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    @contextmanager
    def applied(self, model: nn.Module):
        """``model`` carries the averaged weights inside the block and its own ones again after it (also when
        the block raises). Before the first update there is nothing to apply."""
        if int(self.averaged.n_averaged) == 0:
            yield
            return
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.averaged.module.state_dict())
        try:
            yield
        finally:
            model.load_state_dict(own)
