"""How many intra-op threads a medseg process gives PyTorch: its share of the cores it is given.

Why: PyTorch's CPU kernels run on an OpenMP pool as wide as the machine. Two or three such processes on the
same cores (a training beside the web server's worker, a second training, the ranks of ``--nproc``) then
run 2-3× more threads than cores, and OpenMP's spin-waiting threads steal each other's time slices: seen
here, an epoch of the demo's 3D model took 100–170 s instead of 12–13 s beside two other PyTorch processes
on two cores. With each process on its share the same work slows down in proportion instead.

The rule (one mechanism for every entry point: ``medseg train``/``cv``, the ranks of ``--nproc`` and
``cv --parallel``, and the server's worker):

* **cores given** (:func:`available_cores`): the CPUs of this process's affinity mask (``taskset``,
  ``docker --cpuset-cpus``), capped by a cgroup CPU quota (``docker --cpus``, Kubernetes limits) when one
  is set — ``os.cpu_count()`` sees the whole host in a container and is not used.
* **share** (``MEDSEG_THREADS``): ``auto`` (default) divides the cores by the number of medseg compute
  processes alive on this machine, counted in a small registry (:data:`REGISTRY`, one file per process
  id, for this user): a training registers for its lifetime, the server's worker only while it runs a job.
  A process re-reads the registry at most every :data:`REFRESH_S` seconds (the trainer between steps), so a
  second job starting later shrinks the first one's pool within seconds and gives it back when it ends.
  An integer fixes the count; ``off`` (or ``0``) leaves PyTorch's own default alone — the behaviour before
  this module, kept so the difference can be measured (``benchmarks/bench_distributed.py``).

DataLoader workers (``train.num_workers``): :func:`num_workers_for` sizes ``auto`` from the same share, and
:func:`init_worker` gives each worker process one intra-op thread, so workers never multiply the pool.

Processes outside medseg (another PyTorch job) are not counted: give them and medseg disjoint cores
(``taskset``) or set ``MEDSEG_THREADS`` by hand. Only PyTorch's intra-op pool is sized here; its inter-op
pool (used by ``torch.jit.fork``) is left as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import time
from pathlib import Path

ENV = "MEDSEG_THREADS"
REFRESH_S = 5.0
REGISTRY = Path(tempfile.gettempdir()) / f"medseg-compute-{os.getuid() if hasattr(os, 'getuid') else 'user'}"

_state: dict = {"auto": False, "last": 0.0, "threads": None, "registered": False}


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """The cores this process is given: its affinity mask, capped by a cgroup CPU quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, int(-(-quota // 1))))
    return max(1, cores)


def thread_setting() -> int | str:
    """``MEDSEG_THREADS``: ``"auto"`` (default, also for an empty value), ``"off"`` (also ``0``) or a count."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in ("off", "0", "none"):
        return "off"
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 1:
        from medseg.errors import ConfigError

        raise ConfigError(f"{ENV}={os.environ.get(ENV)!r}: use auto, off (0) or a number of threads >= 1")
    return n


# --- the registry of medseg compute processes ------------------------------------------------------------


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (Linux), so a recycled process id is not taken for a live entry."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def register() -> None:
    """Count this process in the registry (until :func:`unregister` or its exit)."""
    if _state["registered"]:
        return
    try:
        REGISTRY.mkdir(mode=0o700, exist_ok=True)
        (REGISTRY / str(os.getpid())).write_text(_start_time(os.getpid()))
    except OSError:  # a read-only /tmp: count on the cores alone
        return
    _state["registered"] = True
    atexit.register(unregister)


def unregister() -> None:
    if _state["registered"]:
        with contextlib.suppress(OSError):
            (REGISTRY / str(os.getpid())).unlink()
        _state["registered"] = False


def live_processes() -> int:
    """Registered medseg compute processes still alive (this one included when registered); stale entries
    of killed processes are removed."""
    n = 0
    try:
        entries = list(REGISTRY.iterdir())
    except OSError:
        return 1
    for entry in entries:
        try:
            pid = int(entry.name)
            os.kill(pid, 0)
            alive = entry.read_text() == _start_time(pid)
        except ProcessLookupError:
            alive = False
        except (ValueError, OSError):
            continue  # not ours (another user's pid: PermissionError), or a name that is no pid
        if alive:
            n += 1
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return max(n, 1)


def thread_share(processes: int | None = None) -> int:
    """Threads for one process: the cores given divided by ``processes`` (default: the registry's count)."""
    return max(1, available_cores() // max(1, processes if processes is not None else live_processes()))


# --- setting PyTorch's pool ------------------------------------------------------------------------------


def _apply(n: int) -> int:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _state["threads"] = n
    return n


def configure_threads() -> int | None:
    """Size PyTorch's intra-op pool for this process by ``MEDSEG_THREADS`` (see the module docstring) and,
    in ``auto`` mode, register the process; returns the thread count set, None for ``off``.

    Called once by a compute entry point (``medseg train``/``cv``, a ``cv --parallel`` child, a rank);
    library use and the tests keep whatever the caller set until they call it."""
    setting = thread_setting()
    _state["auto"] = setting == "auto"
    if setting == "off":
        return None
    if setting != "auto":
        return _apply(int(setting))
    register()
    _state["last"] = time.monotonic()
    return _apply(thread_share())


def refresh_threads() -> int | None:
    """Re-read the registry (at most every :data:`REFRESH_S` s) and resize the pool to the current share; a
    no-op unless :func:`configure_threads` ran in ``auto`` mode in this process. Cheap: call it per step."""
    if not _state["auto"]:
        return None
    now = time.monotonic()
    if now - _state["last"] < REFRESH_S:
        return _state["threads"]
    _state["last"] = now
    return _apply(thread_share())


# --- DataLoader workers ------------------------------------------------------------------------------------

#: most workers ``train.num_workers: auto`` starts for one training process (on CUDA)
MAX_AUTO_WORKERS = 8


def num_workers_for(setting: int | str, device_type: str = "cpu", share: int | None = None) -> int:
    """``train.num_workers`` as a count: a number is kept; ``auto`` sizes it from ``share``, this process's
    share of the cores (default: :func:`thread_share`, the cores given divided by the medseg compute processes):

    * on the **CPU: 0**. The training step itself keeps every core of the share busy and the data pipeline
      is a small part of it (the 2D demo: under 0.1 % of a step); a worker only takes time slices from the
      step and costs a process start per epoch — measured on 2 cores, 1 and 2 workers were slower than none
      (``benchmarks/bench_cpu_options.py``, README "Beyond one process");
    * on **CUDA**: the share less one core for the process driving the GPU, at most :data:`MAX_AUTO_WORKERS`
      (0 on a share of one core): the GPU computes, the CPU cores load and augment (not measured here: no GPU).
    """
    if setting != "auto":
        return int(setting)
    if device_type != "cuda":
        return 0
    share = thread_share() if share is None else int(share)
    return max(0, min(MAX_AUTO_WORKERS, share - 1))


def init_worker(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: one intra-op thread, so N workers add N threads, not N pools
    (PyTorch's own workers start with one too; said here so it holds whatever the start method)."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def compute_share(threads: int | None = None, *, reserve: int = 0):
    """For a process that computes now and then (the server's worker, one job at a time): counted in the
    registry and sized to its share, less ``reserve`` cores kept for other work of the process (at least
    one thread), only inside the block. ``threads`` fixes the count instead."""
    if threads is not None:
        _apply(int(threads))
        yield int(threads)
        return
    setting = thread_setting()
    if setting == "off":
        yield None
        return
    if setting != "auto":
        yield _apply(int(setting))
        return
    was_registered = _state["registered"]
    register()
    try:
        yield _apply(max(1, thread_share() - max(0, int(reserve))))
    finally:
        if not was_registered:
            unregister()


__all__ = [
    "ENV",
    "MAX_AUTO_WORKERS",
    "available_cores",
    "compute_share",
    "configure_threads",
    "init_worker",
    "live_processes",
    "num_workers_for",
    "refresh_threads",
    "register",
    "thread_setting",
    "thread_share",
    "unregister",
]
