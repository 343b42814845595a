"""Where medseg keeps its own files: ``$MEDSEG_HOME`` (default ``~/.medseg``)."""

from __future__ import annotations

import os
from pathlib import Path


def medseg_home() -> Path:
    return Path(os.environ.get("MEDSEG_HOME", Path.home() / ".medseg")).expanduser()
