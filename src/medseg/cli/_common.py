"""What every command module shares: argparse-style help, the one error handler (exit code 2), the console, the
option parsers and the options several commands take.

Nothing here imports torch or the data stack: ``medseg --help`` loads this module and must stay fast.
"""

from __future__ import annotations

import errno
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from medseg.errors import MedsegError


def _metavar(param) -> str:
    """argparse's metavar: the parameter's name in capitals (MODEL; --n-pairs N_PAIRS) unless it has its own."""
    if param.metavar:
        return param.metavar
    if param.param_type_name == "argument":
        return param.name.upper()
    long = [o for o in param.opts if o.startswith("--")]
    return (long or param.opts)[0].lstrip("-").replace("-", "_").upper()


class HelpCommand(TyperCommand):
    """``--help`` as argparse writes it (nnU-Net's commands): ``Usage: medseg predict [OPTIONS] MODEL IMAGE...``,
    arguments as MODEL / IMAGE..., options as ``-o, --out DIR``: Typer's type tags (``<path>``, ``<int>``) and
    its ``{model}`` placeholders are replaced by each parameter's metavar (:func:`_metavar`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:  # errors then name the same MODEL / N_PAIRS as the help
            if param.metavar is None and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
                param.metavar = _metavar(param)

    @staticmethod
    def _argument_name(param) -> str:
        return param.metavar + ("..." if param.nargs != 1 else "")

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = self._argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((self._argument_name(param), param.help or ""))
            else:
                options.append(record)  # with a metavar set, Typer writes "-o, --out DIR"
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class HelpGroup(TyperGroup):
    """A command group whose commands write argparse-style help (:class:`HelpCommand`); the command list gives
    each command's first sentence whole (wrapped), not cut at the terminal width."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class HelpTyper(typer.Typer):
    """typer.Typer whose commands are :class:`HelpCommand` unless a command names its own class."""

    def command(self, name=None, *, cls=None, **kwargs):
        return super().command(name, cls=cls or HelpCommand, **kwargs)


class MedsegGroup(HelpGroup):
    """The one top-level handler: medseg's own errors (and the OS's: permission denied, disk full) become one
    line on stderr and exit code 2 wherever they are raised; a traceback is left only for real bugs.
    Warnings become one ``warning:`` line each instead of Python's two-line form with a source line."""

    def invoke(self, ctx):
        import warnings

        previous = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except MedsegError as exc:
            fail(exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            fail(exc)
        finally:
            warnings.showwarning = previous


def command_group(help: str) -> HelpTyper:
    """A sub-command group (``medseg data``, ``medseg users``, ...): argparse-style help, its command list when
    called without one. rich_markup_mode=None: click's plain messages, which are never hard-wrapped (rich's
    error panels are)."""
    return HelpTyper(cls=HelpGroup, no_args_is_help=True, rich_markup_mode=None, help=help)


# soft_wrap: a message stays one line whatever the terminal width (logs and pipes see 80 columns).
# markup and highlighting off: messages hold paths and "IoU[overlap]", which rich would read as markup.
console = Console(stderr=True, soft_wrap=True, markup=False)


def one_line(exc: BaseException | str) -> str:
    """An error message on one line: embedded line breaks (from libraries' messages) become spaces."""
    return " ".join(str(exc).split())


def fail(exc: BaseException | str) -> NoReturn:
    """One ``error:`` line on stderr and exit code 2."""
    console.print(Text.assemble(("error:", "bold red"), " ", one_line(exc)))
    raise typer.Exit(code=2)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    console.print(Text.assemble(("warning:", "yellow"), " ", one_line(message)))


def int_list(text: str | None, option: str) -> list[int] | None:
    """``"0,1,2"`` → [0, 1, 2]; a usage error naming the option otherwise."""
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated integers, got {text!r}") from None


def set_items(sets: list[str]) -> list[tuple[str, str]]:
    """``--set key=value`` options as (key, value text) pairs; a usage error for an item without ``=``."""
    items = []
    for item in sets:
        if "=" not in item:
            raise typer.BadParameter(f"--set needs key=value, got {item!r}")
        key, value = item.split("=", 1)
        items.append((key.strip(), value))
    return items


def check_vote(karyotype_vote: str | None) -> None:
    """``--karyotype-vote``: soft or majority (None: the run's own)."""
    if karyotype_vote not in (None, "soft", "majority"):
        raise typer.BadParameter(f"--karyotype-vote takes soft or majority, got {karyotype_vote!r}")


DEVICE_HELP = "auto (CUDA if available, else CPU), cpu, cuda, cuda:1"
DataOpt = typer.Option(
    None,
    "--data",
    metavar="PATH",
    help="HDF5 file (Pommier layout), images/+masks/ folder, or synth:demo / synth:pommier.",
)
SetOpt = typer.Option(
    [], "--set", metavar="KEY=VALUE", help="Override a config value, e.g. --set train.batch_size=32 (repeatable)."
)
StrayLabelsOpt = typer.Option(
    "nearest",
    "--stray-labels",
    metavar="MODE",
    help="Label values outside the "
    "classes: reject the file, make them background, or give each the label of the "
    "nearest valid pixel (nearest).",
)
TrustCodeOpt = typer.Option(
    False,
    "--trust-code",
    help="Allow a model.json that names code outside medseg's registry "
    "(package.module:Class): loading it imports and runs that code. Only for folders you trust.",
)
AllowGapsOpt = typer.Option(
    False,
    "--allow-gaps",
    help="A DICOM series with whole slices missing is read with "
    "those slices filled (the series' minimum value) and the gap reported, instead of refused.",
)
