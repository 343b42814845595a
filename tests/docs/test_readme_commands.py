"""What README.md promises holds: its shell blocks run, and the numbers it states equal the results JSON they cite.

**Shell blocks.** Every ```bash block carries, in the lines just above it, an HTML comment saying how it is tested:

    <!-- docs-test: skip (WHY it is not run here) -->

    <!-- docs-test: run
    OLD => NEW                    text of the block replaced before it runs (tiny data for the real data)
    medseg train += ARGS          ARGS appended to every command that starts with "medseg train"
    before: medseg ...            a command run first (a step the prose gives outside the block)
    not run: PREFIX (WHY)         the block's commands that start with PREFIX are left out, and why
    -->

``{name}`` in NEW, ARGS and ``before:`` is one of :data:`PLACEHOLDERS` or ``{pairs}`` (the tiny data set that
:func:`placeholders` makes once for the module, and bundles of ``--set`` that shrink a training to seconds). The
commands run in that folder, in order, in this process (typer's runner on ``medseg.cli.app``); each must exit 0.
Continued lines (``\\``) are joined, ``# comments`` and optional ``[...]`` parts are left out, globs expanded.
A run block may hold only ``medseg`` commands.

**Numbers.** After a paragraph, list item or table that states measured numbers, a comment names their source:

    <!-- numbers from benchmarks/results/X.json: 85.5 = final.overlap; 31.0 = results.0.params / 1e6; 48.1 = 100 * a.b -->

Each ``SHOWN = KEY`` (dotted keys, list indices as numbers, an optional ``* F`` / ``F *`` or ``/ D``) is checked:
SHOWN appears in the text above the comment (back to the previous blank line, comments left out), and the JSON value, scaled and
rounded to SHOWN's decimals, equals it (``1,012`` reads 1012).
"""

from __future__ import annotations

import glob
import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.data.synth_gi import write_synth_gi

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

TINY_2D = ("--set model.base_channels=4 --set model.depth=2 --set data.size=[32,32] --set train.batch_size=8 "
           "--set train.epochs=1 --set train.max_batches_per_epoch=2 --set evaluate.batch_size=32")
PLACEHOLDERS = {
    "tiny2d": TINY_2D,
    "tiny_plan": ("--set model.base_channels=4 --set train.iterations=2 --set train.max_batches_per_epoch=1 "
                  "--set evaluate.tta=false --device cpu"),
    "tiny3d": ("--set model.channels=[2,2,2,2,2] --set preprocess.depth=32 --set preprocess.size_xy=[64,64] "
               "--set data.patch_size=null --set evaluate.sliding_window.roi_size=null --set train.epochs=1 "
               "--set train.max_batches_per_epoch=1"),
    "tinygi": ("--set model.channels=[4,4,4,4,4] --set data.size=[32,32] --set train.epochs=1 "
               "--set train.max_batches_per_epoch=1 --set train.val_max_batches=1"),
}

MARKER = re.compile(r"<!--\s*docs-test:(.*?)-->", re.S)
NUMBERS = re.compile(r"<!--\s*numbers from (\S+?):(.*?)-->", re.S)


def readme_blocks() -> list[dict]:
    """The ```bash blocks of the README: line, commands, and the marker above each (None when missing)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            above = i - 1
            while above >= 0 and not lines[above].strip():
                above -= 1
            marker = None
            if above >= 0 and lines[above].rstrip().endswith("-->"):
                start = next(k for k in range(above, -1, -1) if "<!--" in lines[k])
                found = MARKER.search("\n".join(lines[start:above + 1]))
                marker = found.group(1).strip() if found else None
            blocks.append({"line": i + 1, "text": "\n".join(lines[i + 1:end]), "marker": marker})
            i = end
        i += 1
    return blocks


def commands_of(text: str) -> list[str]:
    """The block's commands: continued lines joined, comments and optional ``[...]`` parts left out."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = pending + re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = " ".join(re.sub(r"\s\[[^\]]*\]", "", line).split())
        if line:
            out.append(line)
    return out


def plan_of(block: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """(the commands to run, [(command, why) left out]) of a run block, its marker applied."""
    spec = block["marker"].split("\n")[1:]
    text, appends, before, left_out = block["text"], [], [], []
    for rule in (r.strip() for r in spec if r.strip()):
        if rule.startswith("before:"):
            before.append(rule[len("before:"):].strip())
        elif rule.startswith("not run:"):
            prefix, why = re.fullmatch(r"not run:\s*(.+?)\s*\((.+)\)", rule).groups()
            left_out.append((prefix, why))
        elif "+=" in rule:
            prefix, args = (p.strip() for p in rule.split("+=", 1))
            appends.append((prefix, args))
        elif "=>" in rule:
            old, new = (p.strip() for p in rule.split("=>", 1))
            assert old in text, f"README.md:{block['line']}: docs-test replaces {old!r}, which the block does not hold"
            text = text.replace(old, new)
        else:
            raise AssertionError(f"README.md:{block['line']}: unknown docs-test rule {rule!r}")
    commands, skipped = [], []
    for cmd in commands_of(text):
        why = next((w for p, w in left_out if cmd.startswith(p)), None)
        if why:
            skipped.append((cmd, why))
            continue
        commands.append(cmd + "".join(f" {a}" for p, a in appends if cmd.startswith(p)))
    return before + commands, skipped


BLOCKS = readme_blocks()
RUN_BLOCKS = [b for b in BLOCKS if b["marker"] and b["marker"].startswith("run")]


def test_every_shell_block_is_run_or_says_why_not():
    assert len(BLOCKS) >= 10
    for b in BLOCKS:
        assert b["marker"] is not None, f"README.md:{b['line']}: a ```bash block without a <!-- docs-test: ... --> comment"
        assert b["marker"].startswith("run") or re.fullmatch(r"skip \(.{10,}\)", b["marker"], re.S), (
            f"README.md:{b['line']}: docs-test must be 'run' or 'skip (why)', got {b['marker']!r}")
    for b in RUN_BLOCKS:
        _, skipped = plan_of(b)
        assert all(len(why) >= 10 for _, why in skipped)


def test_command_parsing_joins_lines_and_drops_comments_and_optional_parts():
    text = "medseg a x \\\n    [--opt 1] y   # note\n# whole line\nmedseg b [--c]"
    assert commands_of(text) == ["medseg a x y", "medseg b"]


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory):
    """The markers' placeholders, ``{pairs}`` among them. The commands run in a folder laid out as a checkout
    (``configs/``, ``examples/``) holding one tiny data set for every block: 40 synthesized pairs ({pairs}),
    12 of them as an images/ + masks/ folder at path/to/folder (the README's own name), one image as
    new_image.png and two in test/, and a GI-tract set of 4 slices a scan at gi_synth."""
    root = tmp_path_factory.mktemp("readme")
    for linked in ("configs", "examples"):
        (root / linked).symlink_to(ROOT / linked)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDSEG_HOME", str(root / "home"))
    mp.chdir(root)
    _medseg(f"data synth {root}/pairs.h5 --n-pairs 40 --n-chromosomes 8 --seed 1")
    _medseg(f"data export {root}/pairs.h5 path/to/folder --count 12")
    images = sorted((root / "path/to/folder/images").iterdir())
    (root / "new_image.png").write_bytes(images[0].read_bytes())
    (root / "test").mkdir()
    for image in images[:2]:
        (root / "test" / image.name).write_bytes(image.read_bytes())
    write_synth_gi(root / "gi_synth", n_cases=2, seed=2, slices=4, progress=False)
    yield {**PLACEHOLDERS, "pairs": str(root / "pairs.h5")}
    mp.undo()


def _medseg(command: str):
    args = shlex.split(command)
    args = [m for a in args for m in (sorted(glob.glob(a)) or [a] if "*" in a else [a])]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, f"medseg {command} → exit {result.exit_code}:\n{result.output[-3000:]}"
    return result


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[f"line{b['line']}" for b in RUN_BLOCKS])
def test_readme_block_runs(block, placeholders):
    commands, _ = plan_of(block)
    assert commands
    for cmd in commands:
        assert cmd.startswith("medseg "), f"README.md:{block['line']}: only medseg commands run here: {cmd!r}"
        _medseg(cmd[len("medseg "):].format(**placeholders))


# ------------------------------------------------------------------------------------------------ numbers


def number_claims() -> list[tuple[int, str, str, str, str]]:
    """(line, source file, shown, key expression, the text it is stated in) of every numbers comment."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in NUMBERS.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        region = re.sub(r"<!--.*?-->", "", text[text.rfind("\n\n", 0, m.start()):m.start()], flags=re.S)
        for item in (i.strip() for i in m.group(2).split(";") if i.strip()):
            shown, expr = (p.strip() for p in item.split("=", 1))
            out.append((line, m.group(1), shown, expr, region))
    return out


def value_of(data, expr: str) -> float:
    factor, key = 1.0, expr
    if m := re.fullmatch(r"([\d.e+-]+)\s*\*\s*(\S+)", expr):
        factor, key = float(m.group(1)), m.group(2)
    elif m := re.fullmatch(r"(\S+)\s*\*\s*([\d.e+-]+)", expr):
        key, factor = m.group(1), float(m.group(2))
    elif m := re.fullmatch(r"(\S+)\s*/\s*([\d.e+-]+)", expr):
        key, factor = m.group(1), 1 / float(m.group(2))
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return float(data) * factor


CLAIMS = number_claims()


def test_the_main_numbers_have_a_source():
    sources = {c[1] for c in CLAIMS}
    assert {"benchmarks/results/demo_cpu.json", "benchmarks/results/bench_unet_cpu.json",
            "benchmarks/results/own_data_cpu.json"} <= sources
    assert len(CLAIMS) >= 30


@pytest.mark.parametrize("claim", CLAIMS, ids=[f"line{c[0]}:{c[2]}" for c in CLAIMS])
def test_a_stated_number_equals_its_source(claim):
    line, source, shown, expr, region = claim
    assert re.search(rf"(?<![\d.,]){re.escape(shown)}(?![\d]|[.,]\d)", region), (
        f"README.md:{line}: {shown} is not in the text above its numbers comment")
    value = value_of(json.loads((ROOT / source).read_text()), expr)
    plain = shown.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    assert round(value, decimals) == float(plain), f"README.md:{line}: states {shown}, {source} {expr} is {value}"


def test_the_results_files_the_readme_names_exist():
    text = README.read_text(encoding="utf-8")
    named = set()
    for m in re.finditer(r"benchmarks/results/([\w{},.-]+?\.json)", text):
        if b := re.fullmatch(r"(.*)\{(.*)\}(.*)", m.group(1)):
            named |= {f"{b.group(1)}{alt}{b.group(3)}" for alt in b.group(2).split(",")}
        else:
            named.add(m.group(1))
    missing = sorted(n for n in named if not (ROOT / "benchmarks/results" / n).is_file())
    assert not missing, f"README.md names results files that do not exist: {missing}"


def test_the_model_table_lists_every_registered_model():
    from medseg.models import available_models

    table = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    listed = {name for line in table for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert set(available_models()) <= listed, sorted(set(available_models()) - listed)
