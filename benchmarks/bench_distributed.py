#!/usr/bin/env python
"""Training on the CPU: 1 vs 2 gloo processes, thread shares under load, and the free CPU speed-ups.

Writes ``benchmarks/results/distributed_cpu.json`` (device, date, command, ``os.getloadavg()`` beside every
measurement — other jobs on the machine change CPU timings: rerun on a quiet machine before quoting them):

1. **throughput**: samples/s of the 2D demo U-Net (``configs/chromosomes/demo.yaml``, synth:demo) trained by
   one process and by ``--nproc 2`` (two gloo processes) at the same global batch;
2. **load**: the time of an epoch of the demo's 3D model (``configs/ctv/phantom_demo.yaml``) alone, beside a
   second identical training, and beside the web server under ``bench_server.py``'s load — each with
   ``MEDSEG_THREADS=off`` (PyTorch's default pool, the behaviour before medseg set its own) and ``auto`` (medseg's
   share of the cores);
3. **options**: one training step of the 2D demo U-Net plain (fp32), channels-last, bf16 autocast and
   ``torch.compile``; an option counts as a gain (``kept``) only when it is at least 5 % faster. One step is
   not a training: the defaults of ``train.channels_last``, ``train.compile`` and ``train.num_workers`` follow
   whole trainings, measured by ``benchmarks/bench_cpu_options.py`` (``cpu_options_end_to_end``).

    python benchmarks/bench_distributed.py                 # all three, about 10-15 min on 2 idle cores
    python benchmarks/bench_distributed.py --parts options # one part
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from bench_unet import load_average, write_json_atomic  # noqa: E402


def medseg(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medseg", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def finish(proc: subprocess.Popen, what: str) -> str:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{out[-3000:]}")
    return out


def history(root: Path, name: str) -> list[dict]:
    return json.loads((root / name / "fold_0" / "history.json").read_text())


# --- 1. one vs two gloo processes ------------------------------------------------------------------------------
def throughput(work: Path, env: dict, steps: int) -> dict:
    common = [
        "configs/chromosomes/demo.yaml",
        "--epochs",
        "2",
        "--set",
        f"output.root={work / 'runs'}",
        "--set",
        f"train.max_batches_per_epoch={steps}",
        "--set",
        "train.val_max_batches=1",
        "--set",
        "data.synth_pairs=400",
        "--device",
        "cpu",
        "--restart",
    ]
    out = {}
    for label, extra in (("1_process", []), ("2_gloo_processes", ["--nproc", "2"])):
        load = load_average()
        finish(medseg("train", *common, "--name", f"tp_{label}", *extra, env=env), label)
        row = history(work / "runs", f"tp_{label}")[-1]  # the second epoch: warm
        import yaml

        batch = int(
            yaml.safe_load((work / "runs" / f"tp_{label}" / "fold_0" / "config.yaml").read_text())["train"][
                "batch_size"
            ]
        )
        out[label] = {
            "epoch_s": row["time_s"],
            "steps": steps,
            "global_batch": batch,
            "samples_per_s": round(steps * batch / row["time_s"], 2),
            "loadavg_before": load,
            "loadavg_after": load_average(),
        }
        print(label, out[label], flush=True)
    out["speedup"] = round(out["2_gloo_processes"]["samples_per_s"] / out["1_process"]["samples_per_s"], 3)
    return out


# --- 2. epochs under load -----------------------------------------------------------------------------------
def phantom_epoch(work: Path, env: dict, name: str, beside=None) -> dict:
    """Epoch 2 of the 3D demo model (epoch 1 pays the warm-up), with ``beside`` running meanwhile."""
    args = [
        "train",
        "configs/ctv/phantom_demo.yaml",
        "--epochs",
        "2",
        "--name",
        name,
        "--device",
        "cpu",
        "--set",
        f"output.root={work / 'runs'}",
        "--restart",
    ]
    load = load_average()
    others = beside() if beside else []
    try:
        finish(medseg(*args, env=env), name)
    finally:
        for p in others:
            p.terminate()
            p.wait(timeout=60)
    rows = history(work / "runs", name)
    return {
        "epoch_s": rows[-1]["time_s"],
        "first_epoch_s": rows[0]["time_s"],
        "loadavg_before": load,
        "loadavg_after": load_average(),
    }


def load_experiment(work: Path, env: dict, save=lambda part: None) -> dict:
    """Each condition saved as soon as it is measured (``save``), so a cut-short run keeps what it has."""
    out = {}
    for mode in ("off", "auto"):
        e = {**env, "MEDSEG_THREADS": mode}
        e.pop("OMP_NUM_THREADS", None)
        res = {"alone": phantom_epoch(work, e, f"load_{mode}_alone")}
        print(mode, "alone", res["alone"], flush=True)
        out[f"MEDSEG_THREADS={mode}"] = res
        save(out)

        def second_training(e=e, mode=mode):
            return [
                medseg(
                    "train",
                    "configs/ctv/phantom_demo.yaml",
                    "--epochs",
                    "20",
                    "--name",
                    f"load_{mode}_other",
                    "--device",
                    "cpu",
                    "--set",
                    f"output.root={work / 'runs'}",
                    "--restart",
                    env=e,
                )
            ]

        res["beside_second_training"] = phantom_epoch(work, e, f"load_{mode}_pair", second_training)
        print(mode, "beside a training", res["beside_second_training"], flush=True)
        save(out)
        model = work / "runs" / f"load_{mode}_alone"

        def server_load(e=e, model=model, mode=mode):
            cmd = [
                sys.executable,
                str(BENCH / "bench_server.py"),
                "--model",
                str(model),
                "--shape",
                "32,128,128",
                "--device",
                "cpu",
                "--out",
                str(work / f"server_{mode}.json"),
            ]
            loop = f"while true; do {shlex.join(cmd)} >/dev/null 2>&1; done"
            return [subprocess.Popen(["bash", "-c", loop], cwd=REPO, env=e, start_new_session=True)]

        res["beside_server_under_load"] = phantom_epoch(work, e, f"load_{mode}_server", server_load)
        print(mode, "beside the server", res["beside_server_under_load"], flush=True)
        save(out)
    return out


# --- 3. the free CPU options --------------------------------------------------------------------------------
def options(steps: int) -> dict:
    import torch

    from medseg.artifact import model_kwargs
    from medseg.config import load_config
    from medseg.models import build_model
    from medseg.threads import configure_threads

    configure_threads()
    cfg = load_config(REPO / "configs/chromosomes/demo.yaml")
    x = torch.randn(8, 1, 128, 128)
    y = torch.randint(0, 4, (8, 128, 128))
    bf16 = (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported")
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )

    def run(channels_last=False, autocast=False, compile_=False) -> float:
        torch.manual_seed(0)
        model = build_model(cfg["model"]["name"], **model_kwargs(cfg))
        xi = x
        if channels_last:
            model, xi = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        step_model = torch.compile(model) if compile_ else model
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step():
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = torch.nn.functional.cross_entropy(step_model(xi).float(), y)
            loss.backward()
            opt.step()

        for _ in range(3 if compile_ else 2):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - t0) / steps

    out = {"cpu_bf16_supported": bool(bf16), "threads": torch.get_num_threads()}
    base = run()
    out["fp32"] = {"step_s": round(base, 4), "loadavg": load_average()}
    for name, kw in (
        ("channels_last", {"channels_last": True}),
        ("bf16_autocast", {"autocast": True}),
        ("torch_compile", {"compile_": True}),
    ):
        try:
            t = run(**kw)
            out[name] = {
                "step_s": round(t, 4),
                "vs_fp32": round(base / t, 3),
                "kept": base / t >= 1.05,
                "loadavg": load_average(),
            }
        except Exception as exc:  # e.g. torch.compile without a C compiler
            out[name] = {"error": " ".join(str(exc).split())[:300], "kept": False}
        print(name, out[name], flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="throughput,load,options", help="comma-separated: throughput, load, options")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per throughput epoch / options timing [20]")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "distributed_cpu.json")
    args = p.parse_args()
    parts = args.parts.split(",")
    work = Path(tempfile.mkdtemp(prefix="medseg-bench-dist-"))
    env = {**os.environ, "MEDSEG_HOME": str(work / "home"), "MEDSEG_PROGRESS_SECONDS": "600"}
    result = {
        "issue": 15,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "device": f"CPU ({platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores "
        "given), no GPU lent to this session: single-GPU and NCCL numbers not measured",
        "loadavg_start": load_average(),
        "complete": False,
        "note": "other engineers' jobs shared these cores: see each loadavg; rerun on a quiet machine",
    }
    if args.out.exists():  # parts run separately are merged into one file
        result = {**json.loads(args.out.read_text()), **{k: result[k] for k in ("date", "command", "loadavg_start")}}
    if "options" in parts:
        result["options"] = options(args.steps)
        write_json_atomic(result, args.out)
    if "throughput" in parts:
        result["throughput"] = throughput(work, env, args.steps)
        write_json_atomic(result, args.out)
    if "load" in parts:
        result["load"] = load_experiment(work, env, lambda part: write_json_atomic({**result, "load": part}, args.out))
    result["complete"] = True
    result["loadavg_end"] = load_average()
    write_json_atomic(result, args.out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
