"""Record an evaluated medseg run as a benchmark result: benchmarks/results/<name>.json.

    python benchmarks/record_run.py RUN_DIR [--out benchmarks/results/NAME.json] [--command "..."]

Reads RUN_DIR/evaluation/metrics.json (written by `medseg evaluate` / `medseg cv`) and RUN_DIR/data.json,
and writes the headline numbers (percent) with the device, date, command and the papers' U-Net rows, so a
reader sees at once what was measured, where, and how to rerun it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def device_name(device: str | None = None) -> str:
    """What a benchmark ran on, for its record: the GPU's name when ``device`` is CUDA (or None and torch sees a
    GPU), else the CPU's model and cores."""
    try:
        import torch

        if (device is None or str(device).startswith("cuda") or device == "auto") and torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device if str(device).startswith("cuda") else "cuda"))
    except ImportError:
        return "unknown"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--command", default=None, help="the command that produced the run (for the record)")
    ap.add_argument("--device", default=None, help="device the run trained on (default: read from torch)")
    args = ap.parse_args(argv)

    payload = json.loads((args.run / "evaluation" / "metrics.json").read_text())
    data = json.loads((args.run / "data.json").read_text()) if (args.run / "data.json").is_file() else {}
    m = payload["metrics"]
    pc = m["per_class"]
    pct = lambda v: None if v is None else round(100.0 * float(v), 3)  # noqa: E731
    history = {}
    for fold in sorted(args.run.glob("fold_*")):
        h = fold / "summary.json"
        if h.is_file():
            history[fold.name] = json.loads(h.read_text())
    if args.device is None:
        args.device = device_name()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    result = {
        "benchmark": "segmentation_run",
        "run": str(args.run),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "command": args.command,
        "git_commit": commit,
        "data": {
            "source": data.get("data"),
            "synthesized": data.get("synthesized"),
            "n_images": data.get("n_images"),
            "n_train": data.get("n_train"),
            "n_val": data.get("n_val"),
            "n_test": data.get("n_test"),
            "note": payload.get("data_note"),
        },
        "model": payload.get("extra", {}).get("model"),
        "overlap_iou": pct(pc["overlap"]["iou"]) if "overlap" in pc else None,
        "alpha_iou_non_overlap": pct(pc.get("chromosome_alpha", {}).get("iou")),
        "beta_iou_non_overlap": pct(pc.get("chromosome_beta", {}).get("iou")),
        "alpha_iou_whole": pct(pc.get("chromosome_alpha_whole", {}).get("iou")),
        "beta_iou_whole": pct(pc.get("chromosome_beta_whole", {}).get("iou")),
        "foreground_accuracy": pct(m.get("foreground_accuracy")),
        "derived_accuracy": pct(m.get("derived_accuracy")),
        "pixel_accuracy": pct(m.get("pixel_accuracy")),
        "mean_dice": pct(m.get("mean", {}).get("dice")),  # the CTV thesis' Dice ratio (mean over structures)
        "mean_iou": pct(m.get("mean", {}).get("iou")),
        "per_class": {
            k: {kk: v.get(kk) for kk in ("iou", "dice", "precision", "recall", "hausdorff")} for k, v in pc.items()
        },
        "efficiency": payload.get("efficiency"),
        "training": history,
        "paper_rows": [
            {
                k: r.get(k)
                for k in (
                    "source",
                    "method",
                    "overlap_iou",
                    "alpha_iou",
                    "beta_iou",
                    "accuracy",
                    "dice",
                    "alpha_beta_definition",
                )
            }
            for r in payload.get("references", [])
        ],
    }
    out = args.out or Path("benchmarks/results") / f"{args.run.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(
        f"{out}: overlap IoU {result['overlap_iou']}  α {result['alpha_iou_whole']}  "
        f"β {result['beta_iou_whole']} (whole)  mean Dice {result['mean_dice']}"
    )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
