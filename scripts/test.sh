#!/usr/bin/env bash
# Installs medseg with its test extras into .venv and Debian's Chromium for the browser tests (fresh
# machine: nothing else needed), then runs the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
bash "$ROOT/scripts/install_browser.sh"
cd "$ROOT"
exec python -m pytest -q "$@"
