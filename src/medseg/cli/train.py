"""``medseg train`` (one fold) and ``medseg cv`` (every fold, then the held-out test report), from a YAML config
or from data planned on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli._common import DEVICE_HELP, DataOpt, SetOpt, console, fail, int_list, set_items
from medseg.cli.evaluate import print_competition
from medseg.cli.plan import BudgetOpt, ClassesOpt, plan_data, print_decisions

ConfigArg = typer.Argument(
    ...,
    metavar="CONFIG",
    help="Experiment YAML, e.g. configs/chromosomes/unet.yaml; "
    "or DATA (a data folder, HDF5 file or synth:...) to plan the config on the fly.",
)
NameOpt = typer.Option(None, help="Run name (default: the config's name).")
TrainDeviceOpt = typer.Option(None, help=f"{DEVICE_HELP} (default: the config's train.device).")


def _config(
    config: Path, data: str | None, name: str | None, epochs: int | None, sets: list[str], device: str | None
) -> dict:
    from medseg.config import load_config, set_dotted, validate

    cfg = load_config(config)
    if data:
        cfg["data"]["path"] = data
    if name:
        cfg["name"] = name
    if epochs:
        cfg["train"]["epochs"] = epochs
    if device:
        cfg["train"]["device"] = device
    for key, value in set_items(sets):
        set_dotted(cfg, key, value)
    return validate(cfg)


def _planned_config(
    data_arg: str,
    data: str | None,
    name: str | None,
    epochs: int | None,
    sets: list[str],
    device: str | None,
    classes: str | None,
    budget_gb: float | None,
    restart: bool = False,
) -> dict:
    """``medseg train DATA``: plan a config for DATA, apply the options, print the decisions and keep the
    plan (plan.yaml, plan.json) in the run folder — unless the run was trained already and is not restarted:
    its plan is left as it is (the training refuses a config other than the run's)."""
    from medseg.data.runs import run_dir_for
    from medseg.planning import apply_sets, write_plan

    if data:
        raise typer.BadParameter(f"--data is for a YAML config; {data_arg} is the data already")
    extra: list[tuple[str, object]] = []
    if name:  # written as YAML strings, so that a name like "2024" stays a string
        extra.append(("name", json.dumps(name)))
    if epochs:  # a number of epochs instead of the planned step budget
        extra += [("train.iterations", None), ("train.epochs", epochs)]
    if device:
        extra.append(("train.device", json.dumps(device)))
    cfg, decisions, fp, settings = plan_data(data_arg, classes, budget_gb, device, sets)
    cfg, decisions = apply_sets(cfg, decisions, extra)
    print_decisions(decisions, f"plan for {data_arg}")
    run_dir = run_dir_for(cfg)
    if not restart and any(run_dir.glob("fold_*/config.yaml")):
        console.print(f"plan: the run {run_dir} exists; its plan.yaml is kept")
        return cfg
    yaml_path, json_path = write_plan(
        cfg, decisions, run_dir / "plan.yaml", fingerprint=fp, json_path=run_dir / "plan.json", settings=settings
    )
    console.print(f"plan: {yaml_path}, fingerprint: {json_path}")
    return cfg


def _is_data_argument(path: Path) -> bool:
    """Whether ``medseg train``'s first argument is data to plan from (a data folder, an HDF5 file, synth:...)
    rather than a YAML config; a run folder (with a saved config) is left to the config loader's message."""
    if str(path).startswith("synth:"):
        return True
    if path.name.lower().endswith((".yaml", ".yml")):
        return False
    if path.is_dir() and ((path / "config.yaml").is_file() or any(path.glob("fold_*/config.yaml"))):
        return False
    return True


def _config_or_plan(config: Path, data, name, epochs, sets, device, classes, budget_gb, restart: bool = False) -> dict:
    """The config of `train` / `cv`: the YAML given, or one planned from DATA given in its place."""
    if _is_data_argument(config):  # under torchrun rank 0 alone plans; the other ranks train its config
        from medseg.training.run import plan_on_main_rank

        return plan_on_main_rank(
            lambda: _planned_config(str(config), data, name, epochs, sets, device, classes, budget_gb, restart),
            device,
            set_items(sets),
        )
    if classes or budget_gb is not None:
        raise typer.BadParameter(
            "--classes and --budget-gb plan a config from DATA; with a YAML config set "
            "task.class_names and the sizes in it (or with --set)"
        )
    return _config(config, data, name, epochs, sets, device)


def _fold_result(summary: dict, primary: str) -> str:
    """How a trained fold ended: its best epoch and validation scores, or that it had no validation set."""
    best = summary["best_val"]
    iou = best.get(f"val_iou/{primary}")
    if "val_loss" in best:
        return f"best epoch {summary['best_epoch']} of {summary['epochs_run']} (val loss {best['val_loss']:.4f}" + (
            f", IoU[{primary}] {100 * iou:.1f} %)" if iou is not None else ")"
        )
    # no validation set: the last epoch's model is the one kept
    return f"{summary['epochs_run']} epochs, no validation set: the last model is kept"


def train(
    config: Path = ConfigArg,
    fold: int = typer.Option(0, metavar="K", help="Cross-validation fold to train."),
    data: str | None = DataOpt,
    name: str | None = NameOpt,
    epochs: int | None = typer.Option(None, metavar="N", help="Number of epochs (overrides train.epochs)."),
    sets: list[str] = SetOpt,
    device: str | None = TrainDeviceOpt,
    restart: bool = typer.Option(
        False,
        "--restart",
        help="Start over instead of resuming an interrupted run; a run "
        "folder holding another training (other data, config or split) is replaced.",
    ),
    classes: str | None = ClassesOpt,
    budget_gb: float | None = BudgetOpt,
    nproc: int = typer.Option(
        1,
        "--nproc",
        metavar="N",
        help="Train with N processes on this machine "
        "(DistributedDataParallel via torchrun: one per GPU, or N CPU processes sharing the "
        "cores); train.batch_size stays the global batch.",
    ),
):
    """Train one fold. An interrupted run resumes from its last epoch. Given DATA instead of a config, plans
    one first (as medseg plan) and keeps plan.yaml and plan.json in the run folder. Several processes:
    --nproc N, or torchrun --nproc-per-node N -m medseg train CONFIG (multi-node: torchrun's rendezvous flags)."""
    from medseg.threads import configure_threads
    from medseg.training import distributed
    from medseg.training.run import train_fold

    cfg = _config_or_plan(config, data, name, epochs, sets, device, classes, budget_gb, restart)
    if nproc > 1 and not distributed.env_info().active:
        _launch_ranks(cfg, fold, restart, nproc)
        return
    configure_threads()
    try:
        summary = train_fold(cfg, fold, restart=restart)
    finally:
        distributed.cleanup()
    if not distributed.env_info().is_main:
        return
    result = _fold_result(summary, cfg["task"]["primary_metric"])
    console.print(f"fold {summary['fold']}: {result}; model and history in {summary['run_dir']}")


def _launch_ranks(cfg: dict, fold: int, restart: bool, nproc: int) -> None:
    """``train --nproc N``: torchrun with N processes on this machine, each training this config (handed over
    as the resolved YAML); a failed rank makes the command fail with torchrun's exit code named."""
    import tempfile

    from medseg.config import save_config
    from medseg.training import distributed

    with tempfile.TemporaryDirectory(prefix="medseg-ddp-") as tmp:
        path = Path(tmp) / "config.yaml"
        save_config(cfg, path)
        args = ["train", str(path), "--fold", str(fold)] + (["--restart"] if restart else [])
        console.print(f"launching {nproc} processes: {' '.join(distributed.launch_command(nproc, args))}")
        code = distributed.launch(nproc, args)
    if code:
        fail(
            f"distributed training with {nproc} processes failed (torchrun exit code {code}; the failing rank's "
            "error is above); run the same command again to resume from the last saved epoch"
        )


def cv(
    config: Path = ConfigArg,
    folds: str | None = typer.Option(None, metavar="K,...", help="Comma-separated folds to train (default: all)."),
    data: str | None = DataOpt,
    name: str | None = NameOpt,
    epochs: int | None = typer.Option(None, metavar="N", help="Number of epochs per fold (overrides train.epochs)."),
    sets: list[str] = SetOpt,
    device: str | None = TrainDeviceOpt,
    restart: bool = typer.Option(
        False,
        "--restart",
        help="Start every fold over instead of resuming interrupted "
        "ones; a run folder holding another training (other data, config or split) is replaced.",
    ),
    evaluate: bool = typer.Option(True, help="Score every fold on the held-out test set afterwards."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation (flips, 90° rotations) in the evaluation."),
    classes: str | None = ClassesOpt,
    budget_gb: float | None = BudgetOpt,
    parallel: int = typer.Option(
        1,
        "--parallel",
        metavar="K",
        help="Train K folds at once, each in its own process "
        "(one GPU each when there are GPUs; on the CPU the cores are shared among them).",
    ),
):
    """Cross-validation: train every fold, then evaluate them on the held-out test set. Given DATA instead of a
    config, plans one first (as medseg plan) and keeps plan.yaml and plan.json in the run folder."""
    from medseg.data.runs import run_dir_for
    from medseg.evaluation.evaluate import evaluate_run
    from medseg.threads import configure_threads
    from medseg.training import distributed
    from medseg.training.run import cross_validate, cross_validate_parallel

    cfg = _config_or_plan(config, data, name, epochs, sets, device, classes, budget_gb, restart)
    fold_list = int_list(folds, "--folds")
    if parallel < 1:
        raise typer.BadParameter(f"--parallel takes K >= 1 folds at once, got {parallel}")
    if parallel > 1 and distributed.env_info().active:
        raise typer.BadParameter("--parallel starts processes of its own: not under torchrun")
    try:
        if parallel > 1:  # the children take their shares; this process only waits (not counted) until they end
            cross_validate_parallel(cfg, folds=fold_list, parallel=parallel, restart=restart)
            configure_threads()
        else:
            configure_threads()
            cross_validate(cfg, folds=fold_list, restart=restart)
    finally:
        distributed.cleanup()
    if (
        evaluate and distributed.env_info().is_main
    ):  # the folds were just trained from the user's own config: its code is trusted
        report = evaluate_run(
            run_dir_for(cfg), tta=tta, folds=fold_list, device=cfg["train"]["device"], trust_code=True
        )
        console.print(f"report: {report}")
        print_competition(report)
