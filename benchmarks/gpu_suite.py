#!/usr/bin/env python
"""The GPU rows medseg's README lists as missing, in one run that fits 9 minutes on one H100.

    python benchmarks/gpu_suite.py [--only STEP,...] [--results DIR] [--work DIR] [--budget SECONDS]
    python benchmarks/gpu_suite.py --tiny [--work DIR]    # the same commands on the CPU at tiny sizes

Called by ``benchmarks/gpu_all.sh`` (which makes MONAI importable and puts ``src/`` on the path). Steps, each with a
wall-clock budget (the training inside it has a smaller one: ``train.time_limit_minutes``), run one after the
other; a step past its budget is stopped and the suite goes on:

==================================  =============================================================================
data                                the synthesized and M-FISH sets built up front, side by side
bench_unet                          U-Net vs MONAI UNet throughput at 128² (``bench_unet.py``, bf16 and fp32)
papers_table                        ARMS Net Table 3 at the papers' widths on ``synth:pommier``, fold 0
mfish_transfer                      ``configs/tables/mfish_transfer.yaml`` at the papers' widths, 128 × 128
mfish_karyotype_classifier          ``configs/mfish/karyotype_classifier.yaml`` at base width 64
mfish_instances                     whole metaphases (``configs/mfish/metaphase_unet.yaml``, base width 32) +
                                    ``medseg evaluate-metaphases`` (``bench_mfish_instances.py``)
ctv_unet3d_96                       the CTV thesis' final 3D network at its widths on 96³ phantom volumes
==================================  =============================================================================

Each step writes ``<results>/<step>_gpu.json`` (default ``benchmarks/results``) with the device, date and command,
plus a ``suite`` block (the step's commands, wall time, budget, mode); ``<results>/gpu_suite_gpu.json`` sums up the
run. The M-FISH steps need ``../shared/data/mfish`` beside the checkout (``--mfish``) and are skipped, with the
reason, without it.

``--tiny`` runs every step's same commands and result-writing code on the CPU at tiny sizes (a step or two of
training, widths 2–8, a few slides' metaphases, a few synthesized pairs) into a temporary folder, never into
``benchmarks/results``: the test that runs it keeps the suite from rotting while no GPU is lent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MFISH = ROOT.parent / "shared" / "data" / "mfish"
PAPERS_TABLE = "configs/tables/arms_net_table3.yaml"
TRANSFER = "configs/tables/mfish_transfer.yaml"
KARYOTYPE = "configs/mfish/karyotype_classifier.yaml"
CTV_3D = "configs/ctv/phantom_demo.yaml"  # the thesis' final network (Table 2.1, last row) on phantom volumes
FULL_BUDGET_S = 540  # 9 minutes on one H100, data set-up included
# The tiny mode's M-FISH folder: one labelled metaphase of each of this many slides, spread over the A, P and V
# slides. The splits are by slide (a held-out fifth, a tenth of the rest validating): fewer slides leave none to
# validate on; as few metaphases as that allows, so every set builds in seconds.
TINY_SLIDES = 14


def _sets(*items: str) -> list[str]:
    return [x for kv in items for x in ("--set", kv)]


# The two scales. Both modes set the same keys, so the tiny run checks the full run's commands; the budgets are
# the full mode's (seconds of wall time on one H100, guessed from CPU timings: no GPU was lent to measure them).
SCALES = {
    "full": {
        "device": "cuda",
        "unet": ["--device", "cuda", "--no-progress"],
        "table_data": [],  # the configs' own synth:pommier (13,434 pairs, the published size)
        "table": [
            "train.iterations=20000",
            "train.time_limit_minutes=0.2",
            "train.max_batches_per_epoch=100",
            "train.val_max_batches=10",
        ],
        "transfer_unset": ["model.base_channels"],  # each network at its paper's width
        "transfer": [
            "data.size=[128, 128]",
            "train.iterations=20000",
            "train.time_limit_minutes=0.07",
            "train.max_batches_per_epoch=25",
        ],
        "karyotype": [
            "--steps",
            "20000",
            "--time-limit",
            "0.3",
            *_sets("model.base_channels=64", "train.max_batches_per_epoch=100"),
        ],
        "instances": [
            "--steps",
            "20000",
            "--pair-steps",
            "20000",
            "--time-limit",
            "0.3",
            "--batches-per-epoch",
            "100",
            *_sets("model.base_channels=32"),
        ],
        "ctv3d": [
            "model.channels=[16, 32, 64, 96, 128]",
            "model.se_reduction=16",
            "model.recurrent=true",
            "preprocess.depth=96",
            "preprocess.size_xy=[96, 96]",
            "data.phantom.n=16",
            "train.epochs=1000",
            "train.time_limit_minutes=0.3",
        ],
    },
    "tiny": {
        "device": "cpu",
        "unet": ["--device", "cpu", "--no-progress", "--quick"],
        "table_data": [
            "--data",
            "synth:demo",
            *_sets(
                "data.synth_pairs=20",
                "data.size=[64, 64]",
                "model.base_channels=2",
                "train.batch_size=2",
                "evaluate.batch_size=8",
            ),
        ],
        "table": [
            "train.iterations=1",
            "train.time_limit_minutes=0.3",
            "train.max_batches_per_epoch=1",
            "train.val_max_batches=1",
        ],
        "transfer_unset": ["model.base_channels"],
        "transfer": [
            "data.size=[96, 96]",
            "train.iterations=1",
            "train.time_limit_minutes=0.07",
            "train.max_batches_per_epoch=1",
            "model.base_channels=2",
            "data.mfish_synth_pairs=8",
            "train.batch_size=2",
            "train.val_max_batches=1",
            "evaluate.batch_size=8",
        ],
        "karyotype": [
            "--steps",
            "1",
            "--time-limit",
            "0.3",
            *_sets(
                "model.base_channels=2",
                "train.max_batches_per_epoch=1",
                "train.batch_size=2",
                "train.val_max_batches=1",
            ),
        ],
        "instances": [
            "--steps",
            "1",
            "--pair-steps",
            "1",
            "--time-limit",
            "0.3",
            "--batches-per-epoch",
            "1",
            "--limit",
            "1",
            *_sets("model.base_channels=2"),
        ],
        "ctv3d": [
            "model.channels=[2, 2, 4, 4, 4]",
            "model.se_reduction=2",
            "model.recurrent=true",
            "preprocess.depth=32",
            "preprocess.size_xy=[32, 64]",
            "data.phantom.n=8",
            "data.phantom.shape=[8, 32, 32]",
            "train.epochs=1",
            "train.time_limit_minutes=0.3",
        ],
    },
}


@dataclass
class Ctx:
    mode: str
    results: Path
    work: Path
    mfish: Path | None  # None: not here, the M-FISH steps are skipped

    @property
    def scale(self) -> dict:
        return SCALES[self.mode]

    @property
    def device(self) -> str:
        return self.scale["device"]


@dataclass
class Step:
    name: str  # the result is <results>/<name>_gpu.json
    budget_s: float  # full mode's wall-clock budget; the step is stopped past it
    commands: Callable[[Ctx], list[list[str]]]
    needs_mfish: bool = False
    parallel: bool = False  # run the commands side by side (independent data builds)
    result_from: Callable[[Ctx], Path] | None = None  # a JSON another command wrote, copied into place
    keys: tuple[str, ...] = ()  # what the result must hold besides device, date and command
    writes_result: bool = True


def medseg(*args) -> list[str]:
    return [sys.executable, "-m", "medseg", *map(str, args)]


def bench(script: str, *args) -> list[str]:
    return [sys.executable, f"benchmarks/{script}", *map(str, args)]


def _data(c: Ctx) -> list[list[str]]:
    cmds = [medseg("data", "info", "synth:pommier")] if c.mode == "full" else []
    if c.mfish is not None:
        # mfish:both builds mfish:pairs and mfish:synth on its way; mfish:karyotype needs neither. One process per
        # set: two processes building the same set would race for its folder.
        cmds += [
            medseg("data", "info", "mfish:both" if c.mode == "full" else "mfish:pairs"),
            medseg("data", "info", "mfish:karyotype", "--n-classes", "25"),
        ]
    return cmds


def _table_dir(c: Ctx, step: str, spec: str) -> Path:
    return c.work / step / Path(spec).stem


STEPS = [
    Step("data", 65, _data, parallel=True, writes_result=False),
    Step(
        "bench_unet",
        40,
        lambda c: [bench("bench_unet.py", *c.scale["unet"], "--out", c.results / "bench_unet_gpu.json")],
        keys=("results", "settings", "host"),
    ),
    Step(
        "papers_table",
        85,
        lambda c: [
            medseg(
                "reproduce",
                PAPERS_TABLE,
                "--folds",
                "0",
                "--device",
                c.device,
                "--out",
                c.work / "papers_table",
                *c.scale["table_data"],
                *_sets(*c.scale["table"]),
            )
        ],
        result_from=lambda c: _table_dir(c, "papers_table", PAPERS_TABLE) / "table.json",
        keys=("results", "title"),
    ),
    Step(
        "mfish_transfer",
        140,
        lambda c: [
            medseg(
                "reproduce",
                TRANSFER,
                "--folds",
                "0",
                "--device",
                c.device,
                "--out",
                c.work / "mfish_transfer",
                *[x for k in c.scale["transfer_unset"] for x in ("--unset", k)],
                *_sets(*c.scale["transfer"]),
            )
        ],
        needs_mfish=True,
        result_from=lambda c: _table_dir(c, "mfish_transfer", TRANSFER) / "table.json",
        keys=("results", "title"),
    ),
    Step(
        "mfish_karyotype_classifier",
        60,
        lambda c: [
            bench(
                "bench_mfish_karyotype.py",
                "--config",
                KARYOTYPE,
                "--device",
                c.device,
                "--mfish",
                c.mfish,
                "--work",
                c.work / "mfish_karyotype_classifier",
                "--out",
                c.results / "mfish_karyotype_classifier_gpu.json",
                *c.scale["karyotype"],
            )
        ],
        needs_mfish=True,
        keys=("soft_vote", "train", "test"),
    ),
    Step(
        "mfish_instances",
        85,
        lambda c: [
            bench(
                "bench_mfish_instances.py",
                "--device",
                c.device,
                "--mfish",
                c.mfish,
                "--work",
                c.work / "mfish_instances",
                "--out",
                c.results / "mfish_instances_gpu.json",
                *c.scale["instances"],
            )
        ],
        needs_mfish=True,
        keys=("results", "semantic_model", "times_s"),
    ),
    Step(
        "ctv_unet3d_96",
        55,
        lambda c: [
            medseg(
                "cv",
                CTV_3D,
                "--folds",
                "0",
                "--name",
                "ctv_unet3d_96",
                "--device",
                c.device,
                *_sets(f"output.root={c.work / 'ctv_unet3d_96'}", *c.scale["ctv3d"]),
            ),
            bench(
                "record_run.py",
                c.work / "ctv_unet3d_96" / "ctv_unet3d_96",
                "--out",
                c.results / "ctv_unet3d_96_gpu.json",
                "--command",
                f"medseg cv {CTV_3D} --folds 0 --device {c.device} "
                + " ".join(f"--set {shlex.quote(s)}" for s in c.scale["ctv3d"]),
            ),
        ],
        keys=("mean_dice", "efficiency", "training"),
    ),
]


INSTANCES_CONFIG = "configs/mfish/metaphase_unet.yaml"  # what bench_mfish_instances.py trains (its --set go there)


def _options(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == flag]


def full_configs(c: Ctx) -> list[tuple[str, dict]]:
    """Every config the full mode trains, as its commands resolve it (the config or table row, then the suite's
    ``--set`` / ``--unset`` / ``--data``): (what, validated config). Raises the ConfigError a bad key or value
    would raise on the GPU machine."""
    from medseg.config import resolve_config
    from medseg.experiments.tables import check_unset, load_spec, row_config

    out = []
    for step in STEPS:
        if step.needs_mfish and c.mfish is None:
            continue
        for cmd in step.commands(c):
            sets = [tuple(kv.split("=", 1)) for kv in _options(cmd, "--set")]
            data = (_options(cmd, "--data") or [None])[0]
            if cmd[1:4] == ["-m", "medseg", "reproduce"]:
                spec = load_spec(ROOT / cmd[4])
                check_unset(spec, _options(cmd, "--unset"))
                for row in spec["rows"]:
                    cfg = row_config(
                        spec,
                        row,
                        quick=False,
                        data=data,
                        output_root=c.work / "check",
                        overrides=_options(cmd, "--set"),
                        unset=_options(cmd, "--unset"),
                    )
                    out.append((f"{step.name}: {row['label']}", cfg))
                continue
            if cmd[1:4] in (["-m", "medseg", "cv"], ["-m", "medseg", "train"]):
                config = cmd[4]
            elif cmd[1].endswith("bench_mfish_karyotype.py"):
                config = _options(cmd, "--config")[0]
            elif cmd[1].endswith("bench_mfish_instances.py"):
                config = INSTANCES_CONFIG
            else:
                continue
            cfg = resolve_config(ROOT / config, sets=sets).cfg
            if data:
                cfg["data"]["path"] = data
            out.append((f"{step.name}: {config}", cfg))
    return out


def check(c: Ctx) -> list[str]:
    """The full mode's configs resolved and their models built and run once on the meta device (shapes only, no
    memory, no arithmetic), at the sizes the full mode trains: one line per model."""
    import torch

    from medseg.artifact import model_kwargs
    from medseg.models import build_model

    lines = []
    for what, cfg in full_configs(c):
        kwargs = model_kwargs(cfg)
        if int(cfg["task"].get("spatial_dims", 2)) == 3:
            shape = [cfg["preprocess"]["depth"], *cfg["preprocess"]["size_xy"]]
        else:
            shape = list(cfg["data"].get("patch_size") or cfg["data"]["size"])
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "model(x) returns only the last pass": training uses its own loss
            model = build_model(cfg["model"]["name"], trust_code=True, **kwargs)
            y = model(torch.empty(2, kwargs["in_channels"], *shape))
        y = y[0] if isinstance(y, (list, tuple)) else y
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lines.append(f"{what}: {cfg['model']['name']} {n / 1e6:.2f} M parameters, input {shape} -> {list(y.shape)}")
    return lines


def device_name(device: str) -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from record_run import device_name as name

    return name(device)


def git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.CalledProcessError):
        return None


def tiny_mfish(source: Path, dest: Path) -> Path:
    """A small M-FISH folder for --tiny: links to the first labelled metaphase of TINY_SLIDES slides, with the set's
    licence notice (it travels with every copy)."""
    if dest.is_dir():
        return dest
    first: dict[str, Path] = {}  # slide -> its first labelled metaphase (<folder>/<id>K.tif)
    for k in sorted(source.glob("*__*/*K.tif")):
        if k.with_name(k.name[:-5] + "D.tif").is_file():
            first.setdefault(k.parent.name.split("__")[0], k)
    slides = sorted(first)
    n = min(TINY_SLIDES, len(slides))
    picked = [first[slides[round(i * (len(slides) - 1) / max(1, n - 1))]] for i in range(n)]  # evenly spread
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted earlier call's
    tmp.mkdir(parents=True)
    (tmp / "README.TXT").write_bytes((source / "README.TXT").read_bytes())
    for k in picked:
        (tmp / k.parent.name).mkdir(exist_ok=True)
        for f in (k, k.with_name(k.name[:-5] + "D.tif"), k.parent / "Case Info"):
            if f.exists():
                (tmp / k.parent.name / f.name).symlink_to(f.resolve())
    tmp.replace(dest)
    return dest


def _run(cmds: list[list[str]], log: Path, env: dict, timeout: float, parallel: bool) -> str | None:
    """Run ``cmds`` (one after the other, or side by side); None when all succeed, else why not. Output goes to
    ``log``; past ``timeout`` seconds every process group still running is stopped."""
    deadline = time.monotonic() + timeout
    with log.open("a") as f:
        pending = list(cmds)
        while pending:
            batch, pending = (pending, []) if parallel else ([pending[0]], pending[1:])
            procs = []
            for cmd in batch:
                f.write(f"$ {shlex.join(cmd)}\n")
                f.flush()
                procs.append(
                    subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
                )  # its own group: stopped whole
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    for p in procs:
                        if p.poll() is None:
                            os.killpg(p.pid, signal.SIGKILL)
                            p.wait()
                    return f"stopped at its budget ({timeout:.0f} s)"
            failed = [p for p in procs if p.returncode != 0]
            if failed:
                return f"{shlex.join(failed[0].args[:4])} … exited {failed[0].returncode}"
    return None


def _tail(log: Path, n: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").replace("\r", "\n").splitlines()[-n:]) if log.is_file() else ""


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)


def stamp(
    path: Path,
    step: Step,
    c: Ctx,
    cmds: list[list[str]],
    wall_s: float,
    device: str,
    commit: str | None,
    suite_command: str,
) -> None:
    """Add what every suite result holds: device, date and command at the top (kept where the step's own code wrote
    them) and a ``suite`` block (mode, the step's commands, wall time and budget)."""
    payload = json.loads(path.read_text())
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    payload.setdefault("device", device)
    payload.setdefault("date", now)
    payload.setdefault("command", " && ".join(shlex.join(cmd) for cmd in cmds))
    payload["suite"] = {
        "step": step.name,
        "mode": c.mode,
        "device": device,
        "date": now,
        "git_commit": commit,
        "commands": [shlex.join(cmd) for cmd in cmds],
        "wall_s": wall_s,
        "budget_s": step.budget_s,
        "suite_command": suite_command,
    }
    missing = [k for k in ("device", "date", "command", *step.keys) if payload.get(k) in (None, "", [], {})]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)}")
    write_json(path, payload)


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace, list[Step]]:
    """The parser (its ``error`` refuses later checks too), the arguments and the steps chosen by ``--only``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tiny",
        action="store_true",
        help="the same steps on the CPU at tiny sizes, into a temporary folder (never benchmarks/results)",
    )
    ap.add_argument(
        "--only", default=None, metavar="STEP,...", help="these steps only: " + ", ".join(s.name for s in STEPS)
    )
    ap.add_argument(
        "--results",
        type=Path,
        default=None,
        help="where the *_gpu.json go (default benchmarks/results; --tiny: WORK/results)",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="runs, logs and data sets (default runs/gpu_suite; --tiny: a new temporary folder)",
    )
    ap.add_argument("--mfish", type=Path, default=MFISH, help="the M-FISH folder [../shared/data/mfish]")
    ap.add_argument(
        "--check",
        action="store_true",
        help="no training: resolve the full mode's configs and build each model on the meta device",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"the whole suite's wall-clock budget, seconds [{FULL_BUDGET_S}; --tiny: 600]",
    )
    args = ap.parse_args(argv)
    names = [s.name for s in STEPS]
    only = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in names]
    if unknown:
        ap.error(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(names)}")
    return ap, args, [s for s in STEPS if s.name in only]


@dataclass
class Run:
    """What every step of one suite call shares."""

    c: Ctx
    env: dict
    device: str
    commit: str | None
    suite_command: str
    budget: float
    started: float  # time.monotonic() at the first step
    mfish_arg: Path  # --mfish as given, named when the M-FISH steps are skipped


def run_step(step: Step, r: Run) -> dict:
    """One step run within its budget (and what is left of the suite's), its result stamped: its row."""
    c = r.c
    row = {"step": step.name, "budget_s": step.budget_s, "status": None, "wall_s": 0.0, "result": None}
    if step.needs_mfish and c.mfish is None:
        row.update(
            status="skipped",
            reason=f"the M-FISH set is not here ({r.mfish_arg}): put ../shared/data "
            "beside the checkout or pass --mfish",
        )
        print(f"[{step.name}] skipped: {row['reason']}", flush=True)
        return row
    cmds = step.commands(c)
    row["commands"] = [shlex.join(cmd) for cmd in cmds]
    left = r.budget - (time.monotonic() - r.started)
    timeout = min(step.budget_s, left) if c.mode == "full" else left
    if timeout < 5:
        row.update(status="skipped", reason="the suite's budget is spent")
        print(f"[{step.name}] skipped: {row['reason']}", flush=True)
        return row
    log = c.work / "logs" / f"{step.name}.log"
    log.unlink(missing_ok=True)
    if step.writes_result:  # a benchmark starts from nothing: no run of an earlier call resumed or reused
        shutil.rmtree(c.work / step.name, ignore_errors=True)
        (c.results / f"{step.name}_gpu.json").unlink(missing_ok=True)
    print(f"[{step.name}] budget {step.budget_s:.0f} s: " + " ; ".join(row["commands"]), flush=True)
    t0, cpu0 = time.monotonic(), os.times()
    why = _run(cmds, log, r.env, timeout, step.parallel) if cmds else None
    cpu1 = os.times()
    row["wall_s"] = round(time.monotonic() - t0, 1)
    # the step's processes' CPU time: beside the wall time it tells a loaded machine from a slow step
    row["cpu_s"] = round(cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system, 1)
    if why is None and step.writes_result:
        out = c.results / f"{step.name}_gpu.json"
        try:
            if step.result_from is not None:
                write_json(out, json.loads(step.result_from(c).read_text()))
            stamp(out, step, c, cmds, row["wall_s"], r.device, r.commit, r.suite_command)
            row["result"] = str(out)
        except (OSError, ValueError) as exc:
            why = f"no valid result: {exc}"
    row["status"] = "ok" if why is None else "failed"
    if why is not None:
        row["reason"] = why
        print(f"[{step.name}] FAILED after {row['wall_s']} s: {why}; log {log}:\n{_tail(log)}", flush=True)
    else:
        print(
            f"[{step.name}] ok in {row['wall_s']} s (CPU {row['cpu_s']} s)"
            + (f" → {row['result']}" if row["result"] else ""),
            flush=True,
        )
    return row


def print_table(rows: list[dict], total: float, budget: float, mode: str, results: Path) -> None:
    print(f"\n{'step':<28} {'status':<8} {'wall s':>7} {'budget s':>9} {'CPU s':>7}")
    for r in rows:
        print(f"{r['step']:<28} {r['status']:<8} {r['wall_s']:>7.1f} {r['budget_s']:>9.0f} {r.get('cpu_s', 0.0):>7.1f}")
    print(
        f"{'total':<28} {'':<8} {total:>7.1f} {budget:>9.0f}   ({mode} mode; summary {results / 'gpu_suite_gpu.json'})"
    )


def main(argv: list[str] | None = None) -> int:
    ap, args, steps = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    mode = "tiny" if args.tiny else "full"

    if args.check:
        mfish = args.mfish.resolve() if (args.mfish / "README.TXT").is_file() else None
        for line in check(Ctx("full", RESULTS, Path(tempfile.gettempdir()), mfish)):
            print(line)
        return 0
    if mode == "full":
        import torch

        if not torch.cuda.is_available():
            print(
                f"gpu_suite.py: torch {torch.__version__} sees no CUDA device; this suite is for a GPU machine "
                "(--tiny runs it on the CPU at tiny sizes)",
                file=sys.stderr,
            )
            return 2
    work = (
        args.work
        or (ROOT / "runs" / "gpu_suite" if mode == "full" else Path(tempfile.mkdtemp(prefix="medseg_gpu_suite_tiny_")))
    ).resolve()
    results = (args.results or (RESULTS if mode == "full" else work / "results")).resolve()
    if mode == "tiny" and results == RESULTS.resolve():
        ap.error("--tiny never writes into benchmarks/results: its numbers are not measurements")
    work.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    budget = args.budget or (FULL_BUDGET_S if mode == "full" else 600.0)

    mfish = args.mfish.resolve() if (args.mfish / "README.TXT").is_file() else None
    if mfish is not None and mode == "tiny":
        mfish = tiny_mfish(mfish, work / "mfish")
    c = Ctx(mode, results, work, mfish)
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        MEDSEG_HOME=os.environ.get("MEDSEG_HOME", str(work / "home")) if mode == "full" else str(work / "home"),
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    if mfish is not None:
        env["MEDSEG_MFISH"] = str(mfish)  # where every mfish:* set is made from
    device = device_name(c.device)
    commit = git_commit()
    suite_command = shlex.join(["python", "benchmarks/gpu_suite.py", *argv])
    print(f"gpu_suite: {mode} mode on {device}; results → {results}; work, logs → {work}", flush=True)

    started = time.monotonic()
    suite = Run(c, env, device, commit, suite_command, budget, started, args.mfish)
    rows = [run_step(step, suite) for step in steps]

    total = round(time.monotonic() - started, 1)
    summary = {
        "benchmark": "gpu_suite",
        "mode": mode,
        "device": device,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": suite_command,
        "git_commit": commit,
        "budget_s": budget,
        "total_wall_s": total,
        "work": str(work),
        "steps": rows,
    }
    write_json(results / "gpu_suite_gpu.json", summary)
    print_table(rows, total, budget, mode, results)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
