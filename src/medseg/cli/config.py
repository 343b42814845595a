"""``medseg config show`` (a resolved config, each value's source) and ``medseg models`` (the architectures a
config's model.name may name)."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._common import SetOpt, command_group, set_items

config_app = command_group("Inspect experiment configs (the YAML files under configs/).")


@config_app.command("show")
def config_show(
    config: Path = typer.Argument(..., help="Experiment YAML, e.g. configs/chromosomes/unet.yaml"),
    sets: list[str] = SetOpt,
):
    """Print the resolved config as YAML (defaults, the _base_ chain, CONFIG, --set), each value's source at
    the end of its line: default, the YAML file that set it, or --set."""
    from medseg.config import format_config, resolve_config

    typer.echo(format_config(resolve_config(config, sets=set_items(sets))), nl=False)


def models():
    """List the registered architectures."""
    from medseg.models import available_models

    for name in available_models():
        typer.echo(name)
