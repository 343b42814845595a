#!/usr/bin/env python
"""Speed of medseg's U-Net against MONAI's ``UNet`` at the same depth and widths.

For each device (CPU always, CUDA when available) and each model this measures

* training throughput (images/s): Adam steps with cross-entropy (``medseg.losses.build_loss("ce")``) on a
  fixed random batch of ``--size``² 1-channel images, ``--warmup`` untimed steps then ``--steps`` timed
  ones; on CUDA with channels-last and bf16 autocast (fp16 + GradScaler where bf16 is unsupported), as
  ``medseg.training.Trainer`` trains, and also without autocast (``--amp both``, the default);
* inference latency (median ms per image at batch 1) and throughput (images/s at batch 32) under
  ``torch.inference_mode``, through ``medseg.metrics.time_inference`` (under the same autocast as training);
* the trainable parameter count (``medseg.metrics.count_parameters``).

The results go to one JSON file (written atomically, rewritten after every measured model so an
interrupted run keeps what it measured, ``"complete": false`` until the end) and a table on the terminal.

    python benchmarks/bench_unet.py                      # all available devices, full settings
    python benchmarks/bench_unet.py --device cpu --steps 4 --warmup 1 --infer-runs 10 --infer-runs-b32 2
    python benchmarks/bench_unet.py --quick              # smoke run: tiny model, a few steps

See benchmarks/README.md for the differences between the two networks.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import monai
import torch
from monai.networks.nets import UNet as MonaiUNet
from tqdm.auto import tqdm

from medseg.losses import build_loss
from medseg.metrics import count_parameters, time_inference
from medseg.models import build_model
from medseg.models.blocks import stage_channels

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
IN_CHANNELS = 1
NUM_CLASSES = 4
INFER_BATCH = 32  # the "b32" of infer_images_per_s_b32
LR = 1e-3  # medseg's default Adam learning rate (speed does not depend on it)
MODELS = ("medseg", "monai")
MODEL_NAMES = {"medseg": "medseg.UNet", "monai": "monai.UNet"}

# Per-device defaults; an explicit option wins over --quick, which wins over these.
DEFAULTS = {
    # CPU: a U-Net step at batch 8 takes seconds there, so few steps already time tens of seconds.
    "cpu": {
        "batch_size": 8,
        "warmup": 1,
        "steps": 5,
        "infer_warmup": 2,
        "infer_runs": 10,
        "infer_warmup_b32": 1,
        "infer_runs_b32": 3,
    },
    "cuda": {
        "batch_size": 32,
        "warmup": 10,
        "steps": 50,
        "infer_warmup": 10,
        "infer_runs": 100,
        "infer_warmup_b32": 5,
        "infer_runs_b32": 30,
    },
}
QUICK = {
    "size": 64,
    "base_channels": 8,
    "batch_size": 2,
    "warmup": 1,
    "steps": 2,
    "infer_warmup": 1,
    "infer_runs": 3,
    "infer_warmup_b32": 1,
    "infer_runs_b32": 1,
}
PER_DEVICE_KEYS = ("batch_size", "warmup", "steps", "infer_warmup", "infer_runs", "infer_warmup_b32", "infer_runs_b32")


# -- set-up ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " Defaults in [brackets].")
    p.add_argument(
        "--device",
        default="all",
        help="comma-separated devices (cpu, cuda, cuda:N) or 'all' = cpu plus cuda when available [all]",
    )
    p.add_argument("--models", default="medseg,monai", help="comma-separated subset of medseg, monai [both]")
    p.add_argument("--depth", type=int, default=4, help="number of poolings / stride-2 levels [4]")
    p.add_argument("--base-channels", type=int, default=None, help="width of the first stage [64; --quick 8]")
    p.add_argument("--size", type=int, default=None, help="image side in pixels [128; --quick 64]")
    p.add_argument("--batch-size", type=int, default=None, help="training batch [cpu 8, cuda 32; --quick 2]")
    p.add_argument("--warmup", type=int, default=None, help="untimed training steps [cpu 1, cuda 10; --quick 1]")
    p.add_argument("--steps", type=int, default=None, help="timed training steps [cpu 5, cuda 50; --quick 2]")
    p.add_argument("--infer-warmup", type=int, default=None, help="untimed forward passes [cpu 2, cuda 10; --quick 1]")
    p.add_argument(
        "--infer-runs",
        type=int,
        default=None,
        help="timed batch-1 forward passes, median taken [cpu 10, cuda 100; --quick 3]",
    )
    p.add_argument(
        "--infer-warmup-b32",
        type=int,
        default=None,
        help=f"untimed batch-{INFER_BATCH} forward passes [cpu 1, cuda 5; --quick 1]",
    )
    p.add_argument(
        "--infer-runs-b32",
        type=int,
        default=None,
        help=f"timed batch-{INFER_BATCH} forward passes, median taken [cpu 3, cuda 30; --quick 1]",
    )
    p.add_argument(
        "--amp",
        choices=("both", "on", "off"),
        default="both",
        help="CUDA only: autocast bf16 (on), fp32 (off) or both [both]; the CPU always runs fp32",
    )
    p.add_argument("--no-channels-last", action="store_true", help="CUDA only: keep NCHW (medseg trains channels-last)")
    p.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="set torch.backends.cudnn.benchmark (medseg's trainer leaves it off)",
    )
    p.add_argument("--seed", type=int, default=0, help="model initialisation and random batch [0]")
    p.add_argument(
        "--out",
        default=None,
        help="JSON result file [benchmarks/results/bench_unet_<device>.json, <device> = the devices "
        "joined by '_'; --quick adds '_quick']",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: tiny model and image, a few steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for name in ("size", "base_channels"):
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else {"size": 128, "base_channels": 64}[name])
    if args.depth < 1 or args.size < 1 or args.base_channels < 1:
        p.error("--depth, --size and --base-channels must be >= 1")
    if args.size % 2**args.depth:
        p.error(f"--size must be a multiple of 2**depth = {2**args.depth} (MONAI's UNet does not pad)")
    for name in PER_DEVICE_KEYS:
        value = getattr(args, name)
        if value is not None and value < (0 if "warmup" in name else 1):
            p.error(f"--{name.replace('_', '-')} is too small: {value}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models or any(m not in MODELS for m in args.models):
        p.error(f"--models takes a comma-separated subset of {', '.join(MODELS)}")
    try:
        args.devices = resolve_devices(args.device)
    except ValueError as exc:
        p.error(str(exc))
    return args


def resolve_devices(spec: str) -> list[torch.device]:
    if spec.strip() in ("all", "auto", ""):
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    devices = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        dev = torch.device(item)
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"unsupported device {item!r}; use cpu, cuda or cuda:N")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {item} asked for, but torch {torch.__version__} sees no CUDA device")
        if dev not in devices:
            devices.append(dev)
    if not devices:
        raise ValueError("--device names no device")
    return devices


def device_settings(args: argparse.Namespace, device: torch.device) -> dict:
    """The per-device counts: explicit option > --quick > the device's default."""
    out = {}
    for key in PER_DEVICE_KEYS:
        value = getattr(args, key)
        if value is None:
            value = QUICK[key] if args.quick else DEFAULTS[device.type][key]
        out[key] = int(value)
    return out


def amp_variants(args: argparse.Namespace, device: torch.device) -> list[torch.dtype | None]:
    """Autocast dtypes to measure: on CUDA bf16 (fp16 where unsupported), like medseg's trainer, and/or None."""
    if device.type != "cuda" or args.amp == "off":
        return [None]
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return [dtype] if args.amp == "on" else [dtype, None]


def default_out(args: argparse.Namespace) -> Path:
    tag = "_".join(str(d).replace(":", "") for d in args.devices)
    return BENCH_DIR / "results" / f"bench_unet_{tag}{'_quick' if args.quick else ''}.json"


# -- the two networks --------------------------------------------------------------------------------------
def build_net(which: str, depth: int, base_channels: int) -> torch.nn.Module:
    channels = stage_channels(base_channels, depth)  # medseg's widths: base·2^i, e.g. 64 … 1024
    if which == "medseg":
        return build_model(
            "unet",
            in_channels=IN_CHANNELS,
            out_channels=NUM_CLASSES,
            spatial_dims=2,
            depth=depth,
            base_channels=base_channels,
            norm="batch",
            act="relu",
        )
    return MonaiUNet(
        spatial_dims=2,
        in_channels=IN_CHANNELS,
        out_channels=NUM_CLASSES,
        channels=channels,
        strides=(2,) * depth,
        num_res_units=0,
        norm="batch",
        act="relu",
    )


def forward_gflop(which: str, depth: int, base_channels: int, size: int) -> float | None:
    """Forward FLOPs per image (a multiply-add counts 2), counted on meta tensors: no compute, any host."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.device("meta"):
            model = build_net(which, depth, base_channels).eval()
            x = torch.randn(1, IN_CHANNELS, size, size)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        return counter.get_total_flops() / 1e9
    except Exception:  # an informative extra: never fail the benchmark over it
        return None


# -- measurements ------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def bench_train(
    model: torch.nn.Module,
    device: torch.device,
    *,
    batch_size: int,
    size: int,
    warmup: int,
    steps: int,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    seed: int,
    progress: bool,
    desc: str,
) -> dict:
    """Adam + cross-entropy steps on one fixed random batch, the step written as ``Trainer.train_step``."""
    model.train()
    loss_fn = build_loss("ce").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn((batch_size, IN_CHANNELS, size, size), generator=gen).to(device)
    label = torch.randint(0, NUM_CLASSES, (batch_size, size, size), generator=gen).to(device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            logits = model(image)
        loss = loss_fn(logits, label)  # float32, outside autocast (medseg's losses); reads the value back
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in tqdm(range(warmup), desc=f"{desc} train warmup", leave=False, disable=not progress):
        step()
    sync(device)
    loss = None
    step_ms: list[float] = []
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc=f"{desc} train", leave=False, disable=not progress, unit="step"):
        t0 = time.perf_counter()
        loss = step()  # no sync of its own: medseg's loss reads its value back once per step, as in training
        step_ms.append(1000.0 * (time.perf_counter() - t0))
    sync(device)
    elapsed = time.perf_counter() - start
    final_loss = float(loss)
    out = {
        "train_images_per_s": batch_size * steps / elapsed,
        "train_ms_per_step": 1000.0 * elapsed / steps,
        "train_ms_per_step_median": statistics.median(step_ms),
        "train_final_loss": final_loss if math.isfinite(final_loss) else None,
        "train_loss_finite": math.isfinite(final_loss),
    }
    if cuda:
        out["train_peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out  # the optimizer state, scaler and batch are freed here, before the next measurement


def bench_infer(
    model: torch.nn.Module,
    device: torch.device,
    *,
    size: int,
    amp_dtype: torch.dtype | None,
    warmup: int,
    runs: int,
    batch_size: int,
) -> dict:
    """``medseg.metrics.time_inference`` (eval mode, inference_mode, CUDA-synchronised), under autocast."""
    with autocast(device, amp_dtype):
        return time_inference(
            model, (IN_CHANNELS, size, size), device=device, warmup=warmup, runs=runs, batch_size=batch_size
        )


def measure(
    which: str, device: torch.device, amp_dtype: torch.dtype | None, args: argparse.Namespace, dev_set: dict, bar
) -> dict:
    torch.manual_seed(args.seed)
    model = build_net(which, args.depth, args.base_channels)
    row = {
        "model": MODEL_NAMES[which],
        "device": str(device),
        "params": count_parameters(model),
        "fwd_gflop_per_image": args.gflop[which],
        "train_images_per_s": None,
        "infer_ms_per_image_b1": None,
        "infer_images_per_s_b32": None,
        "amp": amp_dtype is not None,
        "amp_dtype": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
        "channels_last": device.type == "cuda" and not args.no_channels_last,
        "batch_size": dev_set["batch_size"],
    }
    desc = f"{row['model']} {device}{' ' + row['amp_dtype'] if row['amp'] else ''}"
    progress = not args.no_progress
    try:
        model = model.to(device)
        if row["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        bar.set_postfix_str(f"{desc}: training")
        row.update(
            bench_train(
                model,
                device,
                batch_size=dev_set["batch_size"],
                size=args.size,
                warmup=dev_set["warmup"],
                steps=dev_set["steps"],
                amp_dtype=amp_dtype,
                channels_last=row["channels_last"],
                seed=args.seed,
                progress=progress,
                desc=desc,
            )
        )
        bar.set_postfix_str(f"{desc}: inference b1")
        b1 = bench_infer(
            model,
            device,
            size=args.size,
            amp_dtype=amp_dtype,
            warmup=dev_set["infer_warmup"],
            runs=dev_set["infer_runs"],
            batch_size=1,
        )
        bar.set_postfix_str(f"{desc}: inference b{INFER_BATCH}")
        b32 = bench_infer(
            model,
            device,
            size=args.size,
            amp_dtype=amp_dtype,
            warmup=dev_set["infer_warmup_b32"],
            runs=dev_set["infer_runs_b32"],
            batch_size=INFER_BATCH,
        )
        row.update(
            {
                "infer_ms_per_image_b1": b1["ms_per_image_median"],
                "infer_ms_per_image_b1_mean": b1["ms_per_image_mean"],
                "infer_images_per_s_b1": b1["images_per_s"],
                "infer_ms_per_image_b32": b32["ms_per_image_median"],
                "infer_images_per_s_b32": b32["images_per_s"],
            }
        )
    except torch.cuda.OutOfMemoryError as exc:  # record and go on with the next configuration
        row["error"] = f"CUDA out of memory: {str(exc).splitlines()[0]}"
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


# -- provenance and output ---------------------------------------------------------------------------------
def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_state() -> dict:
    def git(*cmd: str) -> str | None:
        try:
            res = subprocess.run(["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def host_info(devices: list[torch.device]) -> dict:
    cuda_dev = next((d for d in devices if d.type == "cuda"), None)
    if cuda_dev is None and torch.cuda.is_available():
        cuda_dev = torch.device("cuda")
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        import medseg

        medseg_version = getattr(medseg, "__version__", None)
    except Exception:  # pragma: no cover - medseg is imported above already
        medseg_version = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "medseg": medseg_version,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_device": torch.cuda.get_device_name(cuda_dev) if cuda_dev is not None else None,
        "git": git_state(),
        "loadavg_at_start": load_average(),
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load: other processes on the machine slow CPU timings (see the README)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def write_json_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def print_table(results: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(v, fmt):
        return "—" if v is None else format(v, fmt)

    console = Console()
    if not console.is_terminal:  # a log file: don't squeeze the table into 80 columns
        console = Console(width=max(console.width, 120))
    table = Table(title=title)
    for col, justify in (
        ("model", "left"),
        ("device", "left"),
        ("amp", "left"),
        ("params", "right"),
        ("GFLOP/img", "right"),
        ("batch", "right"),
        ("train img/s", "right"),
        ("infer ms/img b1", "right"),
        (f"infer img/s b{INFER_BATCH}", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)
    for r in results:
        table.add_row(
            r["model"],
            r["device"],
            r["amp_dtype"] or "off",
            f"{r['params'] / 1e6:.2f} M",
            num(r.get("fwd_gflop_per_image"), ".2f"),
            str(r["batch_size"]),
            num(r["train_images_per_s"], ".2f"),
            num(r["infer_ms_per_image_b1"], ".2f"),
            num(r["infer_images_per_s_b32"], ".2f"),
        )
    console.print(table)
    for r in results:
        if r.get("error"):
            Console(stderr=True).print(f"[red]{r['model']} {r['device']} amp={r['amp']}: {r['error']}[/red]")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out) if args.out else default_out(args)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    per_device = {str(d): device_settings(args, d) for d in args.devices}
    args.gflop = {m: forward_gflop(m, args.depth, args.base_channels, args.size) for m in args.models}
    jobs = [(d, amp, m) for d in args.devices for amp in amp_variants(args, d) for m in args.models]
    report = {
        "benchmark": "unet_vs_monai",
        "date": _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "host": host_info(args.devices),
        "settings": {
            "devices": [str(d) for d in args.devices],
            "models": [MODEL_NAMES[m] for m in args.models],
            "depth": args.depth,
            "base_channels": args.base_channels,
            "channels": stage_channels(args.base_channels, args.depth),
            "monai_strides": [2] * args.depth,
            "size": [args.size, args.size],
            "in_channels": IN_CHANNELS,
            "num_classes": NUM_CLASSES,
            "per_device": per_device,
            "infer_batch": INFER_BATCH,
            "optimizer": f"Adam(lr={LR})",
            "loss": "medseg build_loss('ce')",
            "data": "one fixed random batch: randn images, uniform random labels",
            "amp": args.amp,
            "amp_note": "CUDA only; bf16 autocast (fp16 + GradScaler without bf16 support), as medseg's trainer",
            "channels_last_cuda": not args.no_channels_last,
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "matmul_precision": torch.get_float32_matmul_precision(),
            "quick": args.quick,
            "seed": args.seed,
        },
        "results": [],
        "complete": False,
    }
    print(f"bench_unet: {len(jobs)} configurations on {', '.join(map(str, args.devices))}; results → {out}", flush=True)
    bar = tqdm(jobs, desc="bench_unet", unit="config", disable=args.no_progress)
    for device, amp_dtype, which in bar:
        row = measure(which, device, amp_dtype, args, per_device[str(device)], bar)
        report["results"].append(row)
        write_json_atomic(report, out)
    bar.close()
    report["complete"] = True
    report["host"]["loadavg_at_end"] = load_average()
    write_json_atomic(report, out)
    print_table(
        report["results"],
        f"U-Net vs MONAI UNet, depth {args.depth}, widths "
        f"{stage_channels(args.base_channels, args.depth)}, {args.size}×{args.size}",
    )
    print(f"wrote {out}")
    return 1 if any(r.get("error") for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
