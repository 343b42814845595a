#!/usr/bin/env python
"""The CPU speed options measured end to end, as whole ``medseg train`` processes.

Each comparison trains the same config twice — option A, and B the plain run — as A B A B … pairs after one
warm-up pair (so a machine whose speed drifts still gives a fair A/B ratio pair by pair), each run a fresh
``python -m medseg train`` process (start-up, data loading, validation and, for ``train.compile``, the
compilation from an empty inductor cache included). Reported per command: the wall and CPU seconds of every
run with their median, the per-epoch times from ``history.json`` (the first epoch apart: it pays the
compilation), and the pairwise ratios A/B of wall and CPU seconds (min, median, max) — below 1: the option A
is faster, above 1: slower.

Comparisons (``--parts``; ``demo`` = ``configs/chromosomes/demo.yaml`` on the 1,600 pairs ``scripts/demo.sh``
synthesizes, ``unet`` = ``configs/chromosomes/unet.yaml``, the 4-pooling 64-channel U-Net baseline, on the
same pairs, 10 steps an epoch):

    demo_channels_last  train.channels_last true vs false
    demo_workers1       train.num_workers 1 vs 0
    demo_workers2       train.num_workers 2 vs 0
    demo_compile        train.compile true vs false
    demo_compile_warm_cache  the same, inductor's cache kept between A's runs (a rerun, the next folds of cv)
    unet_channels_last  train.channels_last true vs false
    unet_compile        train.compile true vs false

    python benchmarks/bench_cpu_options.py                          # all, ~2 h on 2 busy cores at 1 thread
    python benchmarks/bench_cpu_options.py --parts demo_channels_last --pairs 5 --threads 2

Every run uses ``MEDSEG_THREADS`` = ``--threads`` (a fixed count: medseg's automatic share would change with
other jobs on the machine). Results go to ``--out`` (default ``benchmarks/results/distributed_cpu.json``)
under ``cpu_options_end_to_end``, the file's other keys kept; ``os.getloadavg()`` is recorded before each
comparison — on a shared machine quote ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from bench_unet import load_average, write_json_atomic  # noqa: E402

DEMO, UNET = "configs/chromosomes/demo.yaml", "configs/chromosomes/unet.yaml"
UNET_SHORT = ["--set", "train.max_batches_per_epoch=10", "--set", "train.val_max_batches=1"]
#: name: (config, epochs, extra args, option A, option B); WARM: A keeps its torch.compile cache between runs
WARM = {"demo_compile_warm_cache"}
PARTS = {
    "demo_channels_last": (DEMO, 6, [], "train.channels_last=true", "train.channels_last=false"),
    "demo_workers1": (DEMO, 6, [], "train.num_workers=1", "train.num_workers=0"),
    "demo_workers2": (DEMO, 6, [], "train.num_workers=2", "train.num_workers=0"),
    "demo_compile": (DEMO, 6, [], "train.compile=true", "train.compile=false"),
    "demo_compile_warm_cache": (DEMO, 6, [], "train.compile=true", "train.compile=false"),
    "unet_channels_last": (UNET, 2, UNET_SHORT, "train.channels_last=true", "train.channels_last=false"),
    "unet_compile": (UNET, 2, UNET_SHORT, "train.compile=true", "train.compile=false"),
}


def train_command(work: Path, config: str, epochs: int, extra: list[str], option: str, root: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medseg",
        "train",
        config,
        "--fold",
        "0",
        "--data",
        str(work / "pairs.h5"),
        "--device",
        "cpu",
        "--epochs",
        str(epochs),
        "--set",
        f"output.root={work / root}",
        "--restart",
        *extra,
        "--set",
        option,
    ]


def run_once(cmd: list[str], env: dict, work: Path, root: str, warm_cache: Path | None = None) -> dict:
    """One whole training process: wall and CPU seconds, and the epoch times of its history."""
    # a cold torch.compile cache for every run, unless warm_cache (kept between runs) is given
    cache = str(warm_cache) if warm_cache else tempfile.mkdtemp(prefix="inductor-", dir=work)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env={**env, "TORCHINDUCTOR_CACHE_DIR": cache},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not warm_cache:
        shutil.rmtree(cache, ignore_errors=True)
    if done.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    history = next((work / root).glob("*/fold_0/history.json"), None)  # one run name under each root
    epochs = [row["time_s"] for row in json.loads(history.read_text())] if history else []
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 2),
        "epoch_s": epochs,
    }


def compare(work: Path, env: dict, part: str, pairs: int) -> dict:
    config, epochs, extra, option_a, option_b = PARTS[part]
    cmd_a = train_command(work, config, epochs, extra, option_a, f"{part}_A")
    cmd_b = train_command(work, config, epochs, extra, option_b, f"{part}_B")
    load = load_average()
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    warm = work / f"{part}_cache" if part in WARM else None
    for i in range(pairs + 1):  # the first pair warms the file cache (and a WARM part's compile cache) up, not counted
        a, b = run_once(cmd_a, env, work, f"{part}_A", warm), run_once(cmd_b, env, work, f"{part}_B")
        print(part, "warm-up" if i == 0 else f"pair {i}", "A", a, "B", b, flush=True)
        if i:
            runs["A"].append(a)
            runs["B"].append(b)

    def spread(values) -> dict:
        values = list(values)
        return {
            "min": round(min(values), 3),
            "median": round(statistics.median(values), 3),
            "max": round(max(values), 3),
        }

    def summary(rs: list[dict]) -> dict:
        later = [e for r in rs for e in r["epoch_s"][1:]]
        return {
            "wall_s": spread(r["wall_s"] for r in rs),
            "cpu_s": spread(r["cpu_s"] for r in rs),
            "first_epoch_median_s": round(statistics.median(r["epoch_s"][0] for r in rs), 2),
            "later_epochs_median_s": round(statistics.median(later), 2) if later else None,
        }

    pairs_ab = list(zip(runs["A"], runs["B"], strict=True))
    return {
        "A": {"option": option_a, **summary(runs["A"])},
        "B": {"option": option_b, **summary(runs["B"])},
        "command_A": shlex.join(cmd_a),
        "pairs": pairs,
        "ratio_A_over_B": {
            "wall": spread(a["wall_s"] / b["wall_s"] for a, b in pairs_ab),
            "cpu": spread(a["cpu_s"] / b["cpu_s"] for a, b in pairs_ab),
        },
        "loadavg_before": load,
        "loadavg_after": load_average(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    p.add_argument("--pairs", type=int, default=3, help="counted A/B pairs per comparison, after one warm-up pair [3]")
    p.add_argument("--threads", type=int, default=1, help="MEDSEG_THREADS of every run [1]")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "distributed_cpu.json")
    args = p.parse_args()
    parts = [x for x in args.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    work = Path(tempfile.mkdtemp(prefix="medseg-bench-cpu-"))
    env = {
        **os.environ,
        "MEDSEG_HOME": str(work / "home"),
        "MEDSEG_PROGRESS_SECONDS": "600",
        "MEDSEG_THREADS": str(args.threads),
        "OMP_NUM_THREADS": str(args.threads),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "medseg",
            "data",
            "synth",
            str(work / "pairs.h5"),
            "--n-pairs",
            "1600",
            "--n-chromosomes",
            "12",
            "--seed",
            "0",
        ],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result = json.loads(args.out.read_text()) if args.out.exists() else {"issue": 15}
    section = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "device": f"CPU ({platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores), "
        f"MEDSEG_THREADS={args.threads}",
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
    }
    for part in parts:
        section[part] = compare(work, env, part, args.pairs)
        result["cpu_options_end_to_end"] = section
        write_json_atomic(result, args.out)
    print(json.dumps(section, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
