"""The command line's errors: one line on stderr naming the file and the problem, whatever the terminal
width, a non-zero exit, no traceback, nothing half-written — for configs, overrides, run folders and
damaged training states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import DEFAULTS, load_config, set_dotted, validate
from medseg.errors import ConfigError

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--set",
    "model.base_channels=4",
    "--set",
    "model.depth=2",
    "--set",
    "train.batch_size=8",
    "--set",
    "data.size=[96,96]",
    "--epochs",
    "1",
]


def error_line(result) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # a clean exit, not a traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_an_error_stays_one_line_in_a_narrow_terminal(tmp_path):
    """rich used to hard-wrap at 80 columns (or $COLUMNS) in logs and pipes, splitting paths and phrases."""
    deep = tmp_path.joinpath(*["a_rather_long_folder_name"] * 6)
    deep.mkdir(parents=True)
    env = {**os.environ, "COLUMNS": "40", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.cli", "predict", str(deep), str(deep / "x.png"), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(deep) in lines[0] and "no trained model here" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_usage_error_is_not_boxed_or_wrapped(tmp_path):
    result = runner.invoke(app, ["train", "configs/chromosomes/demo.yaml", "--set", "no_equals_sign"])
    assert result.exit_code == 2
    assert "--set needs key=value, got 'no_equals_sign'" in result.output
    assert "╭" not in result.output and "│" not in result.output


@pytest.mark.parametrize(
    "override, problem",
    [
        ("train.epochs=abc", "config key 'train.epochs' must be an integer, got 'abc'"),
        ("train.lr=fast", "config key 'train.lr' must be a number, got 'fast'"),
        ("train.amp=maybe", "config key 'train.amp' must be a boolean (true/false), got 'maybe'"),
        ("data.size=12", "config key 'data.size' must be a list, got 12"),
        ("train.scheduler=3", "config key 'train.scheduler' must be a mapping, got 3"),
        ("train.epochz=3", "unknown config key 'train.epochz'"),
    ],
)
def test_bad_overrides_name_the_key(override, problem, tmp_path):
    result = runner.invoke(
        app, ["train", "configs/chromosomes/demo.yaml", "--set", override, "--set", f"output.root={tmp_path}"]
    )
    assert problem in error_line(result)
    assert not any(tmp_path.iterdir())


def test_a_run_folder_given_as_config_says_so(tmp_path):
    run = tmp_path / "runs" / "demo"
    (run / "fold_0").mkdir(parents=True)
    (run / "fold_0" / "config.yaml").write_text("name: demo\n")
    line = error_line(runner.invoke(app, ["train", str(run)]))
    assert "is a folder, not a config file" in line and str(run / "fold_0" / "config.yaml") in line


def test_a_bad_device_is_a_config_error(tmp_path):
    line = error_line(
        runner.invoke(app, ["predict", str(tmp_path), "x.png", "-o", str(tmp_path / "o"), "--device", "quantum"])
    )
    assert "no trained model here" in line  # the folder is checked first; the device below
    from medseg.artifact import resolve_device

    with pytest.raises(ConfigError, match="unknown device 'quantum'"):
        resolve_device("quantum")


def test_convert_with_nothing_converted_exits_cleanly(tmp_path):
    """Used to crash with a TypeError formatting seconds_per_series = None after its correct message."""
    bad = tmp_path / "series"
    bad.mkdir()
    (bad / "slice1.dcm").write_bytes(b"not dicom at all" * 10)
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "convert", str(bad), "-o", str(out), "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "converted 0, failed 1" in result.output and "slice1.dcm" in result.output
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------------------ resume


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("resume")
    pairs = work / "pairs.h5"
    assert runner.invoke(app, ["data", "synth", str(pairs), "--n-pairs", "24", "--n-chromosomes", "8"]).exit_code == 0
    args = [
        "train",
        "configs/chromosomes/demo.yaml",
        "--data",
        str(pairs),
        "--name",
        "r",
        "--set",
        f"output.root={work / 'runs'}",
        *TINY,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return work / "runs" / "r" / "fold_0", args


@pytest.mark.parametrize(
    "file, damage",
    [
        ("last.safetensors", lambda b: b[: len(b) // 3]),
        ("last.safetensors", lambda b: b""),
        ("last_state.json", lambda b: b[: len(b) // 2]),
        ("last_state.json", lambda b: b"[]"),
        ("last_state.json", lambda b: json.dumps({**json.loads(b), "history": None, "epoch": "x"}).encode()),
    ],
)
def test_a_damaged_training_state_offers_restart(trained, file, damage):
    fold, args = trained
    path = fold / file
    original = path.read_bytes()
    try:
        path.write_bytes(damage(original))
        line = error_line(runner.invoke(app, [*args[:-1], "2"]))  # --epochs 2: resume
        assert file in line and "--restart" in line
    finally:
        path.write_bytes(original)


# ------------------------------------------------------------------------------------------------ config fuzz

_LEAF_KEYS = sorted(
    f"{section}.{key}"
    for section, values in DEFAULTS.items()
    if isinstance(values, dict)
    for key, value in values.items()
    if not isinstance(value, dict) and section not in ("model",)
)


@settings(
    max_examples=int(os.environ.get("MEDSEG_FUZZ_EXAMPLES", 150)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    key=st.sampled_from(_LEAF_KEYS),
    text=st.text(max_size=12)
    | st.sampled_from(
        [
            "abc",
            "-1",
            "0",
            "1e-4",
            "[1,2]",
            "{a: 1}",
            "null",
            "true",
            "nan",
            ".inf",
            "[",
            "'",
            "!!python/object:os.system",
        ]
    ),
)
def test_any_override_is_accepted_or_a_config_error(key, text):
    cfg = load_config()
    try:
        set_dotted(cfg, key, text)
        validate(cfg)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip() or "YAML" in str(exc)
