"""Data-parallel training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

One process per GPU (or per CPU share), started by ``torchrun`` (``torch.distributed.run``), which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in each process's environment;
``medseg train CONFIG --nproc N`` starts it for you (:func:`launch`). Multi-node is the same command with
torchrun's rendezvous flags (``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``; see the README).

What lives here, and the choices made:

* :func:`init` opens the process group from torchrun's variables: backend ``nccl`` when the run trains on
  CUDA (each rank on ``cuda:LOCAL_RANK``), ``gloo`` on the CPU, with a ``timeout``
  (``train.distributed.timeout_minutes``) so a collective waiting for a dead peer fails instead of hanging
  for ever. Without ``WORLD_SIZE`` > 1 nothing is opened and every helper is a no-op for one process: the
  single-process path is untouched.
* helpers every rank calls alike: :func:`barrier`, :func:`broadcast_object` (rank 0's value to all — the
  early-stopping decision, the epoch's history row), :func:`all_gather_objects` (validation counts),
  :func:`any_rank` (one flag, e.g. the time limit reached, agreed by all), :func:`main_first` (rank 0
  prepares shared files — synthesized data, the split — before the others read them), :func:`on_main_rank`
  (rank 0 computes a value — the plan of ``medseg train DATA`` — and every rank goes on with it),
  :func:`cleanup`.
* the global batch: ``train.batch_size`` is the batch of one optimizer step over all ranks, split evenly
  (:func:`per_rank_batch`; an error when it does not divide), so a config means the same training on 1 or N
  processes. DDP averages the ranks' gradients, which for a loss that is a mean over the batch is the
  gradient of the global batch.
* :class:`RankShard` deals out the single-process run's own shuffled order: global batch k of an epoch is
  exactly batch k of the one-process run (rank r takes its r-th slice), so N ranks × b reproduce 1 process
  × N·b (tested). It is re-seeded per epoch like the one-process loader, which plays the part of
  ``DistributedSampler.set_epoch``. When the images do not fill the last global batch, each rank's last
  batch is padded with images from the start of the epoch's order (as ``DistributedSampler`` pads), so
  every rank takes the same number of steps.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from medseg.errors import ConfigError, MedsegError

DEFAULT_TIMEOUT_MINUTES = 10.0


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def env_info() -> DistInfo:
    """What torchrun says about this process (its environment variables), without opening anything."""
    return DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def info() -> DistInfo:
    """This process's rank and world: from the open process group, else rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return DistInfo()


def is_main() -> bool:
    return info().is_main


def init(device: torch.device, timeout_minutes: float | None = None) -> DistInfo:
    """Open the process group when torchrun started this process as one of several; returns its place.

    ``device`` is the one the config trains on: CUDA → NCCL (this rank's GPU made current), else gloo."""
    env = env_info()
    if not env.active:
        return DistInfo()
    if not dist.is_available():  # pragma: no cover - every official build has it
        raise ConfigError("this PyTorch build has no torch.distributed: train with one process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        minutes = DEFAULT_TIMEOUT_MINUTES if timeout_minutes is None else float(timeout_minutes)
        dist.init_process_group(backend, timeout=_dt.timedelta(minutes=minutes))
    elif dist.get_backend() != backend:  # opened earlier (to plan) for another device than the config trains on
        raise ConfigError(
            f"the process group was opened with {dist.get_backend()} but train.device {device} needs "
            f"{backend}: give the device with --device, so that planning and training agree"
        )
    return info()


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs (one GPU per rank), else ``device``."""
    if device.type == "cuda" and info().active:
        return torch.device("cuda", _env_int("LOCAL_RANK", 0))
    return device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if info().active:
        dist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first (it may write shared files: synthesized data, a split), the others after
    it; one process: just the block."""
    me = info()
    if me.active and not me.is_main:
        dist.barrier()
    yield
    if me.active and me.is_main:
        dist.barrier()


class MainRankFailed(MedsegError):
    """Rank 0 failed in :func:`on_main_rank`; the other ranks fail with its message."""


def on_main_rank(fn, device: torch.device, timeout_minutes: float | None = None, *, what: str = "rank 0"):
    """Under torchrun with several processes: open the process group (:func:`init`), call ``fn`` on rank 0
    alone and return its (picklable) result on every rank — how ``medseg train DATA`` plans once, on rank 0
    (which alone prints the decisions and writes ``plan.yaml``), and every rank trains that config. The other
    ranks wait in a broadcast (up to the process group's timeout, ``timeout_minutes``). An exception in
    ``fn`` is raised on rank 0 and fails the others with its message (:class:`MainRankFailed`) instead of
    leaving them waiting. One process: ``fn()``."""
    if not env_info().active:
        return fn()
    me = init(device, timeout_minutes)
    payload, failure = None, None
    if me.is_main:
        try:
            payload = (fn(), None)
        except Exception as exc:
            failure = exc
            payload = (None, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    value, error = broadcast_object(payload)
    if failure is not None:
        raise failure
    if error is not None:
        raise MainRankFailed(f"{what} failed on rank 0: {error}")
    return value


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (picklable objects; one process: ``obj``)."""
    if not info().active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (one process: ``[obj]``)."""
    me = info()
    if not me.active:
        return [obj]
    out = [None] * me.world_size
    dist.all_gather_object(out, obj)
    return out


def _reduce_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks leave a loop at the same step)."""
    if not info().active:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (same keys on every rank)."""
    me = info()
    if not me.active or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    return {k: float(v) / me.world_size for k, v in zip(keys, t.tolist(), strict=True)}


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of *every* rank's loss with respect to its own
    piece (an all_reduce of the gradients, then this rank's slice)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.n = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (same shape on all), concatenated in rank order along dim 0, differentiable
    (what ``torch.distributed.nn.all_gather`` does; that one is deprecated in PyTorch 2.13 and warns on
    every call). One process: ``tensor``."""
    if not info().active:
        return tensor
    return _GatherWithGrad.apply(tensor)


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """The per-rank batch of a global ``train.batch_size``; an error when it does not split evenly."""
    if global_batch % world_size:
        raise ConfigError(
            f"train.batch_size {global_batch} is the global batch of one optimizer step and must split "
            f"evenly over the {world_size} processes: use a multiple of {world_size} (e.g. "
            f"{world_size * max(1, round(global_batch / world_size))}), or another number of processes"
        )
    return global_batch // world_size


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of ``indices`` (validation: every image once, shares differ by <= 1)."""
    n = len(indices)
    lo, hi = n * rank // world_size, n * (rank + 1) // world_size
    return list(indices[lo:hi])


class RankShard(Sampler):
    """This rank's slice of each global batch of ``base`` (the one-process run's sampler): see the module
    docstring. ``global_batch`` = ``per_rank`` × ``world_size``."""

    def __init__(self, base: Sampler, rank: int, world_size: int, per_rank: int):
        self.base, self.rank, self.world_size, self.per_rank = base, rank, world_size, per_rank

    def __len__(self) -> int:
        n = len(self.base)
        full, rest = divmod(n, self.per_rank * self.world_size)
        return full * self.per_rank + (-(-rest // self.world_size) if rest else 0)

    def __iter__(self):
        order = list(iter(self.base))
        g = self.per_rank * self.world_size
        full = len(order) // g * g
        for k in range(0, full, g):
            yield from order[k + self.rank * self.per_rank : k + (self.rank + 1) * self.per_rank]
        rest = order[full:]
        if rest:
            share = -(-len(rest) // self.world_size)
            padded = rest + order[: share * self.world_size - len(rest)]
            yield from padded[self.rank * share : (self.rank + 1) * share]


# --- launching ---------------------------------------------------------------------------------------------


def launch_command(nproc: int, module_args: list[str], *, torchrun_args: list[str] | None = None) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m medseg ARGS`` (torchrun itself)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *(torchrun_args or ["--standalone"]),
        f"--nproc-per-node={int(nproc)}",
        "-m",
        "medseg",
        *module_args,
    ]


def launch(nproc: int, module_args: list[str], *, torchrun_args: list[str] | None = None) -> int:
    """Run ``medseg ARGS`` as ``nproc`` torchrun processes on this machine; returns torchrun's exit code.

    Each process starts with ``OMP_NUM_THREADS`` = cores // nproc (torchrun's own default would be 1) and
    then sizes its pool by :func:`medseg.threads.configure_threads`, which counts the ranks among the
    medseg processes alive. When one rank dies torchrun stops the others and exits non-zero."""
    from medseg.threads import available_cores

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // nproc)))
    return subprocess.call(launch_command(nproc, module_args, torchrun_args=torchrun_args), env=env)


__all__ = [
    "DistInfo",
    "MainRankFailed",
    "RankShard",
    "all_gather_objects",
    "any_rank",
    "barrier",
    "broadcast_object",
    "cleanup",
    "env_info",
    "gather_with_grad",
    "info",
    "init",
    "is_main",
    "launch",
    "launch_command",
    "main_first",
    "mean_over_ranks",
    "on_main_rank",
    "per_rank_batch",
    "rank_device",
    "shard",
]
