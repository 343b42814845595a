#!/usr/bin/env python
"""The web system under load: N simulated users against one ``medseg serve`` on localhost, bounded in time.

Starts a fresh server (temporary ``--home``, the model of ``--model``; :func:`bench_server.running_server`),
uploads one phantom study (``--shape``) and times its job alone, then for each user count in ``--users``
runs every ``--modes`` for ``--seconds`` and records each request's latency (p50 / p95 / p99 / max), the
requests per second served and the errors:

* ``viewer``: what the page does — opening the study fetches the result, its volume manifest and its image
  and label arrays (gzip), then paging draws in the browser and asks nothing; each user re-opens it (no
  browser cache: the worst case) after ``--view-seconds`` (paced) or at once (unpaced);
* ``slices``: an API client paging slice PNGs (image + label per slice), one slice every ``--pace`` s
  (paced, as the page's autoplay at 250 ms) or as fast as answered (unpaced).

Then a re-run of the study is submitted while ``--job-users`` unpaced viewers load the server: its job time
(``summary.seconds``) and its upload-to-done time against the same alone, and an upload's time under load.

Paced users arrive as users do (``--arrivals spread``, the default): each starts at a random moment of its first
period (``--view-seconds`` for a viewer, ``--pace`` for a pager; seeded), and a paced viewers' level lasts at
least one ``--view-seconds`` so that every user opens the study once. ``--arrivals together`` starts them all at
the same instant: a burst (a class's start, a timer-driven client), which measures the queue it makes, not the
steady load; both can be recorded side by side. Unpaced users always start together (they are the saturation test).

Users are asyncio tasks over httpx (one process, so the load generator is no GIL contender of its own
beyond one core). Everything is bounded: at most 200 users, 60 s per level, localhost only.

``--soak-minutes M`` (≤ 60) then keeps ``--soak-users`` paced users on it for M minutes, re-runs the study every 5
minutes and samples the resident memory of the server's process tree (``server_soak.py``): growth from after
a warm-up to the end.

    python benchmarks/bench_server_load.py --model runs/ctv_phantom_demo --users 1,5,20,50 --seconds 8 \\
        --out benchmarks/results/server_load_cpu.json --figure benchmarks/results/server_load_cpu.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import torch
from bench_server import PASSWORD, USER, running_server, write_input  # benchmarks/ is the script's folder
from bench_unet import host_info, load_average, write_json_atomic

MAX_USERS, MAX_SECONDS = 200, 60.0
MODES = ("viewer", "slices")
ARRIVALS = ("spread", "together")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="run or fold directory the server offers")
    p.add_argument("--users", default="1,5,20,50", help="comma-separated user counts")
    p.add_argument("--modes", default="viewer,slices", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--seconds", type=float, default=8.0, help="per user count, mode and pacing")
    p.add_argument("--pace", type=float, default=0.25, help="seconds per slice of a paced slices user")
    p.add_argument(
        "--view-seconds",
        type=float,
        default=18.0,
        help="a paced viewer's time on a study before re-opening it (72 slices × 250 ms)",
    )
    p.add_argument(
        "--arrivals",
        choices=ARRIVALS,
        default="spread",
        help="paced users start at random moments of their first period (spread) or all at once (together)",
    )
    p.add_argument("--job-users", type=int, default=20, help="unpaced viewers while the job under load runs")
    p.add_argument("--shape", default="72,256,256")
    p.add_argument("--device", default="cpu")
    p.add_argument("--web-workers", type=int, default=1, help="medseg serve --web-workers (one job worker always)")
    p.add_argument(
        "--web-nice", type=int, default=5, help="medseg serve --web-nice (the web workers' niceness; 5 as its default)"
    )
    p.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="the load generator's own niceness once the server runs: clients on other machines take none of "
        "the server's CPU, a generator on the same cores does; niced, it takes what the server leaves (its "
        "latencies then include its own wait: an upper bound)",
    )
    p.add_argument(
        "--soak-minutes", type=float, default=0.0, help="then paced users for this long, memory sampled (0: none)"
    )
    p.add_argument("--soak-users", type=int, default=10, help="paced users of the soak (half viewers, half pagers)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/server_load_cpu.json"))
    p.add_argument("--figure", type=Path, default=None, help="PNG of latency percentiles against users")
    args = p.parse_args(argv)
    args.user_counts = [int(u) for u in args.users.split(",")]
    args.mode_list = args.modes.split(",")
    if any(not 1 <= u <= MAX_USERS for u in args.user_counts):
        p.error(f"--users must be between 1 and {MAX_USERS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        p.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    if not 0 <= args.soak_minutes <= 60 or not 1 <= args.soak_users <= MAX_USERS:
        p.error(f"--soak-minutes must be in [0, 60] and --soak-users between 1 and {MAX_USERS}")
    if unknown := set(args.mode_list) - set(MODES):
        p.error(f"unknown --modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    return args


def stats(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    return {
        "n": len(ms),
        **{f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)},
        "max_ms": round(float(a.max()), 2),
    }


class Load:
    """Requests of every simulated user: latency in ms, errors, until ``stop`` is set."""

    def __init__(self, url: str, token: str, result: dict):
        self.url, self.result = url, result
        self.headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}
        self.ms: list[float] = []
        self.errors = 0
        self.error_kinds: Counter = Counter()  # status code or exception name → count
        self.stop = asyncio.Event()

    async def get(self, client: httpx.AsyncClient, path: str) -> httpx.Response | None:
        t = time.perf_counter()
        try:  # raw bytes: a browser unpacks gzip natively, off its page's thread; Python's zlib here would
            # put the load generator's own CPU into the server's latency
            async with client.stream("GET", self.url + path, headers=self.headers) as r:
                body = b"".join([chunk async for chunk in r.aiter_raw()])
        except httpx.HTTPError as exc:
            self.errors += 1
            self.error_kinds[type(exc).__name__] += 1
            return None
        self.ms.append(1000 * (time.perf_counter() - t))
        if r.status_code != 200:
            self.errors += 1
            self.error_kinds[str(r.status_code)] += 1
        r.body = body
        return r

    async def pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass

    async def viewer(self, paced: bool, view_seconds: float, start: float = 0.0) -> None:
        rid = self.result["id"]
        await self.pause(start)
        async with httpx.AsyncClient(timeout=30) as client:
            while not self.stop.is_set():
                await self.get(client, f"/api/results/{rid}")
                manifest = await self.get(client, self.result["volume_url"])
                if manifest is not None and manifest.status_code == 200:
                    for kind in ("image", "label"):
                        await self.get(client, json.loads(manifest.body)[kind]["url"])
                if paced:
                    await self.pause(view_seconds)

    async def slices(self, paced: bool, pace: float, start: float = 0.0) -> None:
        template, n, k = self.result["slice_url"], self.result["n_slices"], 0
        await self.pause(start)
        async with httpx.AsyncClient(timeout=30) as client:
            while not self.stop.is_set():
                t = time.perf_counter()
                for kind in ("image", "label"):
                    await self.get(client, template.replace("{k}", str(k)).replace("{kind}", kind))
                k = (k + 1) % n
                if paced:
                    await self.pause(max(0.0, pace - (time.perf_counter() - t)))


def arrival_starts(users: int, period: float, spread: bool) -> np.ndarray:
    """Each user's start in seconds: uniform over ``[0, period)`` when ``spread`` (seeded by the user count, so a
    level's arrivals repeat run to run), else all 0."""
    return np.random.default_rng(users).uniform(0, period, users) if spread else np.zeros(users)


async def run_level(url, token, result, users, mode, paced, args, during=None) -> dict:
    load = Load(url, token, result)
    period = args.view_seconds if mode == "viewer" else args.pace
    spread = paced and args.arrivals == "spread"
    starts = arrival_starts(users, period, spread)
    user = (
        (lambda s: load.viewer(paced, args.view_seconds, s))
        if mode == "viewer"
        else (lambda s: load.slices(paced, args.pace, s))
    )
    tasks = [asyncio.create_task(user(float(s))) for s in starts]
    t0 = time.perf_counter()
    duration = max(args.seconds, period) if spread else args.seconds  # every spread user has arrived
    extra = await during() if during is not None else await asyncio.sleep(duration)
    load.stop.set()
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - t0
    return {
        "users": users,
        "mode": mode,
        "paced": paced,
        "arrivals": "spread" if spread else "together",
        "seconds": round(seconds, 2),
        "errors": load.errors,
        "error_kinds": dict(load.error_kinds),
        "requests_per_s": round(len(load.ms) / seconds, 1),
        "latency": stats(load.ms),
        "load_average": load_average(),
        **(extra or {}),
    }


async def submit_and_wait(url: str, token: str, study_id: str, model_id: str, upload: Path | None) -> dict:
    """A re-run of the study (its job time) and, with ``upload``, an upload's own time."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=300) as client:
        out = {}
        if upload is not None:
            t = time.perf_counter()
            r = await client.post(
                url + "/api/studies",
                headers=headers,
                data={"model": model_id},
                files=[("files", (upload.name, upload.read_bytes()))],
            )
            out["upload_s"] = round(time.perf_counter() - t, 3)
            r.raise_for_status()
        t = time.perf_counter()
        r = await client.post(f"{url}/api/studies/{study_id}/rerun", headers=headers, json={"model": model_id})
        rid = r.raise_for_status().json()["id"]
        while True:
            result = (await client.get(f"{url}/api/results/{rid}", headers=headers)).json()
            if result["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.2)
        if result["status"] != "done":
            raise SystemExit(f"the job failed: {result['error']}")
        return {**out, "job_s": result["summary"]["seconds"], "end_to_end_s": round(time.perf_counter() - t, 3)}


def figure(levels: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for mode in MODES:
        for paced in (True, False):
            rows = [r for r in levels if r["mode"] == mode and r["paced"] == paced and r["latency"]["n"]]
            if not rows:
                continue
            users = [r["users"] for r in rows]
            arrivals = f" ({rows[0]['arrivals']} arrivals)" if paced and rows[0].get("arrivals") else ""
            label = f"{mode}, {'paced' if paced else 'unpaced'}{arrivals}"
            (line,) = ax.plot(users, [r["latency"]["p95_ms"] for r in rows], "o-", label=f"{label}: p95")
            ax.plot(
                users,
                [r["latency"]["p50_ms"] for r in rows],
                "o--",
                color=line.get_color(),
                alpha=0.6,
                label=f"{label}: p50",
            )
    ax.set(
        xlabel="simulated users",
        ylabel="ms per request",
        xscale="log",
        yscale="log",
        title="medseg serve on localhost: request latency against users",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


async def bench(args: argparse.Namespace, url: str, startup_s: float, folder: Path, server_pid: int = 0) -> dict:
    async with httpx.AsyncClient(timeout=300) as client:
        token = (await client.post(url + "/api/login", json={"username": USER, "password": PASSWORD})).json()["token"]
        model_id = (await client.get(url + "/api/models", headers={"Authorization": f"Bearer {token}"})).json()[0]["id"]
    shape = tuple(int(s) for s in args.shape.split(","))
    upload = write_input("nifti", shape, (3.0, 1.0, 1.0), 0, folder)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=300) as client:
        study = (
            (
                await client.post(
                    url + "/api/studies",
                    headers=headers,
                    data={"model": model_id},
                    files=[("files", (upload.name, upload.read_bytes()))],
                )
            )
            .raise_for_status()
            .json()
        )
    alone_first = await submit_and_wait(url, token, study["id"], model_id, None)  # loads the model
    alone = await submit_and_wait(url, token, study["id"], model_id, upload)
    async with httpx.AsyncClient(timeout=30) as client:
        result = next(
            r
            for r in (await client.get(f"{url}/api/studies/{study['id']}", headers=headers)).json()["results"]
            if r["status"] == "done"
        )
    levels = []
    for users in args.user_counts:
        for mode in args.mode_list:
            for paced in (True, False):
                row = await run_level(url, token, result, users, mode, paced, args)
                levels.append(row)
                print(
                    f"{users:4d} users {mode:7s} {'paced' if paced else 'unpaced':8s} "
                    f"{row['requests_per_s']:7.1f} req/s  p50 {row['latency'].get('p50_ms')} ms  "
                    f"p95 {row['latency'].get('p95_ms')} ms  errors {row['errors']}",
                    flush=True,
                )
    under = await run_level(
        url,
        token,
        result,
        args.job_users,
        "viewer",
        False,
        args,
        during=lambda: submit_and_wait(url, token, study["id"], model_id, upload),
    )
    soaked = None
    if args.soak_minutes > 0:
        from server_soak import soak

        soaked = await soak(
            Load(url, token, result),
            args.soak_users,
            args.soak_minutes,
            server_pid,
            lambda: submit_and_wait(url, token, study["id"], model_id, None),
        )
        print(f"soak: {soaked['rss_mb_after_warm_up']} → {soaked['rss_mb_end']} MB ({soaked['growth']:+.1%})")
    return {
        "startup_s": round(startup_s, 2),
        **({"soak": soaked} if soaked else {}),
        "job_alone": alone,
        "job_alone_first": alone_first,
        "job_under_load": under,
        "job_ratio": round(under["job_s"] / alone["job_s"], 2),
        "end_to_end_ratio": round(under["end_to_end_s"] / alone["end_to_end_s"], 2),
        "levels": levels,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = {
        "benchmark": "bench_server_load",
        "command": shlex.join([sys.executable, *sys.argv]),
        "host": host_info([torch.device("cpu")]),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "complete": False,
    }
    with tempfile.TemporaryDirectory(prefix="medseg-load-") as tmp:
        home = Path(tmp) / "home"
        pids: list[int] = []
        with running_server(home, args.model.resolve(), args.device, args.web_workers, pids, args.web_nice) as (
            url,
            startup_s,
        ):
            assert url.startswith("http://127.0.0.1:"), url  # localhost only
            if args.client_nice:
                os.nice(args.client_nice)  # the server and its workers were started at their own niceness
            out.update(asyncio.run(bench(args, url, startup_s, Path(tmp), pids[0])))
    out["complete"] = True
    write_json_atomic(out, args.out)
    if args.figure:
        figure(out["levels"], args.figure)
        if out.get("soak"):
            from server_soak import soak_figure

            soak_figure(out["soak"], args.figure.with_name(args.figure.stem + "_soak.png"))
    print(
        f"job alone {out['job_alone']['job_s']} s, under {args.job_users} unpaced viewers "
        f"{out['job_under_load']['job_s']} s (× {out['job_ratio']}); upload {out['job_alone']['upload_s']} s → "
        f"{out['job_under_load']['upload_s']} s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
