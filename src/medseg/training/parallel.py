"""How a training step runs the networks: wrapped in DistributedDataParallel when several processes train
(``torchrun`` / ``medseg train --nproc N``; :mod:`medseg.training.distributed`), and ``torch.compile``d with
``train.compile`` — in the steps only: validation, checkpoints and the saved model use the plain module, so
``model.safetensors`` keeps its keys."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models import training_loss
from medseg.training.speed import compiler_missing


class ParallelSteps:
    """The part of :class:`~medseg.training.trainer.Trainer` that wraps and compiles its networks for the
    training steps (it reads the trainer's ``cfg``, ``device``, ``dist``, ``model`` and ``extra_modules``)."""

    def sync_batchnorm(self, module: nn.Module) -> nn.Module:
        """``train.distributed.sync_batchnorm``: BatchNorm over the global batch (PyTorch has it on CUDA only)."""
        if self.device.type != "cuda":
            raise ConfigError(
                "train.distributed.sync_batchnorm needs CUDA (PyTorch's SyncBatchNorm runs on GPUs "
                "only); on the CPU each rank normalises its own share of the batch: set it to false"
            )
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)

    def wrap_distributed(self) -> dict[str, nn.Module]:
        """DDP wrappers of the model (around its training-loss hook) and of every extra network; the networks
        themselves stay ``self.model`` etc., which validation, checkpoints and the saved model use."""
        opts = self.cfg["train"]["distributed"]
        ids = [self.device.index] if self.device.type == "cuda" else None
        kw = {"device_ids": ids, "find_unused_parameters": bool(opts["find_unused_parameters"])}
        out: dict[str, nn.Module] = {"model": nn.parallel.DistributedDataParallel(_TrainingLoss(self.model), **kw)}
        sync = bool(opts["sync_batchnorm"])
        for name, module in self.extra_modules().items():
            if sync:  # the same parameter objects, so the optimizers built already still hold them
                module = self.sync_batchnorm(module)
                setattr(self, _extra_attr(self, name), module)
            out[name] = nn.parallel.DistributedDataParallel(module, **kw)
        return out

    def compile_forward(self):
        """``train.compile``: the network's ``__call__`` compiled by ``torch.compile`` (``train.compile_backend``,
        static shapes), or None — with one warning — where inductor has no C++ compiler on the CPU.

        Only the network is compiled, not the loss (the losses log their parts as Python floats, which would
        break the graph); :meth:`compiled_forward` switches it on for the training steps only."""
        tr = self.cfg["train"]
        backend = str(tr.get("compile_backend") or "inductor")
        why = compiler_missing(self.device, backend)
        if why is not None:
            if self.dist.is_main:
                warnings.warn(
                    f"train.compile: torch.compile (backend {backend}) needs a C++ compiler on the CPU and "
                    f"none was found ({why}); training uncompiled. Install g++ or clang (or set CXX), or "
                    "set train.compile: false",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return None
        self._compile_pending = True  # the first step compiles: a failure there falls back to the plain network
        return torch.compile(self.model._call_impl, backend=backend, dynamic=False)

    @contextmanager
    def compiled_forward(self):
        """Inside: calls of ``self.model`` (from its training-loss hook, through DDP too) run compiled (what
        ``nn.Module.compile`` installs); outside — validation, checkpoints, the saved model — the plain module,
        with the same parameters and ``state_dict`` keys."""
        if self._compiled_call is None:
            yield
            return
        self.model._compiled_call_impl = self._compiled_call
        try:
            yield
        finally:
            self.model._compiled_call_impl = None

    def model_loss(self, loss_fn, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits)`` of the model's training-loss hook; through DDP (gradients averaged over the
        ranks) when several processes train."""
        if self._compile_pending:  # the first compiled step: a compiler failure falls back to the plain network
            try:
                out = self._model_loss(loss_fn, image, label)
            except Exception as exc:
                if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                    raise  # not the compiler's: the model's own error
                if self.dist.is_main:
                    warnings.warn(
                        f"train.compile: torch.compile failed at the first step "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); training uncompiled",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                self._compiled_call = self.model._compiled_call_impl = None
                out = self._model_loss(loss_fn, image, label)
            self._compile_pending = False
            return out
        return self._model_loss(loss_fn, image, label)

    def _model_loss(self, loss_fn, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._ddp is None:
            return training_loss(self.model, loss_fn, image, label)
        return self._ddp["model"](image, label, loss_fn)

    def wrapped(self, name: str) -> nn.Module:
        """Extra network ``name`` as a training step calls it: its DDP wrapper, or itself in one process."""
        return self._ddp[name] if self._ddp is not None else self.extra_modules()[name]


class _TrainingLoss(nn.Module):
    """The model's training-loss hook as a module's forward, so DDP sees the whole step (every refinement pass,
    the deep-supervision heads) as one forward; its ``model`` is the network itself (saved keys unchanged)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, label: torch.Tensor, loss_fn):
        return training_loss(self.model, loss_fn, image, label)


def _extra_attr(trainer: ParallelSteps, name: str) -> str:
    """The attribute holding extra network ``name`` (``disc`` → ``discriminator``, ``qam`` → ``qam``)."""
    module = trainer.extra_modules()[name]
    for attr, value in vars(trainer).items():
        if value is module:
            return attr
    raise AttributeError(f"extra network {name!r} is not an attribute of {type(trainer).__name__}")
