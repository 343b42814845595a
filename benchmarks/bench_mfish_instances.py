"""Whole M-FISH metaphases → chromosome instances on the CPU, REAL data.

    OMP_NUM_THREADS=1 python benchmarks/bench_mfish_instances.py [--steps 300] [--pair-model RUN | --pair-steps 300]
        [--work /tmp/bench_mfish_instances] [--out benchmarks/results/mfish_instances_cpu.json]
        [--device cpu|cuda] [--time-limit MIN] [--batches-per-epoch N] [--set KEY=VALUE ...] [--limit N]
        [--mfish ../shared/data/mfish] [--config configs/mfish/metaphase_touching_unet.yaml] [--semantic-run RUN]

1. Semantic model (background / chromosome / overlap): ``medseg train configs/mfish/metaphase_unet.yaml`` for
   ``--steps`` optimizer steps (the config's CPU-sized U-Net, 256² patches, sliding-window validation), split by
   slide with the held-out slides of ``medseg data mfish-pairs``.
2. Pair model (0 bg, 1 A, 2 B, 3 overlap): ``--pair-model RUN``, or else ``medseg data mfish-pairs`` into the work
   folder and ``medseg train configs/chromosomes/demo.yaml --data pairs.h5`` (fold 0 of the pairs' split by
   slide: it never sees the held-out slides) for ``--pair-steps`` steps. The two trainings run side by side (two
   processes of one thread each).
3. ``medseg evaluate-metaphases`` on the held-out slides, with the pair model and without it (crossings kept
   whole), the classical baseline (``--baseline otsu``: Otsu + distance watershed, scored the same way), and
   ``medseg predict`` on one held-out metaphase. Per slide and per imaging system (A / P / V) in the JSON.

``--config`` picks the semantic model's config (``metaphase_touching_unet.yaml``: the contact class that parts
touching chromosomes); ``--semantic-run`` / ``--pair-model`` reuse trained runs instead of training.

Torch runs on one thread (other jobs share the machine). Writes one JSON: device, date, command, data (REAL), the
training steps and times, the pooled and per-metaphase numbers. Derived files stay in ``--work`` with the set's
licence notice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MFISH = ROOT.parent / "shared" / "data" / "mfish"


def run(cmd: list[str], log: Path, env: dict) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)
    return round(time.perf_counter() - t0, 1)


def start(cmd: list[str], log: Path, env: dict) -> tuple[subprocess.Popen, float, object]:
    """Like :func:`run`, without waiting (the two trainings run side by side, one thread each)."""
    f = log.open("a")
    f.write(f"$ {' '.join(map(str, cmd))}  (in the background)\n")
    f.flush()
    return (
        subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT),
        time.perf_counter(),
        f,
    )


def wait(job) -> float:
    proc, t0, f = job
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(map(str, proc.args))} failed (exit {proc.returncode}); see the log")
    f.close()
    return round(time.perf_counter() - t0, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="semantic model: optimizer steps")
    ap.add_argument("--pair-model", type=Path, default=None, help="a trained 4-class pair run (else one is trained)")
    ap.add_argument("--pair-steps", type=int, default=300, help="pair model: optimizer steps when it is trained here")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_mfish_instances"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mfish_instances_cpu.json")
    ap.add_argument("--device", default="cpu", help="where to train, evaluate and predict: cpu, cuda, cuda:1")
    ap.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="each training's wall-clock budget, minutes (train.time_limit_minutes; default none)",
    )
    ap.add_argument(
        "--batches-per-epoch",
        type=int,
        default=None,
        help="semantic model: at most N steps an epoch (default: the config's train.steps_per_epoch)",
    )
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further override for the semantic model, e.g. model.base_channels=32 (repeatable)",
    )
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N held-out metaphases")
    ap.add_argument("--mfish", type=Path, default=MFISH, help="the M-FISH folder")
    ap.add_argument("--config", default="configs/mfish/metaphase_unet.yaml", help="the semantic model's config")
    ap.add_argument("--semantic-run", type=Path, default=None, help="a trained semantic run (else one is trained)")
    return ap.parse_args(argv)


def train_models(
    args: argparse.Namespace, mfish: Path, work: Path, medseg: list, log: Path, env: dict, times: dict[str, float]
) -> tuple[Path, Path]:
    """The semantic and pair runs (``--semantic-run`` / ``--pair-model``, or trained here side by side; their
    times go into ``times``)."""
    runs = work / "runs"
    limit = ["--set", f"train.time_limit_minutes={args.time_limit}"] if args.time_limit else []
    device = ["--device", args.device]
    jobs: dict = {}
    # The semantic model first: it needs no pairs, so it trains while they are cut.
    sem_run = args.semantic_run or runs / f"mfish_{Path(args.config).stem}"
    if not (sem_run / "fold_0" / "model.json").is_file():
        jobs["train_semantic_s"] = start(
            medseg
            + [
                "train",
                args.config,
                "--fold",
                "0",
                *device,
                *limit,
                "--set",
                f"data.path={mfish}",
                "--set",
                f"output.root={runs}",
                "--set",
                f"train.iterations={args.steps}",
                *(["--set", f"train.max_batches_per_epoch={args.batches_per_epoch}"] if args.batches_per_epoch else []),
                *[x for kv in args.sets for x in ("--set", kv)],
            ],
            log,
            env,
        )
    pair_run = args.pair_model
    if pair_run is None:
        pairs = work / "pairs.h5"
        if not pairs.is_file():
            times["mfish_pairs_s"] = run(medseg + ["data", "mfish-pairs", mfish, "-o", pairs], log, env)
        pair_run = runs / "mfish_pairs_demo_unet"
        if not (pair_run / "fold_0" / "model.json").is_file():
            jobs["train_pair_s"] = start(
                medseg
                + [
                    "train",
                    "configs/chromosomes/demo.yaml",
                    "--fold",
                    "0",
                    "--data",
                    pairs,
                    *device,
                    *limit,
                    "--set",
                    f"splits.file={work / 'pairs.splits.json'}",
                    "--set",
                    "name=mfish_pairs_demo_unet",
                    "--set",
                    f"output.root={runs}",
                    "--set",
                    f"train.iterations={args.pair_steps}",
                    "--set",
                    "train.max_batches_per_epoch=100",
                    "--set",
                    "train.early_stopping.patience=100",
                ],
                log,
                env,
            )
    for key, job in jobs.items():
        times[key] = wait(job)
    return sem_run, pair_run


def evaluate(
    args: argparse.Namespace,
    mfish: Path,
    work: Path,
    medseg: list,
    log: Path,
    env: dict,
    times: dict[str, float],
    sem_run: Path,
    pair_run: Path,
) -> dict:
    """``medseg evaluate-metaphases`` with the pair model, without it (crossings split by their arms' directions,
    the default), with crossings kept whole, and the Otsu baseline (their metrics by name), and ``medseg
    predict`` on one held-out metaphase."""
    device = ["--device", args.device]
    results = {}
    for name, extra in (
        ("with_pair_model", [sem_run, "--pair-model", pair_run]),
        ("without_pair_model", [sem_run]),
        ("crossings_kept_whole", [sem_run, "--crossings", "whole"]),
        ("otsu_baseline", ["--baseline", "otsu"]),
    ):
        out = work / f"evaluation_{name}"
        times[f"evaluate_{name}_s"] = run(
            medseg
            + [
                "evaluate-metaphases",
                "--data",
                mfish,
                "-o",
                out,
                *device,
                *(["--limit", args.limit] if args.limit else []),
                *extra,
            ],
            log,
            env,
        )
        results[name] = json.loads((out / "metrics.json").read_text())
    test_slides = results["with_pair_model"]["slides"]
    image = next(iter(sorted(p for s in test_slides for p in mfish.glob(f"{s}__*/*K.tif"))), None)
    image = image.with_name(image.name[:-5] + "D.tif") if image is not None else None
    if image is not None:
        times["predict_one_s"] = run(
            medseg + ["predict", sem_run, image, "--pair-model", pair_run, "-o", work / "predictions", *device],
            log,
            env,
        )
    return results


def summary(m: dict) -> dict:
    keep = (
        "metaphase",
        "slide",
        "segment_s",
        "separate_s",
        "n_true",
        "n_pred",
        "tp",
        "fp",
        "fn",
        "precision",
        "recall",
        "f1",
        "split",
        "merge",
        "overlap_iou",
        "separation",
    )
    return {
        "pooled": m["pooled"],
        "separation": m["separation"],
        "per_slide": m["per_slide"],
        "per_system": m["per_system"],
        "debris_removed": m["debris_removed"],
        "seconds_per_metaphase": m["seconds_per_metaphase"],
        "per_metaphase": [{k: r[k] for k in keep} for r in m["per_metaphase"]],
        "near_duplicates": m.get("near_duplicates", []),
        "pooled_each_metaphase_once": m.get("pooled_each_metaphase_once"),
    }


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    mfish = args.mfish.resolve()
    if not mfish.is_dir():
        raise SystemExit(f"the real M-FISH set is not here ({mfish}); this benchmark needs it")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    import shutil

    shutil.copyfile(mfish / "README.TXT", work / "README.TXT")  # the set's licence notice, with every derived file
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MEDSEG_HOME=str(work / "home"))
    medseg = [sys.executable, "-m", "medseg"]
    times: dict[str, float] = {}
    sem_run, pair_run = train_models(args, mfish, work, medseg, log, env, times)
    results = evaluate(args, mfish, work, medseg, log, env, times, sem_run, pair_run)

    sem_summary = (
        json.loads((sem_run / "fold_0" / "summary.json").read_text())
        if (sem_run / "fold_0" / "summary.json").is_file()
        else {}
    )
    import torch
    from record_run import device_name

    payload = {
        "benchmark": "bench_mfish_instances",
        "date": dt.date.today().isoformat(),
        "device": f"{device_name(args.device)}, torch {torch.__version__}"
        + (", 1 thread" if args.device == "cpu" else ""),
        "command": " ".join(
            [
                "OMP_NUM_THREADS=1",
                "python",
                "benchmarks/bench_mfish_instances.py",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "data": f"REAL M-FISH metaphases ({mfish}); held-out slides {', '.join(results['with_pair_model']['slides'])} "
        f"({results['with_pair_model']['n_metaphases']} metaphases), those of `medseg data mfish-pairs`",
        "semantic_model": {
            "config": args.config,
            "steps": sem_summary.get("steps", args.steps),
            "overrides": args.sets,
            "time_limit_minutes": args.time_limit,
            "stopped_by_time_limit": sem_summary.get("stopped_by_time_limit"),
            "run": str(sem_run),
        },
        "pair_model": {
            "run": str(pair_run),
            "trained_here": args.pair_model is None,
            "config": "configs/chromosomes/demo.yaml on mfish-pairs fold 0" if args.pair_model is None else None,
            "steps": args.pair_steps if args.pair_model is None else None,
        },
        "times_s": times,
        "results": {k: summary(v) for k, v in results.items()},
        "licence": "derived from the M-FISH Image Set #1; notice: ../shared/data/mfish/README.TXT",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    p, q = results["with_pair_model"]["pooled"], results["without_pair_model"]["pooled"]
    w = results["crossings_kept_whole"]["pooled"]
    print(
        f"with pair model: P {p['precision']:.3f} R {p['recall']:.3f} F1 {p['f1']:.3f} splits {p['split']} merges "
        f"{p['merge']} overlap IoU {p['overlap_iou']}; crossings by their arms: F1 {q['f1']:.3f} merges {q['merge']}; "
        f"kept whole: F1 {w['f1']:.3f}; Otsu baseline: "
        f"F1 {results['otsu_baseline']['pooled']['f1']:.3f} → {args.out}"
    )
    return args.out


if __name__ == "__main__":
    main()
