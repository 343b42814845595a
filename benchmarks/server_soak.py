"""A soak of ``medseg serve`` for ``bench_server_load.py --soak-minutes M``: paced viewers and slice users for M
minutes, the study re-run every ``job_every`` seconds, and the resident memory of the server's whole process tree
(the serve process, its web workers and its job worker, read from ``/proc``) sampled every ``sample_every``
seconds. Growth is measured from the first sample after ``warm_up`` seconds (models loaded, caches filled) to
the end, so start-up is not counted as a leak."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path


def tree_pids(root: int) -> list[int]:
    """``root`` and every process descending from it (Linux ``/proc``; [] where there is none)."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration, ValueError):
            continue
        parents[int(status.parent.name)] = ppid
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in found]
        found += frontier
    return [pid for pid in found if pid in parents]


def tree_rss_mb(root: int) -> float:
    """Resident memory (VmRSS) of ``root``'s process tree in MB."""
    total = 0
    for pid in tree_pids(root):
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return round(total / 1024, 1)


async def soak(
    load, users: int, minutes: float, server_pid: int, rerun, *, job_every: float = 300.0, sample_every: float = 30.0
) -> dict:
    """``users`` paced users (half viewers, half slice pagers) on ``load`` (a ``bench_server_load.Load``) for
    ``minutes``; ``rerun()`` re-runs the study every ``job_every`` s. Returns the memory samples and growth."""
    tasks = [asyncio.create_task(load.viewer(True, 5.0) if k % 2 else load.slices(True, 0.25)) for k in range(users)]
    t0, samples, jobs, next_job = time.perf_counter(), [], [], job_every
    end = 60.0 * minutes
    while (elapsed := time.perf_counter() - t0) < end:
        samples.append({"t_s": round(elapsed, 1), "rss_mb": tree_rss_mb(server_pid)})
        if elapsed >= next_job:
            jobs.append((await rerun())["job_s"])
            next_job += job_every
        await asyncio.sleep(max(0.0, min(sample_every, end - (time.perf_counter() - t0))))
    samples.append({"t_s": round(time.perf_counter() - t0, 1), "rss_mb": tree_rss_mb(server_pid)})
    load.stop.set()
    await asyncio.gather(*tasks)
    warm_up = min(120.0, end / 4)
    base = next((s for s in samples if s["t_s"] >= warm_up), samples[0])["rss_mb"]
    last = samples[-1]["rss_mb"]
    return {
        "minutes": minutes,
        "users": users,
        "requests": len(load.ms),
        "errors": load.errors,
        "jobs_s": jobs,
        "rss_mb_after_warm_up": base,
        "rss_mb_end": last,
        "rss_mb_max": max(s["rss_mb"] for s in samples),
        "growth": round((last - base) / base, 4) if base else None,
        "warm_up_s": warm_up,
        "samples": samples,
    }


def soak_figure(result: dict, path: Path) -> Path:
    """The soak's resident memory against minutes, with the +10 % line over the warm-up value (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t_s"] / 60 for s in result["samples"]]
    rss = [s["rss_mb"] for s in result["samples"]]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(minutes, rss, marker=".", lw=1)
    ax.axhline(result["rss_mb_after_warm_up"] * 1.10, color="tab:red", ls="--", lw=1, label="+10 % over warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory, MB")
    ax.set_ylim(0, max(rss) * 1.2)
    ax.set_title(
        f"medseg serve under {result['users']} paced users: {result['requests']:,} requests, memory "
        f"{result['growth']:+.1%}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
