"""The pair model on REAL crossings: trained on the real pairs of the training slides, tested on the 38 real pairs
of the held-out slides A20, P09, V18, V27 (the transfer table's test), with each crop showing its pair alone and,
beside it, as cut (other chromosomes in the crop).

    OMP_NUM_THREADS=1 python benchmarks/bench_mfish_pair_model.py [--minutes 12] [--semantic-run RUN]
        [--out benchmarks/results/mfish_pair_model_cpu.json]

1. ``medseg train configs/mfish/pair_unet.yaml`` (``data.mfish_pair_isolate_px: 2``) and the same config with
   ``data.mfish_pair_isolate_px=null`` side by side, one thread each, ``--minutes`` each (``--fold``, default 3 of
   the pairs' split by slide: 274 training pairs, 26 validating; the held-out slides are never seen).
2. ``medseg evaluate RUN --tta`` on the held-out pairs (each run on its own kind of crop).
3. The overlap IoU split by what the label map draws: *crossings* (an overlap of >= 50 px) and *touching pairs*
   (an overlap of a few pixels where two chromosomes only touch: a line no image shows).
4. What the aim asks of a drawing (:func:`one_pixel_off`): the label map's own overlap drawn one pixel narrower,
   wider or shifted, scored against itself.
5. With ``--semantic-run``, a peer: the whole-metaphase model's own overlap class on the same crops (inside the
   pair's pixels), predicted on the whole held-out metaphases.

Writes one JSON: device, date, command, data (REAL), per variant the pooled and per-image scores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_mfish_instances import MFISH, run, start, wait  # noqa: E402
from record_run import device_name  # noqa: E402

CROSSING_PX = 50  # an overlap the image shows (median of the real pairs: 149 px); under it two chromosomes touch
VARIANTS = {"alone": [], "as_cut": ["--set", "data.mfish_pair_isolate_px=null"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "mfish" / "pair_unet.yaml")
    ap.add_argument("--minutes", type=float, default=12.0, help="training time of each variant")
    ap.add_argument(
        "--fold", type=int, default=3, help="the training slides' fold to train (3: the smallest validation set)"
    )
    ap.add_argument("--variants", default=",".join(VARIANTS), help="alone (pairs shown alone), as_cut, or both")
    ap.add_argument("--semantic-run", type=Path, default=None, help="a whole-metaphase run: its overlap as a peer")
    ap.add_argument("--mfish", type=Path, default=MFISH)
    ap.add_argument("--work", type=Path, default=ROOT / "bench_pairs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mfish_pair_model_cpu.json")
    return ap.parse_args(argv)


def scores(metrics: dict) -> dict:
    """Percent scores of one evaluation: pooled / per image, crossings and touching pairs apart."""
    m, free = metrics["metrics"], metrics["metrics"]["order_free"]
    per_image = metrics["per_image"]

    def mean_iou(rows):
        return round(100 * float(np.mean([r["iou/overlap"] for r in rows])), 1) if rows else None

    crossings = [r for r in per_image if r["n_true/overlap"] >= CROSSING_PX]
    touching = [r for r in per_image if r["n_true/overlap"] < CROSSING_PX]
    pct = lambda v: round(100 * float(v), 1)  # noqa: E731
    touching_iou = mean_iou(touching) or 0.0
    return {
        # the per-image mean if every crossing were perfect and the touching pairs stayed as they are
        "overlap_iou_if_crossings_perfect": round(
            (100 * len(crossings) + touching_iou * len(touching)) / len(per_image), 1
        ),
        "n_pairs": len(per_image),
        "overlap_iou": pct(m["per_class"]["overlap"]["iou"]),
        "overlap_iou_pooled": pct(m["per_class"]["overlap"]["iou_pooled"]),
        "overlap_iou_crossings": mean_iou(crossings),
        "n_crossings": len(crossings),
        "overlap_iou_touching": mean_iou(touching),
        "n_touching": len(touching),
        "alpha_whole_iou_order_free": pct(free["per_class"]["chromosome_alpha_whole"]["iou"]),
        "beta_whole_iou_order_free": pct(free["per_class"]["chromosome_beta_whole"]["iou"]),
        "alpha_iou_order_free": pct(free["per_class"]["chromosome_alpha"]["iou"]),
        "beta_iou_order_free": pct(free["per_class"]["chromosome_beta"]["iou"]),
        "swapped": int(free["n_swapped"]),
    }


def _test_pairs(pairs_h5: Path) -> list[int]:
    split = json.loads(pairs_h5.with_name("pairs.splits.json").read_text())
    return [int(name.split("[")[1].rstrip("]")) for name in split["test"]]


def one_pixel_off(labels: np.ndarray) -> dict:
    """Mean overlap IoU per pair (crossings and touching pairs apart) of the annotators' own overlap against
    itself drawn one pixel off: eroded, dilated inside the pair, and shifted by one pixel (the mean of the four
    directions). ``labels``: (N, H, W) pair label maps (0 bg, 1 A, 2 B, 3 overlap). How close to the drawing
    an overlap IoU asks a prediction to be: on small overlaps one pixel all around costs a third of the IoU."""
    from scipy import ndimage

    def iou(a, b) -> float:
        union = (a | b).sum()
        return float((a & b).sum() / union) if union else 1.0

    rows = []
    for lab in labels:
        ov = lab == 3
        shifted = [np.roll(ov, s, axis) for axis in (0, 1) for s in (-1, 1)]
        rows.append(
            {
                "n": int(ov.sum()),
                "eroded": iou(ndimage.binary_erosion(ov), ov),
                "dilated": iou(ndimage.binary_dilation(ov) & (lab > 0), ov),
                "shifted": float(np.mean([iou(sh, ov) for sh in shifted])),
            }
        )
    out = {"n_pairs": len(rows)}
    for part, keep in (("all", lambda r: True), ("crossings", lambda r: r["n"] >= CROSSING_PX)):
        chosen = [r for r in rows if keep(r)]
        for how in ("eroded", "dilated", "shifted"):
            out[f"{how}_{part}"] = round(100 * float(np.mean([r[how] for r in chosen])), 1) if chosen else None
    return out


def semantic_peer(semantic_run: Path, pairs_h5: Path) -> dict:
    """The whole-metaphase model's overlap class on the held-out pairs' crops, inside each pair's pixels."""
    import h5py

    from medseg.data.mfish import find_metaphases, read_metaphase
    from medseg.inference.image import predict_arrays
    from medseg.inference.predictor import Predictor

    record = json.loads(pairs_h5.with_name("pairs.json").read_text())
    test = _test_pairs(pairs_h5)
    predictor = Predictor.from_path(semantic_run, device="cpu")
    by_image = {m.name.split("__")[-1]: m for m in find_metaphases(record["source"]["path"])}
    overlap_class = 2  # background / chromosome / overlap [/ touching]
    labels, cache, rows = h5py.File(pairs_h5, "r")["dataset_1"][..., 1], {}, []
    for i in test:
        pair = record["pairs"][i]
        if pair["image"] not in cache:
            dapi, _ = read_metaphase(by_image[pair["image"]])
            cache[pair["image"]] = np.asarray(predict_arrays(predictor, dapi.astype(np.float32) / 255.0))
        top, left = pair["box"]
        truth = labels[i] == 3
        pred = (cache[pair["image"]][top : top + truth.shape[0], left : left + truth.shape[1]] == overlap_class) & (
            labels[i] > 0
        )
        inter, union = int((truth & pred).sum()), int((truth | pred).sum())
        rows.append({"iou/overlap": inter / union if union else 1.0, "n_true/overlap": int(truth.sum()), "i": inter})
        rows[-1]["u"] = union
    crossings = [r for r in rows if r["n_true/overlap"] >= CROSSING_PX]
    touching = [r for r in rows if r["n_true/overlap"] < CROSSING_PX]
    return {
        "run": str(semantic_run),
        "n_pairs": len(rows),
        "overlap_iou": round(100 * float(np.mean([r["iou/overlap"] for r in rows])), 1),
        "overlap_iou_pooled": round(100 * sum(r["i"] for r in rows) / max(sum(r["u"] for r in rows), 1), 1),
        "overlap_iou_crossings": round(100 * float(np.mean([r["iou/overlap"] for r in crossings])), 1),
        "overlap_iou_touching": round(100 * float(np.mean([r["iou/overlap"] for r in touching])), 1),
    }


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDSEG_THREADS": "1", "MEDSEG_MFISH": str(args.mfish)}
    medseg = [sys.executable, "-m", "medseg"]
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; use {', '.join(VARIANTS)}")
    runs, jobs = {}, {}
    for v in variants:
        runs[v] = work / "runs" / f"mfish_pair_unet_{v}"
        cmd = [*medseg, "train", args.config, "--fold", str(args.fold), "--name", runs[v].name]
        cmd += ["--set", f"output.root={work / 'runs'}"]
        cmd += ["--set", f"train.time_limit_minutes={args.minutes}", *VARIANTS[v]]
        if not (runs[v] / f"fold_{args.fold}" / "summary.json").is_file():
            jobs[v] = start(cmd, log, env)
    times = {f"train_{v}_s": wait(job) for v, job in jobs.items()}
    results = {}
    for v in variants:
        out = work / f"evaluation_{v}"
        times[f"evaluate_{v}_s"] = run([*medseg, "evaluate", runs[v], "--tta", "-o", out], log, env)
        metrics = json.loads((out / "metrics.json").read_text())
        summary = json.loads((runs[v] / f"fold_{args.fold}" / "summary.json").read_text())
        results[v] = {"run": str(runs[v]), "training": summary, **scores(metrics), "test_data": metrics["data_note"]}
    record = {
        "benchmark": "bench_mfish_pair_model",
        "date": dt.date.today().isoformat(),
        "device": f"{device_name('cpu')}, 1 thread per run",
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_mfish_pair_model.py " + " ".join(argv or sys.argv[1:]),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "fold": args.fold,
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "data": "REAL M-FISH pairs (medseg data mfish-pairs on ../shared/data/mfish): trained on one fold of the "
        "training slides' pairs (--fold), tested on the 38 pairs of the held-out slides A20, P09, V18, V27",
        "definitions": f"overlap IoU per image (mean) and pooled; crossings = pairs whose label map draws an overlap "
        f"of >= {CROSSING_PX} px, touching = under it (two chromosomes that only touch, their drawn outlines "
        "sharing a few pixels); alpha/beta whole = chromosome with its overlap, order-free (each image under its "
        "better naming); TTA (flips and quarter turns)",
        "variants": {"alone": "each crop shows its pair alone (data.mfish_pair_isolate_px: 2)", "as_cut": "as cut"},
        "times_s": times,
        "results": results,
    }
    import h5py

    from medseg.data.mfish_sets import mfish_set_path

    pairs_h5 = mfish_set_path("pairs", {"mfish_source": str(args.mfish)})
    with h5py.File(pairs_h5, "r") as f:
        record["annotators_one_pixel_off"] = one_pixel_off(f["dataset_1"][..., 1][sorted(_test_pairs(pairs_h5))])
    if args.semantic_run is not None:
        record["semantic_model_peer"] = semantic_peer(args.semantic_run, pairs_h5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({v: {k: r[k] for k in r if "iou" in k} for v, r in results.items()}, indent=1))
    return args.out


if __name__ == "__main__":
    main()
