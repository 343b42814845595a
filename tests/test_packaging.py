"""pyproject.toml's package-data: every pattern matches files the package ships, and every non-Python file
under src/medseg (the server's static page, script and style) is covered, so a wheel holds what runs."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "medseg"


def _patterns() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["tool"]["setuptools"]["package-data"]["medseg"])


def _data_files() -> set[Path]:
    return {
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def test_every_package_data_pattern_matches_files():
    for pattern in _patterns():
        assert [p for p in PACKAGE.glob(pattern) if p.is_file()], f"package-data {pattern!r} matches no file"


def test_every_data_file_of_the_package_is_shipped():
    covered = {p for pattern in _patterns() for p in PACKAGE.glob(pattern) if p.is_file()}
    missing = sorted(str(p.relative_to(PACKAGE)) for p in _data_files() - covered)
    assert not missing, f"not in package-data: {missing}"
    assert {"index.html", "app.js", "app.css"} <= {p.name for p in covered}
