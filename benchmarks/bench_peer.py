"""Accuracy per CPU minute against a peer: medseg as planned vs a plain MONAI UNet loop, same wall time, same data.

    OMP_NUM_THREADS=1 python benchmarks/bench_peer.py [--minutes 1 3 6] [--datasets mfish ct]
        [--work /tmp/medseg_bench_peer] [--out benchmarks/results/peer_cpu.json] [--parallel 2]

Data (folders of images/ + masks/, the layout a user brings; both REAL):

* ``mfish`` — the 133 labelled M-FISH metaphases of ``../shared/data/mfish`` as background / chromosome /
  overlap (``medseg data mfish``), 517×645; test = every metaphase of a fixed fifth of the slides.
* ``ct`` — the TotalSegmentator example CT (``../shared/data/ct/totalsegmentator/example_ct_sm.nii.gz``,
  122×101×30, 3 mm; its labels are TotalSegmentator's predictions) as 2D axial slices, 8-bit in the abdominal
  window [-160, 240] HU, classes background / liver / spleen / stomach / colon (present on every slice);
  train = slices 0–19, test = slices 22–29 (two slices left out between them, so neighbours do not leak).

Methods, each trained for the same wall-clock budget on the same training images, without a validation set
(the last model is kept by both), on one torch thread, and scored on the same test images by medseg's metrics
without test-time augmentation:

1. ``medseg``: ``medseg plan DATA`` as is — no hand tuning — then ``medseg train`` with
   ``train.time_limit_minutes`` (the plan's poly schedule anneals by the limit, or by the plan's 2,000 steps when
   they come first: on the small CT set they do) and ``medseg evaluate``.
2. ``monai_loop``: a plain loop a user writes with MONAI (``bench_own_data.plain_loop``): MONAI UNet 16…256,
   2 residual units, random crops, batch 2, Adam 1e-3, DiceCE, sliding-window inference.
3. ``medseg_monai_net`` (``--methods``, a diagnosis): medseg's plan and trainer with the plain loop's network
   (``model.name: monai_unet``, the same 16…256 layout) — the recipe's share of a gap, apart from the network's.

Writes one JSON (device, date, command, per dataset × budget × method: steps, per-class Dice/IoU, mean
foreground Dice) and a figure of mean foreground Dice against minutes (``<out>.png``). Budgets × datasets run
``--parallel`` at a time, one thread each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_own_data import MONAI_CPU, SHARED, make_data, medseg_method, plain_loop  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CT_CLASSES = {"liver": 5, "spleen": 1, "stomach": 6, "colon": 20}  # TotalSegmentator "total" ids
CT_TRAIN, CT_TEST = range(0, 20), range(22, 30)
CLASSES = {"mfish": "background,chromosome,overlap", "ct": "background," + ",".join(CT_CLASSES)}
DATA = {
    "mfish": "REAL M-FISH metaphases (../shared/data/mfish), 3 classes",
    "ct": "REAL CT (TotalSegmentator example_ct_sm, labels = TotalSegmentator's predictions), 2D axial "
    "slices, 5 classes",
}


def make_ct(work: Path) -> tuple[Path, list[str]]:
    """The CT example as a 2D folder (8-bit abdominal window), and its test slice names."""
    import nibabel as nib
    from PIL import Image

    folder = work / "ct"
    if not (folder / "masks").is_dir():
        src = SHARED / "ct" / "totalsegmentator"
        ct = np.asarray(nib.load(src / "example_ct_sm.nii.gz").dataobj, np.float32)
        seg = np.asarray(nib.load(src / "example_seg.nii.gz").dataobj, np.int64)
        tmp = work / "ct.partial"
        (tmp / "images").mkdir(parents=True, exist_ok=True)
        (tmp / "masks").mkdir(exist_ok=True)
        grey = (np.clip((ct + 160.0) / 400.0, 0, 1) * 255).round().astype(np.uint8)
        label = np.zeros(seg.shape, np.uint8)
        for k, tid in enumerate(CT_CLASSES.values(), start=1):
            label[seg == tid] = k
        for z in (*CT_TRAIN, *CT_TEST):
            Image.fromarray(np.ascontiguousarray(grey[:, :, z].T)).save(tmp / "images" / f"slice_{z:02d}.png")
            Image.fromarray(np.ascontiguousarray(label[:, :, z].T)).save(tmp / "masks" / f"slice_{z:02d}.png")
        (tmp / "NOTICE.txt").write_text(
            "Derived from TotalSegmentator's example_ct_sm.nii.gz / example_seg.nii.gz "
            "(Apache-2.0, see ../shared/data/ct/totalsegmentator/LICENSE).\n"
        )
        tmp.rename(folder)
    return folder, [f"slice_{z:02d}" for z in CT_TEST]


def mean_dice(per_class: dict) -> float:
    return float(np.mean([v["dice"] for v in per_class.values()]))


def one(job: tuple[str, float, Path, tuple[str, ...]]) -> tuple[str, float, dict]:
    """The methods on one data set at one budget (runs in its own process, one thread)."""
    name, minutes, work, methods = job
    import torch

    torch.set_num_threads(1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDSEG_THREADS": "1", "MEDSEG_HOME": str(work / "home")}
    log = work / f"{name}_{minutes:g}min.log"
    folder, test = make_ct(work) if name == "ct" else make_data(name, work, env, log)
    split = work / f"{name}_split.yaml"
    split.write_text(json.dumps({"test": test}))
    runs = work / f"budget_{minutes:g}"
    runs.mkdir(parents=True, exist_ok=True)
    make = {
        "medseg": lambda: medseg_method(
            f"plan_{minutes:g}", folder, split, CLASSES[name], minutes, runs, env, log, None
        ),
        "monai_loop": lambda: plain_loop(folder, test, CLASSES[name].split(","), minutes),
        "medseg_monai_net": lambda: medseg_method(
            f"monai_{minutes:g}", folder, split, CLASSES[name], minutes, runs, env, log, MONAI_CPU
        ),
    }
    out = {m: make[m]() for m in methods}
    for r in out.values():
        r["mean_foreground_dice"] = mean_dice(r["per_class"])
    return name, minutes, out


def step_costs(repeats: int = 6) -> dict:
    """Milliseconds of one training step (forward, backward, Adam; median of ``repeats``, one thread) of the two
    networks on the patches each method trains on: what a minute of CPU buys in steps."""
    import time

    import torch
    from monai.networks.nets import UNet

    from medseg.models import build_model

    torch.set_num_threads(1)
    nets = {
        "medseg_unet_base8": build_model(
            "unet",
            in_channels=1,
            out_channels=5,
            depth=4,
            base_channels=8,
            max_channels=512,
            norm="instance",
            act="leakyrelu",
        ),
        "monai_unet_16_256": UNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=5,
            channels=MONAI_CPU["channels"],
            strides=MONAI_CPU["strides"],
            num_res_units=2,
        ),
    }
    out = {name: {"params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2)} for name, net in nets.items()}
    for shape in ((2, 1, 96, 112), (2, 1, 224, 256)):
        x = torch.randn(*shape)
        for name, net in nets.items():
            opt = torch.optim.Adam(net.parameters())
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                opt.zero_grad()
                net(x).mean().backward()
                opt.step()
                times.append(time.perf_counter() - t0)
            out[name]["x".join(map(str, shape))] = round(1000 * sorted(times)[len(times) // 2], 1)
    return out


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        budgets = results["datasets"][name]["budgets"]
        minutes = sorted(budgets, key=float)
        labels = {
            "medseg": "medseg (planned)",
            "monai_loop": "plain MONAI UNet loop",
            "medseg_monai_net": "medseg's plan, MONAI's UNet",
        }
        for method, style in (("medseg", "o-"), ("monai_loop", "s--"), ("medseg_monai_net", "^:")):
            if method in budgets[minutes[0]]:
                ax.plot(
                    [float(m) for m in minutes],
                    [100 * budgets[m][method]["mean_foreground_dice"] for m in minutes],
                    style,
                    label=labels[method],
                )
        ax.set_title(results["datasets"][name]["data"].split(" (")[0] + f" — {name}", fontsize=9)
        ax.set_xlabel("training wall time, minutes (1 CPU thread)")
        ax.set_ylabel("mean foreground Dice, % (test)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0, 6.0], help="training budgets")
    ap.add_argument("--datasets", nargs="+", default=["mfish", "ct"], choices=sorted(CLASSES))
    ap.add_argument("--work", type=Path, default=Path("/tmp/medseg_bench_peer"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "peer_cpu.json")
    ap.add_argument("--parallel", type=int, default=2, help="jobs (data set × budget) at a time, one thread each")
    ap.add_argument(
        "--methods", default="medseg,monai_loop", help="comma-separated: medseg, monai_loop, medseg_monai_net"
    )
    ap.add_argument(
        "--step-cost-only",
        action="store_true",
        help="only time one training step of each network (step_cost_ms) into --out, keeping the rest",
    )
    args = ap.parse_args(argv)
    if args.step_cost_only:
        results = json.loads(args.out.read_text()) if args.out.is_file() else {}
        results["step_cost_ms"] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": "python benchmarks/bench_peer.py --step-cost-only",
            **step_costs(),
        }
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results["step_cost_ms"], indent=1))
        return args.out
    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:  # made once, before the jobs share them
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDSEG_HOME": str(args.work / "home")}
        make_ct(args.work) if name == "ct" else make_data(name, args.work, env, args.work / "data.log")
    results = {
        "benchmark": "bench_peer",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_peer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), 1 torch "
        f"thread a job, {args.parallel} job(s) at a time",
        "datasets": {n: {"data": DATA[n], "budgets": {}} for n in args.datasets},
    }
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    jobs = [(n, m, args.work, methods) for m in sorted(args.minutes, reverse=True) for n in args.datasets]
    with ProcessPoolExecutor(max_workers=args.parallel) as pool:
        for name, minutes, out in pool.map(one, jobs):
            results["datasets"][name]["budgets"][f"{minutes:g}"] = out
            print(
                f"{name:6s} {minutes:4g} min  "
                + "  ".join(
                    f"{m}: {r['steps']} steps, Dice {100 * r['mean_foreground_dice']:.1f} %" for m, r in out.items()
                ),
                flush=True,
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    for entry in results["datasets"].values():
        b = entry["budgets"]
        if all("medseg" in r and "monai_loop" in r for r in b.values()):
            entry["medseg_ahead_at_every_budget"] = all(
                r["medseg"]["mean_foreground_dice"] > r["monai_loop"]["mean_foreground_dice"] for r in b.values()
            )
    results["step_cost_ms"] = step_costs()
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    figure(results, args.out.with_suffix(".png"))
    return args.out


if __name__ == "__main__":
    main()
