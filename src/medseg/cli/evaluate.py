"""``medseg evaluate`` (a trained run's report), ``medseg evaluate-metaphases`` (chromosome instances on whole
metaphases) and ``medseg reproduce`` (a paper's table)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli._common import DEVICE_HELP, DataOpt, TrustCodeOpt, check_vote, console, int_list


def print_competition(report: Path) -> None:
    """One line per fold and the fold mean of the UW-Madison competition score, when the run has one (GI tract)."""
    try:
        metrics = json.loads((Path(report).parent / "metrics.json").read_text())["metrics"]
    except (OSError, ValueError, KeyError):
        return
    comp = metrics.get("competition")
    if not comp:
        return
    for fold in metrics.get("per_fold") or []:
        c = fold.get("competition") or {}
        if c and len(metrics.get("per_fold")) > 1:
            console.print(
                f"{fold.get('fold')}: uw_score {c['uw_score']:.4f} (dice {c['dice']:.4f}, hausdorff_score "
                f"{c['hausdorff_score']:.4f}; {c['n_scans']} scans)"
            )
    other = (comp.get("other_convention") or {}).get("uw_score")
    console.print(
        f"competition score (mean over folds): uw_score {comp['uw_score']:.4f} = 0.4 × dice {comp['dice']:.4f} "
        f"+ 0.6 × hausdorff_score {comp['hausdorff_score']:.4f}"
        + (f"; {other:.4f} with the paper's empty-mask Dice 0" if other is not None else "")
    )


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run directory (runs/NAME) or one fold directory."),
    data: str | None = DataOpt,
    tta: bool | None = typer.Option(
        None,
        "--tta/--no-tta",
        help="Test-time augmentation (flips, 90° rotations) or not (default: the run's evaluate.tta).",
    ),
    folds: str | None = typer.Option(
        None, metavar="K,...", help="Comma-separated folds to evaluate (default: every trained fold)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="DIR", help="Report folder (default RUN/evaluation)."),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    limit_test: int | None = typer.Option(None, metavar="N", help="Score only the first N test images (quick look)."),
    trust_code: bool = TrustCodeOpt,
    karyotype_vote: str | None = typer.Option(
        None,
        "--karyotype-vote",
        metavar="VOTE",
        help="Karyotype runs "
        "(classes 1-22, X, Y): soft (mean probability over a chromosome's "
        "pixels) or majority (its pixels' most frequent class); default: "
        "the run's evaluate.karyotype_vote (soft).",
    ),
):
    """Write report.md, metrics.json and figures for a trained run, in the task's terms (per-class scores, worst
    and best cases; the papers' numbers beside ours for the tasks they report)."""
    from medseg.evaluation.evaluate import evaluate_run

    check_vote(karyotype_vote)
    report = evaluate_run(
        run,
        data=data,
        tta=tta,
        folds=int_list(folds, "--folds"),
        device=device,
        out_dir=out,
        limit_test=limit_test,
        trust_code=trust_code,
        karyotype_vote=karyotype_vote,
    )
    console.print(f"report: {report}")
    print_competition(report)


def _print_metaphase_scores(m: dict, out: Path) -> None:
    """The pooled instance scores of ``evaluate-metaphases`` and how many statuses were right, two lines."""
    p = m["pooled"]
    console.print(
        f"{m['n_metaphases']} metaphases of {', '.join(m['slides'])}: precision {100 * p['precision']:.1f} %, "
        f"recall {100 * p['recall']:.1f} %, F1 {100 * p['f1']:.1f} % ({p['tp']} of {p['n_true']} chromosomes "
        f"at IoU >= 0.5), {p['split']} splits, {p['merge']} merges, overlap IoU "
        + (f"{100 * p['overlap_iou']:.1f} %" if p["overlap_iou"] == p["overlap_iou"] else "–")
        + f"; report: {out / 'report.md'}"
    )
    right = [f"{k} {v['right']}/{v['n']}" for k, v in m["status_accuracy"].items() if v["n"]]
    console.print("statuses right against the label maps: " + (", ".join(right) or "no objects"))


def evaluate_metaphases_cmd(
    model: Path | None = typer.Argument(
        None,
        help="Semantic run (background / chromosome / overlap [/ touching]), "
        "e.g. runs/mfish_metaphase_unet; none with --baseline otsu.",
    ),
    data: Path = typer.Option(..., "--data", metavar="DIR", help="The M-FISH folder (../shared/data/mfish)."),
    out: Path = typer.Option(
        ..., "--out", "-o", metavar="DIR", help="Report folder: metrics.json, report.md, figures."
    ),
    pair_model: Path | None = typer.Option(
        None,
        "--pair-model",
        metavar="PAIR_RUN",
        help="4-class pair model that splits crossings (without it, crossings are split by their arms' "
        "directions where clear).",
    ),
    crossings: str = typer.Option(
        "auto",
        "--crossings",
        metavar="HOW",
        help="How a crossing of two chromosomes is parted: auto (the pair model when given, else geometry), "
        "pair_model, geometry (its arms paired by direction), whole (kept whole).",
    ),
    slides: str = typer.Option(
        "test",
        "--slides",
        metavar="SLIDES",
        help="test (default): the held-out slides of "
        "`medseg data mfish-pairs` (never seen by a model trained on its split); all; or "
        "slide ids, e.g. A20,P09.",
    ),
    limit: int | None = typer.Option(None, "--limit", metavar="N", help="Only the first N metaphases (quick look)."),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    trust_code: bool = TrustCodeOpt,
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        metavar="NAME",
        help="otsu (the one there is): no model, Otsu's threshold + distance watershed, scored the same way.",
    ),
    debris_rules: bool = typer.Option(
        True,
        "--debris-rules/--no-debris-rules",
        help="Leave out specks, nuclei and "
        "border fragments by size and shape against the metaphase's median chromosome.",
    ),
):
    """Chromosome instances on whole M-FISH metaphases against their label maps: instance precision / recall / F1 at
    IoU >= 0.5, splits, merges, overlap IoU, per metaphase, per slide, per imaging system and pooled."""
    from medseg.evaluation.instances import evaluate_metaphases
    from medseg.inference.instances import CROSSINGS
    from medseg.inference.regions import DebrisRules

    if crossings not in CROSSINGS:
        raise typer.BadParameter(f"--crossings takes {', '.join(CROSSINGS)}, got {crossings!r}")
    m = evaluate_metaphases(
        model,
        data,
        out,
        pair_model=pair_model,
        slides=slides,
        limit=limit,
        device=device,
        trust_code=trust_code,
        baseline=baseline,
        debris=DebrisRules(enabled=debris_rules),
        crossings=crossings,
    )
    _print_metaphase_scores(m, out)


def reproduce(
    spec: Path = typer.Argument(..., help="Table spec, e.g. configs/tables/rse_unet_table4.yaml"),
    quick: bool = typer.Option(
        False, "--quick", help="Reduced CPU mode: small synthesized set, few epochs, narrow nets, fold 0."
    ),
    data: str | None = DataOpt,
    folds: str | None = typer.Option(None, metavar="K,...", help="Comma-separated folds (default: all; --quick: 0)."),
    device: str | None = typer.Option(None, help=f"{DEVICE_HELP} (default: each config's train.device)."),
    out: Path = typer.Option(
        Path("runs/tables"), "--out", "-o", metavar="DIR", help="Where the table's runs and report go."
    ),
    restart: bool = typer.Option(False, "--restart", help="Start every row's runs over instead of resuming them."),
    sets: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Override a config value of every row, e.g. --set train.epochs=3 (repeatable).",
    ),
    unset: list[str] = typer.Option(
        [],
        "--unset",
        metavar="KEY",
        help="Drop the spec's own setting of KEY, so each row keeps its config's value, e.g. "
        "--unset model.base_channels: every network at its paper's width (repeatable).",
    ),
):
    """Reproduce one of the papers' tables: train/evaluate every row, report ours beside the published numbers."""
    from medseg.experiments.tables import reproduce_table

    report = reproduce_table(
        spec,
        quick=quick,
        data=data,
        folds=int_list(folds, "--folds"),
        device=device,
        output_root=out,
        restart=restart,
        overrides=sets,
        unset=unset,
    )
    console.print(f"report: {report}")
