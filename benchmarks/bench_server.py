#!/usr/bin/env python
"""End-to-end speed of the web system (``medseg serve``): upload → segmentation → slice viewer.

For each ``--format`` this starts a fresh ``medseg serve`` in a subprocess (temporary ``--home``, one user
made with ``medseg users add``, the model of ``--model``), signs in over HTTP (httpx), writes one phantom
volume (``medseg.data.phantom.make_phantom``, ``--shape``) as NIfTI or as a zipped DICOM series and
measures

* ``upload_s``: the ``POST /api/studies`` request alone (the server checks, reads and stores the upload);
* ``end_to_end_s``: from the start of the upload until ``GET /api/studies/{id}`` says ``done`` (polled every
  ``--poll`` s), as a user waiting in front of the page sees it; the first job of a server also loads the model;
* ``job_s``: the job's own time as the server records it (``summary.seconds``: read, predict, write
  the downloads and the slice PNGs); ``queue_s``: ``started_at - created_at``;
* ``slices_prepare_s``: time between the job's progress reaching 0.80 and 0.95, the stage that writes the
  slice PNGs, and ``stages_s``, every stage the job reports through its progress (read 0.02–0.10, predict
  0.10–0.75, label and DICOM-SEG files 0.75–0.80, slices 0.80–0.95, summary and publish 0.95–1), observed by
  polling, so each ± one ``--poll``;
* slice requests as the viewer makes them (each slice's ``image`` and ``label`` PNG, one after the other
  over one keep-alive connection): a ``cold`` pass over all slices (first request of every file), then
  ``--slice-requests`` ``warm`` requests cycling through the slices again, and (``--during-job``, on by
  default) requests made while a second job of the same study runs: p50 / p95 / max ms per request.

Results go to one JSON file (written atomically, rewritten after each format, ``"complete": false`` until
the end) with the host (CPU model, cores, load average), date, git commit, the exact command and all
settings, and a table on the terminal.

    python benchmarks/bench_server.py --model runs/ctv_phantom_demo                   # NIfTI, 72×256×256
    python benchmarks/bench_server.py --model RUN --format nifti,dicom --out benchmarks/results/server_cpu.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from bench_unet import (  # benchmarks/ is the script's folder
    host_info,
    load_average,
    write_json_atomic,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
USER, PASSWORD = "bench", "bench-password-123"
FORMATS = ("nifti", "dicom")
# the job's progress at the end of each stage (medseg.server.jobs.Worker._segment)
STAGES = {
    "read": (0.02, 0.1),
    "predict": (0.1, 0.75),
    "exports": (0.75, 0.8),
    "slices": (0.8, 0.95),
    "summary_publish": (0.95, 1.0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " Defaults in [brackets].")
    p.add_argument("--model", required=True, type=Path, help="trained run or fold directory (medseg serve --model)")
    p.add_argument("--shape", default="72,256,256", help="phantom D,H,W [72,256,256, as in the thesis]")
    p.add_argument("--spacing", default="3,1,1", help="phantom voxel spacing in mm, D,H,W [3,1,1]")
    p.add_argument("--format", default="nifti", help=f"comma-separated: {', '.join(FORMATS)} [nifti]")
    p.add_argument(
        "--slice-requests",
        type=int,
        default=None,
        help="warm slice requests, cycling over the slices [3 passes: 6 × slices]",
    )
    p.add_argument(
        "--no-during-job",
        dest="during_job",
        action="store_false",
        help="skip the slice requests made while a second job runs",
    )
    p.add_argument("--device", default="auto", help="medseg serve --device: auto, cpu, cuda [auto]")
    p.add_argument("--poll", type=float, default=0.05, help="seconds between status requests [0.05]")
    p.add_argument("--seed", type=int, default=0, help="phantom seed [0]")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up on a job after this many seconds [1800]")
    p.add_argument("--out", type=Path, default=None, help="JSON result file [benchmarks/results/server_<device>.json]")
    args = p.parse_args(argv)
    args.shape = tuple(int(v) for v in args.shape.split(","))
    args.spacing = tuple(float(v) for v in args.spacing.split(","))
    args.formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if len(args.shape) != 3 or len(args.spacing) != 3:
        p.error("--shape and --spacing take three comma-separated numbers (D,H,W)")
    if not args.formats or set(args.formats) - set(FORMATS):
        p.error(f"--format takes some of {', '.join(FORMATS)}")
    if not args.model.is_dir():
        p.error(f"--model {args.model} is not a directory")
    return args


def device_tag(device: str) -> str:
    if device != "auto":
        return device.split(":")[0]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- the server --------------------------------------------------------------------------------------------
def medseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "medseg", *args]


def child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    return env


@contextmanager
def running_server(
    home: Path, model: Path, device: str, web_workers: int = 1, pids: list | None = None, web_nice: int = 5
):
    """``medseg serve`` on a free port with user ``bench`` (``--web-workers``, ``--web-nice``); yields (base URL,
    seconds until /api/health); the serve process's pid is appended to ``pids`` when given."""
    made = subprocess.run(
        medseg("users", "add", USER, "--password-stdin", "--home", str(home)),
        env=child_env(),
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        check=False,
    )
    if made.returncode:
        raise SystemExit(f"medseg users add failed:\n{made.stdout}{made.stderr}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = home / "serve.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            medseg(
                "serve",
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--home",
                str(home),
                "--device",
                device,
                "--web-workers",
                str(web_workers),
                "--web-nice",
                str(web_nice),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
    url = f"http://127.0.0.1:{port}"
    if pids is not None:
        pids.append(proc.pid)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"medseg serve exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
            if time.perf_counter() - t0 > 120:
                raise SystemExit(f"medseg serve did not start in 120 s:\n{log_path.read_text()[-3000:]}")
        yield url, time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the input ---------------------------------------------------------------------------------------------
def write_input(fmt: str, shape: tuple, spacing: tuple, seed: int, folder: Path) -> Path:
    from medseg.data.phantom import make_phantom
    from medseg.formats.volume_files import write_dicom_series, write_nifti

    image, _ = make_phantom(shape, spacing, seed=seed)
    if fmt == "nifti":
        return write_nifti(image, folder / "phantom.nii.gz")
    series = write_dicom_series(image, folder / "series")
    path = folder / "phantom_series.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(series.iterdir()):
            zf.write(f, f"series/{f.name}")
    return path


# -- measurements ------------------------------------------------------------------------------------------
def iso_seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return round((_dt.datetime.fromisoformat(b) - _dt.datetime.fromisoformat(a)).total_seconds(), 3)


def wait_done(client: httpx.Client, path: str, poll: float, timeout: float, t0: float) -> tuple[dict, list]:
    """Poll ``path`` (a result) until done; returns its JSON and the (seconds since t0, progress) trace."""
    trace: list[tuple[float, float]] = []
    while True:
        result = client.get(path).raise_for_status().json()
        now = time.perf_counter() - t0
        if not trace or trace[-1][1] != result["progress"]:
            trace.append((round(now, 3), result["progress"]))
        if result["status"] == "done":
            return result, trace
        if result["status"] == "failed":
            raise SystemExit(f"the job failed: {result['error']}")
        if now > timeout:
            raise SystemExit(f"the job was not done after {timeout:.0f} s (status {result['status']})")
        time.sleep(poll)


def stage_seconds(trace: list, start: float, end: float) -> float | None:
    """Time between the first poll seeing progress ≥ start and the first seeing ≥ end."""
    a = next((t for t, p in trace if p >= start), None)
    b = next((t for t, p in trace if p >= end), None)
    return None if a is None or b is None else round(b - a, 3)


def stats(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "max_ms": round(float(a.max()), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def fetch_slices(client: httpx.Client, template: str, order: list[int], until=None) -> tuple[list[float], int]:
    """GET image then label of each slice in ``order`` (stopping early once ``until()`` is true);
    returns the ms of every request and the bytes received."""
    times, nbytes = [], 0
    for k in order:
        if until is not None and until():
            break
        for kind in ("image", "label"):
            t = time.perf_counter()
            r = client.get(template.replace("{k}", str(k)).replace("{kind}", kind))
            times.append(1000.0 * (time.perf_counter() - t))
            r.raise_for_status()
            nbytes += len(r.content)
    return times, nbytes


def bench_format(fmt: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        tmp = Path(tmp)
        path = write_input(fmt, args.shape, args.spacing, args.seed, tmp)
        with (
            running_server(tmp / "home", args.model, args.device) as (url, start_s),
            httpx.Client(base_url=url, timeout=600) as client,
        ):
            token = client.post("/api/login", json={"username": USER, "password": PASSWORD}).raise_for_status()
            client.headers["Authorization"] = f"Bearer {token.json()['token']}"
            client.cookies.clear()
            (model,) = client.get("/api/models").raise_for_status().json()
            body = path.read_bytes()

            t0 = time.perf_counter()
            r = client.post(
                "/api/studies", files=[("files", (path.name, io.BytesIO(body)))], data={"model": model["id"]}
            )
            upload_s = time.perf_counter() - t0
            if r.status_code != 201:
                raise SystemExit(f"upload refused ({r.status_code}): {r.text}")
            study = r.json()
            result_path = f"/api/results/{study['results'][-1]['id']}"
            result, trace = wait_done(client, result_path, args.poll, args.timeout, t0)
            end_to_end_s = time.perf_counter() - t0

            n = result["n_slices"]
            template = result["slice_url"]
            cold, cold_bytes = fetch_slices(client, template, list(range(n)))
            warm_n = args.slice_requests or 6 * n
            order = [k % n for k in range((warm_n + 1) // 2)]
            warm, warm_bytes = fetch_slices(client, template, order)

            during, during_info = [], None
            if args.during_job:  # a second job of the same study, while the viewer pages through the first
                rerun = client.post(f"/api/studies/{study['id']}/rerun", json={"model": model["id"]}).raise_for_status()
                rerun_path = f"/api/results/{rerun.json()['id']}"
                t1 = time.perf_counter()

                def rerun_done() -> bool:
                    return client.get(rerun_path).json()["status"] == "done"

                while not rerun_done():
                    during += fetch_slices(client, template, list(range(n)), until=rerun_done)[0]
                rerun_result = client.get(rerun_path).json()
                during_info = {
                    "job_s": (rerun_result.get("summary") or {}).get("seconds"),
                    "wall_s": round(time.perf_counter() - t1, 3),
                }

        return {
            "format": fmt,
            "input_file": path.name,
            "input_bytes": len(body),
            "shape": study["shape"],
            "spacing": study["spacing"],
            "model": result["model"],
            "server_start_s": round(start_s, 3),
            "upload_s": round(upload_s, 3),
            "end_to_end_s": round(end_to_end_s, 3),
            "job_s": (result.get("summary") or {}).get("seconds"),
            "queue_s": iso_seconds(result["created_at"], result["started_at"]),
            "job_wall_s": iso_seconds(result["started_at"], result["finished_at"]),
            "slices_prepare_s": stage_seconds(trace, *STAGES["slices"]),
            "stages_s": {name: stage_seconds(trace, *bounds) for name, bounds in STAGES.items()},
            "n_slices": n,
            "progress_trace": trace,
            "slice_requests": {
                "cold": {**stats(cold), "bytes_per_request": round(cold_bytes / max(1, len(cold)))},
                "warm": {**stats(warm), "bytes_per_request": round(warm_bytes / max(1, len(warm)))},
                "during_job": {**stats(during), **(during_info or {})} if args.during_job else None,
            },
        }


# -- output ------------------------------------------------------------------------------------------------
def print_table(results: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(d: dict | None, key: str) -> str:
        return "—" if not d or d.get(key) is None else f"{d[key]:.1f}"

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    table = Table(title=title)
    for col in (
        "format",
        "MB",
        "upload s",
        "end-to-end s",
        "job s",
        "slices s",
        "cold p50/p95/max ms",
        "warm p50/p95/max ms",
        "during job p50/p95/max ms",
    ):
        table.add_column(col, justify="left" if col == "format" else "right", no_wrap=True)
    for r in results:
        s = r["slice_requests"]
        table.add_row(
            r["format"],
            f"{r['input_bytes'] / 2**20:.1f}",
            f"{r['upload_s']:.2f}",
            f"{r['end_to_end_s']:.2f}",
            "—" if r["job_s"] is None else f"{r['job_s']:.2f}",
            "—" if r["slices_prepare_s"] is None else f"{r['slices_prepare_s']:.2f}",
            *(
                "/".join(ms(s[phase], k) for k in ("p50_ms", "p95_ms", "max_ms"))
                for phase in ("cold", "warm", "during_job")
            ),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tag = device_tag(args.device)
    out = args.out or BENCH_DIR / "results" / f"server_{tag}.json"
    import torch

    host = host_info([torch.device(tag)])
    host.pop("torch_threads", None)  # the client's; the server's worker uses cores - 1 (ServerSettings)
    report = {
        "benchmark": "server_end_to_end",
        "date": _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "host": host,
        "settings": {
            "model": str(args.model),
            "formats": args.formats,
            "shape": list(args.shape),
            "spacing": list(args.spacing),
            "phantom_seed": args.seed,
            "device": args.device,
            "poll_s": args.poll,
            "slice_requests_warm": args.slice_requests,
            "during_job": args.during_job,
            "client": "httpx, one keep-alive connection, requests one after the other",
            "server": "medseg serve (uvicorn, one worker thread, torch threads = cores - 1), fresh home per format",
        },
        "results": [],
        "complete": False,
    }
    print(f"bench_server: {', '.join(args.formats)} at {'×'.join(map(str, args.shape))}; results → {out}", flush=True)
    for i, fmt in enumerate(args.formats):
        report["results"].append(bench_format(fmt, args))
        report["host"][f"loadavg_after_{fmt}"] = load_average()
        report["complete"] = i == len(args.formats) - 1
        write_json_atomic(report, out)
    print_table(
        report["results"],
        f"medseg serve, {'×'.join(map(str, args.shape))} phantom, {tag}, "
        f"load average at start {report['host']['loadavg_at_start']}",
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
