"""docs/cli.md, the CLI reference, is generated from the command definitions (scripts/gen_cli_docs.py): it must
be what the generator writes from today's commands, so it cannot drift from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_generated_from_the_commands():
    gen = _generator()
    expected = gen.render()
    actual = gen.OUT.read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/cli.md differs from the command definitions: run `python scripts/gen_cli_docs.py` and commit docs/cli.md"
    )


def test_the_cli_reference_covers_every_command_with_its_options():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for heading in ("## medseg train", "## medseg data synth", "## medseg users add", "## medseg config show"):
        assert f"\n{heading}\n" in text
    assert "--nproc N" in text and "Usage: medseg predict [OPTIONS] MODEL IMAGE..." in text
