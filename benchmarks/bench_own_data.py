"""Own data, three ways, same wall-clock budget: `medseg plan` + `train` vs a MONAI UNet in medseg vs a plain
PyTorch loop.

    python benchmarks/bench_own_data.py [--minutes 3] [--datasets mfish synth]
        [--out benchmarks/results/own_data_cpu.json]

Data (each a folder of images/ + masks/, the layout a user brings):

* ``mfish`` — REAL: the 133 labelled M-FISH metaphases of ``../shared/data/mfish`` as background / chromosome /
  overlap (``medseg data mfish``), 517×645 (two 568×768); the test set is every metaphase of a fixed fifth of the
  slides (split by slide, never by image).
* ``synth`` — SYNTHESIZED: 400 overlapping chromosome pairs (94×93, 4 classes, ``medseg data synth``), the last
  fifth as test set.

Methods, each trained for the same ``--minutes`` of wall-clock time on the same training images (no validation
set: the last model is kept by all three) and scored on the same test images with medseg's metrics:

1. ``medseg_plan``: ``medseg plan DATA`` as is (its patch, network, normalisation, loss, schedule), then
   ``medseg train`` with ``train.time_limit_minutes`` and ``medseg evaluate``.
2. ``medseg_monai_unet``: the same plan with the network replaced by MONAI's UNet (``model.name: monai_unet``,
   channels 16…256 — MONAI's tutorial layout at half width for the CPU —, 2 residual units, instance norm).
3. ``plain_pytorch``: a hand-written loop — the MONAI UNet of 2, random crops (256² for the metaphases, 96²
   for the 94×93 pairs; MONAI RandSpatialCropd), batch 2, Adam 1e-3, DiceCE loss, images scaled by their dtype
   range, prediction by MONAI sliding-window inference; scored with medseg's SegmentationMetrics.

Writes one JSON with the device, date, command, budget, per-method training steps and per-class Dice/IoU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MONAI_CPU = {"name": "monai_unet", "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2}


def run(cmd: list[str], log: Path, env: dict) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=True)
    return time.perf_counter() - t0


def make_data(name: str, work: Path, env: dict, log: Path) -> tuple[Path, list[str]]:
    """The folder and its test names."""
    folder = work / name
    medseg = [sys.executable, "-m", "medseg"]
    if name == "mfish":
        if not (folder / "manifest.json").is_file():
            run(medseg + ["data", "mfish", str(SHARED / "mfish"), str(folder)], log, env)
        manifest = json.loads((folder / "manifest.json").read_text())
        slides = sorted(set(manifest["folder_of_image"].values()))
        test_slides = set(slides[::5])  # a fixed fifth of the slides
        test = sorted(n for n, s in manifest["folder_of_image"].items() if s in test_slides)
        return folder, test
    if name == "synth":
        if not (folder / "images").is_dir():
            h5 = work / "synth_pairs.h5"
            run(
                medseg + ["data", "synth", str(h5), "--n-pairs", "400", "--n-chromosomes", "12", "--seed", "7"],
                log,
                env,
            )
            run(medseg + ["data", "export", str(h5), str(folder)], log, env)
        names = sorted(p.stem for p in (folder / "images").glob("*.png"))
        return folder, names[int(0.8 * len(names)) :]
    raise SystemExit(f"unknown data set {name!r}")


def evaluate_medseg(run_dir: Path) -> dict:
    m = json.loads((run_dir / "evaluation" / "metrics.json").read_text())["metrics"]
    return {k: {"dice": v["dice"], "iou": v["iou"]} for k, v in m["per_class"].items() if "dice" in v}


def medseg_method(
    name: str,
    folder: Path,
    split: Path,
    classes: str,
    minutes: float,
    work: Path,
    env: dict,
    log: Path,
    model: dict | None,
) -> dict:
    medseg = [sys.executable, "-m", "medseg"]
    plan = work / f"{folder.name}_{name}.yaml"
    run(medseg + ["plan", str(folder), "-o", str(plan), "--classes", classes], log, env)
    sets = [
        "--set",
        f"splits.file={split}",
        "--set",
        "splits.val_fraction=0",
        "--set",
        f"name={folder.name}_{name}",
        "--set",
        f"output.root={work / 'runs'}",
        "--set",
        f"train.time_limit_minutes={minutes}",
        "--set",
        "evaluate.tta=false",
    ]  # all three are scored without test-time augmentation
    if model is not None:
        sets += ["--set", "model=" + json.dumps(model)]
    t_train = run(medseg + ["train", str(plan), *sets], log, env)
    run_dir = work / "runs" / f"{folder.name}_{name}"
    t_eval = run(medseg + ["evaluate", str(run_dir)], log, env)
    summary = json.loads((run_dir / "fold_0" / "summary.json").read_text())
    cfg_text = (run_dir / "fold_0" / "config.yaml").read_text()
    return {
        "train_wall_s": round(t_train, 1),
        "evaluate_wall_s": round(t_eval, 1),
        "steps": summary["steps"],
        "epochs": summary["epochs_run"],
        "per_class": evaluate_medseg(run_dir),
        "config": cfg_text,
    }


def plain_loop(folder: Path, test: list[str], class_names: list[str], minutes: float) -> dict:
    """A plain PyTorch loop a user might write with MONAI, on the same images and budget."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.transforms import RandSpatialCropd, SpatialPadd
    from PIL import Image

    from medseg.metrics import SegmentationMetrics

    torch.manual_seed(0)
    names = sorted(p.stem for p in (folder / "images").glob("*.png"))
    test_set = set(test)

    def load(stem):
        img = np.asarray(Image.open(folder / "images" / f"{stem}.png"), np.float32) / 255.0
        lab = np.asarray(Image.open(folder / "masks" / f"{stem}.png"), np.int64)
        return img[None], lab[None]

    train = [load(n) for n in names if n not in test_set]
    n_classes = len(class_names)
    crop = 256 if max(max(t[0].shape[1:]) for t in train) > 256 else 96
    pad = SpatialPadd(["image", "label"], spatial_size=(crop, crop))
    cropper = RandSpatialCropd(["image", "label"], roi_size=(crop, crop), random_size=False)
    cropper.set_random_state(0)
    net = UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=n_classes,
        channels=MONAI_CPU["channels"],
        strides=MONAI_CPU["strides"],
        num_res_units=2,
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rng = np.random.default_rng(0)
    deadline = time.perf_counter() + 60 * minutes
    steps, t0 = 0, time.perf_counter()
    net.train()
    while time.perf_counter() < deadline:
        batch = [cropper(pad({"image": train[i][0], "label": train[i][1]})) for i in rng.integers(0, len(train), 2)]
        x = torch.stack([torch.as_tensor(b["image"]) for b in batch])
        y = torch.stack([torch.as_tensor(b["label"]) for b in batch])
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        steps += 1
    t_train = time.perf_counter() - t0
    net.eval()
    metrics = SegmentationMetrics(class_names, mode="multiclass", hausdorff=False)
    t1 = time.perf_counter()
    with torch.inference_mode():
        for stem in test:
            img, lab = load(stem)
            logits = sliding_window_inference(
                torch.as_tensor(img)[None], (crop, crop), 2, net, overlap=0.5, mode="gaussian"
            )
            metrics.update(logits.argmax(1), torch.as_tensor(lab))
    agg = metrics.aggregate()["per_class"]
    return {
        "train_wall_s": round(t_train, 1),
        "evaluate_wall_s": round(time.perf_counter() - t1, 1),
        "steps": steps,
        "per_class": {k: {"dice": v["dice"], "iou": v["iou"]} for k, v in agg.items() if "dice" in v},
        "config": f"MONAI UNet {MONAI_CPU['channels']}, 2 residual units; random {crop}² crops, batch 2, Adam 1e-3, "
        f"DiceCE; sliding window {crop}², overlap 0.5, gaussian",
    }


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall-clock budget of each method")
    ap.add_argument("--datasets", nargs="+", default=["mfish", "synth"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/medseg_bench_own_data"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "own_data_cpu.json")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    threads = str(min(os.cpu_count() or 1, 2))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MEDSEG_HOME": str(args.work / "home")}
    log = args.work / "bench.log"
    import torch

    torch.set_num_threads(int(threads))
    classes = {"mfish": "background,chromosome,overlap", "synth": "background,chromosome_alpha,chromosome_beta,overlap"}
    results = {
        "issue": 12,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_own_data.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{threads} torch threads)",
        "minutes_per_method": args.minutes,
        "datasets": {},
    }
    for name in args.datasets:
        folder, test = make_data(name, args.work, env, log)
        split = args.work / f"{name}_split.yaml"
        split.write_text(json.dumps({"test": test}))
        entry = {
            "data": "REAL M-FISH metaphases (../shared/data/mfish), 3 classes"
            if name == "mfish"
            else "SYNTHESIZED overlapping chromosome pairs (medseg data synth), 4 classes",
            "n_test": len(test),
            "methods": {},
        }
        entry["methods"]["medseg_plan"] = medseg_method(
            "plan", folder, split, classes[name], args.minutes, args.work, env, log, None
        )
        entry["methods"]["medseg_monai_unet"] = medseg_method(
            "monai", folder, split, classes[name], args.minutes, args.work, env, log, MONAI_CPU
        )
        entry["methods"]["plain_pytorch"] = plain_loop(folder, test, classes[name].split(","), args.minutes)
        results["datasets"][name] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        for method, r in entry["methods"].items():
            dice = {k: round(100 * v["dice"], 1) for k, v in r["per_class"].items()}
            print(f"{name:6s} {method:18s} steps {r['steps']:5d}  Dice % {dice}", flush=True)
    return args.out


if __name__ == "__main__":
    main()
