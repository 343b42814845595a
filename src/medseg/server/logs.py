"""The server's logs: the access log at the level the operator chose, and a rotated file when one is given.

uvicorn's own access log is switched off (``medseg serve``) and replaced by :class:`AccessLog`, because a
viewer paging through studies and API clients fetching slices write a line per request: fine while
debugging, a full disk after weeks of clinic use. ``errors`` (the default) keeps what an operator looks
for — refused uploads, 404s, 429s, failures — and ``all`` everything. With a log file, the server's own
messages (jobs, start-up) and the access lines go to one file, rotated by size
(:class:`SharedRotatingFileHandler`), so the disk it takes is bounded — also when the web workers of
``medseg serve --web-workers`` and the serve process all write the one file.

No line holds a token or a password: the path (no query string) is logged, never the headers.
"""

from __future__ import annotations

import logging
import os
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medseg.server.settings import ServerSettings

ACCESS = logging.getLogger("medseg.server.access")
SERVER = logging.getLogger("medseg.server")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(settings: ServerSettings) -> logging.Handler | None:
    """Point the server's loggers at ``settings.log_file`` (rotated) or leave them to the console; replaces
    what an earlier call installed, so a second app in one process does not write every line twice."""
    for logger in (SERVER, ACCESS):
        for handler in [h for h in logger.handlers if getattr(h, "medseg_server", False)]:
            logger.removeHandler(handler)
            handler.close()
    ACCESS.setLevel(logging.INFO)
    if settings.log_file is None:
        if not ACCESS.handlers and not logging.getLogger().handlers:  # nothing configured: lines to stderr
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(FORMAT))
            handler.medseg_server = True
            ACCESS.addHandler(handler)
        return None
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = SharedRotatingFileHandler(
        settings.log_file,
        maxBytes=settings.log_max_bytes,
        backupCount=settings.log_backups,
        encoding="utf-8",
        lock_path=settings.root / "log.lock",  # beside the database, not among the operator's log files
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.medseg_server = True
    SERVER.addHandler(handler)  # the access logger is its child: its lines reach this handler too
    SERVER.setLevel(logging.INFO)
    return handler


class SharedRotatingFileHandler(RotatingFileHandler):
    """:class:`RotatingFileHandler` for several processes writing one file: each line is written holding an
    ``flock`` on ``lock_path``, after reopening the file if another process rotated it away, so no two
    processes rotate at once and none writes on into a rotated file (which a second rotation would delete).
    Where file locks do not exist (Windows) it is the plain handler."""

    def __init__(self, filename, *args, lock_path: Path, **kwargs):
        super().__init__(filename, *args, **kwargs)
        self.lock_path = lock_path

    def emit(self, record: logging.LogRecord) -> None:
        if fcntl is None:
            super().emit(record)
            return
        try:
            with open(self.lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if self.stream is not None and self._rotated_away():
                    self.stream.close()
                    self.stream = None  # reopened by the write
                super().emit(record)
        except OSError:
            self.handleError(record)

    def _rotated_away(self) -> bool:
        try:
            return os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino
        except OSError:
            return True


class AccessLog:
    """ASGI middleware: one line per HTTP request ("all") or per response with status >= 400 ("errors");
    "off" logs none and costs nothing."""

    def __init__(self, app: ASGIApp, level: str = "errors"):
        self.app, self.level = app, level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.level == "off":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]  # an exception before the response is a 500

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if self.level == "all" or status[0] >= 400:
                client = scope.get("client")
                ACCESS.log(
                    logging.WARNING if status[0] >= 500 else logging.INFO,
                    "%s %s %s %d %.1f ms",
                    client[0] if client else "-",
                    scope["method"],
                    scope["path"],
                    status[0],
                    1000 * (time.perf_counter() - start),
                )
