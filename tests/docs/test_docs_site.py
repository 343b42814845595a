"""The manual builds: `mkdocs build --strict` (mkdocs.yml, docs/) fails on any warning — a link to a page or
heading that does not exist, a page left out of the navigation. Skipped, saying why, where mkdocs or
mkdocs-material is not installed; scripts/test.sh installs both with the test extras."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs / mkdocs-material not installed: pip install -e '.[test]' (scripts/test.sh does)",
)
def test_mkdocs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2.0 (a banner, not a warning)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    for page in ("index.html", "cli/index.html", "getting-started/index.html", "images/demo_overlays.png"):
        assert (tmp_path / "site" / page).is_file(), page
