"""``medseg plan``: a config planned from the data itself; the planning helpers ``medseg train DATA`` shares."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medseg.cli._common import SetOpt, console, set_items

ClassesOpt = typer.Option(
    None,
    "--classes",
    metavar="A,B,...",
    help="Class names, background first, one per "
    "label value found (default: background, foreground / class_1, ... or dataset.json's).",
)
BudgetOpt = typer.Option(
    None,
    "--budget-gb",
    metavar="G",
    help="Memory one training step may take on the device, "
    "in GB: sizes the patch and the batch (default 8 on CUDA, 2 on a CPU).",
)


def _plan_device(device: str | None) -> str:
    """cpu or cuda: what a plan is sized for (``--device``, else CUDA when it is available)."""
    if device and device != "auto":
        return "cuda" if device.startswith("cuda") else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_data(
    data: str, classes: str | None, budget_gb: float | None, device: str | None, sets: list[str], progress: bool = True
):
    """Fingerprint ``data`` and plan a config for it (``medseg plan`` and ``medseg train DATA``):
    (config, decisions, fingerprint, settings)."""
    from medseg.planning import fingerprint, plan

    kind = _plan_device(device)
    names = [c for c in classes.split(",") if c.strip()] if classes else None
    fp = fingerprint(data, progress=progress)
    cfg, decisions = plan(fp, memory_budget_gb=budget_gb, device=kind, class_names=names, sets=set_items(sets))
    budget = budget_gb if budget_gb is not None else ("8 (default)" if kind == "cuda" else "2 (default)")
    return cfg, decisions, fp, {"device": kind, "memory_budget_gb": budget}


def print_decisions(decisions, title: str) -> None:
    """The planner's decisions as a table on a terminal (key, value, reason); in a log or pipe one plain
    unwrapped line each (``key = value  # reason``), so nothing is folded at 80 columns."""
    from medseg.planning.planner import format_value

    out = Console(markup=False, highlight=False)
    if not out.is_terminal:
        print(title)
        for d in decisions:
            print(f"  {d.key} = {format_value(d.value)}  # {d.reason}")
        return
    table = Table(title=title, show_lines=False)
    for column in ("key", "value", "reason"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        table.add_row(Text(d.key), Text(format_value(d.value)), Text(d.reason))  # Text: no rich markup
    out.print(table)


def plan(
    data: str = typer.Argument(
        ...,
        metavar="DATA",
        help="images/+masks/ folder (2D), folder of volumes (3D), "
        "Pommier-layout HDF5, or synth:demo / synth:pommier / synth:phantom.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="CONFIG",
        help="YAML config to write (default: "
        "plan_NAME.yaml here, NAME the data's); the fingerprint goes beside it as "
        "CONFIG's stem + .plan.json.",
    ),
    classes: str | None = ClassesOpt,
    budget_gb: float | None = BudgetOpt,
    device: str | None = typer.Option(None, help="Plan for cpu or cuda (default: CUDA if available)."),
    sets: list[str] = SetOpt,
):
    """Configure training from the data itself (nnU-Net's planning): fingerprint DATA, choose patch,
    network, batch, normalisation and schedule, print every decision with its reason, write the config."""
    from medseg.planning import write_plan

    cfg, decisions, fp, settings = plan_data(data, classes, budget_gb, device, sets)
    path = out if out is not None else Path(f"{cfg['name']}.yaml")
    print_decisions(decisions, f"plan for {data}")
    yaml_path, json_path = write_plan(cfg, decisions, path, fingerprint=fp, settings=settings)
    console.print(f"wrote {yaml_path} (fingerprint: {json_path}); train with: medseg train {yaml_path}")
