"""``--help`` reads like argparse's (nnU-Net's commands): ``MODEL IMAGE...`` in the usage line, ``-o, --out DIR``,
no Typer type tags (``<path>``, ``<int>``) or ``{model}`` placeholders, and a description for every option and
argument of every command."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from medseg.cli import app

runner = CliRunner()
TYPE_TAG = re.compile(r"<[A-Za-z_][\w\[\], |.]*>")  # <path>, <int>, <list[Path]>, <bool>
PLACEHOLDER = re.compile(r"\{[^}\s]*\}")  # {model}, {config}


def _commands(command, path=()):
    """(path, click command) of the top-level group and every command and group below it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path) -> str:
    result = runner.invoke(app, [*path, "--help"], prog_name="medseg", terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "data", "data synth", "predict", "evaluate", "serve", "users add"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "medseg")
def test_help_has_no_type_tags_nor_placeholders(path):
    text = _help(path)
    assert text.startswith(f"Usage: {' '.join(('medseg', *path))} [OPTIONS]"), text
    assert not TYPE_TAG.search(text), f"type tag {TYPE_TAG.search(text).group()!r} in:\n{text}"
    assert not PLACEHOLDER.search(text), f"placeholder {PLACEHOLDER.search(text).group()!r} in:\n{text}"


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "medseg" for p, _ in COMMANDS])
def test_every_option_and_argument_has_a_description(path, command):
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        name = "/".join(getattr(param, "opts", [])) or param.name
        assert (param.help or "").strip(), f"medseg {' '.join(path)}: {name} has no help text"
        if param.param_type_name == "argument" or not (param.is_flag or param.count):
            assert param.metavar and param.metavar == param.metavar.upper(), (path, name, param.metavar)


def test_predict_help_reads_like_argparse():
    text = _help(("predict",))
    assert text.splitlines()[0] == "Usage: medseg predict [OPTIONS] MODEL IMAGE..."
    assert re.search(r"^  MODEL +Run directory", text, re.M)
    assert re.search(r"^  IMAGE\.\.\. +PNG/TIFF/JPEG images or folders of them", text, re.M)
    assert re.search(r"^  -o, --out DIR +Output folder", text, re.M)
    assert re.search(r"^  --device DEVICE +auto \(CUDA if available, else CPU\), cpu, cuda, cuda:1", text, re.M)
    assert re.search(r"^  --tta / --no-tta +Test-time augmentation", text, re.M)  # on/off, default the model's


def test_a_usage_error_names_the_argument_as_the_help_does():
    result = runner.invoke(app, ["predict", "some_run"], prog_name="medseg")
    assert result.exit_code == 2
    assert "Usage: medseg predict [OPTIONS] MODEL IMAGE..." in result.output
    assert "Missing argument 'IMAGE'" in result.output


def test_the_command_list_is_not_cut_short():
    text = _help(())
    assert "..." not in text.split("Commands:")[1]  # first sentences whole, wrapped
    assert "then evaluate them on the held-out test set." in " ".join(text.split())
