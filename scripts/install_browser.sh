#!/usr/bin/env bash
# Installs Debian's Chromium for the web system's end-to-end tests (Playwright drives /usr/bin/chromium:
# nothing is downloaded by Playwright itself). Needs root or sudo; does nothing when chromium is already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_browser: chromium is missing and neither root nor sudo is available; the browser tests will fail" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# A failed install is reported, not fatal: the other tests still run and the browser tests say what is missing.
if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; then
  echo "install_browser: $(chromium --version 2>/dev/null || echo 'chromium installed')"
else
  echo "install_browser: apt-get could not install chromium; the browser tests will fail" >&2
fi
