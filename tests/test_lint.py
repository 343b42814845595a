"""The code passes ruff: the lint rules and the formatter's layout configured in pyproject.toml ([tool.ruff]).

Run from the repository root, so ruff reads that configuration and skips what .gitignore ignores. Skipped where
ruff is not installed (it comes with the ``test`` extras: ``pip install -e .[test]``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None,
    reason="ruff is not installed (it comes with the test extras: pip install -e .[test])",
)


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check_passes():
    proc = _ruff("check", "--no-cache", ".")
    assert proc.returncode == 0, f"ruff check found problems (fix: ruff check --fix .):\n{proc.stdout}{proc.stderr}"


def test_ruff_format_check_passes():
    proc = _ruff("format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, f"files ruff format would change (fix: ruff format .):\n{proc.stdout}{proc.stderr}"
