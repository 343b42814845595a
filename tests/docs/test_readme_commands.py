"""What README.md and the manual (docs/**/*.md) promise holds: their shell blocks run, and the numbers they state
equal the results JSON they cite. Every file in :data:`DOC_FILES` is checked the same way.

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
(The commands of every file run in the same folder, one block after another in file order, README.md first.)

**Numbers.** After a paragraph, list item or table that states measured numbers, a comment names their source:

  <!-- numbers from benchmarks/results/X.json: 85.5 = final.overlap; 31.0 = results.0.params / 1e6; 48.1 = 100 * a.b -->

Each ``SHOWN = KEY`` (dotted keys, list indices as numbers, an optional ``* F`` / ``F *`` or ``/ D``) is checked:
SHOWN appears in the text above the comment (back to the previous blank line, comments left out), and the JSON
value, scaled and rounded to SHOWN's decimals, equals it (``1,012`` reads 1012).
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
DOCS = ROOT / "docs"
DOC_FILES = [README] + sorted(DOCS.rglob("*.md"))
README_MAX_LINES = 200  # the front door; the rest is the manual in docs/

TINY_2D = (
    "--set model.base_channels=4 --set model.depth=2 --set data.size=[32,32] --set train.batch_size=8 "
    "--set train.epochs=1 --set train.max_batches_per_epoch=2 --set evaluate.batch_size=32"
)
PLACEHOLDERS = {
    "tiny2d": TINY_2D,
    "tiny_plan": (
        "--set model.base_channels=4 --set train.iterations=2 --set train.max_batches_per_epoch=1 "
        "--set evaluate.tta=false --device cpu"
    ),
    "tiny3d": (
        "--set model.channels=[2,2,2,2,2] --set preprocess.depth=32 --set preprocess.size_xy=[64,64] "
        "--set data.patch_size=null --set evaluate.sliding_window.roi_size=null --set train.epochs=1 "
        "--set train.max_batches_per_epoch=1"
    ),
    "tinygi": (
        "--set model.channels=[4,4,4,4,4] --set data.size=[32,32] --set train.epochs=1 "
        "--set train.max_batches_per_epoch=1 --set train.val_max_batches=1"
    ),
}

MARKER = re.compile(r"<!--\s*docs-test:(.*?)-->", re.S)
NUMBERS = re.compile(r"<!--\s*numbers from (\S+?):(.*?)-->", re.S)


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def doc_blocks(path: Path) -> list[dict]:
    """The ```bash blocks of one Markdown file: where, commands, and the marker above each (None when missing)."""
    lines = path.read_text(encoding="utf-8").splitlines()
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
                found = MARKER.search("\n".join(lines[start : above + 1]))
                marker = found.group(1).strip() if found else None
            blocks.append({"where": f"{_name(path)}:{i + 1}", "text": "\n".join(lines[i + 1 : end]), "marker": marker})
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
            before.append(rule[len("before:") :].strip())
        elif rule.startswith("not run:"):
            prefix, why = re.fullmatch(r"not run:\s*(.+?)\s*\((.+)\)", rule).groups()
            left_out.append((prefix, why))
        elif "+=" in rule:
            prefix, args = (p.strip() for p in rule.split("+=", 1))
            appends.append((prefix, args))
        elif "=>" in rule:
            old, new = (p.strip() for p in rule.split("=>", 1))
            assert old in text, f"{block['where']}: docs-test replaces {old!r}, which the block does not hold"
            text = text.replace(old, new)
        else:
            raise AssertionError(f"{block['where']}: unknown docs-test rule {rule!r}")
    commands, skipped = [], []
    for cmd in commands_of(text):
        why = next((w for p, w in left_out if cmd.startswith(p)), None)
        if why:
            skipped.append((cmd, why))
            continue
        commands.append(cmd + "".join(f" {a}" for p, a in appends if cmd.startswith(p)))
    return before + commands, skipped


BLOCKS = [b for path in DOC_FILES for b in doc_blocks(path)]
RUN_BLOCKS = [b for b in BLOCKS if b["marker"] and b["marker"].startswith("run")]


def test_every_shell_block_is_run_or_says_why_not():
    assert len(BLOCKS) >= 10
    for b in BLOCKS:
        assert b["marker"] is not None, f"{b['where']}: a ```bash block without a <!-- docs-test: ... --> comment"
        assert b["marker"].startswith("run") or re.fullmatch(r"skip \(.{10,}\)", b["marker"], re.S), (
            f"{b['where']}: docs-test must be 'run' or 'skip (why)', got {b['marker']!r}"
        )
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


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b["where"] for b in RUN_BLOCKS])
def test_readme_block_runs(block, placeholders):
    commands, _ = plan_of(block)
    assert commands
    for cmd in commands:
        assert cmd.startswith("medseg "), f"{block['where']}: only medseg commands run here: {cmd!r}"
        _medseg(cmd[len("medseg ") :].format(**placeholders))


# ------------------------------------------------------------------------------------------------ numbers


def number_claims(path: Path) -> list[tuple[str, str, str, str, str]]:
    """(file:line, source file, shown, key expression, the text it is stated in) of every numbers comment."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in NUMBERS.finditer(text):
        where = f"{_name(path)}:{text.count(chr(10), 0, m.start()) + 1}"
        region = re.sub(r"<!--.*?-->", "", text[text.rfind("\n\n", 0, m.start()) : m.start()], flags=re.S)
        for item in (i.strip() for i in m.group(2).split(";") if i.strip()):
            shown, expr = (p.strip() for p in item.split("=", 1))
            out.append((where, m.group(1), shown, expr, region))
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


CLAIMS = [c for path in DOC_FILES for c in number_claims(path)]


def test_the_main_numbers_have_a_source():
    sources = {c[1] for c in CLAIMS}
    assert {
        "benchmarks/results/demo_cpu.json",
        "benchmarks/results/bench_unet_cpu.json",
        "benchmarks/results/own_data_cpu.json",
    } <= sources
    assert len(CLAIMS) >= 30


@pytest.mark.parametrize("claim", CLAIMS, ids=[f"{c[0]}:{c[2]}" for c in CLAIMS])
def test_a_stated_number_equals_its_source(claim):
    where, source, shown, expr, region = claim
    assert re.search(rf"(?<![\d.,]){re.escape(shown)}(?![\d]|[.,]\d)", region), (
        f"{where}: {shown} is not in the text above its numbers comment"
    )
    value = value_of(json.loads((ROOT / source).read_text()), expr)
    plain = shown.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    assert round(value, decimals) == float(plain), f"{where}: states {shown}, {source} {expr} is {value}"


@pytest.mark.parametrize("path", DOC_FILES, ids=_name)
def test_the_results_files_the_docs_name_exist(path):
    text = path.read_text(encoding="utf-8")
    named = set()
    for m in re.finditer(r"benchmarks/results/([\w{},.-]+?\.json)", text):
        if b := re.fullmatch(r"(.*)\{(.*)\}(.*)", m.group(1)):
            named |= {f"{b.group(1)}{alt}{b.group(3)}" for alt in b.group(2).split(",")}
        else:
            named.add(m.group(1))
    missing = sorted(n for n in named if not (ROOT / "benchmarks/results" / n).is_file())
    assert not missing, f"{_name(path)} names results files that do not exist: {missing}"


def test_the_model_table_lists_every_registered_model():
    from medseg.models import available_models

    table = [
        line for path in DOC_FILES for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("| `")
    ]
    listed = {name for line in table for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert set(available_models()) <= listed, sorted(set(available_models()) - listed)


# ------------------------------------------------------------------------------------------------ the front door


def test_the_readme_is_a_front_door():
    """README.md: at most 200 lines, the two set-up commands, one picture; the rest is the manual in docs/."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    assert len(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)) == 1, "README.md shows exactly one picture"


def _anchors(path: Path) -> set[str]:
    """The ids MkDocs (Python-Markdown's toc) gives the headings of a page."""
    import unicodedata

    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
        out.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", slug).strip().lower()))
    return out


def test_the_readme_links_resolve():
    """Relative links of README.md (into docs/ and the repository) name files, and headings, that exist (mkdocs
    build --strict checks the links among the docs pages)."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", text)
    assert links
    for target, anchor in links:
        if re.match(r"[a-z]+://", target):
            continue
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(ROOT / target), f"README.md links to {target}#{anchor}: no such heading"


def test_the_readme_setup_and_demo_numbers_are_those_of_getting_started():
    """The set-up block and the demo's "What to expect" stand in README.md and docs/getting-started.md; the two
    copies must be the same text, link targets aside (the numbers comment checks both against the JSON)."""
    readme, guide = (
        re.sub(r"\]\([^)]*\)", "]()", p.read_text(encoding="utf-8")) for p in (README, DOCS / "getting-started.md")
    )
    setup = re.search(r"<!-- docs-test: skip \(minutes of training.*?```bash\n.*?```\n", readme, re.S).group(0)
    expect = re.search(r"\nWhat to expect .*?-->\n", readme, re.S).group(0)
    assert setup in guide and expect in guide


def test_the_commands_page_names_every_command():
    """docs/commands.md is written by hand (cli.md is generated): each command of the CLI must have a row."""
    import typer

    root = typer.main.get_command(app)

    def leaves(command, path, parent=None):
        ctx = command.context_class(command, info_name=path[-1], parent=parent)
        if not hasattr(command, "list_commands"):
            return [path[1:]]
        return [
            leaf
            for name in command.list_commands(ctx)
            for leaf in leaves(command.get_command(ctx, name), path + [name], ctx)
        ]

    cells = " ".join(
        line.split(" | ")[0]
        for line in (DOCS / "commands.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    )
    missing = [
        " ".join(p)
        for p in leaves(root, ["medseg"])
        if not re.search(rf"`(medseg )?{re.escape(' '.join(p))}[ `]", cells)
    ]
    assert not missing, f"docs/commands.md has no row for: {missing}"
