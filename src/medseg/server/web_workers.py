"""``medseg serve --web-workers N``: N web processes, one job worker.

One web process shares one GIL among all requests, so 50 viewers opening studies at once queue behind each
other; uvicorn's ``workers=N`` runs N processes that accept on the same socket. What keeps the server
correct with them:

* **one job worker**: the serve process (uvicorn's supervisor) does the start-up clean-up once, runs the job
  worker process (or ``--job-thread``'s thread) and watches it as with one web process; the web workers
  build their app with ``web_worker=True`` (:func:`medseg.server.app.create_app`): no clean-up, no jobs.
* **the queue** is the ``results`` table; a web worker queues a job in SQLite and wakes the job worker
  through a FIFO in the server folder (:class:`WakeSender` → :class:`WakeListener` in the serve process);
  should the wake-up be lost, the job worker finds the job at its next poll (``poll_seconds``).
* **sessions and tokens** are rows of SQLite (only their sha256), so any worker checks any token, and
  signing out or a password change ends the session for all of them at once.
* **sign-in limits** are rows of SQLite too (:class:`~medseg.server.auth.SignInThrottle`), counted in one
  write transaction, so N workers allow no more attempts than one, and a restart forgets none.
* **SQLite** runs in WAL mode with a busy timeout (:mod:`medseg.server.db`): readers never wait for the one
  writer, writers wait for each other.
* **the settings** reach the workers as JSON in :data:`SETTINGS_ENV` (uvicorn starts them by import string
  and passes no objects): validated once by ``medseg serve``, rebuilt unchanged in each worker.
* **the log file** is written by every process through :class:`medseg.server.logs.SharedRotatingFileHandler`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import threading
from dataclasses import fields
from pathlib import Path

from medseg.server.settings import ServerSettings

log = logging.getLogger("medseg.server")
SETTINGS_ENV = "MEDSEG_SERVE_SETTINGS"
NICE_ENV = "MEDSEG_WEB_NICE"  # the niceness each web worker takes (medseg serve --web-nice)
APP_FACTORY = "medseg.server.app:app_from_environment"


def settings_to_json(settings: ServerSettings) -> str:
    """The arguments ``settings`` was made from, as JSON (paths as strings); :func:`settings_from_json`
    rebuilds it, checks included."""
    values = {f.name: getattr(settings, f.name) for f in fields(settings) if f.init}
    return json.dumps(values, default=lambda v: str(v) if isinstance(v, Path) else _not_json(v))


def _not_json(value):
    raise TypeError(f"server setting of type {type(value).__name__} cannot be passed to a web worker")


def settings_from_json(text: str) -> ServerSettings:
    return ServerSettings(**json.loads(text))


def settings_from_env() -> ServerSettings:
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"{APP_FACTORY} is started by 'medseg serve --web-workers N', which sets ${SETTINGS_ENV}")
    return settings_from_json(text)


def wake_path(settings: ServerSettings) -> Path:
    return settings.root / "jobs.wake"


class WakeSender:
    """A web worker's job runner: after it queued a job, one byte into the serve process's FIFO."""

    def __init__(self, settings: ServerSettings):
        self.path = wake_path(settings)

    def notify(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no FIFO or nobody reading it (ENXIO): the job worker's poll finds the job
            return
        try:
            os.write(fd, b"\0")
        except OSError:  # the pipe is full: wake-ups are pending anyway
            pass
        finally:
            os.close(fd)


class WakeListener:
    """In the serve process: every byte a web worker writes into the FIFO wakes the job runner (``notify``).
    Without FIFOs (Windows, some network file systems) it does nothing and the runner's poll finds the jobs."""

    def __init__(self, settings: ServerSettings, notify):
        self.path, self.notify, self.poll_seconds = wake_path(settings), notify, settings.poll_seconds
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
            os.mkfifo(self.path, 0o600)
            # read-write: the FIFO never reports end-of-file while no web worker has it open
            self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        except (AttributeError, OSError) as exc:
            log.warning("no wake-up FIFO at %s (%s): queued jobs start within %s s", self.path, exc, self.poll_seconds)
            return
        self._thread = threading.Thread(target=self._relay, name="medseg-wake", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.5)
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                os.read(self._fd, 4096)
            self.notify()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, b"\0")  # ends the relay's wait now rather than at its next timeout
            self._thread.join(2)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)


def run(app, settings: ServerSettings, host: str, port: int, workers: int, announce=log.info, nice: int = 0) -> None:
    """Serve ``app``'s home with ``workers`` web processes: this process runs ``app``'s job runner and the
    wake-up relay, uvicorn's supervisor starts (and restarts) the web workers, and both stop together.
    ``announce`` gets one line saying where the jobs run; ``nice``: the web workers' niceness (the job worker
    keeps this process's, so a job is not slowed by viewers paging)."""
    import uvicorn

    os.environ[SETTINGS_ENV] = settings_to_json(settings)
    os.environ[NICE_ENV] = str(int(nice))
    runner = app.state.runner
    wake = WakeListener(settings, runner.notify)
    wake.start()
    runner.start()
    pid = getattr(runner, "pid", None)
    where = f"job worker process {pid}" if pid else f"a job thread of process {os.getpid()}"
    announce(f"{workers} web workers; jobs run one at a time in {where}")
    try:
        # the access log is medseg's (medseg.server.logs), not uvicorn's line per request
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            proxy_headers=False,  # the client address is the socket's: X-Forwarded-For is never trusted
        )
    finally:
        wake.stop()
        runner.stop()


def lower_priority() -> int:
    """In a web worker: raise this process's niceness by ``$MEDSEG_WEB_NICE`` (0–19); returns the new value."""
    wanted = max(0, min(19, int(os.environ.get(NICE_ENV) or 0)))
    return os.nice(wanted) if hasattr(os, "nice") else 0  # os.nice(0) reads the niceness
