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

from dataclasses import dataclass, field
from pathlib import Path

from medseg.formats.limits import voxel_budget
from medseg.formats.zip_safety import ZipPolicy
from medseg.paths import medseg_home

GiB = 2**30
MiB = 2**20
ACCESS_LOG = ("off", "errors", "all")


@dataclass
class ServerSettings:
    home: Path = field(default_factory=medseg_home)
    models: list[Path] = field(default_factory=list)  # run or fold directories, as given to --model
    # --pair-model: a 4-class pair model (background, chromosome A, B, overlap) attached to every metaphase model
    # (background / chromosome / overlap): it splits the crossings of two chromosomes (medseg.inference.instances)
    pair_model: Path | None = None
    # --karyotype-model: a karyotyping model (25 classes: background, 1-22, X, Y; configs/mfish/karyotype_unet.yaml)
    # attached to every metaphase model: each chromosome instance's class (medseg.inference.karyotype), voted over its
    # pixels by --karyotype-vote (soft: mean probability, or majority)
    karyotype_model: Path | None = None
    karyotype_vote: str = "soft"
    max_upload_bytes: int = 1 * GiB  # the whole request body; beyond it: 413 and the partial files removed
    # zip limits: the defaults of the one ZipPolicy the volume reader applies too (medseg.formats.zip_safety)
    max_unzipped_bytes: int = ZipPolicy.max_bytes  # declared uncompressed size of a zip's members (zip-bomb guard)
    max_zip_ratio: float = ZipPolicy.max_ratio  # uncompressed / compressed, checked once a zip unpacks to > 16 MiB
    max_zip_members: int = ZipPolicy.max_members
    max_files: int = 5_000  # files in one upload (a DICOM series as loose files)
    # refuse larger images from their headers, before decoding: $MEDSEG_MAX_VOXELS, else 2**27 (512³)
    max_voxels: int = field(default_factory=voxel_budget)
    # an uploaded HDF5 file is first read in a child process killed after this long (storage._probe_hdf5)
    hdf5_probe_seconds: float = 60.0
    session_hours: float = 12.0
    cookie_secure: bool = False  # True behind HTTPS; off for the default http://127.0.0.1
    # The worker's intra-op threads while it runs a job: "auto" = its share of the cores given to the server
    # (medseg.threads: the cores divided among the medseg compute processes alive, a training beside it
    # included; MEDSEG_THREADS overrides) less one core left to the web requests (slice requests stall when
    # inference takes every core), at least 1; a number fixes it; None leaves PyTorch's default alone.
    torch_threads: int | str | None = "auto"
    device: str = "auto"
    # Models whose model.json names code outside medseg's registry ("package.module:Class") are refused
    # unless the operator starts the server with --trust-code: a model folder is data, not a program.
    trust_code: bool = False
    # Jobs in a worker process of their own (medseg.server.worker_process: no GIL shared with the web requests,
    # a crash ends only the job); False runs them in a thread of the web process, as before.
    job_process: bool = True
    poll_seconds: float = 1.0  # how often an idle worker looks for queued jobs it was not told about
    # Sign-in back-off (auth.SignInThrottle): after this many failures within the window, per account name
    # and per client address (0 = no limit), 429 for `login_backoff_s`, doubling with each further failure.
    # The account limit is the one that protects a password (OWASP: lock the account, not the network). The
    # address limit only slows one machine spraying many names; everyone behind one NAT or proxy shares it,
    # so it is set for a department: 100 failures in 15 minutes is 50 people mistyping twice. Lower it for a
    # server facing the internet directly, raise it (or 0) behind a proxy that all users come through.
    login_failures_per_user: int = 5
    login_failures_per_address: int = 100
    login_window_s: float = 900.0
    login_backoff_s: float = 15.0
    login_backoff_max_s: float = 900.0
    # Access log (medseg.server.logs): "off", "errors" (responses >= 400, the default: a viewer asks for a few
    # files a study, but API clients may page slice by slice) or "all"; into `log_file`, rotated at
    # `log_max_bytes` keeping `log_backups` old files, or to the console without one.
    access_log: str = "errors"
    log_file: Path | None = None
    log_max_bytes: int = 10 * MiB
    log_backups: int = 5

    # where things are, derived from ``home`` (see the module docstring)
    root: Path = field(init=False)
    db_path: Path = field(init=False)
    studies_dir: Path = field(init=False)
    tmp_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        self.models = [Path(m).expanduser() for m in self.models]
        self.pair_model = None if self.pair_model is None else Path(self.pair_model).expanduser()
        self.karyotype_model = None if self.karyotype_model is None else Path(self.karyotype_model).expanduser()
        self.log_file = None if self.log_file is None else Path(self.log_file).expanduser()
        self._check()
        self.root = self.home / "server"
        self.db_path = self.root / "medseg.sqlite3"
        self.studies_dir = self.root / "studies"
        self.tmp_dir = self.root / "tmp"

    def _check(self) -> None:
        for name in ("login_failures_per_user", "login_failures_per_address", "log_backups"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("login_window_s", "login_backoff_s", "login_backoff_max_s", "log_max_bytes"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be more than 0, got {getattr(self, name)}")
        if self.access_log not in ACCESS_LOG:
            raise ValueError(f"access_log is one of {', '.join(ACCESS_LOG)}, got {self.access_log!r}")

    def make_dirs(self) -> None:
        for d in (self.root, self.studies_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
