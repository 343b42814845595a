"""Server settings: one place for the limits and paths, so tests can shrink them and ``medseg serve`` can
print them.

Everything the server keeps lives under one folder, ``<home>/server`` (``home`` = ``$MEDSEG_HOME``,
default ``~/.medseg``, or ``medseg serve --home``)::

    server/medseg.sqlite3     users, sessions, studies, results (each result is one segmentation job)
    server/studies/<id>/      one folder per study: input/, reference/, slices/, results/<result id>/
    server/tmp/               uploads and jobs in progress; emptied at start-up, so a killed server
                              never leaves a half-stored study behind

The thesis' system (chapter 4) kept one upload and overwrote it with the next; here every study and every
result stays until its owner deletes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from medseg.data.volume_io import MAX_ZIP_BYTES
from medseg.paths import medseg_home

GiB = 2**30
MiB = 2**20


def _default_torch_threads() -> int:
    """Leave one core to the web server: inference on every core makes slice requests stall."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class ServerSettings:
    home: Path = field(default_factory=medseg_home)
    models: list[Path] = field(default_factory=list)  # run or fold directories, as given to --model
    max_upload_bytes: int = 1 * GiB  # the whole request body; beyond it: 413 and the partial files removed
    max_unzipped_bytes: int = MAX_ZIP_BYTES  # declared uncompressed size of a zip's members (zip-bomb guard)
    max_zip_ratio: float = 100.0  # uncompressed / compressed, checked once a zip unpacks to more than 16 MiB
    max_zip_members: int = 20_000
    max_files: int = 5_000  # files in one upload (a DICOM series as loose files)
    max_voxels: int = 2**29  # 512 x 512 x 2048: refuse larger images before decoding them
    session_hours: float = 12.0
    cookie_secure: bool = False  # True behind HTTPS; off for the default http://127.0.0.1
    torch_threads: int | None = field(default_factory=_default_torch_threads)
    device: str = "auto"
    poll_seconds: float = 1.0  # how often an idle worker looks for queued jobs it was not told about

    # where things are, derived from ``home`` (see the module docstring)
    root: Path = field(init=False)
    db_path: Path = field(init=False)
    studies_dir: Path = field(init=False)
    tmp_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        self.models = [Path(m).expanduser() for m in self.models]
        self.root = self.home / "server"
        self.db_path = self.root / "medseg.sqlite3"
        self.studies_dir = self.root / "studies"
        self.tmp_dir = self.root / "tmp"

    def make_dirs(self) -> None:
        for d in (self.root, self.studies_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
