#!/usr/bin/env bash
# Installs medseg with its test extras into .venv and Debian's Chromium for the browser tests (fresh
# machine: nothing else needed), then runs the tests — `mkdocs build --strict` of the manual among them
# (tests/docs/test_docs_site.py; mkdocs and mkdocs-material come with the test extras).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
bash "$ROOT/scripts/install_browser.sh"
cd "$ROOT"
exec python -m pytest -q "$@"
