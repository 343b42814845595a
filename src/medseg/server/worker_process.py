"""The segmentation worker in a process of its own, watched by the web process.

Why a process: a job's Python code (reading the input, writing slices and exports) and the web requests'
share one GIL in one process, so a job under 20 paging viewers ran 3-5× slower and uploads waited behind
it. In its own process the job has its own interpreter; its intra-op threads stay its share of the cores
(:mod:`medseg.threads`, one core left to the web requests) as with the thread before.

How it stays correct with two processes:

* **the queue** is the ``results`` table (SQLite, WAL journal, busy timeout): the child claims a job with one
  atomic ``UPDATE … RETURNING`` (:meth:`~medseg.server.db.Database.claim_next`), writes its files into
  ``server/tmp`` and renames them into place before it marks the row ``done``. Only one worker process runs
  per server, whatever ``--web-workers`` says (the serve process runs it: :mod:`medseg.server.web_workers`),
  and :func:`~medseg.server.app.lock_home` allows one server per home.
* **a crash** (killed for memory, a crashing native library) ends only the child: the web process sees it
  exit, resumes the job it was running once and fails it the second time (as after a server restart, so a
  job that kills its worker cannot do so forever), then starts a new child.
* **sign-in tokens and sessions** live in SQLite and are checked by the web process(es) only; so are the
  sign-in back-off's failures (:class:`~medseg.server.auth.SignInThrottle`).
* **wake-ups**: an upload or re-run sets a shared event (from a web worker of ``--web-workers``: through the
  serve process's FIFO); the child also polls every ``poll_seconds``, so a job queued while nobody told it
  still runs.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading

from medseg.server.db import Database
from medseg.server.jobs import Worker
from medseg.server.registry import ModelRegistry
from medseg.server.settings import ServerSettings

log = logging.getLogger("medseg.server")
RESUMED = "resumed after the worker process stopped (exit code {code})"
GAVE_UP = (
    "the worker process stopped twice while this job ran (exit code {code}; out of memory?), so it was "
    "not started a third time"
)
RESTART_PAUSE_S = 1.0  # between a crash and the next child: a child that dies at start cannot spin


def _child(settings: ServerSettings, wake, stop) -> None:
    """The child's whole life: its own connection, models and loop, until ``stop`` is set."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = ModelRegistry(
        settings.models,
        settings.device,
        trust_code=settings.trust_code,
        pair_model=settings.pair_model,
        karyotype_model=settings.karyotype_model,
        karyotype_vote=settings.karyotype_vote,
    )
    worker = Worker(Database(settings.db_path), settings, registry)
    worker.use_events(wake, stop)
    worker.loop()


class WorkerProcess:
    """Start, wake, watch and stop the worker's process; same interface as :class:`Worker`'s thread."""

    def __init__(self, settings: ServerSettings, db: Database):
        self.settings, self.db = settings, db
        # spawn, not fork: the web process has threads (and maybe torch's pools) that a fork would copy half-held
        self._ctx = mp.get_context("spawn")
        self._wake, self._stop = self._ctx.Event(), self._ctx.Event()
        self._process = None
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._stop.clear()
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="medseg-worker-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        self._process = self._ctx.Process(
            target=_child, args=(self.settings, self._wake, self._stop), name="medseg-worker", daemon=True
        )
        self._process.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current job; a job still running after ``timeout`` is killed with the child and
        resumed at the next start (:meth:`Worker.recover`)."""
        self._stop.set()
        self._wake.set()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
        if self._watcher is not None:
            self._watcher.join(timeout)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._process.join(0.5)
            if self._process.is_alive() or self._stop.is_set():
                continue
            code = self._process.exitcode
            try:
                self.after_crash(code)
            except Exception:  # the database failed too: start a child anyway, it retries by itself
                log.exception("worker: could not settle the jobs of a stopped worker process")
            self._stop.wait(RESTART_PAUSE_S)
            if not self._stop.is_set():
                self.restarts += 1
                self._spawn()

    def after_crash(self, code: int | None) -> dict:
        """The jobs the dead child was running: resumed once, failed after that."""
        out = {"resumed": 0, "failed": 0}
        for row in self.db.running():
            if row["attempts"] <= 1:
                self.db.requeue(row["id"], RESUMED.format(code=code))
                out["resumed"] += 1
            else:
                self.db.fail(row["id"], GAVE_UP.format(code=code))
                out["failed"] += 1
        log.warning("worker process ended (exit code %s); jobs %s; starting a new one", code, out)
        return out
