"""Learning-rate schedules of ``train.scheduler``, and how far through its budget a training is.

Two kinds:

* ``plateau`` (default, the papers): ReduceLROnPlateau — halve (``factor``) after ``patience`` epochs without
  a better validation loss; stepped once an epoch on that loss.
* Schedules of the budget — ``poly`` (nnU-Net: ``lr·(1 − t)^0.9``), ``cosine`` (linear warm-up, then cosine
  decay from ``lr`` to ``min_lr``) and ``constant`` — are functions of the training's **progress** t ∈ [0, 1]
  and are set before every optimizer step (:class:`BudgetSchedule`). Progress is what :func:`progress` says:
  steps done / the step budget (``train.iterations``, else epochs × steps per epoch), or, with
  ``train.time_limit_minutes``, elapsed / limit when that is further along — so a time-limited run anneals
  to the end of its schedule exactly when its time runs out, whatever step that is. (Before, they were
  stepped once an epoch over the iteration budget, and a run cut by its time limit never annealed.)

``warmup_epochs`` of the cosine schedule is read as a share of the budget: ``warmup_epochs / epochs``.
"""

from __future__ import annotations

import math

import torch

from medseg.errors import ConfigError

POLY_EXPONENT = 0.9  # nnU-Net's PolyLRScheduler
BUDGET_SCHEDULES = ("poly", "cosine", "constant")


def progress(
    steps: int, total_steps: int | None, elapsed_s: float | None = None, limit_s: float | None = None
) -> float:
    """How far through its budget a training is, in [0, 1]: the larger of steps / ``total_steps`` and
    ``elapsed_s`` / ``limit_s`` (each where given)."""
    parts = [0.0]
    if total_steps:
        parts.append(steps / total_steps)
    if limit_s:
        parts.append((elapsed_s or 0.0) / limit_s)
    return min(max(parts), 1.0)


class BudgetSchedule:
    """``lr = base_lr · factor(progress)``, set on every parameter group by :meth:`set_progress` (before each
    optimizer step). ``state_dict`` holds the progress reached, so a resumed run goes on where it stopped."""

    def __init__(self, optimizer: torch.optim.Optimizer, sch: dict, epochs: int):
        self.optimizer = optimizer
        self.name = sch.get("name", "plateau")
        if self.name not in BUDGET_SCHEDULES:
            raise ConfigError(
                f"train.scheduler.name: unknown schedule {self.name!r} (use plateau, cosine, poly or constant)"
            )
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.floor = float(sch.get("min_lr", 0.0)) / self.base_lrs[0]
        self.warmup = min(max(int(sch.get("warmup_epochs", 0)), 0) / max(int(epochs), 1), 0.5)
        self.progress = 0.0
        self.set_progress(0.0)

    def factor(self, t: float) -> float:
        t = min(max(float(t), 0.0), 1.0)
        if self.name == "constant":
            return 1.0
        if self.name == "poly":
            return (1.0 - t) ** POLY_EXPONENT
        if t < self.warmup:  # cosine: linear warm-up from a small rate
            return max(t / self.warmup, 0.02)
        span = max(1.0 - self.warmup, 1e-9)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * (t - self.warmup) / span))

    def set_progress(self, t: float) -> None:
        self.progress = float(t)
        f = self.factor(t)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=False):
            group["lr"] = base * f

    def state_dict(self) -> dict:
        return {"name": self.name, "progress": self.progress, "base_lrs": self.base_lrs}

    def load_state_dict(self, state: dict) -> None:
        """A saved schedule; one saved as a per-epoch LambdaLR (older runs) keeps this one's base rates: the
        rate is recomputed from the run's progress before every step anyway."""
        self.base_lrs = [float(v) for v in state.get("base_lrs", self.base_lrs)]
        self.set_progress(float(state.get("progress", self.progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, sch: dict, epochs: int):
    """The schedule of ``train.scheduler``: ReduceLROnPlateau for ``plateau``, else a :class:`BudgetSchedule`."""
    if sch.get("name", "plateau") == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=float(sch["factor"]),
            patience=int(sch["patience"]),
            min_lr=float(sch["min_lr"]),
        )
    return BudgetSchedule(optimizer, sch, epochs)


__all__ = ["BUDGET_SCHEDULES", "BudgetSchedule", "POLY_EXPONENT", "build_scheduler", "progress"]
