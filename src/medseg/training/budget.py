"""How long a fold trains, for :class:`medseg.training.trainer.Trainer`: the budget in optimizer steps or epochs
(``train.iterations``, ``train.epochs``, ``train.steps_per_epoch``), the wall-clock limit
(``train.time_limit_minutes``, over resumes) and the learning rate of a budget schedule (poly, cosine) at the
progress reached. A mixin: it reads the trainer's configuration, data, scheduler and step count."""

from __future__ import annotations

import math
import time

from medseg.errors import DataValidationError
from medseg.training import distributed
from medseg.training.sampling import class_balanced_weights, image_classes
from medseg.training.schedules import BudgetSchedule
from medseg.training.schedules import progress as budget_progress

__all__ = ["TrainingBudget"]


class TrainingBudget:
    """The trainer's budget: :meth:`_plan_budget` sets ``steps_per_epoch``, ``epochs``, ``iterations`` and
    ``total_steps``; the rest answers during :meth:`~medseg.training.trainer.Trainer.fit`."""

    def _plan_budget(self) -> None:
        """The budget: train.iterations optimizer steps (over ceil(N / steps per epoch) epochs), else train.epochs;
        an epoch is train.steps_per_epoch steps (drawn with replacement), else one pass over the training set."""
        tr = self.cfg["train"]
        limit = tr["max_batches_per_epoch"]
        self.fixed_epoch = tr.get("steps_per_epoch") is not None and len(self.train_set) > 0
        batches = (
            int(tr["steps_per_epoch"]) if self.fixed_epoch else math.ceil(len(self.train_set) / int(tr["batch_size"]))
        )
        self.steps_per_epoch = min(batches, int(limit)) if limit else batches
        self.sample_weights = None
        if tr.get("sampling") == "class_balanced" and len(self.train_set) > 0:
            labels = self.data.labels[self.train_set.indices]
            self.sample_weights = class_balanced_weights(
                image_classes(labels, self.mode, self.cfg["task"].get("background"))
            )
        self.iterations = None if tr.get("iterations") is None else int(tr["iterations"])
        if self.iterations is not None:
            if self.steps_per_epoch < 1:
                raise DataValidationError(
                    self.data.source,
                    f"fold {self.fold} has no training images: train.iterations ({self.iterations}) cannot be spent",
                )
            self.epochs = math.ceil(self.iterations / self.steps_per_epoch)
        else:
            self.epochs = int(tr["epochs"])
        self.total_steps = self.iterations if self.iterations is not None else self.epochs * self.steps_per_epoch

    def batches_in_epoch(self, epoch: int) -> int:
        """Optimizer steps of epoch ``epoch`` (0-based): all of them, except the last epoch of a
        ``train.iterations`` budget, which stops when the budget is spent."""
        if self.iterations is None:
            return self.steps_per_epoch
        return max(0, min(self.steps_per_epoch, self.iterations - epoch * self.steps_per_epoch))

    def stop_for_time(self, epoch: int) -> None:
        """The time limit passed before epoch ``epoch`` trained a step: the last epoch's state is marked finished
        (a later call finds the run done) and nothing new is recorded."""
        self.stopped_by_time = True
        if self.history:
            self.save_state(epoch - 1, finished=True)

    def out_of_time(self) -> bool:
        """Past ``train.time_limit_minutes`` (counted from the start of :meth:`fit`, plus the time trained
        before a resume)."""
        return self.deadline is not None and time.perf_counter() > self.deadline

    def elapsed(self) -> float:
        """Wall seconds this fold has trained (validation included), over resumes."""
        return self.elapsed_before + time.perf_counter() - self.fit_start

    def budget_progress(self) -> float:
        """How far through its budget the training is (:func:`medseg.training.schedules.progress`): steps done /
        the step budget, or elapsed / ``train.time_limit_minutes`` when further."""
        limit = self.cfg["train"].get("time_limit_minutes")
        return budget_progress(
            self.global_step, self.total_steps, self.elapsed(), None if limit is None else 60.0 * float(limit)
        )

    def follow_budget(self) -> None:
        """Before each optimizer step: the learning rate of a budget schedule (poly, cosine) at the progress
        reached — rank 0's when several processes train, so every rank steps with the same rate."""
        if isinstance(self.scheduler, BudgetSchedule):
            t = self.budget_progress()
            if self.dist.active and self.cfg["train"].get("time_limit_minutes") is not None:
                t = distributed.broadcast_object(t)
            self.scheduler.set_progress(t)
