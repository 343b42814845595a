"""Karyotyping on the CPU, REAL data: the class (1-22, X, Y) of every isolated M-FISH chromosome
from its DAPI cut-out, per-class accuracy on the held-out slides.

    OMP_NUM_THREADS=1 python benchmarks/bench_mfish_karyotype.py [--steps 1800] [--time-limit 37]
        [--work /tmp/bench_mfish_karyotype] [--out benchmarks/results/mfish_karyotype_cpu.json]
        [--device cpu|cuda] [--set KEY=VALUE ...] [--mfish ../shared/data/mfish]

1. ``medseg train configs/mfish/karyotype_unet.yaml --fold 0`` (data ``mfish:karyotype``, built on first use under
   ``$MEDSEG_HOME/mfish``; the config's CPU-sized U-Net, 128 x 128 cut-outs) for ``--steps`` optimizer steps or
   ``--time-limit`` minutes, whichever comes first; split by slide, the test slides those of
   ``medseg data mfish-pairs``.
   With ``--folds K``: folds 0..K-1 at once (``medseg cv --parallel K``, e.g. two one-thread folds on two cores),
   evaluated as their ensemble.
2. ``medseg evaluate`` on the held-out test chromosomes with the soft vote (the default) and with the majority
   vote.

Torch runs on one thread (other jobs share the machine). Writes one JSON: device, date, command, data (REAL),
held-out slides, per-class accuracy and counts, overall / balanced accuracy, training steps and time. Derived files
stay in ``--work`` and ``$MEDSEG_HOME`` with the set's licence notice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MFISH = ROOT.parent / "shared" / "data" / "mfish"
CONFIG = "configs/mfish/karyotype_unet.yaml"


def run(cmd: list, log: Path, env: dict) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
    return round(time.perf_counter() - t0, 1)


def training_slides_accuracy(run_dir: Path, h5: Path, held_out: list[str], n: int = 480, device: str = "cpu") -> dict:
    """Soft-vote accuracy of the trained model on ``n`` random chromosomes of the TRAINING slides (seen in training):
    tells under-fitting (near chance here too) from over-fitting (high here, low on the test slides)."""
    import numpy as np

    from medseg.data.mfish_karyotype import KARYOTYPE_CLASSES
    from medseg.data.pommier import read_groups, read_pommier_h5
    from medseg.inference.predictor import Predictor
    from medseg.metrics.karyotype import ChromosomeClassAccuracy

    images, labels, _ = read_pommier_h5(h5, num_classes=len(KARYOTYPE_CLASSES))
    groups = read_groups(h5, len(images))
    train = np.array([i for i, g in enumerate(groups) if g not in set(held_out)])
    idx = np.random.default_rng(0).choice(train, min(n, len(train)), replace=False)
    predictor = Predictor.from_path(run_dir, device=device)
    metric = ChromosomeClassAccuracy(KARYOTYPE_CLASSES)
    for start in range(0, len(idx), 32):
        j = idx[start : start + 32]
        metric.update(predictor.predict_proba(images[j].astype(np.float32) / 255.0), labels[j])
    a = metric.aggregate()
    return {
        "n": a["n"],
        "accuracy": a["accuracy"],
        "balanced_accuracy": a["balanced_accuracy"],
        "what": "soft vote on random chromosomes of the training slides (seen in training): near chance = "
        "under-fitting, not over-fitting",
    }


def _compact(result: dict | None) -> dict | None:
    """A karyotype comparison without its per-chromosome lists (the report has them)."""
    if not result:
        return None
    out = {k: v for k, v in result.items() if k not in ("cells", "predicted_with")}
    out["flagged_cells"] = [
        {"cell": c["cell"], "reasons": c["reasons"]} for c in result.get("cells", []) if c["flagged"]
    ]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config",
        default=CONFIG,
        help="the karyotype config (karyotype_unet.yaml: per-pixel U-Net; "
        "karyotype_classifier.yaml: chromosome classifier)",
    )
    ap.add_argument("--steps", type=int, default=1800, help="optimizer steps (batch 16)")
    ap.add_argument("--time-limit", type=float, default=37.0, help="training wall-clock budget, minutes")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_mfish_karyotype"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mfish_karyotype_cpu.json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 when other jobs share the machine)")
    ap.add_argument(
        "--folds",
        type=int,
        default=1,
        help="train folds 0..K-1 at once (medseg cv --parallel K: the cores shared among them) and evaluate their "
        "ensemble (mean probability); 1: fold 0 alone (medseg train)",
    )
    ap.add_argument("--device", default="cpu", help="where to train and evaluate: cpu, cuda, cuda:1")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further config override for the training, e.g. model.base_channels=64 (repeatable)",
    )
    ap.add_argument("--mfish", type=Path, default=MFISH, help="the M-FISH folder")
    return ap.parse_args(argv)


def _json_or(path: Path, default):
    return json.loads(path.read_text()) if path.is_file() else default


def payload_of(
    args: argparse.Namespace,
    argv: list[str] | None,
    threads: str,
    mfish: Path,
    work: Path,
    cfg: dict,
    times: dict,
    results: dict,
    fold: dict,
    history: list,
    record: dict,
    seen: dict | None,
) -> dict:
    """The benchmark's JSON: what ran where, the set, the model and its training, and both votes' scores."""
    import torch
    from record_run import device_name

    from medseg.evaluation.karyotype_cells import confused_pairs

    soft = results["soft"]["metrics"]["karyotype"]
    return {
        "benchmark": "bench_mfish_karyotype",
        "date": dt.date.today().isoformat(),
        "device": f"{device_name(args.device)}, torch {torch.__version__}"
        + (f", {max(int(args.threads), 1)} thread(s)" if args.device == "cpu" else ""),
        "command": " ".join(
            [
                f"OMP_NUM_THREADS={threads}",
                "python",
                "benchmarks/bench_mfish_karyotype.py",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "data": "REAL M-FISH",
        "data_detail": f"isolated chromosomes of the labelled metaphases of {mfish} ({cfg['data']['path']}: "
        f"{record.get('image')}; canvas {record.get('canvas')}; {record.get('n_images')} chromosomes, "
        f"{record.get('n_train')} on training slides, {record.get('n_test')} on the held-out slides)",
        "held_out_slides": record.get("held_out_slides"),
        "models": (
            "one: fold 0"
            if args.folds <= 1
            else f"the ensemble (mean probability) of folds 0-{args.folds - 1}, trained at once on the cores "
            "(medseg cv --parallel); train.* and training_slides_check: fold 0's"
        ),
        "set_left_out": record.get("left_out"),
        "model": {
            "config": args.config,
            **cfg["model"],
            "batch_size": cfg["train"]["batch_size"],
            "overrides": args.sets,
            "loss": (
                "cross-entropy per chromosome (the model's own)"
                if cfg["model"]["name"] == "chromosome_classifier"
                else "per-pixel cross-entropy"
            ),
            "augment": cfg.get("augment"),
            "in_model_augment": bool(cfg["model"].get("augment")),
        },
        "train": {
            "steps_budget": args.steps,
            "time_limit_minutes": args.time_limit,
            "epochs_run": len(history),
            "steps_run": fold.get("steps", history[-1].get("steps") if history else None),
            "stopped_by_time_limit": fold.get("stopped_by_time_limit"),
            "best_epoch": fold.get("best_epoch"),
            "train_time_s": times.get("train_s", times.get("train_epochs_s")),
            "last_train_loss": history[-1].get("train_loss") if history else None,
            "last_val_loss": history[-1].get("val_loss") if history else None,
        },
        "times_s": times,
        "test": {"n": soft["n"], "n_per_class": {k: v["n"] for k, v in soft["per_class"].items()}},
        "soft_vote": {
            "accuracy": soft["accuracy"],
            "balanced_accuracy": soft["balanced_accuracy"],
            "per_class_accuracy": {k: v["accuracy"] for k, v in soft["per_class"].items()},
            "mean_confidence_correct": soft["mean_confidence_correct"],
            "mean_confidence_wrong": soft["mean_confidence_wrong"],
            "confusion_matrix": soft["confusion_matrix"],
            "class_names": soft["class_names"],
        },
        "majority_vote": {k: results["majority"]["metrics"]["karyotype"][k] for k in ("accuracy", "balanced_accuracy")}
        | {
            "per_class_accuracy": {
                k: v["accuracy"] for k, v in results["majority"]["metrics"]["karyotype"]["per_class"].items()
            }
        },
        "training_slides_check": seen,
        # medseg.evaluation.karyotype_cells: the classical floor on the same chromosomes, and per-cell decisions
        "baseline": _compact(soft.get("baseline")),
        "per_cell_assignment": _compact(soft.get("learned")),
        "combined_with_baseline": _compact(soft.get("combined")),
        "most_confused_pairs": confused_pairs(soft["confusion_matrix"], soft["class_names"]),
        "pixel_mean": results["soft"]["metrics"].get("mean"),
        "report": str(work / "evaluation_soft" / "report.md"),
        "licence": "derived from the M-FISH Image Set #1; notice: ../shared/data/mfish/README.TXT",
    }


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    mfish = args.mfish.resolve()
    if not mfish.is_dir():
        raise SystemExit(f"the real M-FISH set is not here ({mfish}); this benchmark needs it")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mfish / "README.TXT", work / "README.TXT")  # the set's licence notice, with every derived file
    log = work / "log.txt"
    threads = str(max(int(args.threads), 1))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, MEDSEG_THREADS=threads)
    env.setdefault("MEDSEG_HOME", str(work / "home"))
    medseg = [sys.executable, "-m", "medseg"]
    runs = work / "runs"
    import yaml

    cfg = yaml.safe_load((ROOT / args.config).read_text())
    run_dir = runs / cfg["name"]
    times: dict[str, float] = {}
    folds = max(int(args.folds), 1)
    command = (
        ["train", args.config, "--fold", "0"]
        if folds == 1
        else ["cv", args.config, "--folds", ",".join(map(str, range(folds))), "--parallel", str(folds), "--no-evaluate"]
    )
    if not all((run_dir / f"fold_{k}" / "model.json").is_file() for k in range(folds)):
        times["train_s"] = run(
            medseg
            + [
                *command,
                "--device",
                args.device,
                "--set",
                f"data.mfish_source={mfish}",
                "--set",
                f"output.root={runs}",
                "--set",
                f"train.iterations={args.steps}",
                "--set",
                f"train.time_limit_minutes={args.time_limit}",
                *[x for kv in args.sets for x in ("--set", kv)],
            ],
            log,
            env,
        )
        (work / "train_s.txt").write_text(f"{times['train_s']}\n")
    elif (work / "train_s.txt").is_file():  # trained by an earlier call of this script: its wall time
        times["train_s"] = float((work / "train_s.txt").read_text())
    results = {}
    for vote in ("soft", "majority"):
        out = work / f"evaluation_{vote}"
        times[f"evaluate_{vote}_s"] = run(
            medseg + ["evaluate", run_dir, "--device", args.device, "-o", out, "--karyotype-vote", vote], log, env
        )
        results[vote] = json.loads((out / "metrics.json").read_text())
    soft = results["soft"]["metrics"]["karyotype"]
    fold = _json_or(run_dir / "fold_0" / "summary.json", {})
    history = _json_or(run_dir / "fold_0" / "history.json", [])
    trained_on = json.loads((run_dir / "fold_0" / "model.json").read_text()).get("data", {}).get("source")
    built = Path(trained_on).with_suffix(".json") if trained_on else None  # the set the run trained on
    built = built if built is not None and built.is_file() else None
    record = json.loads(built.read_text()) if built else {}
    if "train_s" not in times and history:  # trained by an earlier call: the epochs' own times
        times["train_epochs_s"] = round(sum(float(r.get("time_s") or 0) for r in history), 1)
    seen = (
        training_slides_accuracy(
            run_dir, built.with_suffix(".h5"), record.get("held_out_slides") or [], device=args.device
        )
        if built
        else None
    )
    payload = payload_of(args, argv, threads, mfish, work, cfg, times, results, fold, history, record, seen)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(
        f"soft vote: accuracy {soft['accuracy']:.3f}, balanced {soft['balanced_accuracy']:.3f} on {soft['n']} test "
        f"chromosomes of {', '.join(record.get('held_out_slides') or [])}; majority: "
        f"{payload['majority_vote']['accuracy']:.3f} → {args.out}"
    )
    return args.out


if __name__ == "__main__":
    main()
